"""Calibration figure (not in the paper): what the theory predicts against what the analysis
estimates from simulated tables, for every pair of models and both modes.

Panels: (a) pairwise win-rates P(i beats j) with the analysis' 95 % CIs; (b) mean score
differences with their question-clustered 95 % CIs; (c) variance of one row's score
difference. Points on the diagonal mean the simulator, the theory and the estimators agree;
with 95 % intervals about one point in twenty should miss it.

The truth (:class:`KnownTruth`) is the simulation's: ``coupled.theory`` applied to the
simulated models and prompts. Every estimate comes from ``coupled.analysis``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from coupled.paper_figures.inputs import RunTables
from coupled.paper_figures.style import MODE_COLORS, MODE_LABELS

if TYPE_CHECKING:
    from coupled.analysis.benchmark import BenchmarkComparison


@dataclass(frozen=True)
class KnownTruth:
    """Exact values for the simulated prompts, per mode (``"coupled"``, ``"independent"``).

    ``win[mode][i, j] = P(models[i] beats models[j])`` in the comparisons table (judge noise
    included); ``mean_difference[mode][i, j] = E[R_i - R_j]`` and
    ``variance_difference[mode][i, j] = Var[R_i - R_j]`` of one benchmark row (random
    question, random seed). Any field may be None when that task was not simulated.
    """

    models: list[str]
    win: dict[str, np.ndarray] | None = None
    benchmark_models: list[str] | None = None
    mean_difference: dict[str, np.ndarray] | None = None
    variance_difference: dict[str, np.ndarray] | None = None


@dataclass(frozen=True)
class CalibrationPoints:
    """Tidy frames the figure draws: ``truth, estimate[, ci_low, ci_high], mode, model, opponent``."""

    win_rates: pd.DataFrame
    mean_differences: pd.DataFrame
    variances: pd.DataFrame


def _beside_truth(estimates: pd.DataFrame, truth_by_mode: dict[str, np.ndarray],
                  models: list[str]) -> pd.DataFrame:
    """``estimates`` (columns ``mode, model, opponent, estimate, ci_low, ci_high``) with the
    truth of each row's ``(mode, model, opponent)`` beside it."""
    index = {m: k for k, m in enumerate(models)}
    return pd.DataFrame({
        "mode": estimates["mode"].to_numpy(), "model": estimates["model"].to_numpy(),
        "opponent": estimates["opponent"].to_numpy(),
        "truth": [truth_by_mode[mode][index[a], index[b]] for mode, a, b
                  in zip(estimates["mode"], estimates["model"], estimates["opponent"],
                         strict=True)],
        "estimate": estimates["estimate"].to_numpy(), "ci_low": estimates["ci_low"].to_numpy(),
        "ci_high": estimates["ci_high"].to_numpy()})


def calibration_points(truth: KnownTruth, tables: RunTables, alpha: float = 0.05,
                       benchmark: BenchmarkComparison | None = None,
                       win_rates: pd.DataFrame | None = None) -> CalibrationPoints:
    """``benchmark``: ``compare_models(tables.scores, alpha=alpha)`` and ``win_rates``:
    ``win_rate_matrix(tables.comparisons, alpha=alpha)``, when already computed."""
    wins = pd.DataFrame(columns=["mode", "model", "opponent", "truth", "estimate", "ci_low",
                                 "ci_high"])
    if truth.win is not None and tables.comparisons is not None \
            and not tables.comparisons_derived:
        if win_rates is None:
            from coupled.analysis.pairwise import win_rate_matrix

            win_rates = win_rate_matrix(tables.comparisons, alpha=alpha)
        matrix = win_rates[win_rates["mode"].isin(truth.win)].rename(columns={
            "win_rate": "estimate", "win_ci_low": "ci_low", "win_ci_high": "ci_high"})
        wins = _beside_truth(matrix, truth.win, truth.models)
    means = pd.DataFrame(columns=wins.columns)
    variances = pd.DataFrame(columns=["mode", "model", "opponent", "truth", "estimate"])
    if truth.mean_difference is not None and tables.scores is not None:
        models = truth.benchmark_models or truth.models
        if benchmark is None:
            from coupled.analysis.benchmark import compare_models
            from coupled.paper_figures.figures import scores_view

            benchmark = compare_models(scores_view(tables.scores), alpha=alpha)
        couplings = set(tables.scores["coupling"])
        differences = benchmark.differences
        differences = differences[differences["mode"].isin(truth.mean_difference)
                                  & differences["coupling"].isin(couplings)]
        means = _beside_truth(
            differences.rename(columns={"model_a": "model", "model_b": "opponent"}),
            truth.mean_difference, models)
        index = {m: k for k, m in enumerate(models)}
        rows = []
        reductions = benchmark.variance_reduction
        reductions = reductions[reductions["coupling"].isin(couplings)]
        for r in reductions.itertuples():
            i, j = index[r.model_a], index[r.model_b]
            for mode, estimate in (("coupled", r.var_coupled),
                                   ("independent", r.var_independent)):
                if mode in truth.variance_difference:
                    rows.append({"mode": mode, "model": r.model_a, "opponent": r.model_b,
                                 "truth": truth.variance_difference[mode][i, j],
                                 "estimate": estimate})
        variances = pd.DataFrame(rows, columns=variances.columns)
    return CalibrationPoints(wins, means, variances)


def _panel(ax: plt.Axes, points: pd.DataFrame, title: str, with_ci: bool) -> None:
    for mode, part in points.groupby("mode", sort=True):
        truth = part["truth"].to_numpy(dtype=float)
        estimate = part["estimate"].to_numpy(dtype=float)
        error = None
        if with_ci:
            error = np.vstack([estimate - part["ci_low"].to_numpy(dtype=float),
                               part["ci_high"].to_numpy(dtype=float) - estimate])
        ax.errorbar(truth, estimate, yerr=error, fmt="o", markersize=4, capsize=2,
                    color=MODE_COLORS.get(mode), label=MODE_LABELS.get(mode, mode),
                    elinewidth=0.8, alpha=0.85)
    if len(points):
        values = np.concatenate([points["truth"].to_numpy(dtype=float),
                                 points["estimate"].to_numpy(dtype=float)])
        low, high = float(values.min()), float(values.max())
        pad = 0.05 * (high - low or 1.0)
        ax.plot([low - pad, high + pad], [low - pad, high + pad], color="grey", linestyle=":",
                linewidth=1)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "not simulated", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("Theory")
    ax.set_ylabel("Simulation (analysis estimate)")
    ax.set_title(title)


def coverage_line(points: pd.DataFrame) -> str:
    """'k of n CIs cover the truth' — counted, not estimated; empty when there are none."""
    if not len(points) or "ci_low" not in points:
        return ""
    covered = ((points["ci_low"] <= points["truth"]) & (points["truth"] <= points["ci_high"]))
    return f"{int(covered.sum())} of {len(points)} CIs cover the theory value"


def plot_calibration(truth: KnownTruth, tables: RunTables, alpha: float = 0.05,
                     benchmark: BenchmarkComparison | None = None,
                     win_rates: pd.DataFrame | None = None) -> tuple[plt.Figure, str]:
    """The figure and its caption (``benchmark``, ``win_rates``: see
    :func:`calibration_points`)."""
    points = calibration_points(truth, tables, alpha, benchmark, win_rates)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.13, top=0.86, wspace=0.28)
    _panel(axes[0], points.win_rates, "(a) win-rate P(i beats j)", True)
    _panel(axes[1], points.mean_differences, "(b) mean score difference", True)
    _panel(axes[2], points.variances, "(c) variance of the score difference", False)
    fig.suptitle("Calibration: theory vs simulation (points on the diagonal agree)")
    counts = [c for c in (coverage_line(points.win_rates),
                          coverage_line(points.mean_differences)) if c]
    caption = ("Calibration (not in the paper): exact theory values (coupled.theory on the "
               "simulated models and prompts) against the analysis estimates from the "
               "simulated tables, for every pair and both modes: (a) pairwise win-rates with "
               f"{1 - alpha:.0%} CIs, (b) mean score differences with question-clustered CIs, "
               "(c) variances of one row's score difference. Dotted: the diagonal.")
    if counts:
        caption += " " + "; ".join(counts) + "."
    return fig, caption
