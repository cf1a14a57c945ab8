"""The tables a figure set is drawn from: a run's output folder, files, or simulated frames.

A benchmark-only run (e.g. the runner's ``examples/tiny``) has scores but no judged
comparisons; then win-rate figures and Table 1 use comparisons derived from the scores
(``coupled.analysis.pairwise.derive_comparisons``), and ``comparisons_derived`` says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from coupled.tables import TableError, read_comparisons, read_manifest, read_records, read_scores
from coupled.tables.io import _SUFFIXES  # the table files the tables layer reads


@dataclass(frozen=True)
class RunTables:
    """Validated tables of one run. ``comparisons`` is never None when scores exist."""

    scores: pd.DataFrame | None
    comparisons: pd.DataFrame | None
    comparisons_derived: bool
    source: str
    manifest: dict[str, Any] = field(default_factory=dict)


def _holds(folder: Path, kind: str) -> bool:
    if (folder / kind).is_dir():
        return any(p.suffix in _SUFFIXES for p in (folder / kind).iterdir())
    return any((folder / f"{kind}{suffix}").is_file() for suffix in _SUFFIXES)


def _file_kind(path: Path) -> str:
    """'comparisons' or 'scores', from the columns of a single table file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            columns = pd.read_csv(path, nrows=0).columns
        elif suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            columns = pq.read_schema(path).names
        else:  # JSON lines or JSON: no cheap header, read it the way the tables layer does
            columns = read_records(path).columns
    except TableError:  # names the file already
        raise
    except Exception as error:  # the reader's own words, with the file named
        raise ValueError(f"{path}: cannot be read as a table: {error}") from error
    return "comparisons" if "model_a" in columns else "scores"


def tables_from_frames(scores: pd.DataFrame | None, comparisons: pd.DataFrame | None,
                       source: str = "<simulated>",
                       manifest: dict[str, Any] | None = None) -> RunTables:
    """Validate in-memory tables; derive comparisons from the scores when none were judged."""
    return _run_tables(read_scores(scores) if scores is not None else None,
                       read_comparisons(comparisons) if comparisons is not None else None,
                       source, manifest)


def _run_tables(scores: pd.DataFrame | None, comparisons: pd.DataFrame | None, source: str,
                manifest: dict[str, Any] | None = None) -> RunTables:
    """:class:`RunTables` of tables validated already (by ``read_scores``/``read_comparisons``)."""
    if scores is None and comparisons is None:
        raise ValueError(f"{source}: holds neither a scores nor a comparisons table")
    derived = comparisons is None
    if derived:
        from coupled.analysis.pairwise import derive_comparisons

        comparisons = derive_comparisons(scores)
    return RunTables(scores, comparisons, derived, source, dict(manifest or {}))


def load_run(path: str | os.PathLike) -> RunTables:
    """Read an output folder (``scores/``, ``comparisons/``, ``manifest.json``) or one file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--from {path}: no such file or directory")
    if path.is_file():
        if path.suffix.lower() not in _SUFFIXES:
            raise ValueError(f"{path}: unsupported file type; use one of {_SUFFIXES}")
        kind = _file_kind(path)
        frames = {"scores": None, "comparisons": None}
        frames[kind] = read_scores(path) if kind == "scores" else read_comparisons(path)
        return _run_tables(frames["scores"], frames["comparisons"], str(path))
    scores = read_scores(path) if _holds(path, "scores") else None
    comparisons = read_comparisons(path) if _holds(path, "comparisons") else None
    if scores is None and comparisons is None:
        raise ValueError(f"{path}: holds no scores/ or comparisons/ table (nor scores.parquet/"
                         f".csv, comparisons.parquet/.csv); is it a run's output folder?")
    return _run_tables(scores, comparisons, str(path), read_manifest(path))
