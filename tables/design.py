"""How complete a run's design is: the manifest's status and the cells each model lacks.

``coupled analyze`` / ``coupled rank`` analyse the rows they are given; a run still running or a
model with rows for only some questions would silently shrink the comparison to the overlap.
:func:`design_status` says what is missing so that the command can say so (or refuse).

The expected design is the *union*: every cell ``(task, prompt_id, seed, mode, coupling)`` that
any model (any pair, for comparisons) has in a task, for every model of that task — the models
in the table plus those the manifest names (a model with no rows at all is missing everything).
A design unbalanced the same way for every model (a prompt with fewer seeds) is complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from coupled.tables.schema import TableError

_CELL = ("prompt_id", "seed", "mode", "coupling")
_EXAMPLES = 5


@dataclass(frozen=True)
class MissingCells:
    """What one model (or pair ``"a vs b"``) lacks in one task, against the union design."""

    unit: str
    task: str
    n_present: int
    n_expected: int
    missing_prompts: tuple[str, ...]           # prompt ids with no row at all for this unit
    missing_seed_modes: tuple[tuple[int, str, str], ...]  # (seed, mode, coupling) absent entirely
    examples: tuple[tuple[str, int, str, str], ...]       # a few missing (prompt_id, seed, mode, coupling)

    @property
    def n_missing(self) -> int:
        return self.n_expected - self.n_present

    def summary(self) -> str:
        n_prompts_note = ""
        if self.missing_prompts:
            shown = ", ".join(repr(p) for p in self.missing_prompts[:_EXAMPLES])
            more = "" if len(self.missing_prompts) <= _EXAMPLES else ", ..."
            n_prompts_note = f"; no rows for {len(self.missing_prompts)} prompt(s) ({shown}{more})"
        seed_note = ""
        if self.missing_seed_modes:
            shown = ", ".join(f"seed {s} {m}/{c}" for s, m, c in
                              self.missing_seed_modes[:_EXAMPLES])
            more = "" if len(self.missing_seed_modes) <= _EXAMPLES else ", ..."
            seed_note = (f"; no rows for {len(self.missing_seed_modes)} seed/mode cell(s) "
                         f"({shown}{more})")
        example = ""
        if not n_prompts_note and not seed_note and self.examples:
            p, s, m, c = self.examples[0]
            example = f"; e.g. prompt {p!r} seed {s} {m}/{c}"
        return (f"{self.unit!r} (task {self.task!r}): rows for {self.n_present} of "
                f"{self.n_expected} cells{n_prompts_note}{seed_note}{example}")


@dataclass(frozen=True)
class DesignStatus:
    """Result of :func:`design_status`. ``complete`` is true when the manifest does not say
    ``running`` and no model (pair) lacks a cell of the union design."""

    kind: str                              # "scores"/"generations" (units: models) or "comparisons" (pairs)
    manifest_status: str | None            # the manifest's "status", e.g. "running", "complete"
    units: tuple[str, ...]                 # every model (or pair) of the design
    missing: tuple[MissingCells, ...]      # one entry per (unit, task) with missing cells
    absent: tuple[str, ...]                # models the manifest names that have no row at all

    @property
    def running(self) -> bool:
        return self.manifest_status == "running"

    @property
    def complete(self) -> bool:
        return not self.running and not self.missing

    def summary(self) -> str:
        """One line per problem (empty string when complete), for the top of a report."""
        lines = []
        if self.running:
            lines.append("the run is still running (manifest status 'running'): its tables are "
                         "partial")
        if self.absent:
            lines.append(f"no rows at all for {len(self.absent)} model(s) named in the manifest: "
                         f"{', '.join(repr(m) for m in self.absent)}")
        for entry in self.missing:
            lines.append("incomplete design: " + entry.summary())
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields, ``running``, ``complete`` and each entry's ``n_missing``."""
        out = asdict(self)
        out["missing"] = [dict(asdict(m), n_missing=m.n_missing,
                               missing_prompts=list(m.missing_prompts),
                               missing_seed_modes=[list(x) for x in m.missing_seed_modes],
                               examples=[list(x) for x in m.examples]) for m in self.missing]
        out["units"], out["absent"] = list(self.units), list(self.absent)
        out.update(running=self.running, complete=self.complete)
        return out


def _triples(cells: pd.DataFrame) -> set[tuple[int, str, str]]:
    return {(int(s), str(m), str(c)) for s, m, c in
            cells[["seed", "mode", "coupling"]].itertuples(index=False, name=None)}


def manifest_models(manifest: Mapping[str, Any] | None) -> dict[str | None, tuple[str, ...]]:
    """Models a manifest says the run has, per task (``None``: every task of the run).

    Reads the runner's ``config.models[*].name`` (task ``config.task.name``) and
    ``coupled simulate``'s ``models`` (task -> names); anything else names no models.
    """
    out: dict[str | None, tuple[str, ...]] = {}
    if not isinstance(manifest, Mapping):
        return out
    config = manifest.get("config")
    if isinstance(config, Mapping) and isinstance(config.get("models"), list):
        names = tuple(str(m["name"]) for m in config["models"]
                      if isinstance(m, Mapping) and "name" in m)
        task = config.get("task")
        task_name = task.get("name") if isinstance(task, Mapping) else None
        if names:
            out[str(task_name) if task_name is not None else None] = names
    models = manifest.get("models")
    if isinstance(models, Mapping):
        for task, names in models.items():
            if isinstance(names, list):
                out[str(task)] = tuple(str(n) for n in names)
    return out


def design_status(table: pd.DataFrame, manifest: Mapping[str, Any] | None = None, *,
                  source: str = "<table>") -> DesignStatus:
    """What a run lacks: the manifest's ``status`` and, per model (per pair for a comparisons
    table) and task, the cells of the union design it has no row for.

    ``table``: a validated scores, generations or comparisons table (``read_scores`` etc.).
    ``manifest``: ``read_manifest(run)`` or None. For comparisons, the design's pairs are all
    pairs of the models (those in the table and those the manifest names).
    """
    if "model_a" in table.columns and "model_b" in table.columns:
        kind = "comparisons"
    elif "model" in table.columns:
        kind = "scores" if "score" in table.columns else "generations"
    else:
        raise TableError(source, "model", "design_status needs a scores, generations or "
                                          "comparisons table (no 'model' or 'model_a' column)")
    missing_columns = [c for c in ("task", *_CELL) if c not in table.columns]
    if missing_columns:
        raise TableError(source, missing_columns[0], f"missing required column(s) "
                                                     f"{missing_columns}")
    status = manifest.get("status") if isinstance(manifest, Mapping) else None
    named = manifest_models(manifest)
    frame = table.loc[:, ["task", *_CELL]].copy()
    if kind == "comparisons":
        # One spelling per unordered pair (validated tables already have model_a < model_b;
        # an unvalidated ('b', 'a') row is the same pair as the design's 'a vs b').
        first = table[["model_a", "model_b"]].astype(str).min(axis=1)
        second = table[["model_a", "model_b"]].astype(str).max(axis=1)
        frame["unit"] = first + " vs " + second
        present = set(first) | set(second)
    else:
        frame["unit"] = table["model"].astype(str)
        present = set(frame["unit"])
    absent = {m for names in named.values() for m in names} - present

    entries: list[MissingCells] = []
    all_units: set[str] = set()
    for task, rows in frame.groupby("task", sort=True):
        task = str(task)
        models = (set(named.get(task, ())) | set(named.get(None, ()))) - absent
        if kind == "comparisons":
            in_task = table["task"] == task
            everyone = sorted(models | set(table.loc[in_task, "model_a"].astype(str))
                              | set(table.loc[in_task, "model_b"].astype(str)))
            units = [f"{a} vs {b}" for i, a in enumerate(everyone) for b in everyone[i + 1:]]
        else:
            units = sorted(set(rows["unit"]) | models)
        all_units |= set(units)
        cells = rows.loc[:, list(_CELL)].drop_duplicates()
        counts = rows.groupby("unit").size()
        prompts = set(cells["prompt_id"])
        seed_modes = _triples(cells)
        for unit in units:
            have = int(counts.get(unit, 0))
            if have == len(cells):
                continue  # keys are unique, so a full count is the full set
            own = rows.loc[rows["unit"] == unit, list(_CELL)].drop_duplicates()
            merged = cells.merge(own, how="left", on=list(_CELL), indicator=True)
            lacking = merged.loc[merged["_merge"] == "left_only", list(_CELL)].head(_EXAMPLES)
            entries.append(MissingCells(
                unit=unit, task=task, n_present=have, n_expected=len(cells),
                missing_prompts=tuple(sorted(prompts - set(own["prompt_id"]))),
                missing_seed_modes=tuple(sorted(seed_modes - _triples(own))),
                examples=tuple((str(p), int(s), str(m), str(c))
                               for p, s, m, c in lacking.itertuples(index=False, name=None))))
    units_sorted = tuple(sorted(all_units))
    return DesignStatus(kind=kind, manifest_status=None if status is None else str(status),
                        units=units_sorted, missing=tuple(entries),
                        absent=tuple(sorted(absent)))
