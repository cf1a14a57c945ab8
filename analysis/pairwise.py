"""Pairwise comparisons: win / tie / loss matrices, average win-rates and the coupled-vs-independent
z-test (paper §4, §5.2, Fig. 3), with standard errors clustered by prompt.

Why clustered, and how. The unit that is sampled is the *prompt*: every seed, every opponent and
(in coupled mode) every model of a prompt share it, so comparisons of one prompt are correlated —
treating them as independent makes average win-rate intervals about 3x too narrow (the paper's
notebook does). Each directed win-rate is a ratio estimator ``P_ij = sum_q S_ij(q) / sum_q n_ij(q)``
(``S_ij(q)``: comparisons of prompt ``q`` that ``i`` won against ``j``; ``n_ij(q)``: comparisons of the
pair on that prompt). Its influence function per prompt is
``IF_ij(q) = (S_ij(q) - P_ij n_ij(q)) / sum_q n_ij(q)``, and every statistic used here is linear in the
``P_ij`` (average win-rates, differences, coupled minus independent), so its variance is
``Q/(Q-1) sum_q IF(q)^2`` of the corresponding linear combination of influence functions — a
cluster-robust (sandwich) variance with all seeds and opponents of a prompt in one cluster. This
handles unbalanced designs (prompts or pairs with different counts) without any change.

Array cores carry a leading *replicate* axis ``R`` so that Monte-Carlo validity checks can run
thousands of simulated experiments in one call; the DataFrame functions call them with ``R = 1``.
Layout: ``wins_a, wins_b, n`` of shape ``[R, Q, P]`` — for prompt ``q`` and unordered pair ``p`` (the
``p``-th pair of ``numpy.triu_indices(k, 1)`` over the sorted model names, so the first model is the
table's ``model_a``), the number of comparisons won by ``model_a``, by ``model_b``, and in all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from coupled.analysis.intervals import moment_df, wilson_interval
from coupled.tables import (
    SCORE_KEY,
    TableError,
    read_comparisons,
    read_scores,
    require_shared_noise,
)

__all__ = [
    "AverageWinRates",
    "BlockCounts",
    "PairCounts",
    "PairRates",
    "average_win_rates",
    "average_win_rate_intervals",
    "average_win_rates_from_counts",
    "block_counts",
    "cluster_df",
    "rare_side_df",
    "clustered_covariance",
    "clustered_variance",
    "compare_modes",
    "mode_difference_from_rates",
    "models_from_pairs",
    "derive_comparisons",
    "directed_rate_intervals",
    "load_comparisons",
    "pair_counts",
    "pair_rates_from_counts",
    "pair_indices",
    "significance_stars",
    "adjust_pvalues",
    "two_sided_pvalue",
    "win_rate_matrix",
    "wilson_effective_ci",
    "z_statistic",
]

Correction = Literal["holm", "bonferroni", "fdr_bh", "none"]


# --------------------------------------------------------------------------------------------
# Reading: comparisons from a table, or derived from scores
# --------------------------------------------------------------------------------------------

def derive_comparisons(scores: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    """Comparisons implied by scores (DESIGN §2): for every pair of models sharing a
    ``(task, prompt_id, seed, mode, coupling)`` key, ``a`` if ``score_a > score_b``, ``b`` if less,
    ``tie`` if equal; flagged ``derived = True``. Vectorised over keys (one pass per model pair)."""
    return _derive_from_validated(read_scores(scores))


def _derive_from_validated(scores: pd.DataFrame) -> pd.DataFrame:
    """:func:`derive_comparisons` of a scores table ``read_scores`` has already validated."""
    group_key = list(SCORE_KEY[:-1])
    group, group_index = _factorize_rows(scores, group_key)
    models = np.array(sorted(scores["model"].unique()), dtype=object)
    k = len(models)
    if k < 2:
        raise ValueError(f"scores: column 'model' holds a single model {list(models)}; "
                         "comparisons need at least two")
    model = np.searchsorted(models, scores["model"].to_numpy(dtype=object))
    # Dense [groups, models] matrix of scores; NaN where a model has no row for a key.
    table = np.full((len(group_index), k), np.nan)
    table[group, model] = scores["score"].to_numpy(dtype=float)
    ia, ib = pair_indices(k)
    sa, sb = table[:, ia], table[:, ib]                      # [G, P]
    present = ~(np.isnan(sa) | np.isnan(sb))
    rows, pairs = np.nonzero(present)
    if len(rows) == 0:
        raise ValueError("scores: no two models share a (task, prompt_id, seed, mode, coupling) "
                         "key, so no comparison can be derived")
    first, second = sa[rows, pairs], sb[rows, pairs]
    outcome = np.where(first > second, "a", np.where(first < second, "b", "tie")).astype(object)
    out = group_index.iloc[rows].reset_index(drop=True)
    out["model_a"] = models[ia[pairs]]
    out["model_b"] = models[ib[pairs]]
    out["outcome"] = outcome
    out["derived"] = True
    return out


def load_comparisons(source: pd.DataFrame | str | os.PathLike,
                     models: list[str] | None = None) -> tuple[pd.DataFrame, bool]:
    """Validated comparisons from a comparisons table, or derived from a scores table when the
    source holds only scores. Returns ``(comparisons, derived)``; ``derived`` is also true for a
    comparisons table whose rows say so (column ``derived``, e.g. derived earlier and saved)."""
    if isinstance(source, pd.DataFrame):
        if "outcome" not in source.columns and "score" in source.columns:
            return _restrict(derive_comparisons(source), models), True
        return _with_flag(read_comparisons(source, models=models))
    try:
        return _with_flag(read_comparisons(source, models=models))
    except TableError as error:
        if "holds no comparisons" not in error.problem and not _looks_like_scores(error):
            raise
        original = error
    try:
        scores = read_scores(source)
    except TableError as error:
        if "holds no scores" in error.problem or "missing required column" in error.problem:
            raise original from None     # neither table: report the comparisons problem
        raise
    return _restrict(_derive_from_validated(scores), models), True


def _with_flag(comparisons: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    derived = "derived" in comparisons.columns and bool(comparisons["derived"].any())
    return comparisons, derived


def _looks_like_scores(error: TableError) -> bool:
    # A single scores file passed where comparisons were expected: missing 'outcome' etc.
    return error.column in ("model_a", "outcome") and "missing required column" in error.problem


def _restrict(comparisons: pd.DataFrame, models: list[str] | None) -> pd.DataFrame:
    if models is None:
        return comparisons
    keep = comparisons["model_a"].isin(models) & comparisons["model_b"].isin(models)
    return comparisons[keep].reset_index(drop=True)


def _factorize_rows(df: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Integer code per row for the combination of ``columns`` and the table of distinct values."""
    codes = np.zeros(len(df), dtype=np.int64)
    for column in columns:
        column_codes, uniques = pd.factorize(df[column], sort=True)
        codes = codes * len(uniques) + column_codes
    group, first_rows = np.unique(codes, return_index=True)
    group_code = np.searchsorted(group, codes)
    index = df.iloc[first_rows][columns].reset_index(drop=True)
    return group_code, index


# --------------------------------------------------------------------------------------------
# Counting: comparisons -> per-prompt, per-pair counts
# --------------------------------------------------------------------------------------------

def pair_indices(k: int) -> tuple[np.ndarray, np.ndarray]:
    """The unordered pairs ``(i, j), i < j`` of ``k`` models, in the order used by every array core."""
    return np.triu_indices(k, 1)


def models_from_pairs(n_pairs: int) -> int:
    """The ``k`` with ``k(k-1)/2 = n_pairs``: the number of models behind a last axis of pairs."""
    k = int(round((1 + np.sqrt(1 + 8 * n_pairs)) / 2))
    if k * (k - 1) // 2 != n_pairs:
        raise ValueError(f"the last axis ({n_pairs}) is not a number of pairs k(k-1)/2")
    return k


@dataclass(frozen=True)
class PairCounts:
    """Per-prompt counts of one comparisons table, per block ``(mode, coupling)``.

    ``wins_a[b, q, p]`` etc. use one prompt index shared by every block, so that a prompt's
    coupled and independent comparisons line up (the paired z-test needs it)."""

    models: tuple[str, ...]
    blocks: tuple[tuple[str, str], ...]   # (mode, coupling) per leading index
    prompts: pd.DataFrame                  # (task, prompt_id) per prompt index
    wins_a: np.ndarray                     # [B, Q, P]
    wins_b: np.ndarray
    n: np.ndarray

    def block(self, mode: str, coupling: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Counts of one block with a leading replicate axis of length 1: ``[1, Q, P]`` each."""
        b = self.blocks.index((mode, coupling))
        return self.wins_a[b:b + 1], self.wins_b[b:b + 1], self.n[b:b + 1]


def pair_counts(comparisons: pd.DataFrame, models: list[str] | None = None,
                cluster_by: tuple[str, ...] = ("task", "prompt_id")) -> PairCounts:
    """Count a *validated* comparisons table into per-prompt, per-pair arrays (see module doc).

    ``cluster_by`` names the sampling unit (the prompt); ``("task", "prompt_id", "seed")`` gives
    per-row clusters, which planning uses to separate within- from between-prompt variance."""
    # Factorising once per column and working on the few distinct values is ~10x faster than
    # comparing or hashing a million strings again (sets, ==, object conversions).
    (code_a, name_a), (code_b, name_b), (code_outcome, outcome) = (
        pd.factorize(comparisons[column]) for column in ("model_a", "model_b", "outcome"))
    names = sorted(set(name_a) | set(name_b))
    if models is not None:
        missing = sorted(set(names) - set(models))
        if missing:
            raise ValueError(f"comparisons name model(s) {missing} not in models={list(models)}")
        names = sorted(models)
    k = len(names)
    if k < 2:
        raise ValueError("comparisons: need at least two models")
    lookup = pd.Index(names)
    a, b = lookup.get_indexer(name_a)[code_a], lookup.get_indexer(name_b)[code_b]
    pair_of = np.full((k, k), -1, dtype=np.int64)
    ia, ib = pair_indices(k)
    pair_of[ia, ib] = np.arange(len(ia))
    pair = pair_of[a, b]
    prompt, prompts = _factorize_rows(comparisons, list(cluster_by))
    block, blocks = _factorize_rows(comparisons, ["mode", "coupling"])
    n_blocks, n_prompts, n_pairs = len(blocks), len(prompts), len(ia)
    flat = (block * n_prompts + prompt) * n_pairs + pair
    size = n_blocks * n_prompts * n_pairs
    shape = (n_blocks, n_prompts, n_pairs)

    def count(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(flat, weights=weights, minlength=size).reshape(shape).astype(float)

    def wins(label: str) -> np.ndarray:
        return (np.asarray(outcome, dtype=object) == label)[code_outcome].astype(float)

    return PairCounts(
        models=tuple(names),
        blocks=tuple(zip(blocks["mode"], blocks["coupling"], strict=True)),
        prompts=prompts,
        wins_a=count(wins("a")),
        wins_b=count(wins("b")),
        n=count(None),
    )


@dataclass(frozen=True)
class BlockCounts:
    """Counts ``[1, Q, P]`` of one ``(mode, coupling)`` block, restricted to the models compared
    in that block (a mode may compare fewer models than the table names)."""

    mode: str
    coupling: str
    models: tuple[str, ...]
    wins_a: np.ndarray
    wins_b: np.ndarray
    n: np.ndarray

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.wins_a, self.wins_b, self.n

    def require_complete(self) -> None:
        """Raise, naming the models and the block, unless every pair was compared on >= 2
        prompts (an average over opponents needs every opponent; a prompt-clustered variance
        needs two prompts)."""
        where = f"mode {self.mode!r}, coupling {self.coupling!r}"
        ia, ib = pair_indices(len(self.models))
        prompts = (self.n[0] > 0).sum(axis=0)
        missing = np.flatnonzero(prompts == 0)
        if len(missing):
            shown = ", ".join(f"({self.models[ia[p]]}, {self.models[ib[p]]})"
                              for p in missing[:3])
            raise ValueError(f"comparisons ({where}): {len(missing)} pair(s) never compared, "
                             f"e.g. {shown}; an average win-rate needs comparisons against "
                             "every opponent")
        if (self.n[0].sum(axis=1) > 0).sum() < 2:
            raise ValueError(f"comparisons ({where}): all comparisons come from a single prompt; "
                             "a prompt-clustered interval needs at least 2 prompts")


def block_counts(counts: PairCounts, mode: str, coupling: str) -> BlockCounts:
    """One block of ``counts`` with only the models that appear in it."""
    wins_a, wins_b, n = counts.block(mode, coupling)
    k = len(counts.models)
    ia, ib = pair_indices(k)
    compared = n[0].sum(axis=0) > 0
    present = np.zeros(k, dtype=bool)
    present[ia[compared]] = present[ib[compared]] = True
    keep = np.flatnonzero(present)
    pair_of = np.full((k, k), -1, dtype=np.int64)
    pair_of[ia, ib] = np.arange(len(ia))
    sub_a, sub_b = pair_indices(len(keep))
    columns = pair_of[keep[sub_a], keep[sub_b]]
    return BlockCounts(mode, coupling, tuple(counts.models[i] for i in keep),
                       wins_a[..., columns], wins_b[..., columns], n[..., columns])


# --------------------------------------------------------------------------------------------
# Array cores (leading replicate axis)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairRates:
    """Directed rates per unordered pair ``p = (i, j)``: P(i beats j), P(j beats i), P(tie), each
    ``[R, P]``, with their per-prompt influence functions ``[R, Q, P]`` and counts."""

    win_a: np.ndarray
    win_b: np.ndarray
    tie: np.ndarray
    if_a: np.ndarray
    if_b: np.ndarray
    if_tie: np.ndarray
    n_total: np.ndarray      # [R, P] comparisons of the pair
    n_prompts: np.ndarray    # [R, P] prompts on which the pair was compared
    n_clusters: np.ndarray   # [R] prompts with any comparison (for the Q/(Q-1) correction)


def pair_rates_from_counts(wins_a: np.ndarray, wins_b: np.ndarray, n: np.ndarray) -> PairRates:
    """Ratio estimators of the directed win-rates and their per-prompt influence functions."""
    wins_a, wins_b, n = (np.asarray(x, dtype=float) for x in (wins_a, wins_b, n))
    if wins_a.ndim != 3 or wins_a.shape != wins_b.shape or wins_a.shape != n.shape:
        raise ValueError("wins_a, wins_b and n must be arrays of one shape [R, Q, P]")
    ties = n - wins_a - wins_b
    if np.any(ties < -1e-9) or np.any(wins_a < 0) or np.any(wins_b < 0):
        raise ValueError("counts must satisfy 0 <= wins_a + wins_b <= n")
    total = n.sum(axis=1)                                    # [R, P]
    safe = np.where(total > 0, total, np.nan)                # a pair never compared: NaN rate
    rates = [x.sum(axis=1) / safe for x in (wins_a, wins_b, ties)]
    influences = [(x - r[:, None, :] * n) / safe[:, None, :]
                  for x, r in zip((wins_a, wins_b, ties), rates, strict=True)]
    return PairRates(*rates, *influences, n_total=total,
                     n_prompts=(n > 0).sum(axis=1).astype(float),
                     n_clusters=(n.sum(axis=2) > 0).sum(axis=1).astype(float))


def clustered_covariance(influence: np.ndarray, n_clusters: np.ndarray) -> np.ndarray:
    """``Q/(Q-1) sum_q IF(q) IF(q)^T`` for influence functions ``[R, Q, d]`` -> ``[R, d, d]``
    (the small-sample factor is the usual CR1 one for ``Q`` non-empty clusters, ``[R]``).

    Written out rather than taken from statsmodels' ``cov_cluster``: that works on one fitted
    model at a time, while the Monte-Carlo checks need thousands of replicates in one call."""
    factor = n_clusters / np.maximum(n_clusters - 1, 1)
    influence = np.nan_to_num(influence)
    return np.einsum("rqi,rqj->rij", influence, influence) * factor[:, None, None]


def clustered_variance(influence: np.ndarray, n_clusters: np.ndarray) -> np.ndarray:
    """Diagonal of :func:`clustered_covariance` only: ``[R, Q, d] -> [R, d]``; ``n_clusters``
    is ``[R]`` or, when each column has its own clusters (a pair compared on some prompts
    only), ``[R, d]``."""
    n_clusters = np.asarray(n_clusters, dtype=float)
    factor = n_clusters / np.maximum(n_clusters - 1, 1)
    if factor.ndim == 1:
        factor = factor[:, None]
    return np.square(np.nan_to_num(influence)).sum(axis=1) * factor


def kish_effective_count(weights: np.ndarray, axis: int = 1) -> np.ndarray:
    """Kish's effective number of clusters ``(sum w)^2 / sum w^2`` of cluster weights ``w``
    along ``axis`` (NaN where every weight is 0; callers choose what that means)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.square(weights.sum(axis=axis)) / np.square(weights).sum(axis=axis)


def cluster_df(influence: np.ndarray, present: np.ndarray, sizes: np.ndarray, *,
               moment: bool = True) -> np.ndarray:
    """Degrees of freedom of a prompt-clustered variance ``sum_q IF(q)^2``, one per statistic:
    ``influence`` ``[R, Q, d]``, ``present`` ``[R, Q]`` or ``[R, Q, d]`` (clusters that count),
    ``sizes`` comparisons per cluster, same shape as ``present``. Returns ``[R, d]`` in
    ``[1, Q - 1]``.

    The smaller of two Satterthwaite approximations (a variance estimate matched to a scaled
    chi-square, ``df = 2 E[V]^2 / Var[V]``): Kish's effective count of prompts
    ``(sum m_q)^2 / sum m_q^2`` minus 1, exact when comparisons are independent within a prompt
    and only the clusters' sizes differ; and the moment form ``2 (sum u_q)^2 /
    (Q/(Q-1) sum (u_q - mean u)^2)`` (:func:`coupled.analysis.intervals.moment_df`),
    ``u_q = IF(q)^2``, which equals ``Q`` for Gaussian
    contributions and drops when a few prompts carry the statistic (a rare rate's wins, a
    prompt with 20 seeds among prompts with one). Written out: statsmodels' cluster-robust
    covariances use ``G - 1`` for every statistic. Measured (exploratory, 1500 replicates of
    the graded generator in tests/test_pairwise_generators.py; 30 prompts, 10 models, 1-5
    seeds, 30 % of comparisons dropped, coupled): the worst model's average win-rate interval
    covers 92.5 % with Kish alone, 94.2 % with this. ``moment=False``: Kish's count only."""
    influence = np.nan_to_num(np.asarray(influence, dtype=float))
    present = np.asarray(present, dtype=float)
    sizes = np.asarray(sizes, dtype=float) * present
    if present.ndim == 2:
        present, sizes = present[..., None], sizes[..., None]
    q = np.maximum(present.sum(axis=1), 1.0)                               # [R, d] or [R, 1]
    df = np.nan_to_num(kish_effective_count(sizes) - 1, nan=np.inf)
    if moment:
        df = np.fmin(df, moment_df(np.square(influence), present, axis=1))
    return np.clip(df, 1.0, np.maximum(q - 1, 1.0))


def wilson_effective_ci(estimate: np.ndarray, se: np.ndarray, n_total: np.ndarray,
                        n_clusters: np.ndarray, alpha: float = 0.05, *,
                        df: np.ndarray | float = np.inf,
                        iid_variance: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Modified Wilson score interval with the effective sample size ``n_eff = p(1-p)/se^2``
    (i.e. the nominal count divided by the clustered design effect), so it matches the clustered
    Wald interval inside (0, 1) but stays inside [0, 1] and keeps a non-zero width at the
    boundary.

    Where the clustered variance is 0 it carries no design effect — at an estimate of 0 or 1
    (coupled win-rates can sit at 0 exactly, Prop. 4), or for a rate seen on one prompt only —
    so we use the worst case, every comparison of a prompt identical: ``n_eff`` = the number of
    prompts ``n_clusters``. The variance is floored at ``iid_variance``, the variance the
    estimate would have if every comparison were independent at its own pair's rate (default
    ``p(1-p)/n_total``, right for one directed rate; an average over opponents passes the
    per-pair sum, :attr:`AverageWinRates.iid_variance` — pooling opponents with different
    rates into one ``A(1-A)/n`` made 3-model coupled intervals ~29 % wider than needed).

    ``df``: degrees of freedom of the clustered variance (:func:`cluster_df`); the interval
    then uses Student's t critical value (as the level of a normal one, so the Wilson form and
    the Poisson bound below keep their shape). With 30 prompts and 10-12 models (2000
    replicates per design, tests/test_pairwise_small_designs.py), the normal critical value
    with the pooled floor covered 93.2-94.4 % pooled, down to 90.4 % for the worst model; t on
    :func:`cluster_df` and :func:`rare_side_df` with the per-pair floor 95.0-95.6 % pooled,
    >= 94.06 % for every model (20 000 replicates per design, bench/ranksets.md).

    "Modified" (Brown, Cai & DasGupta 2001, Statist. Sci. 16:101, §4.1.1): with 1 to ``x*``
    effective successes (``x* = 2`` for ``n_eff <= 50``, else 3) the lower bound is the
    Poisson one, ``chi2_{alpha/2}(2x) / (2 n)`` (and the upper bound likewise near 1), which
    removes Wilson's coverage dip at rates of order 1/n (measured: 0.938 -> 0.99 at a true
    rate of 0.002 with ~200 comparisons, tests/test_coverage_pairwise.py)."""
    estimate, se = np.asarray(estimate, dtype=float), np.asarray(se, dtype=float)
    n_total = np.asarray(n_total, dtype=float)
    spread = estimate * (1 - estimate)
    with np.errstate(divide="ignore", invalid="ignore"):
        floor = spread / n_total if iid_variance is None else np.asarray(iid_variance, float)
        variance = np.fmax(np.square(se), floor)
        n_eff = np.where(variance > 0, spread / variance, n_clusters)
    n_eff = np.where(spread <= 0, n_clusters, n_eff)
    n_eff = np.where(n_eff > 0, n_eff, np.nan)
    # Student's t critical value expressed as the level of a normal one (scipy's Wilson takes a
    # normal level): alpha_t = 2 P(N > t_{df, 1 - alpha/2}).
    level = 2 * stats.norm.sf(t_quantile(alpha / 2, df))
    level = np.broadcast_to(level, np.broadcast_shapes(np.shape(level), estimate.shape))
    z = stats.norm.isf(level / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        # each rate has its own degrees of freedom, hence its own z (tests check the Wilson
        # bounds agree with statsmodels' proportion_confint where z is shared)
        low, high = wilson_interval(estimate, n_eff, z)
    successes, failures = estimate * n_eff, (1 - estimate) * n_eff
    few = np.where(n_eff <= 50, 2.0, 3.0) + 1e-9        # x* = 3 must not fail on 3.0000000001
    with np.errstate(divide="ignore", invalid="ignore"):
        poisson_low = stats.chi2.ppf(level / 2, 2 * successes) / (2 * n_eff)
        poisson_high = 1 - stats.chi2.ppf(level / 2, 2 * failures) / (2 * n_eff)
    low = np.where((successes > 0) & (successes <= few), np.fmin(low, poisson_low), low)
    high = np.where((failures > 0) & (failures <= few), np.fmax(high, poisson_high), high)
    # At an estimate of exactly 0 or 1 the Wilson bound equals it only up to rounding
    # (1 - 1e-16 would exclude a true rate of 1): the interval always contains its estimate.
    low = np.minimum(np.clip(np.asarray(low, dtype=float), 0, 1), estimate)
    high = np.maximum(np.clip(np.asarray(high, dtype=float), 0, 1), estimate)
    return low, high


@dataclass(frozen=True)
class AverageWinRates:
    """Average win-rates ``[R, k]`` (mean over opponents of P(beats opponent); ties are not wins),
    their clustered covariance ``[R, k, k]`` and per-prompt influence functions ``[R, Q, k]``."""

    estimate: np.ndarray
    covariance: np.ndarray
    influence: np.ndarray
    n_total: np.ndarray      # [R, k] comparisons involving the model
    n_prompts: np.ndarray    # [R, k] prompts on which the model was compared
    n_clusters: np.ndarray   # [R]
    effective_clusters: np.ndarray   # [R] Kish's (sum m_q)^2 / sum m_q^2, m_q comparisons of q
    iid_variance: np.ndarray | None = None   # [R, k] variance if comparisons were independent
    statistic_df: np.ndarray | None = None   # [R, k] min of cluster_df and rare_side_df
    tie_rate: np.ndarray | None = None       # [R, k] mean over opponents of P(tie)
    cluster_sizes: np.ndarray | None = None  # [R, Q] comparisons per prompt (for cluster_df)

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.maximum(np.diagonal(self.covariance, axis1=1, axis2=2), 0))

    @property
    def df(self) -> np.ndarray:
        """Degrees of freedom of the clustered covariance, ``[R]``: effective prompts - 1.

        Satterthwaite's df for a sum of cluster contributions whose variances are proportional
        to the clusters' numbers of comparisons ``m_q`` (the working model of comparisons
        independent within a prompt) is Kish's effective count ``(sum m)^2 / sum m^2``: ``Q`` in
        a balanced design, fewer when prompts carry unequal numbers of comparisons, where the
        clustered covariance is noisier. Measured on 50 prompts, 1-4 seeds, k = 8: simultaneous
        rank coverage 0.932 with ``Q - 1``, 0.937 with this (shared-scale multivariate t; see
        :mod:`coupled.analysis.ranksets` for the reference now used)."""
        return np.maximum(self.effective_clusters - 1, 1)


def average_win_rate_map(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Matrices ``Ma, Mb`` ``[k, P]`` with ``avg = win_a @ Ma.T + win_b @ Mb.T``."""
    ia, ib = pair_indices(k)
    first, second = np.zeros((k, len(ia))), np.zeros((k, len(ia)))
    first[ia, np.arange(len(ia))] = 1 / (k - 1)
    second[ib, np.arange(len(ia))] = 1 / (k - 1)
    return first, second


def average_win_rates_from_counts(wins_a: np.ndarray, wins_b: np.ndarray, n: np.ndarray,
                                  rates: PairRates | None = None) -> AverageWinRates:
    """Average win-rates of the ``k`` models (``P = k(k-1)/2`` pairs) with their clustered covariance.

    Raises if a pair was never compared: an average over opponents needs every opponent."""
    rates = rates or pair_rates_from_counts(wins_a, wins_b, n)
    k = models_from_pairs(rates.win_a.shape[-1])
    if np.any(rates.n_total == 0):
        ia, ib = pair_indices(k)
        p = int(np.argwhere(rates.n_total == 0)[0][1])
        raise ValueError(f"pair ({ia[p]}, {ib[p]}) was never compared: an average win-rate "
                         "needs comparisons against every opponent")
    first, second = average_win_rate_map(k)
    estimate = rates.win_a @ first.T + rates.win_b @ second.T
    influence = rates.if_a @ first.T + rates.if_b @ second.T
    involve = first + second > 0                                      # [k, P]
    n_total = rates.n_total @ involve.T.astype(float)
    prompt_has = (n > 0).astype(float) @ involve.T.astype(float)     # [R, Q, k]
    per_prompt = n.sum(axis=2)                                        # [R, Q]
    effective = kish_effective_count(per_prompt)
    # Variance the average would have with independent comparisons, each at its own pair's
    # rate: sum over opponents of P(1-P)/n / (k-1)^2 (the floor of its interval).
    with np.errstate(divide="ignore", invalid="ignore"):
        iid_a = np.nan_to_num(rates.win_a * (1 - rates.win_a) / rates.n_total)
        iid_b = np.nan_to_num(rates.win_b * (1 - rates.win_b) / rates.n_total)
    iid = iid_a @ np.square(first).T + iid_b @ np.square(second).T
    present = per_prompt > 0
    df = np.fmin(cluster_df(influence, present, per_prompt),
                 rare_side_df(wins_a, n - wins_a, wins_b, n - wins_b, rates.n_total, first, second))
    tie = rates.tie @ (first.T + second.T)
    return AverageWinRates(estimate, clustered_covariance(influence, rates.n_clusters), influence,
                           n_total, (prompt_has > 0).sum(axis=1).astype(float), rates.n_clusters,
                           effective, iid, df, tie, per_prompt)


def rare_side_df(wins_a: np.ndarray, other_a: np.ndarray, wins_b: np.ndarray,
                 other_b: np.ndarray, n_pair: np.ndarray, first: np.ndarray, second: np.ndarray
                 ) -> np.ndarray:
    """Degrees of freedom ``[R, k]`` of an average win-rate's clustered variance read on the
    prompts that carry its rarer side: its wins (``wins_a`` / ``wins_b`` ``[R, Q, P]``, the
    pair's first / second model) or its other comparisons (losses and ties, ``other_*``).

    For a rare rate the clustered variance is, up to small terms, the sum of squares of the
    few prompts that carry a win: a count of events. If those prompts arrive as a Poisson
    process with equal weights, that sum is a scaled Poisson count ``M`` and Satterthwaite's
    ``2 E[V]^2 / Var[V]`` is ``2 E[M]``; estimated with the unbiased ``M^2 - M`` for
    ``E[M]^2``, ``2 (M - 1)``. ``M`` is taken as Kish's effective count
    ``(sum_q w_q)^2 / sum_q w_q^2`` of the per-prompt win weights ``w_q`` (wins of prompt
    ``q`` over each opponent's comparisons, summed over opponents; coupled wins over several
    opponents on one prompt are one event), so unequal weights lower it. Needed beside
    :func:`cluster_df`'s moment df, which is read on the same few prompts: when a rare model's
    wins happen to fall one per prompt, the contributions look even, so the moment df is high
    exactly when the estimate (and its SE) came out low, and the interval misses above
    (coupled, 10 models, 30 prompts of 1 or 5 seeds, true average win-rate 0.024: 92.96 % with
    the moment df alone, 94.06 % with this bound, 20 000 replicates each, MC SE 0.17 points;
    bench/ranksets.md). Weighting the Poisson sum by the squared weights (the compound-Poisson
    df ``2 (sum w^2)^2 / sum w^4``) over-covered there, 95.9 % and 26 % wider: a Poisson
    count of prompts overstates the variance of a binomial one.
    Never below 2, the moment df of one dominant prompt: a model whose wins all come from one
    prompt keeps the interval the moment df gives it (such rates already cover 97-99 %). A
    side with no events (a model that never won, or won every comparison) gives no bound
    (``inf``): its interval is the boundary one of :func:`wilson_effective_ci`. Written out:
    no library has it."""
    def prompts_carrying(count_a: np.ndarray, count_b: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            share_a = np.nan_to_num(count_a / n_pair[:, None, :])
            share_b = np.nan_to_num(count_b / n_pair[:, None, :])
        return kish_effective_count(share_a @ first.T + share_b @ second.T)  # [R, Q, k]

    with np.errstate(invalid="ignore"):
        effective = np.fmin(prompts_carrying(wins_a, wins_b), prompts_carrying(other_a, other_b))
    return np.fmax(np.nan_to_num(2 * (effective - 1), nan=np.inf), 2.0)


def average_win_rate_intervals(avg: AverageWinRates, alpha: float = 0.05
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Each model's (1 - alpha) interval ``[R, k]``: the effective-count Wilson form
    (:func:`wilson_effective_ci`) with a t critical value on :func:`cluster_df` (bounded by
    :func:`rare_side_df`) and the per-pair independent-comparison floor. The one place that turns average win-rates into
    intervals (``average_win_rates``, ``rank_sets`` and the coverage tests call it)."""
    return wilson_effective_ci(avg.estimate, avg.se, avg.n_total, avg.n_prompts, alpha,
                               df=avg.statistic_df, iid_variance=avg.iid_variance)


def directed_rate_intervals(rates: PairRates, n: np.ndarray, alpha: float = 0.05
                            ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{"win": (rate, low, high), "tie": ..., "loss": ...}`` per unordered pair ``[R, P]``
    (win = the pair's first model wins): each rate clustered over the prompts of its own pair,
    with a t critical value on Kish's effective prompts of the pair - 1 (:func:`cluster_df`
    with ``moment=False``). Not the moment df: one directed rate's normal-reference interval
    was already calibrated (audit: 94-99 %), and the moment df pushed coupled rates near the
    boundary to over-cover (interior rates 96.6 % pooled vs 96.1 % on Kish's df,
    tests/test_coverage_pairwise.py)."""
    present = n > 0
    out = {}
    for label, rate, influence in (("win", rates.win_a, rates.if_a),
                                   ("tie", rates.tie, rates.if_tie),
                                   ("loss", rates.win_b, rates.if_b)):
        se = np.sqrt(clustered_variance(influence, rates.n_prompts))
        df = cluster_df(influence, present, n, moment=False)
        low, high = wilson_effective_ci(rate, se, rates.n_total, rates.n_prompts, alpha, df=df)
        out[label] = (rate, low, high)
    return out


@dataclass(frozen=True)
class ModeDifference:
    """Coupled minus independent directed win-rates ``[R, 2, P]`` (side 0: P(model_a wins),
    side 1: P(model_b wins)) with paired, prompt-clustered standard errors and z-test p-values."""

    difference: np.ndarray
    se: np.ndarray
    z: np.ndarray
    pvalue: np.ndarray
    df: np.ndarray         # [R, P] prompts of the pair (in either mode) - 1


def mode_difference_from_rates(coupled: PairRates, independent: PairRates,
                               n_coupled: np.ndarray, n_independent: np.ndarray
                               ) -> ModeDifference:
    """Paired z-test of coupled vs independent win-rates on the *same* prompt index: the variance
    is that of ``IF_coupled(q) - IF_independent(q)``, clustered over every prompt on which the pair
    was compared in either mode."""
    clusters = ((n_coupled + n_independent) > 0).sum(axis=1).astype(float)      # [R, P]
    difference = np.stack([coupled.win_a - independent.win_a,
                           coupled.win_b - independent.win_b], axis=1)
    se = np.sqrt(np.stack([clustered_variance(coupled.if_a - independent.if_a, clusters),
                           clustered_variance(coupled.if_b - independent.if_b, clusters)], axis=1))
    z = z_statistic(difference, se)
    df = np.maximum(clusters - 1, 1)
    pvalue = two_sided_pvalue(z, df[:, None, :])
    # A pair seen on a single prompt has no clustered variance: no test rather than p = 0.
    pvalue = np.where((clusters >= 2)[:, None, :], pvalue, np.nan)
    return ModeDifference(difference, se, z, pvalue, df)


def two_sided_pvalue(z: np.ndarray, df: np.ndarray | float = np.inf) -> np.ndarray:
    """Two-sided p-value of a z statistic with a prompt-clustered SE, referred to Student's t
    with ``df`` = prompts - 1 (the usual small-sample reference for cluster-robust SEs; it
    matters in the far tail that Holm and simultaneous rank-sets use; ``inf``: normal)."""
    z, df = np.broadcast_arrays(np.abs(np.asarray(z, dtype=float)), np.asarray(df, dtype=float))
    return 2 * np.where(np.isfinite(df), stats.t.sf(z, np.where(np.isfinite(df), df, 1)),
                        stats.norm.sf(z))


def t_quantile(level: float, df: np.ndarray | float) -> np.ndarray:
    """Upper ``level`` quantile of Student's t with ``df`` (normal where ``df`` is infinite)."""
    df = np.asarray(df, dtype=float)
    return np.where(np.isfinite(df), stats.t.isf(level, np.where(np.isfinite(df), df, 1)),
                    stats.norm.isf(level))


def z_statistic(difference: np.ndarray, se: np.ndarray) -> np.ndarray:
    """``difference / se``; a difference with zero variance is reported plainly."""
    # A difference with zero variance is reported plainly: z = 0 when the difference is 0
    # (identical data), +-inf when it is not (a deterministic difference), never NaN.
    with np.errstate(divide="ignore", invalid="ignore"):
        z = difference / se
        degenerate = np.where(difference == 0, 0.0, np.sign(difference) * np.inf)
    return np.where(se > 0, z, degenerate)


# --------------------------------------------------------------------------------------------
# Multiple testing
# --------------------------------------------------------------------------------------------

def adjust_pvalues(pvalues: np.ndarray, method: Correction = "holm") -> np.ndarray:
    """Family-wise (Holm, Bonferroni) or FDR (Benjamini-Hochberg) adjusted p-values via statsmodels
    ``multipletests``; ``"none"`` returns them unchanged. NaN p-values are left out of the family."""
    pvalues = np.asarray(pvalues, dtype=float)
    if method == "none":
        return pvalues.copy()
    if method not in ("holm", "bonferroni", "fdr_bh"):
        raise ValueError(f"correction must be 'holm', 'bonferroni', 'fdr_bh' or 'none', "
                         f"got {method!r}")
    out = np.full_like(pvalues, np.nan)
    known = ~np.isnan(pvalues)
    if known.any():
        out[known] = multipletests(pvalues[known], method=method)[1]
    return out


def significance_stars(pvalues: np.ndarray) -> np.ndarray:
    """The paper's stars: ``****`` p < 1e-4, ``***`` < 1e-3, ``**`` < 1e-2, ``*`` < 0.05."""
    pvalues = np.asarray(pvalues, dtype=float)
    stars = np.full(pvalues.shape, "", dtype=object)
    for threshold, mark in ((0.05, "*"), (1e-2, "**"), (1e-3, "***"), (1e-4, "****")):
        stars[pvalues < threshold] = mark
    return stars


# --------------------------------------------------------------------------------------------
# DataFrame API
# --------------------------------------------------------------------------------------------

def win_rate_matrix(comparisons: pd.DataFrame | str | os.PathLike, alpha: float = 0.05,
                    correction: Correction = "holm", models: list[str] | None = None
                    ) -> pd.DataFrame:
    """Win / tie / loss rates of every ordered pair ``(model, opponent)`` per ``(mode, coupling)``,
    in long form (pivot ``win_rate`` on model x opponent for the matrix ``W[i, j] = P(i beats j)``).

    Each rate has a (1 - alpha) Wilson interval with the prompt-clustered effective sample size
    (:func:`wilson_effective_ci`). ``pvalue`` tests that the pair is even, P(i beats j) =
    P(j beats i), with a clustered z-test; ``pvalue_adjusted`` and ``stars`` apply ``correction``
    across the unordered pairs of each block."""
    _check_alpha(alpha)
    data, _ = load_comparisons(comparisons, models)
    counts = pair_counts(data, models)
    ia, ib = pair_indices(len(counts.models))
    names = np.array(counts.models, dtype=object)
    frames = []
    for mode, coupling in counts.blocks:
        block = counts.block(mode, coupling)
        rates = pair_rates_from_counts(*block)
        # Each pair is clustered over its own prompts (it may be compared on a subset).
        columns = {label: tuple(x[0] for x in values)
                   for label, values in directed_rate_intervals(rates, block[2], alpha).items()}
        se_even = np.sqrt(clustered_variance(rates.if_a - rates.if_b, rates.n_prompts))[0]
        pvalue = two_sided_pvalue(z_statistic(rates.win_a[0] - rates.win_b[0], se_even),
                                  np.maximum(rates.n_prompts[0] - 1, 1))
        # A pair seen on fewer than 2 prompts has no clustered variance: no test.
        pvalue = np.where(rates.n_prompts[0] >= 2, pvalue, np.nan)
        adjusted = adjust_pvalues(pvalue, correction)
        half = {"mode": mode, "coupling": coupling,
                "n_comparisons": rates.n_total[0], "n_prompts": rates.n_prompts[0],
                "pvalue": pvalue, "pvalue_adjusted": adjusted,
                "stars": significance_stars(adjusted)}
        for model, opponent, flip in ((ia, ib, False), (ib, ia, True)):
            frame = {"mode": mode, "coupling": coupling,
                     "model": names[model], "opponent": names[opponent]}
            for label in ("win", "tie", "loss"):
                source = {"win": "loss", "loss": "win", "tie": "tie"}[label] if flip else label
                rate, low, high = columns[source]
                frame[f"{label}_rate"], frame[f"{label}_ci_low"], frame[f"{label}_ci_high"] = (
                    rate, low, high)
            frame.update({key: half[key] for key in
                          ("n_comparisons", "n_prompts", "pvalue", "pvalue_adjusted", "stars")})
            frames.append(pd.DataFrame(frame))
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["mode", "coupling", "model", "opponent"]).reset_index(drop=True)


def block_average_win_rates(data: pd.DataFrame, models: list[str] | None = None):
    """Yield ``(mode, coupling, block, AverageWinRates)`` for every block of a validated
    comparisons table, each over the models compared in it (every pair of them required)."""
    counts = pair_counts(data, models)
    for mode, coupling in counts.blocks:
        block = block_counts(counts, mode, coupling)
        block.require_complete()
        yield mode, coupling, block, average_win_rates_from_counts(*block.arrays)


def average_win_rates(comparisons: pd.DataFrame | str | os.PathLike, alpha: float = 0.05,
                      models: list[str] | None = None) -> pd.DataFrame:
    """Each model's average win-rate per ``(mode, coupling)`` with a (1 - alpha) interval whose
    variance accounts for comparisons sharing a prompt, a seed or a model (prompt-clustered
    influence functions; Wilson form with the effective sample size). Each block ranks the
    models compared in it; every pair of them must have been compared (on >= 2 prompts in
    all). A scores table is accepted and turned into derived comparisons.

    ``tie_rate``: the mean over opponents of P(tie), shown beside the win-rate because coupled
    win-rates are lower than independent ones for the same models: coupling makes models give
    the same reply on the same noise, and identical replies tie. ``df``: the degrees of freedom
    of the interval's t critical value (:func:`cluster_df`, bounded by :func:`rare_side_df`)."""
    _check_alpha(alpha)
    data, _ = load_comparisons(comparisons, models)
    frames = []
    for mode, coupling, block, avg in block_average_win_rates(data, models):
        low, high = average_win_rate_intervals(avg, alpha)
        frames.append(pd.DataFrame({
            "model": block.models, "mode": mode, "coupling": coupling,
            "win_rate": avg.estimate[0], "ci_low": low[0], "ci_high": high[0], "se": avg.se[0],
            "tie_rate": avg.tie_rate[0], "df": avg.statistic_df[0],
            "n_comparisons": avg.n_total[0], "n_prompts": avg.n_prompts[0]}))
    return pd.concat(frames, ignore_index=True)


def refuse_mode_comparison(data: pd.DataFrame, what: str) -> None:
    """The error when no coupling has both modes: rows without shared noise are named first."""
    require_shared_noise(data, what, "comparisons")
    raise ValueError("comparisons: column 'mode' must hold both 'coupled' and 'independent' "
                     "rows (for the same coupling) to compare the modes")


def compare_modes(comparisons: pd.DataFrame | str | os.PathLike, model: str | None = None,
                  correction: Correction = "holm", alpha: float = 0.05,
                  models: list[str] | None = None) -> pd.DataFrame:
    """Two-tailed z-test of coupled vs independent win-rate, P(model beats opponent), per ordered
    pair (Fig. 3): all ordered pairs, or only ``model`` against each opponent. The statistic is
    referred to t with prompts - 1 degrees of freedom (see :func:`two_sided_pvalue`).

    The two modes share their prompts, so the difference's variance uses the *paired* per-prompt
    influence functions ``IF_coupled(q) - IF_independent(q)`` (the sum of the two variances would
    ignore their positive covariance and be conservative). ``correction`` (Holm by default) is
    applied across the rows returned, per coupling; ``stars`` mark the adjusted p-values."""
    _check_alpha(alpha)
    data, _ = load_comparisons(comparisons, models)
    counts = pair_counts(data, models)
    names = np.array(counts.models, dtype=object)
    if model is not None and model not in counts.models:
        raise ValueError(f"model {model!r} is not among the compared models {list(names)}")
    ia, ib = pair_indices(len(names))
    frames = []
    for coupling in sorted({c for _, c in counts.blocks}):
        if ("coupled", coupling) not in counts.blocks or \
                ("independent", coupling) not in counts.blocks:
            continue
        coupled_counts = counts.block("coupled", coupling)
        independent_counts = counts.block("independent", coupling)
        coupled = pair_rates_from_counts(*coupled_counts)
        independent = pair_rates_from_counts(*independent_counts)
        test = mode_difference_from_rates(coupled, independent,
                                          coupled_counts[2], independent_counts[2])
        for first, second, side in ((ia, ib, 0), (ib, ia, 1)):
            wc = (coupled.win_a, coupled.win_b)[side][0]
            wi = (independent.win_a, independent.win_b)[side][0]
            diff, se = test.difference[0, side], test.se[0, side]
            t_alpha = t_quantile(alpha / 2, test.df[0])
            frames.append(pd.DataFrame({
                "model": names[first], "opponent": names[second], "coupling": coupling,
                "win_rate_coupled": wc, "win_rate_independent": wi, "difference": diff,
                "se": se, "ci_low": diff - t_alpha * se, "ci_high": diff + t_alpha * se,
                "z": test.z[0, side], "pvalue": test.pvalue[0, side], "df": test.df[0],
                "n_coupled": coupled.n_total[0], "n_independent": independent.n_total[0]}))
    if not frames:
        refuse_mode_comparison(data, "comparing coupled and independent win-rates")
    out = pd.concat(frames, ignore_index=True)
    if model is not None:
        out = out[out["model"] == model]
    out = out[(out["n_coupled"] > 0) & (out["n_independent"] > 0)].copy()
    out["pvalue_adjusted"] = np.nan
    for _, index in out.groupby("coupling").groups.items():
        out.loc[index, "pvalue_adjusted"] = adjust_pvalues(out.loc[index, "pvalue"].to_numpy(),
                                                           correction)
    out["stars"] = significance_stars(out["pvalue_adjusted"].to_numpy())
    return out.sort_values(["coupling", "model", "opponent"]).reset_index(drop=True)


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")

