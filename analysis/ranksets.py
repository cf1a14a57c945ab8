"""Rank-sets (Chatzi et al. 2024, "Prediction-powered ranking of LLMs"; the paper's Table 1):
for each model an interval of ranks ``[rank_low, rank_high]`` that covers the true ranking of all
models *at once* with probability >= 1 - alpha (asymptotically).

Method. The vector of average win-rates ``A`` has a prompt-clustered covariance ``Sigma``
(:func:`coupled.analysis.pairwise.average_win_rates_from_counts`). We build simultaneous intervals
for all ``k(k-1)/2`` differences ``A_i - A_j``: ``|A_i - A_j - (a_i - a_j)| <= c * sd_ij`` with
``c`` a simultaneous ("max-|t|") critical value as in Hothorn et al.'s multcomp: the (1 - alpha)
quantile of ``max_{i<j} |Z_i - Z_j| / sd_ij`` for ``Z ~ N(0, Sigma)`` sets the per-comparison
level, which is then read on Student's t with effective prompts - 1 degrees of freedom (the
clustered covariance is estimated from that many independent prompts,
:attr:`~coupled.analysis.pairwise.AverageWinRates.df`; see :func:`_max_t_critical` for the
measured reasons: a Gaussian reference gave 0.929 at k = 8, 100 prompts). The Gaussian quantile
is computed by Monte Carlo from a seeded generator because no library offers the quantile of a
maximum of >1000 correlated |normals| (scipy's multivariate normal CDF is limited to a few dozen
dimensions). It uses the correlation between differences, so
it is never wider than Bonferroni (``method="bonferroni"``, exact-but-conservative, also offered).
Model ``j`` is *significantly better* than ``i`` when the interval for ``A_j - A_i`` lies above 0;
``rank_low(i) = 1 + #{j significantly better}``, ``rank_high(i) = k - #{j significantly worse}``.
If every simultaneous interval covers its true difference, no significant call is wrong, so the
true ranking (ties allowed) lies in the rank-sets: coverage >= 1 - alpha.

``method="auto"`` (the default of :func:`rank_sets`) uses the max-|t| quantile only where the
design has at least ``AUTO_MAX_T_DF_PER_MODEL`` effective prompts per model and Bonferroni's
otherwise: estimated from few prompts, the correlation that max-|t| exploits is optimistic
(measured 91-93 % at 10 models and 30-60 prompts; Bonferroni 94.6-95.5 %).

This compares differences directly, which is tighter than Chatzi et al.'s comparison of
overlapping per-model rectangles while keeping the same guarantee.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from coupled.analysis.pairwise import (
    average_win_rate_intervals,
    average_win_rate_map,
    block_average_win_rates,
    cluster_df,
    load_comparisons,
    models_from_pairs,
    pair_indices,
    pair_rates_from_counts,
)

__all__ = ["RankSets", "difference_df", "rank_set_label", "rank_sets", "rank_sets_from_estimates",
           "true_rank_range", "win_rate_label",
           "public_code_covariance"]

REQUIRED_COLUMNS = ["model", "mode", "win_rate", "ci_low", "ci_high", "rank_low", "rank_high"]
_TOLERANCE = 1e-12   # differences this small are float noise, never "significant"


@dataclass(frozen=True)
class RankSets:
    """Array result with a leading replicate axis: ranks ``[R, k]``, critical values ``[R]`` (or
    ``[R, P]``, one per difference, when ``df`` is per difference),
    and ``better[r, i, j]`` = model i significantly better than model j."""

    rank_low: np.ndarray
    rank_high: np.ndarray
    critical_value: np.ndarray
    better: np.ndarray
    method: np.ndarray | None = None     # [R] "max_t" or "bonferroni": the critical value used

    @property
    def largest_critical_value(self) -> np.ndarray:
        """``[R]``: the critical value, or the largest over the differences when each has its
        own degrees of freedom (``critical_value`` ``[R, P]``)."""
        value = np.asarray(self.critical_value)
        return value.max(axis=1) if value.ndim == 2 else value


# ``method="auto"`` uses the max-|t| quantile only with at least this many degrees of freedom
# per model; below it, Bonferroni. Why: the max-|t| quantile is computed from the *estimated*
# correlation of the k(k-1)/2 differences, and estimated from few prompts per model it is
# optimistic. Measured with every model tied (exploratory runs, 1000-3000 replicates of the
# graded generator in tests/test_pairwise_generators.py, Kish's df; the k = 10, 30-prompt cell
# is re-checked by tests/test_pairwise_small_designs.py): k = 10, 30 prompts, unbalanced
# pairs: max-|t| 91.2-92.1 %,
# Bonferroni 94.6-95.2 %; k = 6 or 10 at 60 prompts (df ~ 40): max-|t| 92.8-93.1 %,
# Bonferroni 95.0-95.5 %; k = 4 at 30-100 prompts: max-|t| 94.5-95.1 %.
AUTO_MAX_T_DF_PER_MODEL = 10.0


def _difference_sd(covariance: np.ndarray) -> np.ndarray:
    ia, ib = pair_indices(covariance.shape[-1])
    var = (covariance[:, ia, ia] + covariance[:, ib, ib] - 2 * covariance[:, ia, ib])
    return np.sqrt(np.maximum(var, 0))


def _max_t_critical(covariance: np.ndarray, sd: np.ndarray, alpha: float,
                    rng: np.random.Generator, n_draws: int, df: np.ndarray) -> np.ndarray:
    """Simultaneous critical value per replicate for the standardised differences.

    The (1 - alpha) quantile ``c_z`` of ``max_p |Z_a - Z_b| / sd_p``, ``Z ~ N(0, Sigma)``, by
    Monte Carlo (one set of draws shared by all replicates: common random numbers), fixes the
    per-comparison level ``gamma = 2 P(N > c_z)`` that the dependence between the differences
    allows; each studentised difference is t with ``df`` degrees of freedom, so the critical
    value is the t quantile at that level (``df = inf``: ``c_z`` itself). Why not a multivariate
    t with one shared chi-square: that is exact when every difference is studentised by one
    pooled variance, but a sandwich covariance estimates each difference's variance with its
    own error, and the shared-scale quantile undercovers (k = 8, 50 prompts, 1-4 seeds:
    simultaneous coverage 0.937 shared-scale vs 0.944 level-matched; equal for k = 2)."""
    n_rep, k, _ = covariance.shape
    ia, ib = pair_indices(k)
    # A PSD square root (eigen-decomposition) also works for singular Sigma, e.g. a model that
    # ties every comparison in coupled mode.
    eigval, eigvec = np.linalg.eigh(covariance)
    root = eigvec * np.sqrt(np.maximum(eigval, 0))[:, None, :]           # [R, k, k]
    normals = rng.standard_normal((n_draws, k))
    inverse_sd = np.where(sd > 0, 1 / np.where(sd > 0, sd, 1), 0.0)      # [R, P]
    # Standardised differences of one draw, (Z root^T C) / sd with C the +1/-1 contrast of each
    # pair, are one matrix product: W = root^T C / sd is [R, k, P] (BLAS, no gathers).
    contrast = np.zeros((k, len(ia)))
    contrast[ia, np.arange(len(ia))] = 1.0
    contrast[ib, np.arange(len(ia))] = -1.0
    weights = np.matmul(root.transpose(0, 2, 1), contrast) * inverse_sd[:, None, :]
    weights = np.ascontiguousarray(weights.transpose(0, 2, 1))                 # [R, P, k]
    draws = np.ascontiguousarray(normals.T)                                    # [k, M]
    # Blocks of (replicates x draws) of ~4e6 differences: one 2-D matrix product each (few,
    # large BLAS calls: many small ones cost more in thread hand-offs than in arithmetic);
    # pairs-major rows make the maximum over pairs an elementwise reduction.
    n_pairs = max(len(ia), 1)
    rep_chunk = max(1, min(n_rep, int(4e6 // (n_draws * n_pairs))))
    draw_chunk = max(1, int(4e6 // (rep_chunk * n_pairs)))
    maxima = np.empty((n_rep, n_draws))
    for start in range(0, n_rep, rep_chunk):
        stop = min(start + rep_chunk, n_rep)
        rows = weights[start:stop].reshape(-1, k)                             # [r * P, k]
        for first in range(0, n_draws, draw_chunk):
            last = min(first + draw_chunk, n_draws)
            standardised = rows @ draws[:, first:last]                        # [r * P, m]
            np.abs(standardised, out=standardised)
            maxima[start:stop, first:last] = standardised.reshape(
                stop - start, -1, last - first).max(axis=1)
    gaussian = np.quantile(maxima, 1 - alpha, axis=1, method="higher")
    return _t_at_level(stats.norm.sf(gaussian), gaussian, df)


def _t_at_level(level: np.ndarray, gaussian: np.ndarray, df: np.ndarray) -> np.ndarray:
    """t quantile at one-tail ``level`` ``[R]`` with ``df`` ``[R]`` or ``[R, P]`` (one per
    difference); the Gaussian quantile where ``df`` is infinite."""
    if df.ndim == 2:
        level, gaussian = level[:, None], gaussian[:, None]
    finite = np.isfinite(df)
    return np.where(finite, stats.t.isf(level, np.where(finite, df, 1)), gaussian)


def difference_df(influence: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Degrees of freedom ``[R, P]`` of each difference's clustered variance: ``cluster_df`` of
    the differences of the per-prompt influence functions ``[R, Q, k]`` (``sizes`` ``[R, Q]``:
    comparisons per prompt; prompts with none do not count). Each difference gets its own: a
    difference carried by few prompts (two rarely-winning models) has fewer."""
    ia, ib = pair_indices(influence.shape[-1])
    sizes = np.asarray(sizes, dtype=float)
    return cluster_df(influence[..., ia] - influence[..., ib], sizes > 0, sizes)


def rank_sets_from_estimates(estimate: np.ndarray, covariance: np.ndarray, alpha: float = 0.05,
                             *, method: str = "max_t", rng: np.random.Generator | int = 0,
                             n_draws: int = 10_000, df: np.ndarray | float | None = None
                             ) -> RankSets:
    """Rank-sets from average win-rates ``[R, k]`` and their covariance ``[R, k, k]``.

    ``df``: degrees of freedom of the covariance estimate (effective number of prompts - 1 for
    a prompt-clustered one, :attr:`coupled.analysis.pairwise.AverageWinRates.df`), scalar,
    ``[R]`` or ``[R, P]`` (one per difference); the critical values are then read on Student's
    t (``None``: Gaussian). ``method``: ``"max_t"``, ``"bonferroni"`` or ``"auto"`` (max-|t|
    where ``df >= AUTO_MAX_T_DF_PER_MODEL * k``, else Bonferroni; ``rank_sets``' default).
    The same construction ranks Bradley-Terry scores (:mod:`coupled.analysis.bradley_terry`):
    it needs only estimates, their covariance and df."""
    estimate, covariance = np.asarray(estimate, float), np.asarray(covariance, float)
    if estimate.ndim != 2 or covariance.shape != estimate.shape + estimate.shape[-1:]:
        raise ValueError("estimate must be [R, k] and covariance [R, k, k]")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    n_rep, k = estimate.shape
    ia, ib = pair_indices(k)
    sd = _difference_sd(covariance)
    df = np.inf if df is None else np.asarray(df, float)
    df = np.broadcast_to(df, (n_rep, len(ia)) if np.ndim(df) == 2 else (n_rep,))
    if np.any(df <= 0):
        raise ValueError("df must be positive (a clustered covariance needs >= 2 prompts)")
    if method not in ("max_t", "bonferroni", "auto"):
        raise ValueError(f"method must be 'auto', 'max_t' or 'bonferroni', got {method!r}")
    smallest_df = df if df.ndim == 1 else df.min(axis=1)
    use_max_t = np.full(n_rep, method == "max_t")
    if method == "auto":
        use_max_t = smallest_df >= AUTO_MAX_T_DF_PER_MODEL * k
    bonferroni = _t_at_level(np.full(n_rep, alpha / (2 * max(len(ia), 1))),
                             np.full(n_rep, stats.norm.isf(alpha / (2 * max(len(ia), 1)))), df)
    critical = bonferroni
    if use_max_t.any():
        max_t = _max_t_critical(covariance, sd, alpha, np.random.default_rng(rng), n_draws, df)
        chosen = use_max_t if df.ndim == 1 else use_max_t[:, None]
        critical = np.where(chosen, max_t, bonferroni)
    difference = estimate[:, ia] - estimate[:, ib]                         # A_a - A_b
    margin = (critical if critical.ndim == 2 else critical[:, None]) * sd + _TOLERANCE
    better = np.zeros((n_rep, k, k), dtype=bool)
    better[:, ia, ib] = difference > margin
    better[:, ib, ia] = -difference > margin
    rank_low = 1 + better.sum(axis=1)            # models significantly better than me
    rank_high = k - better.sum(axis=2)           # minus models significantly worse than me
    return RankSets(rank_low, rank_high, critical, better,
                    np.where(use_max_t, "max_t", "bonferroni").astype(object))


def true_rank_range(true_values: np.ndarray, tolerance: float = 1e-12
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Best and worst true rank of each model (ties share the range): ``[..., k]`` each."""
    values = np.asarray(true_values, float)
    gap = values[..., None, :] - values[..., :, None]        # [.., i, j] = A_j - A_i
    better = (gap > tolerance).sum(axis=-1)
    worse = (gap < -tolerance).sum(axis=-1)
    return 1 + better, values.shape[-1] - worse


def public_code_covariance(wins_a: np.ndarray, wins_b: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The *wrong* covariance of the public rank-set code, reproduced for a documented contrast
    only (tests show its simultaneous coverage collapses): influence functions divided by the
    total number of comparisons instead of each model's per-pair counts ``(k-1) N_ij``, which
    shrinks the variance by about ``(k/2)^2`` in a balanced design. Never use it for inference."""
    rates = pair_rates_from_counts(wins_a, wins_b, n)
    k = models_from_pairs(rates.win_a.shape[-1])
    first, second = average_win_rate_map(k)         # 1/(k-1) where the model is in the pair
    total = n.sum(axis=(1, 2))[:, None, None]
    per_pair_a = (wins_a - rates.win_a[:, None, :] * n) / total
    per_pair_b = (wins_b - rates.win_b[:, None, :] * n) / total
    influence = (per_pair_a @ first.T + per_pair_b @ second.T) * (k - 1)
    q = rates.n_clusters
    return np.einsum("rqi,rqj->rij", influence, influence) * (q / (q - 1))[:, None, None]


def rank_sets(comparisons: pd.DataFrame | str | os.PathLike, alpha: float = 0.05, *,
              ci_level: float = 0.95, method: str = "auto", seed: int = 0,
              n_draws: int = 10_000, models: list[str] | None = None) -> pd.DataFrame:
    """Rank-sets of every model, one block per ``(mode, coupling)`` present.

    ``comparisons``: a comparisons DataFrame or path (file, shard folder or output dir); a scores
    table is accepted too and turned into derived comparisons (column ``derived`` says so).
    Returns columns ``model, mode, win_rate, ci_low, ci_high, rank_low, rank_high`` then extras
    (``coupling, se, tie_rate, n_comparisons, n_prompts, critical_value`` — the largest over
    the differences, each read on its own degrees of freedom — ``critical_method, derived``; ``tie_rate``: mean over opponents of P(tie) — coupled win-rates are lower than
    independent ones because coupled models often give the same reply, which ties); ``ci_low/ci_high`` are
    each model's own ``ci_level`` interval; ranks are simultaneous at level 1 - alpha, rank 1 is
    the best model. Each block ranks the models compared in it (every pair of them must have
    been compared). Rows are sorted by mode, coupling, then decreasing win-rate."""
    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level}")
    data, derived = load_comparisons(comparisons, models)
    frames = []
    for mode, coupling, block, avg in block_average_win_rates(data, models):
        ranks = rank_sets_from_estimates(avg.estimate, avg.covariance, alpha, method=method,
                                         rng=seed, n_draws=n_draws,
                                         df=difference_df(avg.influence, avg.cluster_sizes))
        low, high = average_win_rate_intervals(avg, 1 - ci_level)
        frames.append(pd.DataFrame({
            "model": block.models, "mode": mode, "win_rate": avg.estimate[0],
            "ci_low": low[0], "ci_high": high[0], "rank_low": ranks.rank_low[0],
            "rank_high": ranks.rank_high[0], "coupling": coupling, "se": avg.se[0],
            "tie_rate": avg.tie_rate[0],
            "n_comparisons": avg.n_total[0].astype(int), "n_prompts": avg.n_prompts[0].astype(int),
            "critical_value": ranks.largest_critical_value[0],
            "critical_method": ranks.method[0],
            "derived": derived}))
    out = pd.concat(frames, ignore_index=True)
    out = out.sort_values(["mode", "coupling", "win_rate", "model"],
                          ascending=[True, True, False, True])
    return out.reset_index(drop=True)


def rank_set_label(rank_low: int, rank_high: int) -> str:
    """'2' for a single rank, '1–3' for a set of ranks (en dash, like the paper)."""
    return f"{rank_low}" if rank_low == rank_high else f"{rank_low}\u2013{rank_high}"


def win_rate_label(estimate: float, ci_low: float, ci_high: float, digits: int = 4) -> str:
    """'0.3670 ± 0.0020' when the CI is symmetric (to the digits shown), else '0.3670 [lo, hi]'.

    Score-type intervals near 0 or 1 are asymmetric; printing them as ± would misstate them.
    """
    below, above = estimate - ci_low, ci_high - estimate
    if round(below, digits) == round(above, digits):
        return f"{estimate:.{digits}f} \u00b1 {above:.{digits}f}"
    return f"{estimate:.{digits}f} [{ci_low:.{digits}f}, {ci_high:.{digits}f}]"
