"""Figure 3 of the paper: one model's win-rate against every other model, coupled vs
independent side by side, with 95 % CIs and Holm-corrected significance stars of the
two-tailed z-test comparing the two modes. Each bar is labelled with its tie rate (when the
frame has ``tie_rate``): coupled win-rates are lower because coupling makes identical replies,
and identical replies tie.

``plot_win_rates`` draws a tidy frame; ``coupled.paper_figures.figures.fig3_frames`` builds it
from ``coupled.analysis.pairwise`` (no statistic is computed here).
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from coupled.paper_figures.style import MODE_COLORS, MODE_LABELS

WIN_RATE_COLUMNS = ("opponent", "mode", "win_rate", "ci_low", "ci_high")
STAR_COLUMNS = ("opponent", "stars")
TIE_REASON = ("coupling makes identical replies, and identical replies tie: coupled win-rates "
              "are lower for that reason")


def plot_win_rates(model: str, win_rates: pd.DataFrame, stars: pd.DataFrame,
                   comparisons_derived: bool = False, note: str = "") -> plt.Figure:
    """Grouped bars: for each opponent, ``model``'s win-rate in each mode with its CI.

    ``win_rates``: columns ``opponent, mode, win_rate, ci_low, ci_high`` and optionally
    ``tie_rate`` (then printed in each bar, and its reason under the title);
    ``stars``: columns ``opponent, stars`` ('' when not significant).
    """
    for name, frame, columns in (("win_rates", win_rates, WIN_RATE_COLUMNS),
                                 ("stars", stars, STAR_COLUMNS)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{name}: missing column(s) {missing}; need {list(columns)}")
    opponents = list(dict.fromkeys(win_rates["opponent"]))
    modes = [m for m in MODE_LABELS if m in set(win_rates["mode"])]
    width = 0.8 / max(len(modes), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(opponents) + 2), 4.2),
                           layout="constrained")
    x = np.arange(len(opponents))
    tops = np.zeros(len(opponents))
    for k, mode in enumerate(modes):
        rows = (win_rates[win_rates["mode"] == mode].set_index("opponent")
                .reindex(opponents))
        offset = (k - (len(modes) - 1) / 2) * width
        estimate = rows["win_rate"].to_numpy(dtype=float)
        errors = np.vstack([estimate - rows["ci_low"].to_numpy(dtype=float),
                            rows["ci_high"].to_numpy(dtype=float) - estimate])
        ax.bar(x + offset, estimate, width=width * 0.95, color=MODE_COLORS[mode],
               label=MODE_LABELS[mode], yerr=errors, capsize=3,
               error_kw={"elinewidth": 1, "ecolor": "black"})
        tops = np.fmax(tops, np.nan_to_num(rows["ci_high"].to_numpy(dtype=float)))
        if "tie_rate" in rows.columns:  # above each bar's interval, clear of the error bar
            for position, tie, top in zip(x + offset, rows["tie_rate"].to_numpy(dtype=float),
                                          np.nan_to_num(rows["ci_high"].to_numpy(dtype=float)),
                                          strict=True):
                if np.isfinite(tie):
                    ax.text(position, top + 0.01, f"ties\n{tie:.0%}", ha="center",
                            va="bottom", fontsize=7)
    star_of = dict(zip(stars["opponent"], stars["stars"], strict=True))
    labelled = "tie_rate" in win_rates.columns
    star_gap = 0.11 if labelled else 0.01  # above the tie labels when there are any
    for i, opponent in enumerate(opponents):
        if star_of.get(opponent):
            ax.text(x[i], tops[i] + star_gap, star_of[opponent], ha="center", va="bottom",
                    fontsize=10)
    ax.set_xticks(x, opponents, rotation=20 if len(opponents) > 4 else 0, ha="center")
    ax.set_ylabel(f"Win-rate of {model}")
    ax.set_xlabel("Opponent")
    # Head-room above the tallest interval for the stars and the legend.
    ax.set_ylim(0, min(1.1 + star_gap, float(np.max(tops, initial=0.5)) + 0.15 + star_gap))
    ax.legend(fontsize=8, loc="upper left", ncol=len(modes))
    lines = [f"Win-rate of {model} against every other model"]
    if comparisons_derived:
        lines.append("(comparisons derived from scores: no judged comparisons in this run)")
    if labelled:
        lines.append(f"Tie rate above each bar: {TIE_REASON}")
    if note:
        lines.append(note)
    width_chars = int(fig.get_size_inches()[0] * 11)
    ax.set_title("\n".join(textwrap.fill(line, width_chars) for line in lines))
    return fig
