"""The whole figure set of a run: Fig. 2 per pair, Fig. 3, Table 1, the B.6 example and,
when the truth is known (simulated input), the calibration figure.

Every number drawn or printed comes from ``coupled.analysis`` (benchmark, error curves,
pairwise, rank-sets) or ``coupled.theory``; this module picks the data, lays it out and names
the files.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from coupled.paper_figures import fig2, fig3, table1
from coupled.paper_figures.inputs import RunTables, load_run
from coupled.paper_figures.names import file_stem
from coupled.paper_figures.output import Artifact, OutputStage, relocate, staged_output
from coupled.paper_figures.style import save_figure, use_paper_style
from coupled.tables import SCORE_KEY

if TYPE_CHECKING:  # analysis is imported where it is used (it pulls in scipy/statsmodels)
    from coupled.analysis.benchmark import BenchmarkComparison, VarianceReduction
    from coupled.analysis.errorcurve import SampleSaving
    from coupled.paper_figures.calibration import KnownTruth

Step = Callable[[str], None]  # reports the stage being drawn (a progress bar's postfix)


@dataclass(frozen=True)
class PairAnalysis:
    """Fig. 2's analysis of one pair: per-question moments, error curves, variance ratio."""

    model_a: str
    model_b: str
    questions: pd.DataFrame  # question_statistics (coupled) + var_diff_measured_independent
    curves: pd.DataFrame  # error curves, one block per mode present
    saving: SampleSaving | None  # None without independent rows
    reduction: VarianceReduction
    independent_source: str  # "measured" or "from_coupled"


@dataclass(frozen=True)
class FigureSet:
    out_dir: Path
    artifacts: list[Artifact]
    coupling: str
    ranking: table1.RankingTable | None = None
    fig3_model: str | None = None
    mode_tests: pd.DataFrame | None = None  # compare_modes rows of the Fig. 3 model
    pairs: dict[tuple[str, str], PairAnalysis] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        return [a.path for a in self.artifacts]


def split_pair(pair: str | Sequence[str], models: Sequence[str]) -> tuple[str, str]:
    """``"A:B"`` (or ``(A, B)``) as two known, different models. A name may hold ``:``
    itself: the string is split at the one colon that leaves a known model on each side."""
    if not isinstance(pair, str):
        a, b = pair
        candidates = [(a, b)]
        text = f"{a}:{b}"
    else:
        text = pair
        candidates = [(pair[:i], pair[i + 1:]) for i, c in enumerate(pair) if c == ":"]
    known = [(a, b) for a, b in candidates if a in models and b in models]
    if len(known) > 1:
        raise ValueError(f"--pairs {text}: ambiguous, it splits into known models as "
                         f"{' or '.join(f'{a!r} and {b!r}' for a, b in known)}")
    if not known:
        unknown = sorted({name for a, b in candidates for name in (a, b)} - set(models))
        raise ValueError(f"--pairs {text}: model(s) {unknown} not in the scores "
                         f"(models: {list(models)})")
    a, b = known[0]
    if a == b:
        raise ValueError(f"--pairs {text}: name two different models")
    return a, b


def scores_view(scores: pd.DataFrame, models: Sequence[str] | None = None) -> pd.DataFrame:
    """The key and score columns only (and only ``models``' rows): what the benchmark analysis
    reads. Every analysis call re-validates its input, so a narrow frame is a fast one."""
    columns = [*SCORE_KEY, "score"]
    rows = scores if models is None else scores[scores["model"].isin(list(models))]
    return rows[columns].reset_index(drop=True)


def choose_coupling(tables: RunTables, coupling: str | None = None) -> tuple[RunTables, str]:
    """Restrict the tables to one sampler: ``coupling`` or, by default, Gumbel-max when present
    (the paper's sampler), else the only one there is."""
    frames = [f for f in (tables.scores, tables.comparisons) if f is not None]
    present = sorted(set().union(*(set(f["coupling"]) for f in frames)))
    if coupling is None:
        coupling = "gumbel" if "gumbel" in present else present[0]
    if coupling not in present:
        raise ValueError(f"coupling {coupling!r} not in the tables (present: {present})")

    def keep(frame: pd.DataFrame | None) -> pd.DataFrame | None:
        if frame is None:
            return None
        kept = frame[frame["coupling"] == coupling].reset_index(drop=True)
        return kept if len(kept) else None

    chosen = RunTables(keep(tables.scores), keep(tables.comparisons),
                       tables.comparisons_derived, tables.source, tables.manifest)
    return chosen, coupling


def _known_reduction(reductions: pd.DataFrame | None, model_a: str, model_b: str,
                     coupling: str, source: str) -> VarianceReduction | None:
    """The pair's row of a ``compare_models(...).variance_reduction`` frame already computed
    (at the same alpha; the interval involves no resampling), as a ``VarianceReduction``;
    else None."""
    from dataclasses import fields

    from coupled.analysis.benchmark import VarianceReduction

    if reductions is None or not len(reductions):
        return None
    match = reductions[(reductions["model_a"] == model_a) & (reductions["model_b"] == model_b)
                       & (reductions["coupling"] == coupling)
                       & (reductions["independent_source"] == source)]
    if len(match) != 1:
        return None
    row = match.iloc[0]
    return VarianceReduction(**{f.name: row[f.name] for f in fields(VarianceReduction)})


def analyse_pair(scores: pd.DataFrame, model_a: str, model_b: str, *, unit: str = "row",
                 n_resamples: int = 1000, alpha: float = 0.05, seed: int = 0,
                 reductions: pd.DataFrame | None = None) -> PairAnalysis:
    """Everything Fig. 2 draws for one pair, from ``coupled.analysis``.

    ``reductions``: a ``compare_models`` variance-reduction frame at the same ``alpha`` whose
    row for this pair is reused instead of being computed again.
    """
    from coupled.analysis.benchmark import question_statistics, variance_reduction
    from coupled.analysis.errorcurve import error_curve, error_curves

    scores = scores_view(scores, (model_a, model_b))
    questions = question_statistics(scores, model_a, model_b, mode="coupled")
    has_independent = {model_a, model_b} <= set(
        scores.loc[scores["mode"] == "independent", "model"])
    saving = None
    if has_independent:
        independent = question_statistics(scores, model_a, model_b, mode="independent")
        keys = [c for c in ("task", "prompt_id") if c in questions.columns]
        questions = questions.merge(
            independent[keys + ["var_diff"]].rename(
                columns={"var_diff": "var_diff_measured_independent"}), on=keys, how="inner")
        curves, saving = error_curves(scores, model_a, model_b, unit=unit,
                                      n_resamples=n_resamples, alpha=alpha, seed=seed)
        source = "measured"
    else:
        curves = error_curve(scores, model_a, model_b, mode="coupled", unit=unit,
                             n_resamples=n_resamples, alpha=alpha, seed=seed)
        source = "from_coupled"
    coupling = str(scores["coupling"].iloc[0]) if scores["coupling"].nunique() == 1 else None
    reduction = (_known_reduction(reductions, model_a, model_b, coupling, source)
                 if coupling else None)
    if reduction is None:
        reduction = variance_reduction(scores, model_a, model_b, independent=source,
                                       alpha=alpha)
    return PairAnalysis(model_a, model_b, questions, curves, saving, reduction, source)


def pair_panels(analysis: PairAnalysis, unit: str = "row") -> fig2.PairPanels:
    """Lay one :class:`PairAnalysis` out as Fig. 2's three panels."""
    q = analysis.questions
    independent = (q["var_diff_measured_independent"] if analysis.independent_source ==
                   "measured" else q["var_diff_independent"])
    curves = analysis.curves.rename(columns={"mean_abs_error": "error", "ci_low": "error_low",
                                             "ci_high": "error_high"})
    r = analysis.reduction
    note = (f"Var coupled / Var independent = {r.ratio:.2f} "
            f"[{r.ratio_ci_low:.2f}, {r.ratio_ci_high:.2f}]")
    if analysis.saving is not None:
        note += f"; coupled needs {analysis.saving.saving:.0%} fewer samples (fitted curves)"
    else:
        note += " (independent variance estimated from the coupled run; no independent rows)"
    return fig2.PairPanels(analysis.model_a, analysis.model_b, q["cov"].to_numpy(),
                           q["var_diff"].to_numpy(), independent.to_numpy(), curves, note,
                           unit_label="questions" if unit == "question" else "samples")


def fig2_caption(analysis: PairAnalysis, unit: str) -> str:
    drawn = ("questions (each with its mean over seeds)" if unit == "question" else
             "rows (question, seed) drawn at random, as in the paper")
    source = ("measured on the independent run" if analysis.independent_source == "measured"
              else "estimated from the coupled run as Var(R_a) + Var(R_b) per question")
    return (f"Fig. 2 for {analysis.model_a} vs {analysis.model_b}: (a) density of the "
            f"per-question covariance of the two models' scores under coupled generation "
            f"(dashed: mean); (b) per-question variance of the score difference, coupled vs "
            f"independent ({source}), with the diagonal and the median point (star); (c) mean "
            f"absolute error of the estimated mean difference against the number of {drawn}, "
            f"with 95 % bands.")


def fig3_frames(comparisons: pd.DataFrame, model: str, alpha: float = 0.05,
                matrix: pd.DataFrame | None = None
                ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """(win-rates and tie rates of ``model`` per opponent and mode, stars per opponent, the
    z-test rows).

    ``matrix``: ``win_rate_matrix(comparisons, alpha=alpha)`` if already computed."""
    from coupled.analysis.pairwise import compare_modes, win_rate_matrix

    if matrix is None:
        matrix = win_rate_matrix(comparisons, alpha=alpha)
    mine = matrix[matrix["model"] == model]
    win_rates = mine.rename(columns={"win_ci_low": "ci_low", "win_ci_high": "ci_high"})[
        ["opponent", "mode", "win_rate", "ci_low", "ci_high", "tie_rate"]]
    if set(comparisons["mode"]) >= {"coupled", "independent"}:
        tests = compare_modes(comparisons, model=model, correction="holm", alpha=alpha)
        stars = tests[["opponent", "stars"]]
    else:  # one mode only: nothing to test
        tests, stars = None, pd.DataFrame({"opponent": [], "stars": []})
    return win_rates.reset_index(drop=True), stars, tests


def _fig3_caption(model: str, derived: bool, tested: bool) -> str:
    text = (f"Fig. 3: win-rate of {model} against every other model under coupled and "
            f"independent generation, with 95 % confidence intervals clustered by prompt; "
            f"each bar is labelled with the share of comparisons tied ({fig3.TIE_REASON}).")
    if tested:
        text += (" Stars: two-tailed z-test of equal win-rates in the two modes (paired by "
                 "prompt), Holm-adjusted across opponents: * p < 0.05, ** < 0.01, "
                 "*** < 0.001, **** < 0.0001.")
    if derived:
        text += (" No judged comparisons in this run: comparisons are derived from the scores "
                 "(a beats b when its score is higher; equal scores tie).")
    return text


def make_figures(tables: RunTables, out_dir: str | os.PathLike, *,
                 pairs: Sequence[tuple[str, str]] | None = None, model: str | None = None,
                 alpha: float = 0.05, unit: str = "row", coupling: str | None = None,
                 truth: KnownTruth | None = None, n_resamples: int = 1000,
                 benchmark: BenchmarkComparison | None = None, step: Step | None = None
                 ) -> FigureSet:
    """Draw every figure and table the tables allow into ``out_dir`` (written as it goes;
    :func:`figures_command` wraps it so that a failure writes nothing).

    ``benchmark``: a ``compare_models`` result of these scores already at hand (the demo's),
    reused by the calibration figure instead of being computed again.
    """
    step = step or (lambda name: None)
    out = Path(out_dir)
    use_paper_style()
    tables, coupling = choose_coupling(tables, coupling)
    artifacts: list[Artifact] = []

    def add(paths: list[Path], caption: str) -> None:
        artifacts.extend(Artifact(p, caption) for p in paths)

    comparisons, scores = tables.comparisons, tables.scores
    # Check every name first: a typo must fail before minutes of drawing, not after.
    chosen: list[tuple[str, str]] = []
    if scores is not None and "coupled" in set(scores["mode"]):
        models = sorted(set(scores["model"]))
        # A pair given twice is one figure (the count printed is the files written).
        chosen = (list(itertools.combinations(models, 2)) if pairs is None
                  else list(dict.fromkeys(split_pair(p, models) for p in pairs)))
    elif pairs:
        raise ValueError("--pairs: Fig. 2 needs a scores table with coupled rows, and "
                         f"{tables.source} has " + ("no scores" if scores is None else
                                                    "no coupled scores"))
    if comparisons is not None and model is not None:
        known = sorted(set(comparisons["model_a"]) | set(comparisons["model_b"]))
        if model not in known:
            raise ValueError(f"--model {model!r} is not among the compared models {known}")

    ranking, fig3_model, tests, matrix = None, None, None, None
    if comparisons is not None:
        step("Table 1")
        # Derived comparisons carry their flag (column ``derived``): rank_sets repeats it.
        ranking = table1.ranking_table(comparisons, alpha)
        add(table1.write_ranking_table(ranking, out), "Table 1: " + ranking.caption)
        ranks = ranking.ranks
        first_mode = "coupled" if "coupled" in set(ranks["mode"]) else ranks["mode"].iloc[0]
        fig3_model = model or str(ranks[ranks["mode"] == first_mode]
                                  .sort_values("win_rate", ascending=False)["model"].iloc[0])
        step("Fig. 3")
        from coupled.analysis.pairwise import win_rate_matrix

        # Computed once for Fig. 3 and the calibration figure.
        matrix = win_rate_matrix(comparisons, alpha=alpha)
        win_rates, stars, tests = fig3_frames(comparisons, fig3_model, alpha, matrix)
        figure = fig3.plot_win_rates(fig3_model, win_rates, stars, tables.comparisons_derived)
        add(save_figure(figure, out, f"fig3_win_rates_{file_stem(fig3_model)}"),
            _fig3_caption(fig3_model, tables.comparisons_derived, tests is not None))

    analyses: dict[tuple[str, str], PairAnalysis] = {}
    for a, b in chosen:
        step(f"Fig. 2 {a} vs {b}")
        analysis = analyse_pair(scores, a, b, unit=unit, n_resamples=n_resamples, alpha=alpha,
                                reductions=getattr(benchmark, "variance_reduction", None))
        analyses[(a, b)] = analysis
        figure = fig2.plot_pair(pair_panels(analysis, unit))
        add(save_figure(figure, out, f"fig2_{file_stem(a)}_vs_{file_stem(b)}"),
            fig2_caption(analysis, unit))

    step("B.6 example")
    from coupled.paper_figures import example_b6

    add(example_b6.write_example(out), example_b6.CAPTION)

    if truth is not None:
        step("calibration")
        from coupled.paper_figures import calibration

        figure, caption = calibration.plot_calibration(truth, tables, alpha=alpha,
                                                       benchmark=benchmark, win_rates=matrix)
        add(save_figure(figure, out, "calibration_theory_vs_simulation"), caption)
    paths = [a.path for a in artifacts]
    if len(set(paths)) != len(paths):  # a bug of ours: two artifacts under one name
        twice = sorted({p.name for p in paths if paths.count(p) > 1})
        raise RuntimeError(f"figure file names collide: {twice}")
    return FigureSet(out, artifacts, coupling, ranking, fig3_model, tests, analyses)


def figures_command(*, source: str | None, simulated: bool, out_dir: str | os.PathLike,
                    pairs: Sequence[tuple[str, str]] | None = None, model: str | None = None,
                    alpha: float = 0.05, unit: str = "row", config: str | None = None,
                    progress: bool = True, output: OutputStage = staged_output) -> FigureSet:
    """``coupled figures``: read a run (or simulate one), draw everything, write it at once.

    ``output(out_dir)``: the context manager that stages the folder and commits it (default:
    :func:`~coupled.paper_figures.output.staged_output`, a new or empty folder only; the
    ``coupled figures`` command passes its own, which also re-uses its earlier output)."""
    from tqdm.auto import tqdm

    bar = tqdm(desc="figures", unit="stage", disable=not progress, leave=False)

    def step(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update()

    try:
        truth, coupling = None, None
        if simulated:
            step("simulate")
            from coupled.paper_figures.simulated import simulated_tables

            tables, truth, about = simulated_tables(config=config)
            coupling = about["coupling"]  # the sampler the truth is for
        else:
            step("read")
            tables = load_run(source)
        with output(out_dir) as staging:
            result = make_figures(tables, staging, pairs=pairs, model=model, alpha=alpha,
                                  unit=unit, coupling=coupling, truth=truth, step=step)
        return FigureSet(Path(out_dir), relocate(result.artifacts, staging, out_dir),
                         result.coupling, result.ranking, result.fig3_model, result.mode_tests,
                         result.pairs)
    finally:
        bar.close()
