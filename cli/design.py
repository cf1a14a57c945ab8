"""Is the design of a table complete? What `coupled analyze` / `coupled rank` say before any
number, and refuse on without ``--allow-incomplete``.

A run is *complete* when its manifest does not say it is still running (or failed), and, in
every block of rows (task, mode, coupling), every model of the table has rows for every
question the block holds, for every seed — and, for comparisons, every pair of models was
compared on every prompt. Otherwise the analyses silently use the overlap: a pair's
difference is taken over the questions both models answered, a model absent from a mode is
left out of that mode's ranking. This module lists what is missing, for which model.

Written here because the tables layer has no such check yet (`coupled.tables` is the place
for it once it has one; this module then only formats its answer).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

_SHOWN = 8  # gaps listed by name; the rest are counted


@dataclass(frozen=True)
class DesignStatus:
    """``complete``; ``run_status`` from the manifest (None when it has none); ``gaps``: one
    record per model (or pair) and block that lacks rows."""

    complete: bool
    run_status: str | None
    gaps: list[dict[str, Any]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What the screen shows, one sentence per problem."""
        out = []
        if self.run_status not in (None, "complete"):
            out.append(f"the run's manifest says status {self.run_status!r}: it has not "
                       "finished, so rows may be missing")
        for gap in self.gaps[:_SHOWN]:
            out.append(gap["text"])
        if len(self.gaps) > _SHOWN:
            out.append(f"... and {len(self.gaps) - _SHOWN} more gap(s) (see the JSON "
                       "output, key 'design')")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"complete": self.complete, "run_status": self.run_status,
                "gaps": [{k: v for k, v in g.items() if k != "text"} | {"note": g["text"]}
                         for g in self.gaps]}


def _block_name(task: str, mode: str, coupling: str, several_tasks: bool) -> str:
    return (f"task {task!r}, " if several_tasks else "") + f"{mode}/{coupling}"


def _scores_gaps(scores: pd.DataFrame, models: list[str]) -> list[dict[str, Any]]:
    gaps = []
    several = scores["task"].nunique() > 1
    for (task, mode, coupling), block in scores.groupby(["task", "mode", "coupling"],
                                                        sort=True):
        questions = block["prompt_id"].nunique()
        seeds = block["seed"].nunique()
        per_model = block.groupby("model").agg(questions=("prompt_id", "nunique"),
                                               rows=("score", "size"))
        where = _block_name(task, mode, coupling, several)
        for model in models:
            have_q = int(per_model["questions"].get(model, 0))
            have_rows = int(per_model["rows"].get(model, 0))
            expected = questions * seeds
            if have_q == questions and have_rows >= expected:
                continue
            text = (f"{model}: no rows in {where} (other models have {questions} question(s))"
                    if have_rows == 0 else
                    f"{model}: rows for {have_q} of {questions} questions in {where}"
                    + (f" ({have_rows} of {expected} question x seed rows)"
                       if have_q == questions else ""))
            gaps.append({"model": model, "task": task, "mode": mode, "coupling": coupling,
                         "questions": have_q, "of_questions": questions, "rows": have_rows,
                         "of_rows": expected, "text": text})
    return gaps


def _comparison_gaps(comparisons: pd.DataFrame, models: list[str]) -> list[dict[str, Any]]:
    gaps = []
    several = comparisons["task"].nunique() > 1
    pairs_of = comparisons[["model_a", "model_b"]].apply(lambda r: tuple(sorted(r)), axis=1)
    frame = comparisons.assign(_pair=pairs_of)
    for (task, mode, coupling), block in frame.groupby(["task", "mode", "coupling"],
                                                       sort=True):
        prompts = block["prompt_id"].nunique()
        where = _block_name(task, mode, coupling, several)
        present = set(block["model_a"]) | set(block["model_b"])
        for model in models:
            if model not in present:
                gaps.append({"model": model, "task": task, "mode": mode,
                             "coupling": coupling, "prompts": 0, "of_prompts": prompts,
                             "text": f"{model}: no comparisons in {where}; it is left out "
                                     "of that ranking"})
        compared = block.groupby("_pair")["prompt_id"].nunique()
        for pair in itertools.combinations(sorted(present), 2):
            have = int(compared.get(pair, 0))
            if have < prompts:
                gaps.append({"model": f"{pair[0]} vs {pair[1]}", "task": task, "mode": mode,
                             "coupling": coupling, "prompts": have, "of_prompts": prompts,
                             "text": f"{pair[0]} vs {pair[1]}: compared on {have} of "
                                     f"{prompts} prompts in {where}"})
    return gaps


def _manifest_models(manifest: dict[str, Any]) -> list[str]:
    """Model names a run's manifest says it runs (runner manifests list them)."""
    listed = manifest.get("models")
    if isinstance(listed, list):
        return [m["name"] for m in listed if isinstance(m, dict) and isinstance(m.get("name"),
                                                                                   str)]
    if isinstance(listed, dict):
        return [name for name in listed if isinstance(name, str)]
    return []


def design_status(table: pd.DataFrame, manifest: dict[str, Any] | None = None, *,
                  kind: str = "scores", models: list[str] | None = None) -> DesignStatus:
    """The completeness of a validated ``table`` (``kind`` "scores" or "comparisons") and the
    run status its ``manifest`` records; ``models``: only these models' rows matter."""
    manifest = manifest or {}
    if models:
        if kind == "comparisons":
            table = table[table["model_a"].isin(models) & table["model_b"].isin(models)]
        else:
            table = table[table["model"].isin(models)]
        manifest = {**manifest, "models": list(models)}
    status = manifest.get("status")
    run_status = status if isinstance(status, str) else None
    if kind == "comparisons":
        seen = sorted(set(table["model_a"]) | set(table["model_b"]))
    else:
        seen = sorted(set(table["model"]))
    # Models the manifest names but the table lacks entirely are gaps too.
    models = seen + [m for m in _manifest_models(manifest) if m not in seen]
    gaps = (_comparison_gaps(table, models) if kind == "comparisons"
            else _scores_gaps(table, models))
    complete = not gaps and run_status in (None, "complete")
    return DesignStatus(complete, run_status, gaps)


def manifest_of(path: str) -> dict[str, Any]:
    """The manifest beside a table path (an output folder's, or none for a file)."""
    from pathlib import Path

    from coupled.tables import read_manifest

    folder = Path(path)
    if folder.is_file():
        return {}
    if not (folder / "manifest.json").exists() and (folder.parent / "manifest.json").exists() \
            and folder.name in ("scores", "comparisons", "generations"):
        folder = folder.parent  # a run's shard folder: the run's manifest
    return read_manifest(folder)


def check_design(status: DesignStatus, *, allow_incomplete: bool, source: str) -> None:
    """Refuse an incomplete design unless ``--allow-incomplete`` (ValueError: exit 2)."""
    if status.complete or allow_incomplete:
        return
    problems = status.lines()
    raise ValueError(f"{source}: incomplete design ({'; '.join(problems[:3])}"
                     + (f"; {len(problems) - 3} more" if len(problems) > 3 else "")
                     + "); the analysis would use only the overlap. Pass --allow-incomplete "
                       "to analyse it anyway (the output then says what is missing)")


def incomplete_banner(status: DesignStatus) -> str:
    """The lines printed at the top of the output of an incomplete design."""
    if status.complete:
        return ""
    return "\n".join(["INCOMPLETE DESIGN — the results use only the rows present:",
                      *(f"  - {line}" for line in status.lines())]) + "\n\n"


def with_design_notes(ranks: pd.DataFrame, status: DesignStatus) -> pd.DataFrame:
    """``rank_sets``' frame with a ``note`` per row saying what its block lacks, and a row (no
    numbers) for every model a block left out — so no model is dropped without a note. The
    frame is returned unchanged when the design is complete."""
    if status.complete:
        return ranks
    run_note = ("run not finished (manifest status "
                f"{status.run_status!r})" if status.run_status not in (None, "complete") else "")
    notes: dict[tuple[str, str, str], list[str]] = {}
    absent = []
    for gap in status.gaps:
        for model in gap["model"].split(" vs "):
            notes.setdefault((model, gap["mode"], gap["coupling"]), []).append(gap["text"])
        if gap.get("prompts") == 0 and " vs " not in gap["model"]:
            absent.append((gap["model"], gap["mode"], gap["coupling"]))
    present = set(zip(ranks["model"], ranks["mode"], ranks["coupling"], strict=True))
    extra = pd.DataFrame([{"model": m, "mode": mode, "coupling": c, "derived":
                           bool(ranks["derived"].any())}
                          for m, mode, c in dict.fromkeys(absent) if (m, mode, c) not in present])
    out = pd.concat([ranks, extra], ignore_index=True) if len(extra) else ranks.copy()
    for column in ranks.columns:  # counts and ranks stay integers beside the empty rows
        if pd.api.types.is_integer_dtype(ranks[column]):
            out[column] = out[column].astype("Int64")
    out["note"] = ["; ".join(filter(None, [run_note, *notes.get((m, mode, c), [])]))
                   for m, mode, c in zip(out["model"], out["mode"], out["coupling"],
                                         strict=True)]
    return out
