"""Headline numbers and the Markdown report of ``coupled demo``.

Every number is read from an analysis result object or frame and formatted here; none is
typed in or re-estimated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from coupled.paper_figures.table1 import RankingTable


@dataclass(frozen=True)
class RankingChange:
    """How the two modes rank the models (from ``rank_sets``' frame)."""

    order_coupled: list[str]
    order_independent: list[str]
    rank_sets_coupled: dict[str, str]
    rank_sets_independent: dict[str, str]
    order_explanation: str = ""  # order_change_line: is a different order significant?

    @property
    def order_differs(self) -> bool:
        return self.order_coupled != self.order_independent

    @property
    def rank_sets_differ(self) -> list[str]:
        return [m for m in self.order_coupled
                if self.rank_sets_coupled[m] != self.rank_sets_independent.get(m)]


def _overlap(ranks: pd.DataFrame, a: str, b: str) -> bool:
    low, high = ranks.loc[a, "rank_low"], ranks.loc[a, "rank_high"]
    return not (high < ranks.loc[b, "rank_low"] or ranks.loc[b, "rank_high"] < low)


def order_change_line(ranks: pd.DataFrame) -> str:
    """One line, only when the point-estimate order of the models differs between the coupled
    and independent rankings (of one coupling): whether every swapped pair lies inside
    overlapping rank-sets in both modes (then the swap is not significant) or not.

    ``ranks``: ``rank_sets`` (or ``bradley_terry``) frame; rows without ranks are ignored."""
    score = "bt_score" if "bt_score" in ranks.columns else "win_rate"
    ranked = ranks.dropna(subset=["rank_low", "rank_high", score])
    lines = []
    for coupling, block in ranked.groupby("coupling", sort=True):
        modes = {mode: part.set_index("model") for mode, part in block.groupby("mode")}
        if not {"coupled", "independent"} <= set(modes):
            continue
        common = sorted(set(modes["coupled"].index) & set(modes["independent"].index))
        orders = {m: sorted(common, key=lambda x, m=m: (-modes[m].loc[x, score], x))
                  for m in ("coupled", "independent")}
        if orders["coupled"] == orders["independent"]:
            continue
        position = {m: {x: i for i, x in enumerate(order)} for m, order in orders.items()}
        swapped = [(a, b) for i, a in enumerate(common) for b in common[i + 1:]
                   if (position["coupled"][a] < position["coupled"][b])
                   != (position["independent"][a] < position["independent"][b])]
        separated = [(a, b) for a, b in swapped
                     if not all(_overlap(modes[m], a, b) for m in modes if m in orders)]
        where = f" ({coupling})" if ranked["coupling"].nunique() > 1 else ""
        text = (f"The point-estimate order differs between modes{where} (coupled "
                f"{' > '.join(orders['coupled'])}; independent "
                f"{' > '.join(orders['independent'])}), ")
        if not separated:
            text += ("but only inside overlapping rank-sets: there the order is not "
                     "significant, so this is no evidence that the ranking differs.")
        else:
            listed = ", ".join(f"{a}/{b}" for a, b in separated)
            text += (f"and {listed} swap with disjoint rank-sets in at least one mode, a "
                     "significant order there (the modes' win-rates are different quantities: "
                     "coupling turns wins into ties).")
        lines.append(text)
    return "\n".join(lines)


def ranking_change(table: RankingTable) -> RankingChange | None:
    """None unless both modes are ranked. Orders are ``rank_sets``' (best first within each
    mode); rank-sets are read as Table 1 prints them."""
    modes = set(table.ranks["mode"])
    if not {"coupled", "independent"} <= modes:
        return None

    def order(mode: str) -> list[str]:
        return list(table.ranks.loc[table.ranks["mode"] == mode, "model"])

    return RankingChange(order("coupled"), order("independent"),
                         table.rank_set_labels("coupled"), table.rank_set_labels("independent"),
                         order_change_line(table.ranks))


def ranking_sentence(change: RankingChange | None) -> str:
    if change is None:
        return "Only one mode was ranked, so the modes cannot be compared."
    parts = []
    if change.order_differs:
        parts.append(change.order_explanation or (
            "The order of the average win-rates differs between the modes: "
            f"coupled {' > '.join(change.order_coupled)}; independent "
            f"{' > '.join(change.order_independent)}."))
    else:
        parts.append("Both modes order the models the same way by average win-rate "
                     f"({' > '.join(change.order_coupled)}).")
    differ = change.rank_sets_differ
    if differ:
        listed = ", ".join(f"{m} (coupled {change.rank_sets_coupled[m]}, independent "
                           f"{change.rank_sets_independent[m]})" for m in differ)
        parts.append(f"The rank-sets differ for {len(differ)} model(s): {listed}.")
    else:
        parts.append("The rank-sets are the same in both modes.")
    return " ".join(parts)


def saving_table(reductions: pd.DataFrame) -> pd.DataFrame:
    """Per pair: variance ratio and saving with their CIs (``compare_models`` rows)."""
    return pd.DataFrame({
        "pair": [f"{a} vs {b}" for a, b in zip(reductions["model_a"], reductions["model_b"],
                                               strict=True)],
        "Var coupled / Var independent": [
            f"{r:.3f} [{lo:.3f}, {hi:.3f}]" for r, lo, hi in
            zip(reductions["ratio"], reductions["ratio_ci_low"], reductions["ratio_ci_high"],
                strict=True)],
        "sample saving": [
            f"{s:.1%} [{lo:.1%}, {hi:.1%}]" for s, lo, hi in
            zip(reductions["saving"], reductions["saving_ci_low"], reductions["saving_ci_high"],
                strict=True)],
        "independent variance": reductions["independent_source"].to_numpy(),
    })


def saving_range_sentence(reductions: pd.DataFrame) -> str:
    """Smallest, median and largest of the savings the analysis reported, with their pairs."""
    savings = reductions["saving"].to_numpy(dtype=float)
    low, high = int(np.argmin(savings)), int(np.argmax(savings))
    name = lambda i: f"{reductions['model_a'].iloc[i]} vs {reductions['model_b'].iloc[i]}"  # noqa: E731
    return (f"Across the {len(savings)} pairs of models, coupled generation reduces the "
            f"variance of the score difference by {savings[low]:.0%} ({name(low)}) to "
            f"{savings[high]:.0%} ({name(high)}), median {np.median(savings):.0%}; i.e. it "
            f"needs that fraction fewer samples for the same precision.")
