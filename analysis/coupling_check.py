"""Is coupling on, and doing its work? Identical replies and first divergence, per pair and mode.

Under coupled generation two models that put their mass on the same tokens produce the *same*
reply on many rows, and when they differ they usually differ later (after a shared prefix);
under independent generation identical replies happen only by chance. A user sees at once from
this table whether coupling is on: identical-reply rates far above the independent ones (and
100 % for an identical copy of a model) mean it is; equal rates mean it is not.

Rows are paired by ``(task, prompt_id, seed, coupling)`` within a mode. ``first_divergence`` is
where the two replies first differ, over the rows whose replies differ: in generation steps (the
length of the common prefix of their token ids, from the runner's ``token_ids`` column) when the
rows' noise is keyed by token id, and in bytes of the reply text when it is keyed by text or
bytes (``coupling`` ``gumbel_text`` / ``gumbel_bytes``: the models' token ids are then not
comparable) or when there are no token ids. ``divergence_unit`` says which.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

_PAIRING = ["task", "prompt_id", "seed", "coupling"]
COLUMNS = ("model_a", "model_b", "mode", "n_rows", "identical", "identical_rate",
           "first_divergence_median", "first_divergence_mean", "divergence_unit")
# Couplings whose noise is keyed by position in the text: token ids of two models differ in kind.
_TEXT_KEYED = ("gumbel_text", "gumbel_bytes")


def _common_prefix(a, b) -> int:
    a, b = list(a), list(b)
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def coupling_check(table: pd.DataFrame) -> pd.DataFrame:
    """Per model pair (``model_a < model_b``) and mode: rows paired, identical replies (count
    and rate), and the median / mean first divergence step of the rows that differ.

    ``table`` is a scores or generations table with a ``response`` column (the runner writes
    one); an empty frame with :data:`COLUMNS` is returned when there is none to compare.
    """
    if "response" not in table.columns or table.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    by_tokens = "token_ids" in table.columns and not table["coupling"].isin(_TEXT_KEYED).any()
    rows = []
    for mode, part in table.groupby("mode", sort=True):
        by_model = {m: g.set_index(_PAIRING) for m, g in part.groupby("model", sort=True)}
        for model_a, model_b in combinations(sorted(by_model), 2):
            a, b = by_model[model_a], by_model[model_b]
            shared = a.index.intersection(b.index)
            if not len(shared):
                continue
            reply_a = a.loc[shared, "response"].astype(str).to_numpy()
            reply_b = b.loc[shared, "response"].astype(str).to_numpy()
            same = reply_a == reply_b
            divergence = np.array([], dtype=float)
            if (~same).any():
                if by_tokens:
                    units_a = a.loc[shared, "token_ids"].to_numpy()[~same]
                    units_b = b.loc[shared, "token_ids"].to_numpy()[~same]
                else:
                    units_a = [r.encode("utf-8") for r in reply_a[~same]]
                    units_b = [r.encode("utf-8") for r in reply_b[~same]]
                divergence = np.array([_common_prefix(x, y)
                                       for x, y in zip(units_a, units_b, strict=True)],
                                      dtype=float)
            rows.append({
                "model_a": model_a, "model_b": model_b, "mode": mode, "n_rows": len(shared),
                "identical": int(same.sum()), "identical_rate": float(same.mean()),
                "first_divergence_median": float(np.median(divergence)) if divergence.size
                else np.nan,
                "first_divergence_mean": float(divergence.mean()) if divergence.size else np.nan,
                "divergence_unit": "step" if by_tokens else "byte",
            })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def coupling_check_lines(check: pd.DataFrame) -> list[str]:
    """One readable line per model pair: identical replies coupled vs independent."""
    lines = []
    if check.empty:
        return lines
    for (model_a, model_b), part in check.groupby(["model_a", "model_b"], sort=True):
        parts = []
        for row in part.sort_values("mode").itertuples(index=False):
            text = f"{100 * row.identical_rate:.1f} % identical replies {row.mode}"
            if not np.isnan(row.first_divergence_median):
                text += (f" (differing rows diverge at {row.divergence_unit} "
                         f"{row.first_divergence_median:g})")
            parts.append(text)
        lines.append(f"{model_a} vs {model_b}: " + "; ".join(parts))
    return lines
