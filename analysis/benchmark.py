"""Benchmark comparisons from a ``scores`` table: paired mean differences, tests, variances.

Estimand of :func:`mean_difference`: the mean over questions of each question's expected score
difference ``E[R_a - R_b | question]`` — every question weighs the same whatever its number of
seeds (the usual benchmark accuracy, and what a balanced run estimates anyway). Estimator: the
mean of per-question mean differences; SE clustered by question (``coupled.analysis._clustered``).
A row-weighted estimand would let questions with more seeds count more, which no benchmark
intends; with a balanced design the two coincide.

Interval and test (``coupled.analysis.intervals``, whose module docstring gives the
construction and its calibration): a score-type interval that holds when the paired
differences are rare (coupled runs agree on almost every row). With one binary seed per
question it is Tango's score interval, whose test is the uncorrected McNemar test; otherwise
the same score interval on effective counts, guarded so that rare differences cannot shrink
it, with a Student-t reference (``Q - 1`` degrees of freedom, or the variance model's own
where that binds on enough questions). The p-value is always the test the interval inverts,
so ``p < alpha`` exactly when 0 lies outside the interval; no interval is zero-width unless
the caller asserts ``identical=True``. Plain McNemar on all rows of a multi-seed run treats
correlated rows as independent and over-rejects (tests/test_analysis_benchmark.py shows it),
so it is never used there.

Variance reduction (Prop. 1, with DESIGN's per-prompt correction): the variance of one row's
difference (random question, random seed) is ``between + within_mode``; the between-question
part is the same in both modes, so the coupled/independent ratio of these totals is the
fraction of rows coupled generation needs for the same precision when rows are sampled at
random (the paper's setting), and ``1 - ratio`` the saving. The independent within-question
variance can be *estimated from a coupled run alone*: ``Var(R_a) + Var(R_b)`` across seeds,
because each model's marginal law does not depend on the mode. :func:`variance_reduction`
gives the ratio of unbiased totals less its jackknife bias, with the leave-one-question-out
jackknife interval of the log ratio (:func:`variance_ratio_from_moments`; a one-sided score
bound where the jackknife is degenerate, a clear error where the ratio cannot be estimated).
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from coupled.analysis._clustered import (
    QUESTION,
    QuestionMoments,
    pad_by_question,
    question_moments,
)
from coupled.analysis.intervals import PairedInterval, paired_score_interval, unit_range
from coupled.tables import MODES, read_scores, require_shared_noise


# ----------------------------------------------------------------------------- data access
def _select(scores: pd.DataFrame, mode: str, coupling: str | None) -> tuple[pd.DataFrame, str]:
    if mode not in MODES:
        raise ValueError(f"mode must be 'coupled' or 'independent', got {mode!r}")
    rows = scores[scores["mode"] == mode]
    if rows.empty:
        if mode == "coupled":  # imported results without shared noise: say so first
            require_shared_noise(scores, "this comparison of coupled and independent rows",
                                 "scores")
        raise ValueError(f"scores: no rows with mode {mode!r} (modes present: "
                         f"{sorted(scores['mode'].unique())})")
    couplings = sorted(rows["coupling"].unique())
    if coupling is None:
        if len(couplings) > 1:
            raise ValueError(f"scores: several couplings {couplings} in mode {mode!r}; "
                             "pass coupling= to choose one")
        coupling = couplings[0]
    elif coupling not in couplings:
        raise ValueError(f"scores: no rows with coupling {coupling!r} in mode {mode!r} "
                         f"(present: {couplings})")
    return rows[rows["coupling"] == coupling], coupling


def paired_arrays(scores: pd.DataFrame, model_a: str, model_b: str, mode: str = "coupled",
                  coupling: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                        pd.DataFrame]:
    """Padded ``(Q, S)`` arrays of the two models' scores on the seeds both have.

    Returns ``(a, b, mask, questions)``; ``questions`` holds ``task, prompt_id, n_rows`` (and
    ``subject`` when the table has it) in array order. Rows a model lacks are left out of the
    pair (unbalanced designs are fine); questions with no paired row are dropped.
    """
    if model_a == model_b:
        raise ValueError(f"model_a and model_b must differ, got {model_a!r} twice")
    rows, _ = _select(scores, mode, coupling)
    models = set(rows["model"].unique())
    for name, model in (("model_a", model_a), ("model_b", model_b)):
        if model not in models:
            raise ValueError(f"{name}: model {model!r} has no {mode} rows "
                             f"(models present: {sorted(models)})")
    index = list(QUESTION) + ["seed"]
    wide = rows[rows["model"].isin((model_a, model_b))].pivot(
        index=index, columns="model", values="score").dropna().reset_index()
    if wide.empty:
        raise ValueError(f"scores: models {model_a!r} and {model_b!r} share no "
                         f"(task, prompt_id, seed) in mode {mode!r}")
    (a, b), mask, questions = pad_by_question(wide, [model_a, model_b])
    if "subject" in rows.columns:
        subjects = rows.drop_duplicates(list(QUESTION))[list(QUESTION) + ["subject"]]
        questions = questions.merge(subjects, on=list(QUESTION), how="left")
    return a, b, mask, questions



class ConfidenceInterval(NamedTuple):
    """``(low, high)``, as ``scipy.stats`` results return from ``.confidence_interval()``."""

    low: float
    high: float


# ----------------------------------------------------------------------------- mean difference
@dataclass(frozen=True)
class MeanDifference:
    """Mean score difference ``model_a - model_b`` (estimand: mean over questions).

    ``ci_low, ci_high``: the score interval of :mod:`coupled.analysis.intervals` (Tango's with
    one binary seed per question, on effective counts otherwise); ``pvalue``: the test that
    interval inverts (``pvalue < alpha`` exactly when 0 is outside it). ``se``: the clustered
    standard error, for reference. ``n_effective``: the number of independent pairs the
    interval is worth.
    """

    model_a: str
    model_b: str
    mode: str
    coupling: str
    n_questions: int
    n_rows: int
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    pvalue: float
    test: str
    note: str = ""
    n_effective: float = float("nan")
    alpha: float = 0.05

    def confidence_interval(self) -> ConfidenceInterval:
        """The question-clustered CI of the difference, at the level it was computed."""
        return ConfidenceInterval(self.ci_low, self.ci_high)


TEST_NAMES = {"tango": "mcnemar", "tango-effective": "clustered score test",
              "identical": "none (identical models asserted)"}


def _mean_difference_from_arrays(a, b, mask, *, model_a, model_b, mode, coupling, alpha,
                                 identical: bool = False) -> MeanDifference:
    result = paired_score_interval(a, b, mask, alpha=alpha, identical=identical)
    note = ""
    if result.method == "identical":
        note = "the caller asserted the models are identical: zero-width interval by assertion"
    elif not np.any((a != b) & mask):
        note = (f"no paired row differs in {int(result.n_clusters)} questions: the interval "
                "reflects that sample size (rule-of-three order), not certainty")
    elif result.method == "tango":
        note = ("one binary seed per question: Tango's score interval; the test is the "
                "uncorrected McNemar test it inverts")
    return MeanDifference(model_a=model_a, model_b=model_b, mode=mode, coupling=coupling,
                          n_questions=int(result.n_clusters), n_rows=int(mask.sum()),
                          estimate=float(result.estimate), se=float(result.se),
                          ci_low=float(result.ci_low), ci_high=float(result.ci_high),
                          pvalue=float(result.pvalue), test=TEST_NAMES[str(result.method)],
                          note=note, n_effective=float(result.n_effective), alpha=alpha)


MISSING_QUESTIONS = ("error", "drop")


def unpaired_questions(rows: pd.DataFrame, model_a: str, model_b: str) -> pd.DataFrame:
    """Questions on which one of the two models has rows and the other none (``task,
    prompt_id, model_with_rows``)."""
    keys = list(QUESTION)
    sets = {m: rows.loc[rows["model"] == m, keys].drop_duplicates() for m in (model_a, model_b)}
    out = []
    for has, lacks in ((model_a, model_b), (model_b, model_a)):
        only = sets[has].merge(sets[lacks], on=keys, how="left", indicator=True)
        only = only[only["_merge"] == "left_only"].drop(columns="_merge")
        out.append(only.assign(model_with_rows=has))
    return pd.concat(out, ignore_index=True)


def _check_missing(rows: pd.DataFrame, model_a: str, model_b: str, missing: str) -> None:
    if missing not in MISSING_QUESTIONS:
        raise ValueError(f"missing_questions must be one of {MISSING_QUESTIONS}, got {missing!r}")
    if missing == "drop":
        return
    lacking = unpaired_questions(rows, model_a, model_b)
    if len(lacking):
        examples = ", ".join(f"{r.task}/{r.prompt_id} (only {r.model_with_rows})"
                             for r in lacking.head(5).itertuples())
        raise ValueError(f"scores: {len(lacking)} question(s) have rows for only one of "
                         f"{model_a!r} and {model_b!r}, e.g. {examples}; the mean difference "
                         "over questions would silently leave them out. Complete the run, or "
                         "pass missing_questions='drop' to compare on the shared questions")


def mean_difference(scores, model_a: str, model_b: str, *, mode: str = "coupled",
                    coupling: str | None = None, alpha: float = 0.05,
                    identical: bool = False, missing_questions: str = "error"
                    ) -> MeanDifference:
    """Mean difference ``model_a - model_b`` with a question-clustered ``1 - alpha`` CI and test.

    ``scores``: a scores DataFrame or a path (file, shard folder, output dir).
    ``identical=True`` asserts the two models are the same (same weights, same sampler): only
    then is the interval ``[0, 0]`` (an error if any paired row differs) — it is never inferred
    from the data. ``missing_questions``: ``"error"`` (default) when a question has rows for
    one model only, naming them; ``"drop"`` compares on the questions both have.
    """
    scores = read_scores(scores)
    rows, coupling = _select(scores, mode, coupling)
    a, b, mask, _ = paired_arrays(rows, model_a, model_b, mode, coupling)
    _check_missing(rows, model_a, model_b, missing_questions)
    return _mean_difference_from_arrays(a, b, mask, model_a=model_a, model_b=model_b,
                                        mode=mode, coupling=coupling, alpha=alpha,
                                        identical=identical)


def mean_difference_replicates(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None,
                               alpha: float = 0.05) -> PairedInterval:
    """Array core of :func:`mean_difference` for replicated designs ``(R, Q, S)``.

    Returns a :class:`~coupled.analysis.intervals.PairedInterval` of arrays (estimate, CI and
    the p-value of the test it inverts, per replicate); the DataFrame API gives the same
    numbers (tested).
    """
    return paired_score_interval(a, b, mask, alpha=alpha)


# ----------------------------------------------------------------------------- per question
def question_statistics(scores, model_a: str, model_b: str, *, mode: str = "coupled",
                        coupling: str | None = None) -> pd.DataFrame:
    """Per-question moments of the pair (the data of the paper's Fig. 2a/2b).

    Columns: ``task, prompt_id[, subject], n_seeds, mean_a, mean_b, mean_diff, var_a, var_b,
    cov, var_diff, var_diff_independent`` — ``var_diff`` is the within-question variance of the
    difference in this mode, ``var_diff_independent = var_a + var_b`` what it would be under
    independent generation (equal to ``var_diff`` in independent data, in expectation).
    Variances use ddof = 1 and are NaN-free: 0 for single-seed questions (``n_seeds == 1``).
    """
    scores = read_scores(scores)
    a, b, mask, questions = paired_arrays(scores, model_a, model_b, mode, coupling)
    m = question_moments(a, b, mask)
    out = questions.drop(columns="n_rows").copy()
    out["n_seeds"] = m.n.astype(int)
    for name in ("mean_a", "mean_b", "mean_diff", "var_a", "var_b", "cov", "var_diff"):
        out[name] = getattr(m, name)
    out["var_diff_independent"] = m.var_diff_if_independent
    return out


# ----------------------------------------------------------------------------- variance ratio
@dataclass(frozen=True)
class VarianceReduction:
    """Var_coupled / Var_independent of one row's difference, and the saving ``1 - ratio``.

    ``independent_source``: ``"measured"`` (an independent run of the same questions) or
    ``"from_coupled"`` (``Var(R_a) + Var(R_b)`` within questions of the coupled run).
    ``var_coupled``, ``var_independent``: the unbiased totals (:func:`totals_from_sums`);
    ``between = var_coupled - within_coupled`` (unclipped, so it can be slightly negative in
    small samples). ``ratio``: ``var_coupled / var_independent`` less its jackknife bias; the
    CI is the jackknife interval of the log ratio (:func:`variance_ratio_from_moments`).
    ``within_ratio`` is the ratio of the mean within-question variances alone (Fig. 2b; the
    saving when adding seeds to a fixed set of questions).
    """

    model_a: str
    model_b: str
    coupling: str
    independent_source: str
    n_questions: int
    var_coupled: float
    var_independent: float
    between: float
    within_coupled: float
    within_independent: float
    ratio: float
    ratio_ci_low: float
    ratio_ci_high: float
    saving: float
    saving_ci_low: float
    saving_ci_high: float
    within_ratio: float
    note: str = ""

    def confidence_interval(self) -> ConfidenceInterval:
        """The CI of ``ratio`` (the saving's is ``1 - high, 1 - low``)."""
        return ConfidenceInterval(self.ratio_ci_low, self.ratio_ci_high)


_BOOTSTRAP_CELLS = 2**22  # bootstrap counts held at once (32 MB): memory O(chunk × Q)


def bca_ratio_interval(features: np.ndarray, level: float, n_resamples: int,
                       rng: np.random.Generator, statistic) -> tuple[float, float]:
    """BCa bootstrap interval over questions for a statistic of summed per-question features.

    Used by the error curves' question-unit saving (``coupled.analysis.errorcurve``); the
    variance ratio itself has the jackknife interval of :func:`variance_ratio_from_moments`.
    ``features`` ``(Q, k)``: per-question features; ``statistic``: a function of their sums
    over questions (last axis ``k``; leading axes are resamples). Written
    here rather than with ``scipy.stats.bootstrap`` because the statistic is a function of
    weighted sums: a resample is a row of multinomial counts (one matrix product) and the
    jackknife is a subtraction, O(Q) instead of scipy's O(Q²) — 14 000 questions would take
    minutes there. The BCa formulas are Efron & Tibshirani (1993, §14.3), as in scipy.
    Needs at least ``MIN_RATIO_QUESTIONS`` questions (a clear error below, never an internal
    percentile failure).
    """
    n_questions = len(features)
    if n_questions < MIN_RATIO_QUESTIONS:
        raise ValueError(f"scores: {n_questions} questions; a bootstrap interval for the "
                         f"variance ratio needs at least {MIN_RATIO_QUESTIONS}")
    total = features.sum(axis=0)
    estimate = statistic(total)
    chunk = max(1, _BOOTSTRAP_CELLS // n_questions)
    boot = np.empty(n_resamples)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        # Resampled questions as counts (same law as the multinomial, much faster to draw)
        rows = stop - start
        drawn = rng.integers(0, n_questions, size=(rows, n_questions))
        drawn += np.arange(rows)[:, None] * n_questions
        counts = np.bincount(drawn.ravel(), minlength=rows * n_questions)
        counts = counts.reshape(rows, n_questions).astype(float)
        boot[start:stop] = statistic(counts @ features)
    jackknife = statistic(total - features)
    deviation = jackknife.mean() - jackknife
    spread = np.sum(deviation**2)
    acceleration = np.sum(deviation**3) / (6.0 * spread**1.5) if spread > 0 else 0.0
    share_below = np.mean(boot < estimate)
    if share_below in (0.0, 1.0):  # no bias correction possible: all resamples on one side
        return float(boot.min()), float(boot.max())
    z0 = stats.norm.ppf(share_below)
    alpha = 1.0 - level
    z = stats.norm.ppf([alpha / 2.0, 1.0 - alpha / 2.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        adjusted = stats.norm.cdf(z0 + (z0 + z) / (1.0 - acceleration * (z0 + z)))
    if not np.all(np.isfinite(adjusted)):  # extreme acceleration: fall back to percentiles
        adjusted = np.array([alpha / 2.0, 1.0 - alpha / 2.0])
    low, high = np.percentile(boot, 100.0 * np.clip(adjusted, 0.0, 1.0))
    return float(low), float(high)


MIN_RATIO_QUESTIONS = 6

# Floor, in single-seed questions that differ, on the variance of the coupled total's
# single-seed part (see variance_ratio_from_moments). Chosen on the coverage cells of
# tests/test_variance_ratio_unbalanced.py (bench/analysis_benchmark.md, "Variance ratio under
# unbalanced seeds"; 2000 replicates per cell): with no floor the 1-or-20-seed designs tied to
# difficulty cover 89-92 % at 100 questions, with 0.15 93.0-93.9 %, with 0.3 95.1-95.5 %. At 30
# questions any floor > 0 gives the same coverage (the replicates it rescues are those where no
# single-seed question differs) and a larger one only widens. Designs without single-seed
# questions are unaffected.
SINGLE_SEED_FLOOR = 0.3


def expanded_level(level: float, n: int) -> float:
    """Nominal level for a bootstrap interval over ``n`` clusters, expanded for small samples.

    Bootstrap intervals are too narrow in small samples (they use the plug-in variance, ddof 0,
    and normal rather than t tails). Hesterberg's expanded percentile interval ("What teachers
    should know about the bootstrap", Am. Stat. 2015) corrects both by asking for the level
    whose normal quantile is ``sqrt(n / (n - 1)) * t_{n-1}``. Written here because no library
    has it; the error curves' saving interval (``coupled.analysis.errorcurve``) uses it.
    """
    alpha = 1.0 - level
    z = np.sqrt(n / (n - 1.0)) * stats.t.ppf(1.0 - alpha / 2.0, n - 1)
    return float(1.0 - 2.0 * stats.norm.sf(z))


def _total_terms(m: QuestionMoments, scale: float) -> list[np.ndarray]:
    """Per-question terms of the unbiased total variance of one row's difference: question
    mean, its square, and the within variance a question's mean of ``D²`` adds to its squared
    mean, ``var_diff (1 - 1/n)`` (0 with one seed)."""
    mean = m.mean_diff / scale
    return [mean, mean**2, m.var_diff / scale**2 * (1.0 - 1.0 / np.maximum(m.n, 1.0))]


def ratio_features(coupled: QuestionMoments, independent: QuestionMoments | None,
                   scale: float = 1.0) -> np.ndarray:
    """Per-question terms ``(Q, 9)`` whose sums give both totals (:func:`totals_from_sums`), so
    the jackknife is one subtraction (O(Q)). Columns: 1, then the coupled
    :func:`_total_terms`, then for the independent total either the measured run's terms
    (``independent`` given; columns 4-5 zero) or, from coupled rows, the indicator of a
    question with >= 2 seeds and its within-question covariance (columns 6-8 zero)."""
    spread = coupled.has_spread.astype(float)
    zero = np.zeros_like(spread)
    columns = [np.ones_like(spread), *_total_terms(coupled, scale)]
    if independent is None:
        columns += [spread, spread * coupled.cov / scale**2, zero, zero, zero]
    else:
        columns += [zero, zero, *_total_terms(independent, scale)]
    return np.stack(columns, axis=-1)


def totals_from_sums(sums: np.ndarray, measured: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(coupled, independent)`` total variance of one row's difference from summed
    :func:`ratio_features`.

    Each total is ``s²(question means) + mean over questions of var_diff (1 - 1/n)``, i.e.
    ``mean_q(mean over q's seeds of D²) - (mean² - s²/Q)``: unbiased whatever the number of
    seeds per question, one included, because a question's mean of ``D²`` is unbiased for
    ``E[D² | q]`` — no variance is imputed to single-seed questions and nothing is clipped
    (the clipped ``between`` of
    :func:`coupled.analysis._clustered.components_from_sums` biased the ratio by +10-25 % with
    1-or-20 seeds). From coupled rows alone the independent total is the coupled one plus
    twice the mean within-question covariance of the questions with >= 2 seeds: unbiased when
    the seed count does not depend on the question.
    """
    q = sums[..., 0]

    def total(first: int) -> np.ndarray:
        mean_sum, square_sum, within_sum = (sums[..., first + i] for i in range(3))
        spread = (square_sum - mean_sum**2 / q) / (q - 1.0)
        # >= 0 in exact arithmetic (a variance plus variances): clip rounding only
        return np.maximum(spread + within_sum / q, 0.0)

    coupled = total(1)
    if measured:
        return coupled, total(6)
    with np.errstate(divide="ignore", invalid="ignore"):
        return coupled, coupled + 2.0 * sums[..., 5] / sums[..., 4]


def _score_range_squared(moments: tuple[QuestionMoments, ...], scale: float) -> float:
    """Squared range of the question means (in units of ``scale``): the size of one
    single-seed question's difference ``D²`` when its two models disagree."""
    highs = [float(np.max(np.maximum(m.mean_a, m.mean_b))) for m in moments]
    lows = [float(np.min(np.minimum(m.mean_a, m.mean_b))) for m in moments]
    return ((max(highs) - min(lows)) / scale) ** 2


def variance_ratio_from_moments(coupled: QuestionMoments,
                                independent: QuestionMoments | None = None, *,
                                alpha: float = 0.05,
                                score_range: tuple[float, float] = (0.0, 1.0)
                                ) -> dict[str, float]:
    """Array core of :func:`variance_reduction` on aligned per-question moments (1-D, Q).

    ``independent=None`` estimates the independent variance from the coupled moments.
    ``score_range``: ``(low, high)`` of the scores (default: on ``[0, 1]``), the unit of the
    degenerate case's score bound. Returns a dict of the :class:`VarianceReduction` numeric fields plus ``note``.

    Estimate: the ratio ``r`` of the unbiased totals (:func:`totals_from_sums`) less the
    jackknife's estimate of its ratio bias, ``Q r - (Q - 1) mean_q r_(-q)``, kept inside the
    interval. Interval: ``log r ± t_{Q-1} × SE``, exponentiated, with ``SE`` the jackknife SE of
    ``log r`` (leave-one-question-out; O(Q): one subtraction of :func:`ratio_features` —
    written here, as scipy has no public jackknife and recomputing Q statistics is O(Q²)). The
    single-seed questions' part of the coupled total is a count of rare events (a question run
    once differs or not); when almost none differs the jackknife cannot see how much that part
    could be, so its variance is floored at ``SINGLE_SEED_FLOOR`` differing questions. Where
    the jackknife is undefined (no coupled variance, one question holding all of one total,
    or no question moving the ratio; the note says which side) the interval is 0 to a
    one-sided score bound on the coupled variance over the independent one, in units of the
    squared score range (:func:`~coupled.analysis.intervals.unit_range` of ``score_range``,
    so the same whatever the unit of the scores); it needs
    ``alpha < 0.5``. A ratio that cannot be estimated is a ``ValueError``, never a zero-width
    interval: neither mode varying (0/0), or a non-positive independent total.
    Calibration: tests/test_variance_ratio_unbalanced.py and bench/analysis_benchmark.md.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    n_questions = len(coupled.n)
    measured = independent is not None
    source = independent if measured else coupled
    for name, moments in (("the coupled run", coupled), ("the independent run", source)):
        if not np.any(moments.has_spread):
            raise ValueError(f"scores: one seed per question in {name}: the within-question "
                             "variances, and so the variance ratio, cannot be estimated; run "
                             "at least 2 seeds on some questions")
    if n_questions < MIN_RATIO_QUESTIONS:
        raise ValueError(f"scores: {n_questions} questions; an interval for the variance ratio "
                         f"needs at least {MIN_RATIO_QUESTIONS}")
    if min(np.sum(coupled.has_spread), np.sum(source.has_spread)) < 2:
        raise ValueError("scores: only 1 question has >= 2 seeds: the within-question "
                         "variances, and so the variance ratio's interval, need at least 2")
    # The ratio does not depend on the unit: work in units of the largest spread of the
    # scores, so squares of huge scores cannot overflow.
    both = (coupled, source)
    spreads = [np.abs(m.mean_diff) for m in both] + [np.sqrt(m.var_a) for m in both] \
        + [np.sqrt(m.var_b) for m in both]
    scale = float(max(np.max(v) for v in spreads))
    # a power of 2, so rescaling is exact: the coupled total is the same number whichever
    # independent source sets the scale
    scale = 2.0 ** np.ceil(np.log2(scale)) if np.isfinite(scale) and scale > 0 else 1.0
    features = ratio_features(coupled, independent, scale)
    sums = features.sum(axis=0)
    total_c, total_i = (float(t) for t in totals_from_sums(sums, measured))
    within_c = float(np.mean(coupled.var_diff[coupled.has_spread]))
    within_i = float(np.mean((source.var_diff if measured else source.var_diff_if_independent)
                             [source.has_spread]))
    if total_i <= 0 and total_c <= 0:
        raise ValueError("scores: the difference varies in neither mode (e.g. one model always "
                         "right and the other always wrong): the variance ratio is 0/0 and "
                         "cannot be estimated; the mean differences stand")
    if total_i <= 0:
        raise ValueError(
            "scores: the independent variance "
            + ("of the measured independent run is 0 while the coupled one is not"
               if measured else "estimated from coupled rows is not positive (strongly "
               "negative within-question covariances on few questions)")
            + ": the variance ratio cannot be estimated; "
            + ("run more questions" if measured else "add an independent run"))
    note = ""
    ratio = total_c / total_i
    leave_one_out_c, leave_one_out_i = totals_from_sums(sums - features, measured)
    with np.errstate(divide="ignore", invalid="ignore"):
        # -inf or NaN where a left-out question held all of one total
        leave_one_out = np.log(leave_one_out_c / leave_one_out_i)
        deviation = leave_one_out - leave_one_out.mean()
    variance = (n_questions - 1.0) / n_questions * np.sum(deviation**2)
    # below 1e-10 relative width the spread is rounding, not data
    if ratio > 0 and np.isfinite(variance) and variance > 1e-20:
        single = coupled.n == 1
        unit = _score_range_squared(both, scale)
        if np.any(single) and unit > 0:
            differing = float(np.sum(features[single, 2])) / unit
            slope = 1.0 / total_c - (0.0 if measured else 1.0 / total_i)  # d log r / d total_c
            variance += (slope * unit / n_questions) ** 2 \
                * max(SINGLE_SEED_FLOOR - differing, 0.0)
        half = stats.t.isf(alpha / 2.0, n_questions - 1) * np.sqrt(variance)
        low, high = float(ratio * np.exp(-half)), float(ratio * np.exp(half))
        jackknife_bias = (n_questions - 1) * (np.exp(leave_one_out).mean() - ratio)
        ratio = float(np.clip(ratio - jackknife_bias, low, high))
    else:
        # Nothing to jackknife. The upper bound is what the coupled rows cannot rule out: a
        # one-sided score bound on the mean over questions of E[D^2 | q] (>= the coupled
        # total), over the independent total.
        if alpha >= 0.5:
            raise ValueError(f"alpha = {alpha}: where the jackknife is degenerate the variance "
                             "ratio's upper end is a one-sided bound at level 1 - alpha, which "
                             "needs alpha < 0.5")
        from coupled.analysis.accuracy import score_interval

        mean_square = features[:, 2] + features[:, 3]  # a question's mean of D^2 over its seeds
        # |D| is at most the score range: in its square's units each mean of D^2 is in [0, 1]
        # as the score bound needs (the max only guards a score_range narrower than the data)
        unit = max((unit_range(*score_range)[1] / scale) ** 2, float(np.max(mean_square)))
        bound = score_interval((mean_square / unit)[:, None], None, alpha=2 * alpha)
        low, high = 0.0, max(ratio, float(bound.ci_high) * unit / total_i)
        causes = []
        if total_c <= 0:
            causes.append("the coupled difference is the same on every row")
        elif np.any(leave_one_out_c <= 0):
            causes.append("coupled side: one question holds all the coupled variance")
        if np.any(~(leave_one_out_i > 0) | ~np.isfinite(leave_one_out_i)):
            causes.append("independent side: leaving out a question leaves no positive "
                          "independent variance")
        if not causes:
            causes.append("leaving out any question gives the same ratio")
        note = (f"jackknife degenerate ({'; '.join(causes)}): the interval is 0 to the "
                "coupled variance's one-sided score bound over the independent variance")
    var_c, var_i = total_c * scale**2, total_i * scale**2
    return dict(n_questions=n_questions, var_coupled=var_c, var_independent=var_i,
                between=var_c - within_c, within_coupled=within_c,
                within_independent=within_i, ratio=ratio, ratio_ci_low=low,
                ratio_ci_high=high, saving=1.0 - ratio, saving_ci_low=1.0 - high,
                saving_ci_high=1.0 - low,
                within_ratio=within_c / within_i if within_i > 0 else 1.0, note=note)


def variance_reduction(scores, model_a: str, model_b: str, *, coupling: str | None = None,
                       independent: str = "auto", alpha: float = 0.05
                       ) -> VarianceReduction:
    """Variance-reduction ratio of coupled over independent generation, with a 1 - alpha CI.

    ``independent``: ``"measured"`` (needs independent rows of the same questions),
    ``"from_coupled"`` (coupled rows only), or ``"auto"`` (measured when present).

    Estimand: ``Var_coupled(D) / Var_independent(D)`` for one row's difference at a random
    question (every question weighs the same) and seed. Estimate and interval
    (:func:`variance_ratio_from_moments`): unbiased totals whatever the seeds per question, the
    ratio less its jackknife bias, and ``log ratio ± t_{Q-1} × jackknife SE``. Calibrated
    (94-97 % at 100 questions, 94-99 % at 30; bench/analysis_benchmark.md) with balanced seeds,
    with seed counts assigned independently of the questions, and with a measured independent
    run in any design. From coupled rows alone with unequal seed counts the ratio assumes the
    seed count does not depend on the question (not identifiable otherwise): a warning says so.
    Refused with a clear error: one seed per question, fewer than 6 questions, fewer than 2
    questions with >= 2 seeds, a difference that varies in neither mode (0/0), ``alpha``
    outside (0, 1) (or >= 0.5 where the jackknife is degenerate). Deterministic: nothing is
    resampled.
    """
    return _variance_reduction(read_scores(scores), model_a, model_b, coupling=coupling,
                               independent=independent, alpha=alpha)


def _variance_reduction(scores: pd.DataFrame, model_a: str, model_b: str, *,
                        coupling: str | None, independent: str, alpha: float
                        ) -> VarianceReduction:
    """:func:`variance_reduction` on an already validated table."""
    if independent not in ("auto", "measured", "from_coupled"):
        raise ValueError("independent must be 'auto', 'measured' or 'from_coupled', "
                         f"got {independent!r}")
    coupled_rows, coupling = _select(scores, "coupled", coupling)
    a, b, mask, questions = paired_arrays(coupled_rows, model_a, model_b, "coupled", coupling)
    independent_rows = scores[(scores["mode"] == "independent")
                              & (scores["coupling"] == coupling)]
    has_independent = {model_a, model_b} <= set(independent_rows["model"])
    if independent == "auto":
        independent = "measured" if has_independent else "from_coupled"
    coupled_m = question_moments(a, b, mask)
    observed = np.concatenate([a[mask], b[mask]])
    independent_m = None
    seeds_per_question = mask.sum(axis=-1)
    if independent == "from_coupled" and seeds_per_question.min() != seeds_per_question.max():
        # Measured (bench/analysis_benchmark.md, "Variance ratio under unbalanced seeds"):
        # from coupled rows alone the independent variance needs the within-question
        # covariance, which questions run once do not show; when seed counts depend on the
        # question no estimator is unbiased (-47 % / +26 % on the two test populations with
        # 1-or-20 seeds tied to difficulty). Say so rather than stay silent.
        warnings.warn(
            f"{model_a} vs {model_b}: the independent variance comes from coupled rows, and "
            f"questions have unequal seed counts ({int(seeds_per_question.min())}–"
            f"{int(seeds_per_question.max())}); the variance ratio assumes the seed count does "
            f"not depend on the question (it can be off by ±50 % otherwise) — add an "
            f"independent run for a measured ratio", stacklevel=3)
    if independent == "measured":
        ia, ib, imask, iq = paired_arrays(scores, model_a, model_b, "independent", coupling)
        keys = list(QUESTION)
        order = questions[keys].reset_index().merge(iq[keys].reset_index(), on=keys,
                                                    suffixes=("_c", "_i"))
        if len(order) < 2:
            raise ValueError("scores: fewer than 2 questions have both coupled and independent "
                             f"rows for {model_a!r} vs {model_b!r}")
        ci, ii = order["index_c"].to_numpy(), order["index_i"].to_numpy()
        coupled_m = question_moments(a[ci], b[ci], mask[ci])
        independent_m = question_moments(ia[ii], ib[ii], imask[ii])
        observed = np.concatenate([observed, ia[imask], ib[imask]])
    numbers = variance_ratio_from_moments(coupled_m, independent_m, alpha=alpha,
                                          score_range=(observed.min(), observed.max()))
    return VarianceReduction(model_a=model_a, model_b=model_b, coupling=coupling,
                             independent_source=independent, **numbers)


# ----------------------------------------------------------------------------- whole table
@dataclass(frozen=True)
class BenchmarkComparison:
    """Tidy results of :func:`compare_models`.

    ``differences``: one row per (coupling, mode, pair[, subject]) with the
    :class:`MeanDifference` fields plus ``mean_var_diff`` and ``mean_var_diff_independent``
    (mean over questions of the within-question variances) and ``mean_cov``.
    ``variance_reduction``: one row per (coupling, pair[, subject]) with the
    :class:`VarianceReduction` fields (empty when the run has no coupled rows).
    """

    differences: pd.DataFrame
    variance_reduction: pd.DataFrame


def compare_models(scores, *, alpha: float = 0.05, models: list[str] | None = None,
                   by_subject: bool = False,
                   missing_questions: str = "error") -> BenchmarkComparison:
    """Every pair of models (``model_a < model_b``), every mode and coupling present.

    ``by_subject=True`` adds one row per subject (needs the ``subject`` column) besides the
    overall row (``subject == "(all)"``). ``missing_questions`` as in :func:`mean_difference`
    (checked once on the whole table, per mode and coupling).
    """
    scores = read_scores(scores)
    if by_subject and "subject" not in scores.columns:
        raise ValueError("scores: by_subject needs a 'subject' column, which this table lacks")
    present = sorted(scores["model"].unique())
    models = present if models is None else list(models)
    unknown = sorted(set(models) - set(present))
    if unknown:
        raise ValueError(f"models: {unknown} not in the scores table (present: {present})")
    if len(models) < 2:
        raise ValueError(f"scores: need at least 2 models to compare, found {models}")
    groups = [("(all)", scores)]
    if by_subject:
        groups += [(str(s), g) for s, g in scores.groupby("subject", sort=True)]
    differences, reductions = [], []
    for subject, part in groups:
        # Split once per subject: the pair loop below only looks rows up.
        for coupling, in_coupling in part.groupby("coupling", sort=True):
            by_mode = dict(tuple(in_coupling.groupby("mode", sort=True)))
            models_by_mode = {mode: set(rows["model"]) for mode, rows in by_mode.items()}
            for model_a, model_b in itertools.combinations(sorted(models), 2):
                for mode, rows in by_mode.items():
                    if not {model_a, model_b} <= models_by_mode[mode]:
                        continue
                    if subject == "(all)":
                        _check_missing(rows, model_a, model_b, missing_questions)
                    try:
                        a, b, mask, _ = paired_arrays(rows, model_a, model_b, mode, coupling)
                        m = question_moments(a, b, mask)
                        result = _mean_difference_from_arrays(
                            a, b, mask, model_a=model_a, model_b=model_b, mode=mode,
                            coupling=coupling, alpha=alpha)
                    except ValueError as error:
                        if subject == "(all)":
                            raise
                        # A subject too small for a CI is skipped, not fatal: say which.
                        warnings.warn(f"subject {subject!r}, {model_a} vs {model_b} ({mode}): "
                                      f"{error}", stacklevel=2)
                        continue
                    spread = m.has_spread
                    row = {"subject": subject, **asdict(result)}
                    for column, values in (("mean_cov", m.cov), ("mean_var_diff", m.var_diff),
                                           ("mean_var_diff_independent",
                                            m.var_diff_if_independent)):
                        row[column] = float(values[spread].mean()) if spread.any() else 0.0
                    differences.append(row)
                if {model_a, model_b} <= models_by_mode.get("coupled", set()):
                    try:
                        reduction = _variance_reduction(
                            in_coupling, model_a, model_b,
                            coupling=coupling, independent="auto", alpha=alpha)
                    except ValueError as error:
                        # A ratio that cannot be estimated (one seed per question, under
                        # MIN_RATIO_QUESTIONS questions) leaves the differences standing: say so.
                        warnings.warn(f"subject {subject!r}, {model_a} vs {model_b}: variance "
                                      f"ratio not estimated: {error}", stacklevel=2)
                        continue
                    reductions.append({"subject": subject, **asdict(reduction)})
    diff_frame = pd.DataFrame(differences)
    reduction_frame = pd.DataFrame(reductions)
    if not by_subject:
        diff_frame = diff_frame.drop(columns="subject")
        if len(reduction_frame):
            reduction_frame = reduction_frame.drop(columns="subject")
    return BenchmarkComparison(differences=diff_frame, variance_reduction=reduction_frame)
