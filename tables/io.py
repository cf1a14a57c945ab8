"""Reading and atomically writing the tables, shards and the manifest (DESIGN §2)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from coupled.tables.schema import KINDS, TableError, validate

_SUFFIXES = (".parquet", ".pq", ".csv")
MANIFEST = "manifest.json"


def _read_one(path: Path) -> pd.DataFrame:
    try:
        if path.suffix == ".csv":
            # prompt ids are identifiers: "007" must stay "007".
            return pd.read_csv(path, dtype={"prompt_id": str, "subject": str},
                               keep_default_na=True)
        return pd.read_parquet(path)
    except Exception as error:  # the reader's own message, prefixed with the file
        raise TableError(str(path), None, f"cannot be read: {error}") from error


def _shard_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix in _SUFFIXES and not p.name.startswith("."))


def resolve(path: str | os.PathLike, kind: str) -> list[Path]:
    """The files that hold table ``kind`` at ``path`` (a file, a shard folder or an output dir)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    path = Path(path)
    if path.is_file():
        if path.suffix not in _SUFFIXES:
            raise TableError(str(path), None, f"unsupported file type; use one of {_SUFFIXES}")
        return [path]
    if not path.exists():
        raise TableError(str(path), None, "no such file or directory")
    if (path / kind).is_dir():
        path = path / kind
    else:
        for suffix in _SUFFIXES:
            if (path / f"{kind}{suffix}").is_file():
                return [path / f"{kind}{suffix}"]
    files = _shard_files(path)
    if not files:
        raise TableError(str(path), None, f"holds no {kind} table (no {kind}/ folder of "
                                          f"shards, no {kind}.parquet/.csv, no shard files)")
    return files


def read_table(path: str | os.PathLike | pd.DataFrame, kind: str,
               models: Iterable[str] | None = None) -> pd.DataFrame:
    """Read and validate table ``kind`` from a DataFrame, a file, a shard folder or an output dir.

    Shards are concatenated; a key duplicated *across* shards is an error like any other.
    """
    if isinstance(path, pd.DataFrame):
        return validate(path, kind, f"<{kind} DataFrame>", models=models)
    files = resolve(path, kind)
    frames = [_read_one(f) for f in files]
    frames = [f for f in frames if len(f)]
    source = str(files[0]) if len(files) == 1 else f"{Path(path)} ({len(files)} shards)"
    if not frames:
        raise TableError(source, None, f"the {kind} table is empty")
    return validate(pd.concat(frames, ignore_index=True), kind, source, models=models)


def read_scores(path: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    return read_table(path, "scores")


def read_generations(path: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    return read_table(path, "generations")


def read_comparisons(path: str | os.PathLike | pd.DataFrame,
                     models: Iterable[str] | None = None) -> pd.DataFrame:
    return read_table(path, "comparisons", models=models)


def atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    """Create ``target`` by calling ``write(tmp_path)`` then renaming: all or nothing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def staged_folder(out_dir: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Yield a staging folder beside ``out_dir``; on success move its contents into ``out_dir``,
    on error delete it — a whole output folder's :func:`atomic_write`.

    ``replace=False``: same-named files are replaced, other files in ``out_dir`` stay.
    ``replace=True``: ``out_dir`` becomes exactly the staging folder (swapped in by renames; the
    earlier folder is put back if the swap fails, removed once it succeeded), so no stale file of
    an earlier run survives. Whether ``out_dir`` may be replaced is the caller's decision.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        yield staging
        if replace:
            old = None
            if out.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
                os.replace(out, old / out.name)
            try:
                os.replace(staging, out)
            except BaseException:
                if old is not None:  # put the earlier output back
                    os.replace(old / out.name, out)
                raise
            finally:
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
            return
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                target = out / path.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_table(df: pd.DataFrame, path: str | os.PathLike, kind: str | None = None) -> Path:
    """Write one table file atomically (parquet, or CSV by suffix); validate first if ``kind``."""
    path = Path(path)
    if kind is not None:
        df = validate(df, kind, str(path))
    if path.suffix == ".csv":
        atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
    else:
        atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))
    return path


def write_shard(df: pd.DataFrame, out_dir: str | os.PathLike, kind: str, name: str) -> Path:
    """Validate ``df`` and write it as ``out_dir/kind/name.parquet``, atomically.

    ``name`` should be a function of the work unit alone (e.g. ``chunk-000042``) so that a
    resumed run either finds the shard complete or rewrites the whole of it.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    target = Path(out_dir) / kind / f"{name}.parquet"
    return write_table(df, target, kind)


def completed_shards(out_dir: str | os.PathLike, kind: str) -> set[str]:
    """Names (without suffix) of the shards already written for ``kind``."""
    folder = Path(out_dir) / kind
    if not folder.is_dir():
        return set()
    return {p.stem for p in folder.glob("*.parquet") if not p.name.startswith(".")}


def write_manifest(out_dir: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically (sorted keys, non-JSON values as strings)."""
    target = Path(out_dir) / MANIFEST
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
    atomic_write(target, lambda tmp: tmp.write_text(text + "\n"))
    return target


def read_manifest(out_dir: str | os.PathLike) -> dict[str, Any]:
    target = Path(out_dir) / MANIFEST
    if not target.is_file():
        return {}
    return json.loads(target.read_text())
