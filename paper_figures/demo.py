"""``coupled demo``: simulate the default six-model family (benchmark and pairwise tasks),
analyse it, answer one planning question, and write every figure, table and ``REPORT.md``.

Stages (one tqdm bar): simulate → analyse → plan → figures → report. Everything lands in
``out_dir`` at once (staged; ``coupled demo`` replaces its own earlier output whole and
refuses any other non-empty folder), including the simulated tables under ``data/`` so that
``coupled figures --from OUT/data`` redraws them. The report's numbers are formatted from the
analysis results (``coupled.analysis``) and the theory (``coupled.theory``), never typed in.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from coupled.paper_figures import report
from coupled.paper_figures.output import Artifact, OutputStage, relocate, staged_output
from coupled.tables import atomic_write

STAGES = ("simulate", "analyse", "plan", "figures", "report")
PAPER_PAIRS = (("medium", "small"), ("large", "small"), ("large", "medium"))


@dataclass(frozen=True)
class DemoResult:
    out_dir: Path
    artifacts: list[Artifact]
    report_path: Path
    headline: dict
    stage_seconds: dict[str, float] = field(default_factory=dict)
    screen_summary: str = ""

    @property
    def files(self) -> list[Path]:
        return [a.path for a in self.artifacts]


def featured_pairs(models: list[str]) -> list[tuple[str, str]]:
    """Fig. 2's pairs: the paper's three (small/medium/large) when the family has them, else
    the pairs among the first three models."""
    if {"large", "medium", "small"} <= set(models):
        return list(PAPER_PAIRS)
    first = sorted(models)[:3]
    return [(a, b) for i, a in enumerate(first) for b in first[i + 1:]]


def planning_pair(differences: pd.DataFrame) -> tuple[str, str]:
    """The hardest pair the coupled run still separates: smallest |estimate| among the coupled
    differences whose CI excludes 0 (else the largest |estimate|) — a real planning question."""
    coupled = differences[differences["mode"] == "coupled"]
    separated = coupled[(coupled["ci_low"] > 0) | (coupled["ci_high"] < 0)]
    pool = separated if len(separated) else coupled
    pick = pool["estimate"].abs()
    row = pool.loc[pick.idxmin() if len(separated) else pick.idxmax()]
    return str(row["model_a"]), str(row["model_b"])


def _write_text(path: Path, text: str) -> Path:
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path


def run_demo(out_dir: str | os.PathLike = "demo-output", *, quick: bool = False,
             progress: bool = True, config: str | os.PathLike | None = None,
             alpha: float = 0.05, power: float = 0.8,
             output: OutputStage = staged_output) -> DemoResult:
    """Run the whole demo; see the module docstring. ``quick``: a smaller simulation and one
    Fig. 2 pair (for tests and a first look). ``output(out_dir)`` stages and commits the
    folder (default: a new or empty folder only; ``coupled demo`` passes its own stage, which
    also replaces an earlier demo output)."""
    from tqdm.auto import tqdm

    from coupled.analysis.benchmark import compare_models
    from coupled.analysis.planning import components_from_pilot, plan_mean_difference
    from coupled.paper_figures.example_b6 import example_text
    from coupled.paper_figures.figures import make_figures, scores_view
    from coupled.paper_figures.simulated import simulated_tables

    started = time.perf_counter()
    seconds: dict[str, float] = {}
    bar = tqdm(total=len(STAGES), desc="coupled demo", unit="stage", disable=not progress)

    def stage(name: str) -> None:
        now = time.perf_counter()
        seconds[name] = now
        bar.set_postfix_str(name)

    def done(name: str) -> None:
        seconds[name] = time.perf_counter() - seconds[name]
        bar.update()

    try:
        with output(out_dir) as staging:
            stage("simulate")
            tables, truth, about = simulated_tables(config=config, quick=quick,
                                                    out_dir=staging / "data")
            done("simulate")

            stage("analyse")
            # One sampler throughout: the one the simulation's truth is for.
            coupling = about["coupling"]
            benchmark = compare_models(scores_view(tables.scores), alpha=alpha)
            reductions = benchmark.variance_reduction
            if "coupling" in reductions:
                reductions = reductions[reductions["coupling"] == coupling]
            differences = benchmark.differences
            if "coupling" in differences:
                differences = differences[differences["coupling"] == coupling]
            done("analyse")

            stage("plan")
            a, b = planning_pair(differences)
            components = components_from_pilot(scores_view(tables.scores, (a, b)), a, b,
                                               coupling=coupling)
            seeds = tuple(sorted({1, about["n_seeds"]}))
            plan = plan_mean_difference(components, components.effect, seeds=seeds,
                                        power=power, alpha=alpha)
            done("plan")

            stage("figures")
            models = sorted(set(tables.scores["model"]))
            pairs = featured_pairs(models)[:1] if quick else featured_pairs(models)
            figures = make_figures(tables, staging, pairs=pairs, alpha=alpha, coupling=coupling,
                                   truth=truth, benchmark=benchmark, step=bar.set_postfix_str)
            artifacts = list(figures.artifacts)
            data_files = sorted(p for p in (staging / "data").rglob("*") if p.is_file())
            artifacts += [Artifact(p, "Simulated tables (DESIGN §2 layout): redraw with "
                                      "`coupled figures --from <out>/data --out DIR`.")
                          for p in data_files]
            reduction_csv = staging / "variance_reduction.csv"
            atomic_write(reduction_csv, lambda tmp: reductions.to_csv(tmp, index=False))
            artifacts.append(Artifact(reduction_csv, "Variance-reduction ratio and sample "
                                      "saving with CIs for every pair "
                                      "(coupled.analysis.benchmark.compare_models)."))
            plan_csv = staging / "planning.csv"
            atomic_write(plan_csv, lambda tmp: plan.to_csv(tmp, index=False))
            artifacts.append(Artifact(plan_csv, f"Questions needed to detect {a} vs {b} "
                                      "(coupled.analysis.planning.plan_mean_difference)."))
            done("figures")

            stage("report")
            change = report.ranking_change(figures.ranking) if figures.ranking else None
            headline = _headline(reductions, figures, change, plan, (a, b), components, about,
                                 power, alpha)
            summary_json = staging / "summary.json"
            artifacts.append(Artifact(summary_json, "The headline numbers, machine-readable."))
            report_path = staging / "REPORT.md"
            artifacts.append(Artifact(report_path, "This report."))
            elapsed = time.perf_counter() - started
            b6_text = example_text()
            text = _report_text(headline, reductions, figures, change, plan, artifacts, staging,
                                about, elapsed, b6_text)
            _write_text(summary_json, json.dumps(headline, indent=2, default=float) + "\n")
            _write_text(report_path, text)
            done("report")
        artifacts = relocate(artifacts, staging, out_dir)
    finally:
        bar.close()
    out = Path(out_dir)
    # The command adds the line naming the folder and the count of files it committed.
    screen = "\n".join(["Appendix B.6 example (exact, coupled.theory):", b6_text, "",
                        *headline["lines"]])
    return DemoResult(out, artifacts, out / "REPORT.md", headline, seconds, screen)


def _headline(reductions, figures, change, plan, pair, components, about, power, alpha
              ) -> dict:
    a, b = pair
    featured = {f"{x} vs {y}": {"saving_fitted": p.saving.saving,
                                "saving_variance": p.reduction.saving,
                                "saving_ci": [p.reduction.saving_ci_low,
                                              p.reduction.saving_ci_high]}
                for (x, y), p in figures.pairs.items() if p.saving is not None}
    n_rows = about["n_seeds"]
    at_design = plan[plan["n_seeds"] == n_rows].set_index("mode")
    questions = {mode: int(at_design.loc[mode, "n_questions"]) for mode in at_design.index}
    lines = [report.saving_range_sentence(reductions)]
    for name, numbers in featured.items():
        lines.append(f"{name}: error curves say coupled needs {numbers['saving_fitted']:.0%} "
                     f"fewer samples for the same error (variance ratio implies "
                     f"{numbers['saving_variance']:.0%}).")
    lines.append(report.ranking_sentence(change))
    lines.append(
        f"Planning: to detect the {a} vs {b} difference seen here ({components.effect:+.4f}) "
        f"with {power:.0%} power at alpha = {alpha}, with {n_rows} seeds per question: "
        f"{questions.get('coupled')} questions coupled vs {questions.get('independent')} "
        f"independent.")
    return {
        "variance_reduction": {f"{r.model_a} vs {r.model_b}": {
            "ratio": r.ratio, "ratio_ci": [r.ratio_ci_low, r.ratio_ci_high],
            "saving": r.saving, "saving_ci": [r.saving_ci_low, r.saving_ci_high]}
            for r in reductions.itertuples()},
        "featured_pairs": featured,
        "rankings_differ": None if change is None else {
            "order": change.order_differs, "rank_sets": change.rank_sets_differ},
        "planning": {"pair": [a, b], "effect": components.effect, "power": power,
                     "alpha": alpha, "seeds_per_question": n_rows,
                     "questions_needed": questions},
        "lines": lines,
    }


def _report_text(headline, reductions, figures, change, plan, artifacts, staging, about,
                 elapsed, b6_text) -> str:
    from coupled.paper_figures import table1

    def rel(path: Path) -> str:
        return str(path.relative_to(staging))

    def files_of(prefix: str) -> str:
        return ", ".join(f"`{rel(a.path)}`" for a in artifacts
                         if rel(a.path).startswith(prefix))

    sections = [
        "# coupled demo",
        "",
        f"Generated by `coupled demo` on {_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M UTC} in "
        f"{elapsed:.1f} s. {about['description']}",
        "",
        "## Headline numbers",
        "",
        *[f"- {line}" for line in headline["lines"]],
        "",
        "## Variance reduction for every pair (benchmark task)",
        "",
        report.saving_table(reductions).to_markdown(index=False),
        "",
        "## Table 1: ranking by average win-rate (pairwise task)",
        "",
        table1.to_markdown(figures.ranking) if figures.ranking else "(no comparisons)",
        "",
        "## Planning",
        "",
        plan[[c for c in ("mode", "n_seeds", "n_questions", "n_rows", "power", "test",
                          "design_effect") if c in plan.columns]].to_markdown(index=False),
        "",
        "## Appendix B.6 example (exact)",
        "",
        b6_text,
        "",
        "## What each file shows",
        "",
    ]
    # One line per figure or table: its formats share a caption.
    groups: dict[tuple[str, str], list[str]] = {}
    for artifact in artifacts:
        if not rel(artifact.path).startswith("data/"):
            stem = rel(artifact.path.with_suffix(""))
            groups.setdefault((stem, artifact.caption), []).append(rel(artifact.path))
    for (_, caption), names in groups.items():
        sections.append(f"- {', '.join(f'`{n}`' for n in names)} — {caption}")
    sections += ["", f"Simulated tables: {files_of('data/')}.", ""]
    return "\n".join(sections)
