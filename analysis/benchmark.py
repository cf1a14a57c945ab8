"""Benchmark comparisons from a ``scores`` table: paired mean differences, tests, variances.

Estimand of :func:`mean_difference`: the mean over questions of each question's expected score
difference ``E[R_a - R_b | question]`` — every question weighs the same whatever its number of
seeds (the usual benchmark accuracy, and what a balanced run estimates anyway). Estimator: the
mean of per-question mean differences; SE clustered by question (``coupled.analysis._clustered``).
A row-weighted estimand would let questions with more seeds count more, which no benchmark
intends; with a balanced design the two coincide.

Interval and test (``coupled.analysis.intervals``): a score-type interval that holds when the
paired differences are rare (coupled runs agree on almost every row): Tango's score interval
with one binary seed per question — its test is the uncorrected McNemar test — and the same
score interval on effective counts, with t on ``Q - 1`` degrees of freedom, otherwise. The
p-value is always the test the interval inverts, so ``p < alpha`` exactly when 0 lies outside
the interval; no interval is zero-width unless the caller asserts ``identical=True``. Plain
McNemar on all rows of a multi-seed run treats correlated rows as independent and
over-rejects (tests/test_analysis_benchmark.py shows it), so it is never used there.

Variance reduction (Prop. 1, with DESIGN's per-prompt correction): the variance of one row's
difference (random question, random seed) is ``between + within_mode``; the between-question
part is the same in both modes, so the coupled/independent ratio of these totals is the
fraction of rows coupled generation needs for the same precision when rows are sampled at
random (the paper's setting), and ``1 - ratio`` the saving. The independent within-question
variance can be *estimated from a coupled run alone*: ``Var(R_a) + Var(R_b)`` across seeds,
because each model's marginal law does not depend on the mode.
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
    N_COMPONENT_FEATURES,
    QUESTION,
    QuestionMoments,
    component_features,
    components_from_sums,
    pad_by_question,
    question_moments,
)
from coupled.analysis.intervals import PairedInterval, paired_score_interval
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
    ``"from_coupled"`` (``Var(R_a) + Var(R_b)`` within questions of the coupled run). The CI
    is a BCa bootstrap over questions (:func:`bca_ratio_interval`) at Hesterberg's expanded level
    (:func:`expanded_level`). ``within_ratio`` is the ratio
    of the mean within-question variances alone (Fig. 2b; the saving when adding seeds to a
    fixed set of questions).
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
        """The BCa bootstrap CI of ``ratio`` (the saving's is ``1 - high, 1 - low``)."""
        return ConfidenceInterval(self.ratio_ci_low, self.ratio_ci_high)


_BOOTSTRAP_CELLS = 2**22  # bootstrap counts held at once (32 MB): memory O(chunk × Q)


def _ratio_from_sums(sums: np.ndarray) -> np.ndarray:
    """Coupled / independent total variance from summed features (last axis: both modes)."""
    top = sum(components_from_sums(sums[..., :N_COMPONENT_FEATURES]))
    bottom = sum(components_from_sums(sums[..., N_COMPONENT_FEATURES:]))
    return np.divide(top, bottom, out=np.ones_like(top), where=bottom > 0)


def bca_ratio_interval(features: np.ndarray, level: float, n_resamples: int,
                       rng: np.random.Generator, statistic=None) -> tuple[float, float]:
    """BCa bootstrap interval over questions for the variance ratio.

    ``features`` ``(Q, 16)``: coupled then independent :func:`component_features`
    (``statistic``: a function of summed features, default the variance ratio). Written
    here rather than with ``scipy.stats.bootstrap`` because the statistic is a function of
    weighted sums: a resample is a row of multinomial counts (one matrix product) and the
    jackknife is a subtraction, O(Q) instead of scipy's O(Q²) — 14 000 questions would take
    minutes there. The BCa formulas are Efron & Tibshirani (1993, §14.3), as in scipy.
    Needs at least ``MIN_RATIO_QUESTIONS`` questions (a clear error below, never an internal
    percentile failure).
    """
    statistic = _ratio_from_sums if statistic is None else statistic
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


def expanded_level(level: float, n: int) -> float:
    """Nominal level for a bootstrap interval over ``n`` clusters, expanded for small samples.

    Bootstrap intervals are too narrow in small samples (they use the plug-in variance, ddof 0,
    and normal rather than t tails). Hesterberg's expanded percentile interval ("What teachers
    should know about the bootstrap", Am. Stat. 2015) corrects both by asking for the level
    whose normal quantile is ``sqrt(n / (n - 1)) * t_{n-1}``. Written here because no library
    has it; the coverage tests (tests/test_coverage_benchmark.py) show its effect.
    """
    alpha = 1.0 - level
    z = np.sqrt(n / (n - 1.0)) * stats.t.ppf(1.0 - alpha / 2.0, n - 1)
    return float(1.0 - 2.0 * stats.norm.sf(z))


def variance_ratio_from_moments(coupled: QuestionMoments,
                                independent: QuestionMoments | None = None, *,
                                alpha: float = 0.05, n_resamples: int = 1999,
                                rng: np.random.Generator | int | None = 0,
                                ) -> dict[str, float]:
    """Array core of :func:`variance_reduction` on aligned per-question moments (1-D, Q).

    ``independent=None`` estimates the independent variance from the coupled moments.
    Returns a dict of the :class:`VarianceReduction` numeric fields plus ``note``.
    """
    if independent is None:
        source = coupled
        noise_i, w_i = coupled.var_diff, coupled.var_diff_if_independent
    else:
        source = independent
        noise_i = w_i = independent.var_diff
    m_i, n_i = source.mean_diff, source.n
    features_c = component_features(coupled.mean_diff, coupled.var_diff, coupled.var_diff,
                                    coupled.n, coupled.present, coupled.has_spread)
    features_i = component_features(m_i, noise_i, w_i, n_i, n_i >= 1, n_i >= 2)
    between_c, within_c = components_from_sums(features_c.sum(axis=0))
    between_i, within_i = components_from_sums(features_i.sum(axis=0))
    var_c, var_i = float(between_c + within_c), float(between_i + within_i)
    note = ""
    if not (np.any(coupled.n >= 2) and np.any(n_i >= 2)):
        raise ValueError("scores: one seed per question in "
                         + ("the coupled run" if not np.any(coupled.n >= 2) else
                            "the independent run")
                         + ": the within-question variances, and so the variance ratio, cannot "
                         "be estimated; run at least 2 seeds on some questions")
    if var_i <= 0:
        ratio, low, high = 1.0, 1.0, 1.0
        note += "no variance in either mode (ratio set to 1, saving 0)"
    else:
        ratio = var_c / var_i
        level = expanded_level(1 - alpha, len(coupled.n))
        low, high = bca_ratio_interval(np.concatenate([features_c, features_i], axis=1),
                                       level, n_resamples, np.random.default_rng(rng))
        if low == high:
            # Every resample gave the same ratio (no coupled difference seen): the upper bound
            # is what the coupled rows cannot rule out, a one-sided score bound on E[D^2].
            from coupled.analysis.accuracy import score_interval

            bound = score_interval(np.clip(coupled.var_diff + coupled.mean_diff**2, 0, 1)
                                   [:, None], None, alpha=2 * alpha)
            high = max(high, float(bound.ci_high) / var_i)
            note += ("bootstrap distribution degenerate: the upper bound is the coupled "
                     "variance's one-sided score bound over the independent variance")
    within_ratio = float(within_c / within_i) if within_i > 0 else 1.0
    return dict(n_questions=len(coupled.n), var_coupled=var_c, var_independent=var_i,
                between=float(between_c), within_coupled=float(within_c),
                within_independent=float(within_i), ratio=ratio, ratio_ci_low=low,
                ratio_ci_high=high, saving=1.0 - ratio, saving_ci_low=1.0 - high,
                saving_ci_high=1.0 - low, within_ratio=within_ratio, note=note.strip())


def variance_reduction(scores, model_a: str, model_b: str, *, coupling: str | None = None,
                       independent: str = "auto", alpha: float = 0.05,
                       n_resamples: int = 1999, seed: int | np.random.Generator | None = 0
                       ) -> VarianceReduction:
    """Variance-reduction ratio of coupled over independent generation, with a bootstrap CI.

    ``independent``: ``"measured"`` (needs independent rows of the same questions),
    ``"from_coupled"`` (coupled rows only), or ``"auto"`` (measured when present).
    """
    return _variance_reduction(read_scores(scores), model_a, model_b, coupling=coupling,
                               independent=independent, alpha=alpha, n_resamples=n_resamples,
                               seed=seed)


def _variance_reduction(scores: pd.DataFrame, model_a: str, model_b: str, *,
                        coupling: str | None, independent: str, alpha: float, n_resamples: int,
                        seed) -> VarianceReduction:
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
    independent_m = None
    seeds_per_question = mask.sum(axis=-1)
    if independent == "from_coupled" and seeds_per_question.min() != seeds_per_question.max():
        # Measured on the coverage grid (bench/analysis_benchmark.md, "Variance ratio under
        # unbalanced seeds: open"): from coupled rows alone the independent variance needs the
        # within-question covariance, which questions run once do not show; when seed counts
        # depend on the question no estimator is unbiased. Say so rather than stay silent.
        warnings.warn(
            f"{model_a} vs {model_b}: the independent variance comes from coupled rows, and "
            f"questions have unequal seed counts ({int(seeds_per_question.min())}–"
            f"{int(seeds_per_question.max())}); the variance ratio assumes the seed count does "
            f"not depend on the question (it can be biased by 25 % otherwise) — add an "
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
    numbers = variance_ratio_from_moments(coupled_m, independent_m, alpha=alpha,
                                          n_resamples=n_resamples, rng=seed)
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
                   by_subject: bool = False, n_resamples: int = 1999, seed: int = 0,
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
                            coupling=coupling, independent="auto", alpha=alpha,
                            n_resamples=n_resamples, seed=seed)
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
