"""Score-type intervals for a paired mean difference that hold when differences are rare.

Under coupled generation two models agree on almost every row, so the paired differences
``D = R_a - R_b`` are mostly 0 and a Wald/t interval on them breaks: it is exactly ``[0, 0]``
whenever no difference was seen, and too narrow when a handful were (the audit of issue 11
measured 44.5 % coverage at 15 questions). The intervals here invert a *score* test instead,
whose variance is computed under the hypothesised difference, so they keep a width of the
order of the rule of three when nothing was seen and cover near nominal when little was.

One seed per question, binary scores: **Tango's (1998) asymptotic score interval** for the
difference of paired proportions ``p10 - p01`` (Statist. Med. 17:891; recommended by
Fagerland, Lydersen & Laake 2013, BMC Med. Res. Methodol. 13:92). Its test at 0 is the
uncorrected McNemar test, so the p-value reported beside it is that test and
``p < alpha`` exactly when 0 lies outside the interval. No library (statsmodels, scipy,
pingouin) has Tango's interval, so it is written here.

Several seeds per question, unbalanced, binary or graded scores: the same score interval on
*effective counts*. Each question contributes the means of ``D+ = max(D, 0)`` and
``D- = max(-D, 0)`` over its seeds; the effective number of independent trinomial rows is the
trinomial variance ``p+ + p- - d^2`` (the largest variance a difference in ``[-1, 1]`` with
those means can have) over the question-clustered variance of the estimate (``ddof = 1``).
Two guards keep rare events from shrinking it: where the clustered variance is 0 the count is
the worst case, one independent row per question; and it never exceeds what a per-question
variance model allows, in which a question's rows have the second moment ``E[D^2]`` seen on
it shrunk towards the average over questions by one pseudo-row (a question run once that
showed no difference is not credited with no variance — the failure behind 56 % coverage with
3 questions at 20 seeds and 9 at one). Critical values and p-values use Student's t: on
``Q - 1`` degrees of freedom (the small-sample cluster correction) where the clustered
variance sets the count, and, with at least 10 questions, on the variance model's own
Satterthwaite degrees of freedom (at least ``Q - 1``) where the model binds — there its
variance, pooled over every row, is all but known, and ``Q - 1`` over-covered. The model binds
when the question means happen to lie closer than their rows' variance predicts, so with few
questions its variance misses the between-question spread and needs the ``Q - 1`` correction
too: with its own df, 2 questions covered 87-90 % (size 11.6 %) and 3 questions down to 93.0 %
(size 7.0 %); with t(Q - 1), 100 % and >= 96.9 % (size <= 3.1 %), 5 questions >= 95.2 %
either way (Beta-spread question accuracies, 20-50 seeds, 3000 replicates per design;
``tests/test_intervals.py``). So below 10 questions — the smallest design the grid
calibrated — it is t(Q - 1) throughout.
Where differences are common the interval is the clustered t interval up to the score test's
skew correction.

Chosen on the coverage grid of ``tests/test_coverage_grid.py`` (probes of 12-70 cells, then
sweeps of all 450 cells on cached replicates) against the same construction without the guard
(under-covers at 82-88 % in unbalanced 1-or-20-seed designs), with half a pseudo-row (88-92 %
there), shrinking towards the average of questions with the same seed count (75-91 %), with
the count capped at the number of rows (over-covers balanced designs) and the old clustered
t (``bench/analysis_benchmark.md`` records old and new for all 450 cells). The degrees of
freedom where the model binds: t(Q - 1) everywhere left 51 cells with >= 10 differing rows
above the band (e.g. independent near 0.5, 10 questions x 5 seeds: 98.7 %, where the model
binds in half the replicates and its variance is all but known); the normal there, 42 cells
above but the lowest cell at 91.9 %; the model's Satterthwaite df, 42 above with the lowest
at 92.6 % (that 10 x 5 cell: 96.9 %, width 0.43 -> 0.40), size unchanged (max 6.85 %),
power the same or higher (up to +2 points). The 42 left are all 1-or-20-seed mixes, where
the guard binds by design: with 75 % of the questions run once the data cannot tell "never
differ" from "differ rarely", and the variance the guard imputes to those questions (half the
average second moment) is the price of never under-covering there. Sweeps also tried and
rejected: a skew correction scaled to the variance-weighted step size (no change: the guard's
imputed single-seed variance sets the step), a df growing from Q - 1 with the ratio of the
model's variance to the clustered one (44-50 above). A bootstrap-t over questions was not
tried (it collapses on all-zero data too).

Everything is vectorised over leading replicate axes (Monte-Carlo tests run thousands of
benchmarks in one call).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

_BISECTIONS = 64  # halvings of a unit-length bracket: below float resolution
# Fewest questions at which the t reference takes the variance model's own df (the smallest
# design of the coverage grid); below, t(Q - 1) throughout.
MODEL_DF_MIN_QUESTIONS = 10


def bisect(outside, inside: np.ndarray, beyond: np.ndarray) -> np.ndarray:
    """The point between ``inside`` (where the vectorised predicate ``outside`` is False) and
    ``beyond`` (where it is True, or the end of the range) at which ``outside`` turns True,
    elementwise by bisection — for brackets of length up to 2, to float resolution.
    Hand-written: scipy's root finders take one scalar bracket at a time, and these intervals
    solve thousands of replicates at once."""
    for _ in range(_BISECTIONS):
        middle = 0.5 * (inside + beyond)
        out = outside(middle)
        beyond = np.where(out, middle, beyond)
        inside = np.where(out, inside, middle)
    return inside


def moment_df(contributions: np.ndarray, present: np.ndarray, axis: int = -1) -> np.ndarray:
    """Satterthwaite degrees of freedom of a variance estimated as a sum of independent
    contributions ``u_q`` over the clusters ``present`` along ``axis`` (a scaled chi-square
    matched by its moments, ``df = 2 E[V]^2 / Var[V]``): ``2 (sum u)^2 / (Q/(Q-1) sum (u -
    mean u)^2)``. ``Q`` for Gaussian cluster contributions, lower when a few clusters carry
    the variance; not capped (unbounded, the normal, when all contributions are equal) —
    callers cap it where their variance is estimated from the ``Q`` clusters alone."""
    present = np.asarray(present, dtype=float)
    u = np.asarray(contributions, dtype=float) * present
    q = np.maximum(present.sum(axis=axis), 1.0)
    total = u.sum(axis=axis)
    deviation = u - np.expand_dims(total / q, axis)
    spread = (np.square(deviation) * present).sum(axis=axis) * q / np.maximum(q - 1.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = 2.0 * np.square(total) / spread
    return np.where(np.isnan(df), np.inf, df)  # 0 / 0: nothing varies


def wilson_interval(p: np.ndarray, n: np.ndarray,
                    critical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion ``p`` on ``n`` (possibly effective, non-integer)
    trials, clipped to [0, 1]. Written out because statsmodels' ``proportion_confint`` takes one
    scalar alpha, while callers here pass a critical value per replicate or per rate."""
    z2 = critical**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = critical * np.sqrt(p * (1 - p) / n + z2 / (4 * n**2)) / (1 + z2 / n)
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def unit_range(low_score: float, high_score: float) -> tuple[float, float]:
    """``(offset, scale)`` mapping scores observed in ``[low_score, high_score]`` onto
    ``[0, 1]`` by ``(score - offset) / scale``: the identity for scores already in ``[0, 1]``,
    otherwise their observed range — and where every score is one value outside ``[0, 1]``
    (no range), the smallest range holding that value and ``[0, 1]``, never zero. Callers
    pass one range for a whole table, so every model's scores share the same units."""
    if low_score >= 0.0 and high_score <= 1.0:
        return 0.0, 1.0
    offset, scale = low_score, high_score - low_score  # may overflow near the float limit
    if scale == 0.0:
        offset = min(low_score, 0.0)
        scale = max(high_score, 1.0) - offset
    if not np.isfinite(scale):
        raise ValueError(f"scores: range [{low_score:g}, {high_score:g}] overflows a float "
                         "difference; rescale the scores")
    return offset, scale


def tango_statistic(delta: np.ndarray, plus: np.ndarray, minus: np.ndarray,
                    n: np.ndarray) -> np.ndarray:
    """Tango's score statistic for ``p10 - p01 = delta`` from rates ``plus = b/n``,
    ``minus = c/n`` on ``n`` (possibly effective, non-integer) pairs.

    ``Z = (b - c - n delta) / sqrt(n (2 p01~ + delta (1 - delta)))``, with ``p01~`` the
    maximum-likelihood ``p01`` under the constraint (the positive root of
    ``2n x^2 + W x - c delta (1 - delta) = 0``, ``W = -(b + c) + (2n - b + c) delta``).
    Decreasing in ``delta``; 0 at the estimate ``plus - minus``.
    """
    b, c = n * plus, n * minus
    width = -(b + c) + (2.0 * n - b + c) * delta
    spread = delta * (1.0 - delta)
    root = np.sqrt(np.maximum(width**2 + 8.0 * n * c * spread, 0.0))
    p01 = (root - width) / (4.0 * n)
    variance = np.maximum(2.0 * p01 + spread, 0.0)
    top = b - c - n * delta
    with np.errstate(divide="ignore", invalid="ignore"):
        z = top / np.sqrt(n * variance)
    # variance 0 only at delta = +-1 or with nothing observed at delta = 0 (handled by callers)
    return np.where(variance > 0, z, np.where(top == 0, 0.0, np.copysign(np.inf, top)))


def tango_interval(plus: np.ndarray, minus: np.ndarray, n: np.ndarray,
                   critical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``{delta : |Z(delta)| <= critical}`` by vectorised bisection (Z is monotone)."""
    plus, minus, n, critical = np.broadcast_arrays(*(np.asarray(x, dtype=float)
                                                     for x in (plus, minus, n, critical)))
    estimate = plus - minus

    def beyond(sign):  # lower bound: Z = +critical below the estimate; upper: Z = -critical
        return lambda delta: sign * tango_statistic(delta, plus, minus, n) > critical

    low = bisect(beyond(1.0), estimate, np.full(estimate.shape, -1.0))
    high = bisect(beyond(-1.0), estimate, np.full(estimate.shape, 1.0))
    return low, high


@dataclass(frozen=True)
class PairedInterval:
    """A paired mean difference with its score interval and the test it inverts.

    Fields are floats or replicate arrays. ``n_effective``: the (effective) number of
    independent pairs the interval uses; ``method``: ``"tango"`` (one seed, binary) or
    ``"tango-effective"`` (clustered) — or ``"identical"`` when the caller asserted it.
    ``se``: the clustered (ddof 1) standard error, reported for reference; the interval is not
    ``estimate +- t se``.
    """

    estimate: np.ndarray | float
    se: np.ndarray | float
    ci_low: np.ndarray | float
    ci_high: np.ndarray | float
    pvalue: np.ndarray | float
    n_clusters: np.ndarray | int
    n_effective: np.ndarray | float
    method: np.ndarray | str


@dataclass(frozen=True)
class QuestionSummaries:
    """Per-question summaries of the paired differences (arrays ``(..., Q)``), in [-1, 1].

    ``n``: paired rows (0 = question absent); ``mean``, ``plus``, ``minus``, ``second``: the
    means over the question's rows of ``D``, ``max(D, 0)``, ``max(-D, 0)`` and ``D^2``.
    """

    n: np.ndarray
    mean: np.ndarray
    plus: np.ndarray
    minus: np.ndarray
    second: np.ndarray


@dataclass(frozen=True)
class ScoreTest:
    """The score test's ingredients (arrays over replicates)."""

    estimate: np.ndarray
    plus: np.ndarray
    minus: np.ndarray
    se: np.ndarray
    n_clusters: np.ndarray
    n_effective: np.ndarray
    critical: np.ndarray
    pvalue: np.ndarray
    one_seed: np.ndarray
    df: np.ndarray  # of the t reference (inf: the normal, one binary seed)


def model_variance(shrunk: np.ndarray, n_q: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Variance of a mean over questions under the per-question variance model:
    ``sum_q shrunk_q / n_q / Q^2`` (``shrunk``, ``n_q``: ``(..., Q)``; absent questions have
    ``n_q = 0``)."""
    return _model_contributions(shrunk, n_q).sum(axis=-1) / q**2


def _model_contributions(shrunk: np.ndarray, n_q: np.ndarray) -> np.ndarray:
    return np.where(n_q > 0, shrunk / np.maximum(n_q, 1.0), 0.0)


def model_df(shrunk: np.ndarray, n_q: np.ndarray) -> np.ndarray:
    """Satterthwaite degrees of freedom of :func:`model_variance`, a sum of per-question
    contributions ``u_q = shrunk_q / n_q``: :func:`moment_df`, not capped at ``Q - 1`` —
    each ``u_q`` pools a question's rows with the average over all questions, so when the
    contributions are alike the model's variance rests on far more than ``Q - 1`` independent
    pieces. :func:`score_test` uses it only from :data:`MODEL_DF_MIN_QUESTIONS` questions
    on: with fewer, the model binds when the question means happen to lie close, its variance
    misses their spread, and this df (unbounded when the contributions are equal) under-covers
    (2 questions: 87-90 %)."""
    return moment_df(_model_contributions(shrunk, n_q), n_q > 0)


def effective_count(bound: np.ndarray, se: np.ndarray, shrunk: np.ndarray, n_q: np.ndarray,
                    q: np.ndarray, one_seed: np.ndarray) -> np.ndarray:
    """Effective number of independent rows behind a mean over questions (arrays ``(...)``,
    ``shrunk`` and ``n_q`` ``(..., Q)``): ``bound`` (the largest row variance the estimate's
    range allows) over its variance, taken as the larger of the clustered ``se^2`` and the
    per-question model's :func:`model_variance` (``shrunk``: each question's row variance
    bound shrunk by one pseudo-row). Where nothing varies — and with one seed per question —
    the worst case, one independent row per question (``q``)."""
    informative = (se > 0) & (bound > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.fmin(bound / np.square(se), bound / model_variance(shrunk, n_q, q))
    n_eff = np.where(informative & (n_eff > 0), n_eff, q)
    return np.where(one_seed, q, n_eff)


def score_test(summaries: QuestionSummaries, alpha: float, binary: bool) -> ScoreTest:
    """Effective count, critical value and p-value of the paired score test (see the module
    docstring); the planning module simulates power through this same function."""
    n_q = summaries.n
    present = n_q > 0
    q = present.sum(axis=-1).astype(float)

    def question_mean(x):
        return np.where(present, x, 0.0).sum(axis=-1) / q

    estimate = question_mean(summaries.mean)
    plus, minus = question_mean(summaries.plus), question_mean(summaries.minus)
    centred = np.where(present, summaries.mean - estimate[..., None], 0.0)
    se = np.sqrt((centred * centred).sum(axis=-1) / (q - 1.0) / q)
    one_seed = np.all(np.where(present, n_q == 1, True), axis=-1) & binary
    trinomial = np.maximum(plus + minus - estimate**2, 0.0)
    # Cap: a per-question variance model that cannot be fooled by rare events. Question q's
    # mean over n_q seeds has variance <= w_q / n_q, with w_q its rows' second moment E[D^2]
    # (the variance bound of a difference in [-1, 1] with that moment), shrunk towards the
    # average w over questions with one pseudo-row: a question seen once and agreeing (D = 0)
    # is not taken to have no variance. n_eff may not exceed what that model allows.
    second = summaries.second
    shrunk = (n_q * second + question_mean(second)[..., None]) / (n_q + 1.0)
    n_eff = effective_count(trinomial, se, shrunk, n_q, q, one_seed)
    # Degrees of freedom: Student's t on Q - 1 corrects for estimating the variance from Q
    # question means — where that clustered variance is the one used (and where nothing
    # varies, at the worst-case count). Where the model's variance is larger (it binds), the
    # variance comes from the model, pooled over all rows: t on its own Satterthwaite df (at
    # least Q - 1), from MODEL_DF_MIN_QUESTIONS questions on. With one binary seed, Tango's
    # interval and the McNemar z test exactly.
    # Only from MODEL_DF_MIN_QUESTIONS questions on, where the coverage grid calibrated it: with
    # fewer the model binds mostly when the question means happen to lie close, so its
    # variance misses the between-question spread and its large df under-covers (2 questions:
    # 87-90 %, size 10-13 %); t(Q - 1) there.
    model_binds = ((se > 0) & (trinomial > 0) & (model_variance(shrunk, n_q, q) > np.square(se))
                   & (q >= MODEL_DF_MIN_QUESTIONS))
    df = np.where(model_binds, np.maximum(model_df(shrunk, n_q), q - 1.0), q - 1.0)
    df = np.where(one_seed, np.inf, df)
    critical = np.where(one_seed, stats.norm.isf(alpha / 2.0), stats.t.isf(alpha / 2.0, df))
    # The test the interval inverts: the score statistic at 0 (McNemar's (b - c)/sqrt(b + c)).
    discordant = plus + minus
    with np.errstate(divide="ignore", invalid="ignore"):
        z0 = np.where(discordant > 0, estimate * np.sqrt(n_eff / discordant), 0.0)
    pvalue = np.where(one_seed, 2.0 * stats.norm.sf(np.abs(z0)), 2.0 * stats.t.sf(np.abs(z0), df))
    return ScoreTest(estimate=estimate, plus=plus, minus=minus, se=se, n_clusters=q,
                     n_effective=n_eff, critical=critical, pvalue=pvalue, one_seed=one_seed,
                     df=df)


def paired_score_interval(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None,
                          alpha: float = 0.05, *, identical: bool = False) -> PairedInterval:
    """Score interval and test of the mean over questions of ``E[R_a - R_b | question]``.

    ``a, b, mask``: padded ``(..., Q, S)`` arrays (``coupled.analysis._clustered``). Scores
    must lie in ``[0, 1]``; other bounded scores are rescaled first by :func:`unit_range` of
    all of ``a`` and ``b`` (the score test needs a known bound on ``|D|``). ``identical=True`` asserts the two models
    are the same (identical weights and sampler): the interval is then ``[0, 0]`` and the
    p-value 1 — the only way to get a zero-width interval, and an error if any row differs.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    if mask is None:
        mask = np.ones(a.shape, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    observed = np.concatenate([a[mask], b[mask]])
    if observed.size and not np.all(np.isfinite(observed)):
        raise ValueError("scores: must be finite to form a difference")
    weight = mask.astype(float)
    n_q = weight.sum(axis=-1)
    present = n_q > 0
    q = present.sum(axis=-1).astype(float)
    if np.any(q < 2):
        raise ValueError("need at least 2 questions with paired rows to estimate a clustered "
                         "interval")
    # Rescale to differences in [-1, 1] *before* any square (scores of 1e200 would overflow).
    offset, scale = unit_range(float(observed.min()) if observed.size else 0.0,
                               float(observed.max()) if observed.size else 0.0)
    diff = np.where(mask, a / scale - b / scale, 0.0)
    safe_n = np.maximum(n_q, 1.0)
    summaries = QuestionSummaries(
        n=n_q, mean=diff.sum(axis=-1) / safe_n,
        plus=np.maximum(diff, 0.0).sum(axis=-1) / safe_n,
        minus=np.maximum(-diff, 0.0).sum(axis=-1) / safe_n,
        second=np.where(mask, diff * diff, 0.0).sum(axis=-1) / safe_n)
    n_rows = weight.sum(axis=(-1, -2))
    if identical:
        if np.any(diff != 0.0):
            raise ValueError("identical=True asserts the two models never differ, but their "
                             "scores differ on some paired rows")
        zeros = np.zeros(q.shape)
        return _squeeze(PairedInterval(estimate=zeros, se=zeros, ci_low=zeros, ci_high=zeros,
                                       pvalue=np.ones(q.shape), n_clusters=q,
                                       n_effective=n_rows, method=np.full(q.shape, "identical")),
                        a.ndim)
    # binary on the rescaled scores: {0, 100} is the same trinomial design as {0, 1}
    binary = bool(np.isin((observed - offset) / scale, (0.0, 1.0)).all())
    test = score_test(summaries, alpha, binary)
    estimate, plus, minus, se = test.estimate, test.plus, test.minus, test.se
    n_eff, critical, pvalue, one_seed = test.n_effective, test.critical, test.pvalue, test.one_seed
    # One seed, binary: Tango's interval and the McNemar z test exactly; otherwise on t (above).
    ci_low, ci_high = tango_interval(plus, minus, n_eff, critical)
    # p < alpha exactly when 0 is outside [low, high]: the bisection ends within 1e-16 of the
    # root, so settle which side of 0 each bound is on from the test itself.
    reject = pvalue < alpha
    tiny = np.nextafter(0.0, 1.0)
    ci_low = np.where(reject & (estimate > 0), np.maximum(ci_low, tiny),
                      np.where(reject, ci_low, np.minimum(ci_low, 0.0)))
    ci_high = np.where(reject & (estimate < 0), np.minimum(ci_high, -tiny),
                       np.where(reject, ci_high, np.maximum(ci_high, 0.0)))
    method = np.where(one_seed, "tango", "tango-effective")
    result = PairedInterval(estimate=estimate * scale, se=se * scale, ci_low=ci_low * scale,
                            ci_high=ci_high * scale, pvalue=pvalue, n_clusters=q,
                            n_effective=n_eff, method=method)
    return _squeeze(result, a.ndim)


def _squeeze(result: PairedInterval, ndim: int) -> PairedInterval:
    if ndim != 2:
        return result
    return PairedInterval(**{k: np.asarray(v).item() for k, v in result.__dict__.items()})
