"""Table 1 of the paper: average win-rate ± CI, tie rate and rank-set of every model, for
both modes (the tie rate, ``rank_sets``' ``tie_rate``, says why coupled win-rates are lower).

Every number comes from ``coupled.analysis.ranksets.rank_sets``; this module only lays the
result out (Markdown, LaTeX via pandas ``to_latex`` — needs jinja2, no LaTeX install — and CSV).
The CSV is ``rank_sets``' own tidy frame, unchanged, so a machine reads back exactly what the
analysis returned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from coupled.analysis.ranksets import REQUIRED_COLUMNS as RANK_COLUMNS
from coupled.analysis.ranksets import rank_set_label, win_rate_label
from coupled.paper_figures.fig3 import TIE_REASON
from coupled.paper_figures.output import write_texts
from coupled.paper_figures.style import MODE_LABELS

__all__ = ["RANK_COLUMNS", "RankingTable", "rank_set_label", "ranking_table", "to_latex",
           "to_markdown", "win_rate_label", "write_ranking_table"]


@dataclass(frozen=True)
class RankingTable:
    """``ranks``: rank_sets' frame; ``wide``: one row per model, two columns per mode."""

    ranks: pd.DataFrame
    wide: pd.DataFrame
    caption: str
    alpha: float
    comparisons_derived: bool

    def rank_set_labels(self, mode: str) -> dict[str, str]:
        """Model -> its rank-set as the table prints it ('2', '1–3'), for ``mode``."""
        return self.wide[(MODE_LABELS[mode], "Rank")].dropna().to_dict()


def ranking_table(comparisons_or_scores: pd.DataFrame, alpha: float = 0.05) -> RankingTable:
    """Rank-sets of both modes (``rank_sets(table, alpha)``), laid out as the paper's Table 1.

    Give a scores table when the run has no judged comparisons: ``rank_sets`` derives them
    and flags its output (column ``derived``), which the caption repeats.
    """
    from coupled.analysis.ranksets import rank_sets

    ranks = rank_sets(comparisons_or_scores, alpha=alpha)
    comparisons_derived = bool(ranks["derived"].any())
    modes = [m for m in MODE_LABELS if m in set(ranks["mode"])]
    blocks = []
    for mode in modes:
        block = ranks[ranks["mode"] == mode].set_index("model")
        blocks.append(pd.DataFrame({
            (MODE_LABELS[mode], "Rank"): [rank_set_label(int(lo), int(hi)) for lo, hi
                                          in zip(block["rank_low"], block["rank_high"], strict=True)],
            (MODE_LABELS[mode], "Avg. win-rate"): [
                win_rate_label(w, lo, hi) for w, lo, hi
                in zip(block["win_rate"], block["ci_low"], block["ci_high"], strict=True)],
            (MODE_LABELS[mode], "Tie rate"): [f"{t:.4f}" for t in block["tie_rate"]],
            (MODE_LABELS[mode], "_order"): block["win_rate"].to_numpy(),
        }, index=block.index))
    wide = pd.concat(blocks, axis=1)
    # A model with no comparisons in a mode has no rank there: shown as a dash, and said.
    absent = {mode: sorted(wide.index[wide[(MODE_LABELS[mode], "Rank")].isna()])
              for mode in modes}
    label_columns = [c for c in wide.columns if c[1] != "_order"]
    wide[label_columns] = wide[label_columns].fillna("\u2014")
    # Best model first, by the first mode shown (coupled when present), as in the paper.
    wide = wide.sort_values((MODE_LABELS[modes[0]], "_order"), ascending=False)
    wide = wide.drop(columns=[(MODE_LABELS[m], "_order") for m in modes])
    wide.index.name = "Model"
    level = 1 - alpha
    caption = (f"Average win-rate of each model against all others with {level:.0%} confidence "
               f"intervals, and its rank-set (simultaneous {level:.0%} confidence; rank 1 is "
               f"the best), under {' and '.join(MODE_LABELS[m].lower() for m in modes)} "
               f"generation. Tie rate: mean over opponents of the share of comparisons "
               f"tied; {TIE_REASON}.")
    for mode, models in absent.items():
        if models:
            caption += (f" \u2014: {', '.join(models)} not compared under {mode} "
                        "generation (left out of that ranking).")
    if comparisons_derived:
        caption += (" No judged comparisons in this run: comparisons are derived from the "
                    "scores (a beats b when its score is higher; equal scores tie).")
    return RankingTable(ranks, wide, caption, alpha, comparisons_derived)


def to_markdown(table: RankingTable) -> str:
    flat = table.wide.copy()
    flat.columns = [f"{mode} {what}".strip() for mode, what in flat.columns]
    # numbers stay as Table 1 prints them (tabulate would re-format '0.4250' as 0.425)
    return f"{flat.to_markdown(disable_numparse=True)}\n\n{table.caption}\n"


def to_latex(table: RankingTable) -> str:
    wide = table.wide.copy()
    wide = wide.map(lambda text: text.replace("\u00b1", r"$\pm$").replace("\u2013", "--")
                    .replace("\u2014", "---"))
    return wide.to_latex(caption=table.caption, label="tab:ranking", multicolumn=True,
                         multicolumn_format="c", escape=False)


def write_ranking_table(table: RankingTable, out_dir: str | os.PathLike,
                        stem: str = "table1_ranking") -> list[Path]:
    """``stem.md``, ``stem.tex`` and ``stem.csv`` (the tidy rank_sets frame), each atomically."""
    return write_texts(out_dir, stem, {"md": to_markdown(table), "tex": to_latex(table),
                                       "csv": table.ranks.to_csv(index=False)})
