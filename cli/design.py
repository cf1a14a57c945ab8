"""Incomplete designs in `coupled analyze` / `coupled rank`: refused unless
``--allow-incomplete``, then said before any number and carried in the JSON.

What is missing is decided in one place, :func:`coupled.tables.design_status` (the manifest's
status; per model, or per pair for comparisons, the cells of the union design it lacks). This
module only reads the table's manifest, asks, and words the answer for the command line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from coupled.tables import DesignStatus, design_status, read_manifest

_SHOWN = 8  # problems listed on screen; the JSON has all of them


def manifest_of(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of the run a table path belongs to (none for a single file)."""
    folder = Path(path)
    if folder.is_file():
        return {}
    if (folder.name in ("scores", "comparisons", "generations")
            and not (folder / "manifest.json").exists()
            and (folder.parent / "manifest.json").exists()):
        folder = folder.parent  # a run's shard folder: the run's manifest
    return read_manifest(folder)


def design_of(table: pd.DataFrame, path: str | os.PathLike, *,
              models: list[str] | None = None) -> DesignStatus:
    """``design_status`` of a validated table read from ``path``; ``models``: only these
    models matter (the manifest's other models are then not expected)."""
    manifest = manifest_of(path)
    pairs = "model_a" in table.columns
    if models:
        keep = (table["model_a"].isin(models) & table["model_b"].isin(models) if pairs
                else table["model"].isin(models))
        table = table[keep]
        manifest = {k: v for k, v in manifest.items() if k == "status"}
    if pairs:
        # One spelling per pair ("a vs b" with a < b), whichever way round a row names it.
        low = table[["model_a", "model_b"]].min(axis=1)
        high = table[["model_a", "model_b"]].max(axis=1)
        table = table.assign(model_a=low, model_b=high).drop_duplicates(
            ["task", "prompt_id", "seed", "mode", "coupling", "model_a", "model_b"])
    return design_status(table, manifest, source=str(path))


def problems(status: DesignStatus) -> list[str]:
    """One sentence per problem (empty when complete)."""
    return [line for line in status.summary().splitlines() if line]


def check_design(status: DesignStatus, *, allow_incomplete: bool, source: str) -> None:
    """Refuse an incomplete design unless ``--allow-incomplete`` (ValueError: exit 2)."""
    if status.complete or allow_incomplete:
        return
    found = problems(status)
    raise ValueError(f"{source}: {'; '.join(found[:3])}"
                     + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
                     + ". The analysis would use only the rows present: pass "
                       "--allow-incomplete to analyse them anyway (the output then says what "
                       "is missing)")


def left_out(ranks: pd.DataFrame) -> list[str]:
    """The models :func:`with_design_notes` added without numbers, as sentences."""
    if "note" not in ranks.columns:
        return []
    rows = ranks[ranks["rank_low"].isna()]
    return [f"{m}: no comparisons under {mode}/{c}, so it is left out of that ranking"
            for m, mode, c in zip(rows["model"], rows["mode"], rows["coupling"], strict=True)]


def incomplete_banner(status: DesignStatus, extra: list[str] | None = None) -> str:
    """The lines printed at the top of the output of an incomplete design."""
    if status.complete:
        return ""
    found = [*(extra or []), *problems(status)]
    shown = [*found[:_SHOWN]]
    if len(found) > _SHOWN:
        shown.append(f"... and {len(found) - _SHOWN} more (see the JSON output, 'design')")
    return "\n".join(["INCOMPLETE DESIGN — the results use only the rows present:",
                      *(f"  - {line}" for line in shown)]) + "\n\n"


def design_json(status: DesignStatus) -> dict[str, Any]:
    """The status as JSON, with its sentences (``notes``)."""
    return {**status.as_dict(), "notes": problems(status)}


def with_design_notes(ranks: pd.DataFrame, status: DesignStatus,
                      models: list[str]) -> pd.DataFrame:
    """``rank_sets``' frame with a ``note`` per row saying what is missing for its model, and
    a row (no numbers) for every model of ``models`` a (mode, coupling) block left out — so no
    model is dropped without a note. Unchanged when the design is complete."""
    if status.complete:
        return ranks
    run_note = ("the run is still running (manifest status 'running')" if status.running
                else "")
    absent_rows = [{"model": model, "mode": mode, "coupling": coupling,
                    "derived": bool(ranks["derived"].any()), "_left_out": True}
                   for (mode, coupling), block in ranks.groupby(["mode", "coupling"],
                                                                sort=False)
                   for model in models if model not in set(block["model"])]
    out = (pd.concat([ranks, pd.DataFrame(absent_rows)], ignore_index=True) if absent_rows
           else ranks.assign(_left_out=False))
    for column in ranks.columns:  # counts and ranks stay integers beside the empty rows
        if pd.api.types.is_integer_dtype(ranks[column]):
            out[column] = out[column].astype("Int64")

    def note(model: str, mode: str, coupling: str, left_out: bool) -> str:
        parts = [run_note] if run_note else []
        if left_out is True:
            parts.append(f"no comparisons under {mode}/{coupling}: left out of that ranking")
        parts += [entry.summary() for entry in status.missing
                  if model in entry.unit.split(" vs ")]
        if model in status.absent:
            parts.append("named in the manifest but has no rows")
        return "; ".join(parts)

    out["note"] = [note(m, mode, c, left) for m, mode, c, left in
                   zip(out["model"], out["mode"], out["coupling"], out["_left_out"],
                       strict=True)]
    return out.drop(columns="_left_out")
