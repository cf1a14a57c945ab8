"""Clustered (by question) estimation helpers shared by the analysis modules.

The unit of sampling in a benchmark is the *question*: each question is run with one or more
seeds, and rows that share a question are correlated (they share the question's difficulty),
so standard errors must be clustered by question. Everything here works on *padded arrays*:

* ``a, b``: scores of two models, shape ``(..., Q, S)`` — ``Q`` questions, up to ``S`` paired
  seeds per question; any leading axes are replicates (Monte-Carlo tests run thousands of
  replicated benchmarks in one call);
* ``mask``: same shape, ``True`` where the seed exists for *both* models (unbalanced designs:
  questions with different numbers of seeds, a model missing some rows).

Stable interface (the pairwise module may import it read-only):
:func:`pad_by_question`, :func:`question_moments` / :class:`QuestionMoments`,
:func:`clustered_mean` / :class:`ClusteredMean`, :func:`variance_components` /
:class:`VarianceComponents`.

Estimand (documented once, here): the mean over questions of each question's expected score
difference, so every question weighs the same whatever its number of seeds. Estimator: the
mean of the per-question mean differences; SE = sd(per-question means)/sqrt(Q) with a t
reference on Q - 1 degrees of freedom. This SE is valid for any number of seeds per question
(the per-question means are independent across questions, whatever their within-question
correlation), which is exactly what clustering by question means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

QUESTION = ("task", "prompt_id")


def pad_by_question(frame: pd.DataFrame, columns: list[str],
                    question: tuple[str, ...] = QUESTION) -> tuple[list[np.ndarray], np.ndarray,
                                                                   pd.DataFrame]:
    """Scatter long rows into padded ``(Q, S)`` arrays, one per column of ``columns``.

    Returns ``(arrays, mask, questions)``: ``questions`` lists the question keys in array order
    (plus ``n_rows``). Padding cells hold 0 and are ``False`` in ``mask``.
    """
    groups = frame.groupby(list(question), sort=False)
    codes = groups.ngroup().to_numpy()
    slot = groups.cumcount().to_numpy()
    n_questions = int(codes.max()) + 1 if len(codes) else 0
    width = int(slot.max()) + 1 if len(slot) else 0
    mask = np.zeros((n_questions, width), dtype=bool)
    mask[codes, slot] = True
    arrays = []
    for column in columns:
        values = np.zeros((n_questions, width))
        values[codes, slot] = frame[column].to_numpy(dtype=float)
        arrays.append(values)
    # ngroup numbers groups in order of first appearance (sort=False), as drop_duplicates keeps
    questions = frame[list(question)].drop_duplicates().reset_index(drop=True)
    questions["n_rows"] = mask.sum(axis=1)
    return arrays, mask, questions


@dataclass(frozen=True)
class QuestionMoments:
    """Per-question moments of two models' paired scores (arrays of shape ``(..., Q)``).

    Variances and the covariance use ddof = 1 across a question's seeds; they are 0 (and
    ``has_spread`` is False) for questions with a single seed, where they cannot be estimated.
    """

    n: np.ndarray
    mean_a: np.ndarray
    mean_b: np.ndarray
    var_a: np.ndarray
    var_b: np.ndarray
    cov: np.ndarray

    @property
    def mean_diff(self) -> np.ndarray:
        return self.mean_a - self.mean_b

    @property
    def var_diff(self) -> np.ndarray:
        """Within-question variance of the difference R_a - R_b across seeds (Fig. 2b)."""
        return np.maximum(self.var_a + self.var_b - 2.0 * self.cov, 0.0)

    @property
    def var_diff_if_independent(self) -> np.ndarray:
        """Var(R_a) + Var(R_b): the within-question variance the difference would have under
        independent generation. Valid from coupled data too, because each model's marginal law
        is the same in both modes — so one coupled run yields both variances."""
        return self.var_a + self.var_b

    @property
    def has_spread(self) -> np.ndarray:
        return self.n >= 2

    @property
    def present(self) -> np.ndarray:
        return self.n >= 1


def question_moments(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None
                     ) -> QuestionMoments:
    """Per-question means, variances and covariance of paired scores ``a``, ``b`` (..., Q, S)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    if mask is None:
        mask = np.ones(a.shape, dtype=bool)
    weight = mask.astype(float)
    n = weight.sum(axis=-1)
    safe_n = np.maximum(n, 1.0)
    mean_a = (a * weight).sum(axis=-1) / safe_n
    mean_b = (b * weight).sum(axis=-1) / safe_n
    da = (a - mean_a[..., None]) * weight
    db = (b - mean_b[..., None]) * weight
    dof = np.maximum(n - 1.0, 1.0)
    spread = n >= 2
    var_a = np.where(spread, (da * da).sum(axis=-1) / dof, 0.0)
    var_b = np.where(spread, (db * db).sum(axis=-1) / dof, 0.0)
    cov = np.where(spread, (da * db).sum(axis=-1) / dof, 0.0)
    return QuestionMoments(n=n, mean_a=mean_a, mean_b=mean_b, var_a=var_a, var_b=var_b, cov=cov)


@dataclass(frozen=True)
class ClusteredMean:
    """Mean of per-cluster values with a t interval (fields are floats or replicate arrays).

    ``degenerate`` is True where every cluster has the same value (zero spread): the interval
    is then the point itself and the p-value is 1 if that value is 0, else 0 — reported
    plainly, never as NaN.
    """

    estimate: np.ndarray | float
    se: np.ndarray | float
    ci_low: np.ndarray | float
    ci_high: np.ndarray | float
    pvalue: np.ndarray | float
    n_clusters: np.ndarray | int
    degenerate: np.ndarray | bool


def clustered_mean(values: np.ndarray, present: np.ndarray | None = None,
                   alpha: float = 0.05) -> ClusteredMean:
    """Mean over clusters (last axis) with SE = sd/sqrt(Q) and a t(Q - 1) interval and test of 0.

    ``present`` marks the clusters that exist (unbalanced replicates); scipy's t distribution
    gives the quantiles and p-values (the formula is the one-sample t-test on cluster values).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    values = np.asarray(values, dtype=float)
    if present is None:
        present = np.ones(values.shape, dtype=bool)
    weight = present.astype(float)
    q = weight.sum(axis=-1)
    if np.any(q < 2):
        raise ValueError("need at least 2 questions with paired rows to estimate a clustered SE")
    estimate = (values * weight).sum(axis=-1) / q
    centred = (values - estimate[..., None]) * weight
    variance = (centred * centred).sum(axis=-1) / (q - 1.0)
    se = np.sqrt(variance / q)
    # Spread below float noise counts as none (identical models give exact zeros anyway).
    degenerate = se <= 1e-12 * np.maximum(1.0, np.abs(estimate))
    safe_se = np.where(degenerate, 1.0, se)
    t_crit = stats.t.ppf(1.0 - alpha / 2.0, q - 1.0)
    half = np.where(degenerate, 0.0, t_crit * se)
    t_stat = estimate / safe_se
    pvalue = np.where(degenerate, np.where(estimate == 0.0, 1.0, 0.0),
                      2.0 * stats.t.sf(np.abs(t_stat), q - 1.0))
    se = np.where(degenerate, 0.0, se)
    result = ClusteredMean(estimate=estimate, se=se, ci_low=estimate - half,
                           ci_high=estimate + half, pvalue=pvalue, n_clusters=q,
                           degenerate=degenerate)
    if values.ndim == 1:
        return ClusteredMean(**{k: v.item() for k, v in result.__dict__.items()})
    return result


@dataclass(frozen=True)
class VarianceComponents:
    """Variance of one row's score difference R_a - R_b, split by source.

    ``between``: variance across questions of the true per-question mean difference (the same
    in both modes, by linearity of expectation). ``within_coupled`` / ``within_independent``:
    mean over questions of the within-question variance of the difference across seeds.
    ``effect``: the mean difference (mean over questions). A row drawn at random (random
    question, random seed) has variance ``between + within`` (the paper's Prop. 1 quantity,
    with the DESIGN correction), and a design with ``Q`` questions × ``S`` seeds estimates the
    effect with variance ``(between + within / S) / Q``.
    """

    effect: float
    between: float
    within_coupled: float
    within_independent: float
    note: str = ""
    # Optional per-question law of one binary row (``coupled.analysis.planning.BinaryLaw``):
    # when present, planning simulates the power of the test mean_difference runs.
    law: Any = field(default=None, repr=False, compare=False)

    def summary(self) -> dict:
        """The numeric fields and note (JSON-ready; the law is left out)."""
        return {"effect": self.effect, "between": self.between,
                "within_coupled": self.within_coupled,
                "within_independent": self.within_independent, "note": self.note}

    def total(self, mode: str) -> float:
        return self.between + self.within(mode)

    def within(self, mode: str) -> float:
        if mode == "coupled":
            return self.within_coupled
        if mode == "independent":
            return self.within_independent
        raise ValueError(f"mode must be 'coupled' or 'independent', got {mode!r}")

    def per_question_variance(self, mode: str, n_seeds: float) -> float:
        """Variance of one question's mean difference over ``n_seeds`` seeds."""
        return self.between + self.within(mode) / n_seeds

    def design_effect(self, mode: str, n_seeds: float) -> float:
        """Variance of the mean of Q×S clustered rows over that of Q×S independent rows."""
        total = self.total(mode)
        return n_seeds * self.per_question_variance(mode, n_seeds) / total if total > 0 else 1.0


def variance_components(mean_diff: np.ndarray, within: np.ndarray, n: np.ndarray,
                        present: np.ndarray, has_spread: np.ndarray) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    """Method-of-moments ``(between, within)`` from per-question summaries (last axis = Q).

    ``within`` = mean of the per-question within variances over questions with ≥ 2 seeds;
    ``between`` = variance of the per-question mean differences minus the part the seeds'
    noise contributes (mean of within_q / n_q), clipped at 0 (a variance).
    """
    features = component_features(mean_diff, within, within, n, present, has_spread)
    return components_from_sums(features.sum(axis=-2))


N_COMPONENT_FEATURES = 8


def component_features(mean_diff: np.ndarray, noise: np.ndarray, target: np.ndarray,
                       n: np.ndarray, present: np.ndarray, has_spread: np.ndarray) -> np.ndarray:
    """Per-question terms whose (weighted) sums over questions determine the components.

    Shape ``(..., Q, 8)``. Summing them with weights — 0/1 for present questions, bootstrap
    counts, or leave-one-out — and passing the sums to :func:`components_from_sums` gives the
    components of the reweighted sample, so a bootstrap is one matrix product and a jackknife
    one subtraction. ``noise``: the within variance the means were measured with (subtracted
    from their spread); ``target``: the within variance reported (they differ only when the
    independent variance is estimated from coupled rows).
    """
    w = present.astype(float)
    spread = has_spread.astype(float) * w
    inv_n = w / np.maximum(n, 1.0)
    return np.stack([w, w * mean_diff, w * mean_diff**2, spread, spread * noise,
                     spread * target, spread * noise * inv_n, (w - spread) * inv_n], axis=-1)


def components_from_sums(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(between, within)`` from summed :func:`component_features` (last axis = 8)."""
    (weight, sum_m, sum_mm, n_spread, sum_noise, sum_target, noise_over_n,
     single_over_n) = np.moveaxis(sums, -1, 0)
    q = np.maximum(weight, 2.0)
    spread_count = np.maximum(n_spread, 1.0)
    within_noise = sum_noise / spread_count
    within_target = sum_target / spread_count
    # variance (ddof 1) of the per-question means, from their sums
    observed = np.maximum(sum_mm - sum_m**2 / q, 0.0) / (q - 1.0)
    # Single-seed questions carry within-noise too: charge them the average within variance.
    noise = (noise_over_n + within_noise * single_over_n) / q
    return np.maximum(observed - noise, 0.0), within_target
