"""A task's rows from a local file or a local Hugging Face dataset, through a column map.

Torch-free. Two sources, both ending in the tables' one string-identifier layer
(:func:`coupled.tables.identifier_frame`), so ids, answers and options are the text written:

* a single JSONL / JSON / CSV / parquet file: :func:`coupled.tables.read_records` (CSV cells and
  JSON numbers keep their literal text — ``"001"`` stays ``"001"``, which a type-guessing
  reader would turn into ``1``);
* a folder: a ``save_to_disk`` folder (``datasets.load_from_disk``) or a folder of data files
  in the Hugging Face layout (``datasets.load_dataset(folder, name=...)``, which picks the
  parquet / JSON / CSV builder and the splits from the file names), with ``split`` and
  ``dataset_name``. Nothing is ever loaded from a hub: a path that is not on this machine is an
  error, and the ``datasets`` library runs with its offline switches on.

The column map (``[task.columns]``) names, for each field, a column or a dotted path into a
nested column (ARC's ``choices.text`` / ``choices.label``); a column whose own name contains
the dot wins. :func:`mapped_fields` returns the standard fields (``prompt_id``, ``question``,
``choices``, ``labels``, ``answer``, ``subject``, ``prompt``) or an error naming the map key,
the missing column or path, and the columns the file has.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coupled.tables import identifier_frame, read_records

# Standard field -> the column used when the map does not name one (if the file has it).
DEFAULT_COLUMNS = {"id": "prompt_id", "question": "question", "choices": "choices",
                   "labels": None, "answer": "answer", "subject": "subject", "prompt": "prompt"}
# The fields each task type reads, and which of them must be there.
FIELDS = {"multiple_choice": ("id", "question", "choices", "labels", "answer", "subject"),
          "generate": ("id", "prompt", "answer", "subject"),
          "open": ("id", "prompt", "subject")}
REQUIRED = {"multiple_choice": ("question", "choices", "answer"),
            "generate": ("prompt", "answer"), "open": ("prompt",)}
# Field -> the column name in the frame handed to the task loaders.
OUTPUT_NAME = {"id": "prompt_id", "question": "question", "choices": "choices",
               "labels": "labels", "answer": "answer", "subject": "subject", "prompt": "prompt"}
_FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet", ".pq")
_EXAMPLES = 3


class DatasetError(ValueError):
    """A task source or column map that cannot give the task's rows (one line, naming it)."""


def read_source(path: str | os.PathLike, *, split: str | None = None,
                dataset_name: str | None = None, text_columns: Iterable[str] = (),
                what: str = "task") -> pd.DataFrame:
    """The rows of a local task file or dataset folder, ``text_columns`` read as text."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(
            f"{what} path {path} does not exist on this machine; coupled reads only local files "
            f"and dataset folders, never a hub (with `datasets` where a network is allowed: "
            f"load_dataset(...).save_to_disk(FOLDER), then point `path` at FOLDER)")
    text_columns = tuple(text_columns)
    if path.is_file():
        if split is not None or dataset_name is not None:
            key = "split" if split is not None else "dataset_name"
            raise DatasetError(f"{what} path {path} is one file: {key!r} applies to a dataset "
                               f"folder (save_to_disk, or a folder of data files)")
        if path.suffix.lower() not in _FILE_SUFFIXES:
            raise DatasetError(f"{what} file {path}: unsupported type {path.suffix!r}; use "
                               f".jsonl, .json, .csv or .parquet, or a dataset folder")
        return read_records(path, text_columns=text_columns, identifiers=())
    if not path.is_dir():
        raise DatasetError(f"{what} path {path} is neither a file nor a folder")
    return _read_dataset_folder(path, split, dataset_name, text_columns, what)


def _offline_datasets():
    # Set before the import (datasets reads them once), and on its config if already imported.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    try:
        import datasets
    except ImportError as error:
        raise DatasetError(f"reading a dataset folder needs the `datasets` library (pip install "
                           f"'coupled[runner]'): {error}") from error
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if hasattr(datasets.config, name):
            setattr(datasets.config, name, True)
    return datasets


def _is_saved_dataset(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("dataset_dict.json", "state.json"))


def _read_dataset_folder(folder: Path, split: str | None, dataset_name: str | None,
                         text_columns: tuple[str, ...], what: str) -> pd.DataFrame:
    datasets = _offline_datasets()
    source = f"{what} dataset {folder}" + (f" (split {split!r})" if split else "")
    with tempfile.TemporaryDirectory(prefix="coupled-datasets-") as cache:
        try:
            if _is_saved_dataset(folder):
                if dataset_name is not None:
                    raise DatasetError(f"{what} dataset {folder} is a save_to_disk folder: "
                                       f"'dataset_name' applies to a folder of data files")
                data = datasets.load_from_disk(str(folder), keep_in_memory=True)
            else:
                # A folder of data files (parquet / JSON / CSV, split names from file names);
                # the arrow cache goes to a temporary folder, removed once read into memory.
                data = datasets.load_dataset(str(folder), name=dataset_name, cache_dir=cache,
                                             keep_in_memory=True)
        except DatasetError:
            raise
        except Exception as error:  # the library's own message, naming the folder
            raise DatasetError(f"{what} dataset {folder} cannot be read by datasets: "
                               f"{type(error).__name__}: {error}".splitlines()[0]) from error
        if isinstance(data, datasets.DatasetDict):
            splits = list(data)
            if split is None:
                if len(splits) != 1:
                    raise DatasetError(f"{what} dataset {folder} has splits {splits}: set "
                                       f"[task] split = one of them")
                split = splits[0]
            if split not in data:
                raise DatasetError(f"{what} dataset {folder} has no split {split!r} (it has "
                                   f"{splits})")
            data = data[split]
        elif split is not None:
            raise DatasetError(f"{what} dataset {folder} is one split (no splits to choose): "
                               f"remove 'split'")
        rows = data.to_list()
        columns = list(data.column_names)
    frame = pd.DataFrame({c: pd.Series([row.get(c) for row in rows], dtype=object)
                          for c in columns})
    present = [c for c in text_columns if c in frame.columns]
    return identifier_frame(frame, present, (), source=source)


# --- the column map ----------------------------------------------------------------------------

def column_plan(task_type: str, columns: Mapping[str, Any] | None) -> dict[str, Any]:
    """Field -> the column (name, dotted path, or list of columns) it is read from; ``None``
    when the map names none and the default column may be absent."""
    given = {k: v for k, v in (columns or {}).items() if v is not None}
    return {field: given.get(field, DEFAULT_COLUMNS[field]) for field in FIELDS[task_type]}


def text_columns_for(plan: Mapping[str, Any], standard: Iterable[str]) -> list[str]:
    """The columns a reader should hand over as text: the standard ones and those the plan
    names, but not the parent of a dotted path (a nested column keeps its shape; the values
    found inside it become text in :func:`mapped_fields`), nor the option columns."""
    # option lists keep their shape (a list of texts, or a table to map a path into)
    named = [n for field, spec in plan.items() if field not in ("choices", "labels")
             for n in ([spec] if isinstance(spec, str) else list(spec or ()))]
    parents = {n.split(".")[0] for n in named if "." in n}
    return [c for c in dict.fromkeys([*standard, *named]) if c not in parents]


def _nearest(name: str, columns: Sequence[str]) -> str:
    lowered = {c.lower(): c for c in columns}
    if name.lower() in lowered:
        return f"; did you mean {lowered[name.lower()]!r}?"
    near = difflib.get_close_matches(name, list(columns), n=1, cutoff=0.6)
    return f"; did you mean {near[0]!r}?" if near else ""


def _follow(cell: Any, parts: Sequence[str]) -> tuple[bool, Any]:
    """The value at a dotted path: a key of a mapping, an index of a list, or — for a list
    of mappings (ARC's original ``question.choices`` list of ``{text, label}``) — that key of
    each item."""
    for number, part in enumerate(parts):
        if isinstance(cell, Mapping) and part in cell:
            cell = cell[part]
        elif isinstance(cell, list | tuple | np.ndarray) and part.isdigit() \
                and int(part) < len(cell):
            cell = cell[int(part)]
        elif isinstance(cell, list | tuple | np.ndarray) and len(cell) \
                and all(isinstance(item, Mapping) for item in cell):
            items = [_follow(item, parts[number:]) for item in cell]
            if not all(found for found, _ in items):
                return False, next(value for found, value in items if not found)
            return True, [value for _, value in items]
        else:
            return False, cell
    return True, cell


def _column(frame: pd.DataFrame, field: str, spec: str, source: str) -> list[Any]:
    if spec in frame.columns:
        return list(frame[spec])
    top, *parts = spec.split(".")
    columns = [str(c) for c in frame.columns]
    if top not in frame.columns:
        raise DatasetError(f"{source}: [task.columns] {field} = {spec!r}: no column {top!r} "
                           f"(columns: {columns}){_nearest(top, columns)}")
    values = []
    for row, cell in enumerate(frame[top]):
        found, value = _follow(cell, parts)
        if not found:
            keys = sorted(map(str, value)) if isinstance(value, Mapping) else None
            has = f"it has keys {keys}" if keys is not None else \
                f"it holds a {type(value).__name__}"
            raise DatasetError(f"{source}: [task.columns] {field} = {spec!r}: row {row} has no "
                               f"{'.'.join(parts)!r} inside column {top!r} ({has})")
        values.append(value)
    return values


def mapped_fields(frame: pd.DataFrame, task_type: str, columns: Mapping[str, Any] | None,
                  source: str) -> pd.DataFrame:
    """The standard fields of ``task_type`` taken from ``frame`` by the column map, as text.

    A field the map names must be there (an error naming the key and the column otherwise);
    an unnamed field uses its standard column when present. ``choices`` given as a list of
    columns makes one option per column (a missing cell ends the row's options).
    """
    plan = column_plan(task_type, columns)
    named = {k for k, v in (columns or {}).items() if v is not None}
    out: dict[str, list[Any]] = {}
    for field, spec in plan.items():
        if spec is None:
            continue
        if isinstance(spec, str):
            if field not in named and spec not in frame.columns:
                continue  # a default column the file does not have
            out[OUTPUT_NAME[field]] = _column(frame, field, spec, source)
        else:  # a list of columns, one option each
            parts = [_column(frame, field, name, source) for name in spec]
            out[OUTPUT_NAME[field]] = [[v for v in row if not is_missing(v)]
                                       for row in zip(*parts, strict=True)]
    for field, spec in plan.items():  # a nested column reached without a path into it
        values = out.get(OUTPUT_NAME[field], ())
        nested = next((v for v in values if isinstance(v, Mapping)), None)
        if nested is not None:
            raise DatasetError(f"{source}: [task.columns] {field} = {spec!r} holds tables (keys "
                               f"{sorted(map(str, nested))}), not text: map a path inside it, "
                               f"e.g. {field} = '{spec}.{sorted(map(str, nested))[0]}'")
    result = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in out.items()},
                          index=range(len(frame)))
    text = [c for c in result.columns]
    lists = [c for c in ("choices", "labels") if c in result.columns]
    return identifier_frame(result, text, [c for c in ("prompt_id", "subject")
                                           if c in result.columns],
                            source=source, list_columns=lists)


def is_missing(value: Any) -> bool:
    """A cell that holds no value: None or a float NaN (pandas' empty cell)."""
    return value is None or (isinstance(value, float) and value != value)
