"""Figure 2 of the paper, for one pair of models on a benchmark (scores table).

(a) density of the per-question covariance of the two models' scores under coupled
generation, dashed line at its mean; (b) per-question variance of the score difference,
coupled vs independent, with the diagonal and the median point; (c) absolute error of the
estimated mean difference against the number of samples, both modes, with 95 % bands.

The drawing functions take plain arrays; ``pair_panels`` gets them from
``coupled.analysis`` (no statistic is computed here beyond where to draw a mean line or a
median marker).
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from coupled.paper_figures.style import MODE_COLORS, MODE_LABELS

CURVE_COLUMNS = ("mode", "n", "error", "error_low", "error_high")


@dataclass(frozen=True)
class PairPanels:
    """What Fig. 2 draws for one pair (model_a, model_b).

    ``covariance``, ``variance_coupled``, ``variance_independent``: one value per question;
    ``curves``: columns ``mode, n, error, error_low, error_high`` (mean absolute error and its
    95 % band at each number of samples); ``note``: one line under the title (e.g. the sample
    saving the analysis reports), may be empty; ``unit_label``: what the x-axis counts.
    """

    model_a: str
    model_b: str
    covariance: np.ndarray
    variance_coupled: np.ndarray
    variance_independent: np.ndarray
    curves: pd.DataFrame
    note: str = ""
    unit_label: str = "samples"


def _density(ax: plt.Axes, values: np.ndarray, color: str) -> None:
    """KDE when the values spread; a histogram when they are (nearly) all equal.

    A KDE of a constant has zero bandwidth (seaborn warns and draws nothing), which happens
    with identical models or few seeds per question.
    """
    if len(values) > 1 and np.ptp(values) > 0 and len(np.unique(values)) > 2:
        sns.kdeplot(x=values, ax=ax, fill=True, color=color, warn_singular=False, cut=0,
                    rasterized=True)
    else:
        sns.histplot(x=values, ax=ax, color=color, stat="density", discrete=False, bins=10)


def draw_covariance(ax: plt.Axes, covariance: np.ndarray) -> None:
    _density(ax, covariance, MODE_COLORS["coupled"])
    mean = float(np.mean(covariance))
    ax.axvline(mean, color="black", linestyle="--", linewidth=1)
    ax.annotate(f"mean {mean:.3f}", xy=(mean, 0.95), xycoords=("data", "axes fraction"),
                xytext=(4, 0), textcoords="offset points", ha="left", va="top", fontsize=8)
    ax.set_xlabel("Covariance (coupled)")
    ax.set_ylabel("Density")
    ax.set_title("(a) per-question score covariance")


def draw_variances(ax: plt.Axes, variance_coupled: np.ndarray,
                   variance_independent: np.ndarray) -> None:
    x, y = np.asarray(variance_coupled), np.asarray(variance_independent)
    top = max(float(np.max(x, initial=0)), float(np.max(y, initial=0)), 1e-3) * 1.05
    spread = len(x) > 2 and np.ptp(x) > 0 and np.ptp(y) > 0
    if spread:
        # Rasterised: hundreds of filled contour paths make a slow, heavy PDF otherwise.
        sns.kdeplot(x=x, y=y, ax=ax, fill=True, cmap="Blues", levels=8, thresh=0.05,
                    warn_singular=False, clip=((0, top), (0, top)), rasterized=True)
    ax.scatter(x, y, s=8, alpha=0.35, color=MODE_COLORS["coupled"], linewidths=0,
               rasterized=True)
    ax.plot([0, top], [0, top], color="grey", linewidth=1, linestyle=":")
    median = (float(np.median(x)), float(np.median(y)))
    ax.scatter(*median, s=70, marker="*", color="crimson", zorder=5,
               label=f"median ({median[0]:.3f}, {median[1]:.3f})")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("Variance of difference (coupled)")
    ax.set_ylabel("Variance of difference (independent)")
    ax.legend(loc="upper left", fontsize=7, frameon=True)
    ax.set_title("(b) per-question variance")


def draw_error_curves(ax: plt.Axes, curves: pd.DataFrame, unit_label: str = "samples") -> None:
    for mode, curve in curves.groupby("mode", sort=False):
        curve = curve.sort_values("n")
        color = MODE_COLORS.get(mode, None)
        ax.plot(curve["n"], curve["error"], color=color, label=MODE_LABELS.get(mode, mode))
        ax.fill_between(curve["n"], curve["error_low"], curve["error_high"], color=color,
                        alpha=0.25, linewidth=0)
    ax.set_xlabel(f"Number of {unit_label}")
    ax.set_ylabel("Absolute estimation error")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title("(c) error of the mean difference")


def plot_pair(panels: PairPanels) -> plt.Figure:
    """The three panels of Fig. 2 side by side for one pair of models."""
    missing = [c for c in CURVE_COLUMNS if c not in panels.curves.columns]
    if missing:
        raise ValueError(f"curves: missing column(s) {missing}; need {list(CURVE_COLUMNS)}")
    # A fixed layout: constrained layout doubles the drawing time of this figure.
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.14, top=0.8, wspace=0.3)
    draw_covariance(axes[0], np.asarray(panels.covariance, dtype=float))
    draw_variances(axes[1], panels.variance_coupled, panels.variance_independent)
    draw_error_curves(axes[2], panels.curves, panels.unit_label)
    title = f"{panels.model_a} vs {panels.model_b}"
    if panels.note:
        title += f"\n{panels.note}"
    fig.suptitle(title)
    return fig
