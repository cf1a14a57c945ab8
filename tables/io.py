"""Reading and atomically writing the tables, shards and the manifest (DESIGN §2).

Every file a table or task is read from goes through :func:`read_records`, the one
string-identifier layer: identifier and other text columns come back as the text written in the
file (no type or NA guessing), whatever the format. Shard folders are read strictly: every
entry is a readable table shard or an error naming it, never skipped; the only entries left
aside are the ones pandas and pyarrow also leave aside (names starting with ``.`` — the
temporary files of :func:`atomic_write` — or with ``_`` for non-table files such as
``_metadata``), and :func:`write_shard` never writes such names.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import stat
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from coupled.tables.schema import (
    IDENTIFIER_COLUMNS,
    KINDS,
    TEXT_COLUMNS,
    TableError,
    identifier_frame,
    validate,
)

_SUFFIXES = (".parquet", ".pq", ".csv", ".jsonl", ".ndjson", ".json")
_JSON_LINES = (".jsonl", ".ndjson")
MANIFEST = "manifest.json"

try:  # pandas' own list of the cells read_csv takes for missing, for the non-text columns
    from pandas._libs.parsers import STR_NA_VALUES as _NA_CELLS
except ImportError:  # pragma: no cover - the documented default of pandas.read_csv
    _NA_CELLS = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                 "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}


# --- the string-identifier layer: every file is read here ------------------------------------

def read_records(path: str | os.PathLike, text_columns: Iterable[str] = TEXT_COLUMNS,
                 identifiers: Iterable[str] = IDENTIFIER_COLUMNS, *, all_text: bool = False,
                 source: str | None = None) -> pd.DataFrame:
    """Read one CSV, JSONL (``.jsonl``/``.ndjson``), JSON or parquet file into a DataFrame
    whose ``text_columns`` hold exactly the text written in the file.

    * ``text_columns`` (those present; default :data:`TEXT_COLUMNS`) are ``str`` cells, or
      ``None`` where the file has no value. No type guessing (``001`` stays ``"001"``; ``01``
      and ``1`` differ) and no NA guessing: ``NA``, ``None``, ``null`` and an empty CSV cell are
      text. In JSON, a number in a text column is its literal as written (``1.50`` ->
      ``"1.50"``), ``true``/``false`` are ``"true"``/``"false"``, lists keep their shape with
      text inside, and ``null`` or an absent key is missing. Parquet stores types: non-text
      values there are turned into text by :func:`coupled.tables.identifier_text`.
    * ``identifiers`` (those present; also text columns; default :data:`IDENTIFIER_COLUMNS`)
      must be non-empty and never missing (an error naming column and rows otherwise).
    * ``all_text=True`` reads every column as text (in JSON this also turns numbers into their
      literals: use named ``text_columns`` where a JSON integer and a JSON string must differ).
    * Other columns are read the usual way (CSV cells such as ``NA`` or empty are missing).

    Raises :class:`TableError` (a ``ValueError``) naming the file (or ``source``): missing,
    unreadable, unsupported type, invalid JSON (with the line), duplicated column names, or an
    identifier problem. JSON top level: an array of objects (records); JSONL: one object a line
    (blank lines are skipped). The runner's task loader and dataset readers call this.
    """
    path = Path(path)
    name = source or str(path)
    text = set(text_columns) | set(identifiers)
    df = _read_file(path, text, all_text, name)
    columns = list(df.columns) if all_text else [c for c in df.columns if c in text]
    return identifier_frame(df, columns, identifiers, source=name)


def _read_file(path: Path, text: set[str], all_text: bool, name: str) -> pd.DataFrame:
    """The file's frame with ``text`` columns read as text but not yet checked/normalised."""
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise TableError(name, None, f"unsupported file type {path.suffix!r}; use one of "
                                     f"{list(_SUFFIXES)}")
    _require_readable_file(path, name)
    try:
        if suffix == ".csv":
            df = _read_csv(path, text, all_text, name)
        elif suffix in _JSON_LINES or suffix == ".json":
            df = _read_json(path, text, all_text, suffix != ".json", name)
        else:
            df = pd.read_parquet(path)
    except TableError:
        raise
    except Exception as error:  # the reader's own message, prefixed with the file
        raise TableError(name, None, f"cannot be read: {error}") from error
    if df.columns.duplicated().any():
        raise TableError(name, None, f"duplicated column name(s) "
                                     f"{sorted(set(map(str, df.columns[df.columns.duplicated()])))}")
    return df


def _require_readable_file(path: Path, name: str) -> None:
    problem = _entry_problem(path)
    if problem is not None:
        raise TableError(name, None, problem)
    if path.is_dir():
        raise TableError(name, None, "is a folder, not a table file")
    if not path.is_file():
        raise TableError(name, None, "is not a regular file")


def _entry_problem(path: Path) -> str | None:
    """Why ``path`` cannot be opened (missing, dangling or looping symlink), or None."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return ("is a dangling symlink (its target does not exist)" if path.is_symlink()
                else "no such file or directory")
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "is a symlink loop"
        return f"cannot be read: {error.strerror or error}"
    return None


def _read_csv(path: Path, text: set[str], all_text: bool, name: str) -> pd.DataFrame:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle), None)
    if header is None:
        raise TableError(name, None, "cannot be read: the file is empty (no header line)")
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:  # pandas would rename them 'x.1' silently
        raise TableError(name, None, f"duplicated column name(s) {duplicated}")
    as_text = header if all_text else [c for c in header if c in text]
    return pd.read_csv(path, encoding="utf-8-sig", dtype=dict.fromkeys(as_text, str),
                       keep_default_na=False,
                       na_values={c: sorted(_NA_CELLS) for c in header if c not in as_text})


class _IntLiteral(str):
    """A JSON integer, kept as the text written until we know its column."""


class _FloatLiteral(str):
    """A JSON number with a fraction or exponent, kept as the text written."""


def _json_cell(value: Any, text: bool) -> Any:
    if isinstance(value, _IntLiteral):
        return str(value) if text else int(value)
    if isinstance(value, _FloatLiteral):
        return str(value) if text else float(value)
    if isinstance(value, bool):
        return ("true" if value else "false") if text else value
    if isinstance(value, list):
        return [_json_cell(v, text) for v in value]
    if isinstance(value, dict):
        return {k: _json_cell(v, text) for k, v in value.items()}
    if text and isinstance(value, float):  # NaN / Infinity (not JSON, but Python writes them)
        return None if value != value else repr(value)
    return value


def _read_json(path: Path, text: set[str], all_text: bool, lines: bool,
               name: str) -> pd.DataFrame:
    # Parsed with the json module, not pandas.read_json: that one turns "001" into 1 and
    # guesses dates; here numbers keep their literal until their column is known.
    def parse(chunk: str, where: str) -> Any:
        try:
            return json.loads(chunk, parse_int=_IntLiteral, parse_float=_FloatLiteral)
        except json.JSONDecodeError as error:
            raise TableError(name, None, f"{where}invalid JSON: {error}") from error

    with open(path, encoding="utf-8-sig") as handle:
        content = handle.read()
    if lines:
        records = []
        # split on "\n" only: str.splitlines would also split inside strings at U+2028 etc.
        for number, line in enumerate(content.split("\n"), start=1):
            if line.strip():
                records.append((number, parse(line, f"line {number}: ")))
    else:
        data = parse(content, "")
        if not isinstance(data, list):
            raise TableError(name, None, f"a .json table must be an array of objects (records), "
                                         f"found a JSON {type(data).__name__}; or use .jsonl")
        records = [(number, record) for number, record in enumerate(data, start=1)]
    rows = []
    for number, record in records:
        if not isinstance(record, dict):
            where = f"line {number}" if lines else f"record {number}"
            raise TableError(name, None, f"{where}: expected a JSON object, found "
                                         f"{type(record).__name__}")
        rows.append({key: _json_cell(value, all_text or key in text)
                     for key, value in record.items()})
    if not rows:
        return pd.DataFrame()
    # columns in order of first appearance; an absent key is a missing value
    columns = list(dict.fromkeys(key for row in rows for key in row))
    data = {c: [row.get(c) for row in rows] for c in columns}
    frame = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in data.items()})
    for column in columns:  # numbers/booleans of the other columns get their usual dtypes
        if not (all_text or column in text):
            frame[column] = frame[column].infer_objects()
    return frame


def _read_one(path: Path) -> pd.DataFrame:
    # validate() applies identifier_frame once to the concatenated shards (read_records' layer)
    return _read_file(path, set(TEXT_COLUMNS), False, str(path))


# --- shards and output folders ---------------------------------------------------------------

def _shard_files(folder: Path) -> list[Path]:
    """The table shards of ``folder``; anything else in it is an error naming that entry."""
    try:
        entries = sorted(os.listdir(folder))
    except OSError as error:
        raise TableError(str(folder), None, f"cannot be listed: {error.strerror or error}") \
            from error
    files = []
    for name in entries:
        path = folder / name
        suffix = Path(name).suffix.lower()
        if name.startswith("."):
            continue  # hidden: atomic_write's temporary files; pandas and pyarrow skip them too
        if name.startswith("_"):
            if suffix in _SUFFIXES:
                raise TableError(str(path), None,
                                 "a shard whose name starts with '_' is skipped by "
                                 "pandas.read_parquet(folder) and pyarrow.dataset, so other "
                                 "tools would silently miss its rows; rename it (drop the "
                                 "leading '_')")
            continue  # dataset metadata such as _metadata or _SUCCESS, as pyarrow skips it
        problem = _entry_problem(path)
        if problem is not None:
            raise TableError(str(path), None, f"a shard {problem}; fix or remove it (a shard is "
                                              f"never skipped)")
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise TableError(str(path), None, "a folder inside a shard folder; shards are files")
        if not stat.S_ISREG(mode):
            raise TableError(str(path), None, "not a regular file, so not a table shard")
        if suffix not in _SUFFIXES:
            raise TableError(str(path), None,
                             f"not a table shard ({suffix or 'no suffix'}; shard folders hold "
                             f"only {', '.join(_SUFFIXES)} files); move it out of the folder")
        files.append(path)
    return files


def _is_output_dir(path: Path) -> bool:
    names = [MANIFEST, *KINDS, *(f"{kind}{suffix}" for kind in KINDS for suffix in _SUFFIXES)]
    return any(os.path.lexists(path / name) for name in names)


def resolve(path: str | os.PathLike, kind: str) -> list[Path]:
    """The files that hold table ``kind`` at ``path`` (a file, a shard folder or an output dir).

    An output dir is a folder with ``manifest.json`` or a ``scores``/``comparisons``/
    ``generations`` folder or file; any other folder is read as a folder of shards.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    path = Path(path)
    problem = _entry_problem(path)
    if problem is not None:
        raise TableError(str(path), None, problem)
    if path.is_file():
        if path.suffix.lower() not in _SUFFIXES:
            raise TableError(str(path), None, f"unsupported file type; use one of {_SUFFIXES}")
        return [path]
    if not path.is_dir():
        raise TableError(str(path), None, "is neither a table file nor a folder")
    folder = path / kind
    if os.path.lexists(folder):
        problem = _entry_problem(folder)
        if problem is not None:
            raise TableError(str(folder), None, problem)
        if not folder.is_dir():
            raise TableError(str(folder), None, "should be a folder of shards")
        files = _shard_files(folder)
        if not files:
            raise TableError(str(folder), None, f"holds no {kind} table (the {kind}/ folder has "
                                                f"no shard files)")
        return files
    singles = [path / f"{kind}{suffix}" for suffix in _SUFFIXES
               if os.path.lexists(path / f"{kind}{suffix}")]
    if len(singles) > 1:
        raise TableError(str(path), None, f"holds more than one {kind} table "
                                          f"({[p.name for p in singles]}); keep one")
    if singles:
        _require_readable_file(singles[0], str(singles[0]))
        return singles
    if _is_output_dir(path):
        raise TableError(str(path), None, f"holds no {kind} table (no {kind}/ folder of "
                                          f"shards, no {kind}.parquet/.csv)")
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
    frames = {f: _read_one(f) for f in files}
    source = str(files[0]) if len(files) == 1 else f"{Path(path)} ({len(files)} shards)"
    rows = [f for f in frames.values() if len(f)]
    if not rows:
        raise TableError(source, None, f"the {kind} table is empty")
    try:
        return validate(pd.concat(rows, ignore_index=True), kind, source, models=models)
    except TableError:
        if len(rows) > 1:  # name the shard at fault when one is (not for cross-shard duplicates)
            for file, frame in frames.items():
                if len(frame):
                    validate(frame, kind, str(file), models=models)
        raise


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
    """Write one table file atomically (parquet; CSV, JSONL or JSON by suffix); validate first
    if ``kind``. Every format reads back through :func:`read_records` with the same text."""
    path = Path(path)
    if kind is not None:
        df = validate(df, kind, str(path))
    suffix = path.suffix.lower()
    if suffix == ".csv":
        # every field quoted: a text holding "\r" (which pandas does not quote) survives
        atomic_write(path, lambda tmp: df.to_csv(tmp, index=False, quoting=csv.QUOTE_ALL))
    elif suffix in _JSON_LINES or suffix == ".json":
        atomic_write(path, lambda tmp: _write_json(df, tmp, lines=suffix != ".json"))
    else:
        atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def _write_json(df: pd.DataFrame, target: Path, lines: bool) -> None:
    # The json module, not DataFrame.to_json: that one rounds floats to 10 digits.
    records = [{k: (None if _is_missing(v) else v) for k, v in row.items()}
               for row in df.to_dict(orient="records")]
    dump = lambda record: json.dumps(record, default=_jsonable, ensure_ascii=False,  # noqa: E731
                                     allow_nan=False)
    with open(target, "w", encoding="utf-8") as handle:
        if lines:
            handle.writelines(dump(record) + "\n" for record in records)
        else:
            handle.write("[" + ",\n".join(dump(record) for record in records) + "]\n")


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


_WINDOWS_RESERVED = set('<>:"|?*')


def check_shard_name(name: str) -> str:
    """``name`` if it is a safe shard name, else ``ValueError`` saying why.

    A shard is written as ``<name>.parquet``; the name must be read back by every reader of the
    folder — ours, ``pandas.read_parquet(folder)`` and ``pyarrow.dataset`` — and survive a copy
    to another system: not starting with ``.`` or ``_`` (those readers skip such files), one
    path component (no ``/``, ``\\``, control characters, none of ``<>:"|?*``, no trailing dot or
    space), valid Unicode in NFC form (macOS stores names decomposed, so another form would not
    be found again on resume), at most 200 bytes of UTF-8. Any letters are allowed (``模型``).
    """
    def refuse(problem: str) -> ValueError:
        return ValueError(f"shard name {name!r}: {problem}")

    if not isinstance(name, str) or not name:
        raise ValueError(f"shard name must be a non-empty string, got {name!r}")
    if name.startswith((".", "_")):
        raise refuse("starts with '.' or '_', so pandas.read_parquet(folder) and pyarrow.dataset "
                     "would skip the shard; start it with a letter or digit")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
        raise refuse("holds a control character or a lone surrogate")
    if "/" in name or "\\" in name or _WINDOWS_RESERVED.intersection(name):
        raise refuse('holds a path separator or one of <>:"|?*')
    if name.endswith((" ", ".")):
        raise refuse("ends with a dot or a space")
    if unicodedata.normalize("NFC", name) != name:
        raise refuse("is not in Unicode NFC form; normalise it "
                     "(unicodedata.normalize('NFC', name))")
    if len(name.encode("utf-8")) > 200:
        raise refuse("is longer than 200 bytes of UTF-8")
    return name


def write_shard(df: pd.DataFrame, out_dir: str | os.PathLike, kind: str, name: str) -> Path:
    """Validate ``df`` and write it as ``out_dir/kind/name.parquet``, atomically.

    ``name`` should be a function of the work unit alone (e.g. ``chunk-000042``) so that a
    resumed run either finds the shard complete or rewrites the whole of it; it must pass
    :func:`check_shard_name` (checked before anything is written).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    check_shard_name(name)
    target = Path(out_dir) / kind / f"{name}.parquet"
    return write_table(df, target, kind)


def completed_shards(out_dir: str | os.PathLike, kind: str) -> set[str]:
    """Names (without suffix) of the shards already written for ``kind``: regular parquet files
    (symlinks followed) whose footer reads. A dangling link or a truncated file is not complete,
    so a resumed run writes that shard again (replacing the link or file, not its target)."""
    import pyarrow.parquet as pq

    folder = Path(out_dir) / kind
    if not folder.is_dir():
        return set()
    done = set()
    for path in folder.glob("*.parquet"):
        if path.name.startswith((".", "_")) or not path.is_file():
            continue
        try:
            pq.read_metadata(path)
        except Exception:  # noqa: BLE001 - any unreadable footer means "not complete"
            continue
        done.add(path.stem)
    return done


def write_manifest(out_dir: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically (sorted keys, non-JSON values as strings)."""
    target = Path(out_dir) / MANIFEST
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
    atomic_write(target, lambda tmp: tmp.write_text(text + "\n"))
    return target


def read_manifest(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of ``out_dir`` as a dict; ``{}`` when there is none.

    A ``manifest.json`` that exists but is not a readable JSON object (a folder, a dangling
    link, corrupt JSON, a list or a number) raises :class:`TableError` naming the file.
    """
    target = Path(out_dir) / MANIFEST
    if not os.path.lexists(target):
        return {}
    problem = _entry_problem(target)
    if problem is not None:
        raise TableError(str(target), None, problem)
    if target.is_dir():
        raise TableError(str(target), None, "is a folder; the manifest must be a JSON file")
    try:
        text = target.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise TableError(str(target), None, f"is not UTF-8 text: {error}") from error
    except OSError as error:
        raise TableError(str(target), None, f"cannot be read: {error.strerror or error}") \
            from error
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as error:
        raise TableError(str(target), None, f"is not valid JSON: {error}") from error
    if not isinstance(manifest, dict):
        raise TableError(str(target), None, f"must hold a JSON object ({{...}}), found a JSON "
                                            f"{_json_type(manifest)}")
    return manifest


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)
