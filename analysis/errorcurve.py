"""Error of the estimated mean difference against the number of samples (the paper's Fig. 2c).

For each sample size ``n`` we draw ``n_resamples`` subsamples of the data and record the
absolute error ``|mean of the subsample - reference|``; the curve is the mean absolute error
with a 95 % interval for that mean (normal, over the resamples). Two units of subsampling:

* ``unit="question"`` (the statistically right unit): subsample *questions*, each carrying its
  mean difference over its seeds; the reference is the mean over all questions — the estimand
  of :func:`coupled.analysis.benchmark.mean_difference`.
* ``unit="row"`` (the paper's way): subsample paired rows ``(question, seed)`` as if they were
  independent; the reference is the mean over all rows (row-weighted; equal to the question
  estimand in balanced designs). Rows of one question are correlated, so these curves describe
  "random rows from a pool", not a benchmark of ``n`` questions.

By default subsamples are drawn *with* replacement, so the error of a size-``n`` mean of the
pool is exactly that of ``n`` i.i.d. draws: ``E|error| = c / sqrt(n)`` with
``c = sqrt(2 Var / pi)`` for large ``n``. Without replacement (``replace=False``, the paper's
sub-sampling) the finite-population correction applies: ``E|error| = c sqrt(1/n - 1/N)``.

"Coupled needs X % fewer samples to reach error e" follows from that law, with no threshold to
tune: fit ``c`` for each mode, then ``n(e) = (c / e)^2`` and the saving
``1 - n_coupled(e) / n_independent(e) = 1 - (c_coupled / c_independent)^2`` — the same for every
``e``. It is reported next to the theoretical saving ``1 - Var_coupled / Var_independent``.

Speed: values with few distinct levels (binary scores give differences in {-1, 0, 1}) are
subsampled through multinomial (with replacement) or multivariate hypergeometric (without)
counts — exactly the same law as drawing indices, at O(levels) per resample; other values use
chunked prefix sums over one random index stream per resample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from coupled.analysis._clustered import QUESTION, question_moments
from coupled.analysis.benchmark import (
    MIN_RATIO_QUESTIONS,
    _variance_reduction,
    bca_ratio_interval,
    expanded_level,
    paired_arrays,
)
from coupled.tables import MODES, read_scores

_MAX_LEVELS = 64  # beyond this many distinct values, index sampling beats counting
_CHUNK_CELLS = 2**24  # cells per chunk of the index path (about 130 MB of float64)


def default_sizes(n_total: int, n_sizes: int = 20) -> np.ndarray:
    """A geometric grid of sample sizes from ``min(10, N)`` to ``N``."""
    if n_total < 2:
        raise ValueError(f"need at least 2 samples for an error curve, got {n_total}")
    return np.unique(np.geomspace(min(10, n_total), n_total, n_sizes).astype(int))


def subsample_mean_errors(values: np.ndarray, sizes: np.ndarray, n_resamples: int = 1000,
                          reference: float | None = None, *, replace: bool = True,
                          rng: np.random.Generator | int | None = 0) -> np.ndarray:
    """Absolute errors ``|mean(subsample of size n) - reference|``, shape (len(sizes), B).

    ``reference`` defaults to the mean of ``values`` (the full-data estimate).
    """
    rng = np.random.default_rng(rng)
    values = np.asarray(values, dtype=float).ravel()
    sizes = np.asarray(sizes, dtype=np.int64)
    n_total = len(values)
    if n_total < 2:
        raise ValueError(f"values: need at least 2 samples, got {n_total}")
    if sizes.ndim != 1 or len(sizes) == 0 or sizes.min() < 1:
        raise ValueError("sizes must be a non-empty 1-D array of positive integers")
    if not replace and sizes.max() > n_total:
        raise ValueError(f"sizes: without replacement a size cannot exceed {n_total} samples")
    if n_resamples < 2:
        raise ValueError(f"n_resamples must be at least 2, got {n_resamples}")
    if reference is None:
        reference = float(values.mean())
    levels, counts = np.unique(values, return_counts=True)
    sums = np.empty((len(sizes), n_resamples))
    if len(levels) <= _MAX_LEVELS:
        for i, n in enumerate(sizes):
            if replace:
                drawn = rng.multinomial(n, counts / n_total, size=n_resamples)
            else:
                drawn = rng.multivariate_hypergeometric(counts, n, size=n_resamples)
            sums[i] = drawn @ levels
    else:
        n_max = int(sizes.max())
        chunk = max(1, _CHUNK_CELLS // n_max)
        for start in range(0, n_resamples, chunk):
            stop = min(start + chunk, n_resamples)
            if replace:
                picked = values[rng.integers(0, n_total, size=(stop - start, n_max))]
            else:  # one permutation per resample (faster than Generator.permuted on 2-D)
                picked = np.stack([values[rng.permutation(n_total)[:n_max]]
                                   for _ in range(stop - start)])
            # Nested subsamples (prefixes of one stream) have the right law at each size.
            sums[:, start:stop] = np.cumsum(picked, axis=1)[:, sizes - 1].T
    return np.abs(sums / sizes[:, None] - reference)


def _curve_frame(errors: np.ndarray, sizes: np.ndarray, alpha: float, mode: str,
                 unit: str) -> pd.DataFrame:
    mean = errors.mean(axis=1)
    half = stats.norm.ppf(1 - alpha / 2) * errors.std(axis=1, ddof=1) / np.sqrt(errors.shape[1])
    return pd.DataFrame({"mode": mode, "unit": unit, "n": sizes, "mean_abs_error": mean,
                         "ci_low": mean - half, "ci_high": mean + half})


def _unit_values(a: np.ndarray, b: np.ndarray, mask: np.ndarray, unit: str) -> np.ndarray:
    if unit == "row":
        return (a - b)[mask]
    if unit == "question":
        return question_moments(a, b, mask).mean_diff
    raise ValueError(f"unit must be 'question' or 'row', got {unit!r}")


def error_curve(scores, model_a: str, model_b: str, *, mode: str = "coupled",
                unit: str = "question", sizes: np.ndarray | None = None,
                n_resamples: int = 1000, replace: bool = True, reference: float | None = None,
                coupling: str | None = None, alpha: float = 0.05,
                seed: int | np.random.Generator | None = 0) -> pd.DataFrame:
    """Mean absolute error of the estimated difference vs sample size, for one mode.

    Columns: ``mode, unit, n, mean_abs_error, ci_low, ci_high``. ``reference`` defaults to the
    full-data estimate (the paper's proxy for the truth); pass the truth when it is known.
    """
    a, b, mask, _ = paired_arrays(read_scores(scores), model_a, model_b, mode, coupling)
    values = _unit_values(a, b, mask, unit)
    sizes = default_sizes(len(values)) if sizes is None else np.asarray(sizes)
    errors = subsample_mean_errors(values, sizes, n_resamples, reference, replace=replace,
                                   rng=seed)
    frame = _curve_frame(errors, sizes, alpha, mode, unit)
    frame.attrs["n_total"] = len(values)
    frame.attrs["replace"] = replace
    return frame


def fit_error_scale(curve: pd.DataFrame, n_total: int | None = None,
                    replace: bool = True) -> float:
    """Fit ``E|error| = c * x(n)`` and return ``c``; ``x = 1/sqrt(n)`` (with replacement) or
    ``sqrt(1/n - 1/N)`` (without).

    Each size gives ``c_n = error_n / x_n`` with the same relative precision, so ``c`` is their
    mean (weighted least squares with weights 1/x²). Sizes with ``x = 0`` (n = N without
    replacement) carry no information and are skipped.
    """
    n = curve["n"].to_numpy(dtype=float)
    if replace:
        x = 1.0 / np.sqrt(n)
    else:
        if n_total is None:
            raise ValueError("n_total is needed to fit a curve sampled without replacement")
        x = np.sqrt(np.maximum(1.0 / n - 1.0 / n_total, 0.0))
    keep = x > 0
    if not keep.any():
        raise ValueError("curve: no sample size below the pool size to fit")
    return float(np.mean(curve["mean_abs_error"].to_numpy()[keep] / x[keep]))


def samples_for_error(scale: float, error: float, n_total: int | None = None,
                      replace: bool = True) -> float:
    """Sample size at which the fitted law ``scale * x(n)`` reaches ``error``."""
    if error <= 0:
        raise ValueError(f"error must be positive, got {error}")
    if replace:
        return (scale / error) ** 2
    return 1.0 / ((error / scale) ** 2 + 1.0 / n_total)


@dataclass(frozen=True)
class SampleSaving:
    """How many fewer samples coupled generation needs for the same error.

    ``saving = 1 - (c_coupled / c_independent)^2`` from the fitted laws: with replacement it is
    ``1 - n_coupled(e) / n_independent(e)`` at every error ``e``; without replacement it is
    that ratio in the large-pool limit (the finite-population correction makes the ratio of
    the reported ``n`` drift towards 0 saving as ``n`` approaches the pool size).
    ``theoretical_saving = 1 - Var_coupled / Var_independent`` for the unit (rows: the
    :class:`~coupled.analysis.benchmark.VarianceReduction` ratio, with its jackknife CI over
    questions; questions: the ratio of the variances of per-question mean differences, with a
    BCa bootstrap CI over the questions both modes ran). ``error``: the error at which
    ``n_coupled`` and ``n_independent`` are given (default: the independent fit at its full
    size).
    """

    unit: str
    error: float
    scale_coupled: float
    scale_independent: float
    n_coupled: float
    n_independent: float
    saving: float
    theoretical_saving: float
    theoretical_ci_low: float
    theoretical_ci_high: float


def _question_saving(scores, model_a: str, model_b: str, coupling: str | None, alpha: float,
                     seed: int) -> tuple[float, float, float]:
    """``1 - Var_c / Var_i`` of per-question mean differences, with a BCa bootstrap CI over
    the questions both modes ran (resampled jointly; Hesterberg's expanded level). The
    variance of a question's mean over its seeds is estimated directly by the spread of the
    question means (it is ``between + E[within_q / n_q]``, whatever the seeds per question)."""
    keys = list(QUESTION)
    means = {}
    for mode in MODES:
        a, b, mask, questions = paired_arrays(scores, model_a, model_b, mode, coupling)
        means[mode] = questions[keys].assign(**{mode: question_moments(a, b, mask).mean_diff})
    both = means["coupled"].merge(means["independent"], on=keys)
    if len(both) < MIN_RATIO_QUESTIONS:
        raise ValueError(f"scores: {len(both)} questions ran in both modes; the question-unit "
                         f"saving's interval needs at least {MIN_RATIO_QUESTIONS}")
    m_c, m_i = both["coupled"].to_numpy(), both["independent"].to_numpy()
    ones = np.ones(len(both))
    features = np.column_stack([ones, m_c, m_c**2, m_i, m_i**2])

    def ratio(sums: np.ndarray) -> np.ndarray:
        n, s_c, ss_c, s_i, ss_i = np.moveaxis(sums, -1, 0)
        top, bottom = ss_c - s_c**2 / n, ss_i - s_i**2 / n
        return np.divide(top, bottom, out=np.ones_like(top), where=bottom > 0)

    estimate = float(ratio(features.sum(axis=0)))
    level = expanded_level(1 - alpha, len(both))
    low, high = bca_ratio_interval(features, level, 1999, np.random.default_rng(seed),
                                   statistic=ratio)
    if low == high:
        raise ValueError("scores: every bootstrap resample gave the same question-unit ratio "
                         f"({estimate:.3g}); its interval cannot be estimated from "
                         f"{len(both)} questions")
    return 1.0 - estimate, 1.0 - high, 1.0 - low


def error_curves(scores, model_a: str, model_b: str, *, unit: str = "question",
                 sizes: np.ndarray | None = None, n_resamples: int = 1000,
                 replace: bool = True, coupling: str | None = None, alpha: float = 0.05,
                 seed: int = 0, error: float | None = None
                 ) -> tuple[pd.DataFrame, SampleSaving]:
    """Coupled and independent error curves (one tidy frame) and the implied saving.

    Needs both coupled and independent rows for the pair. Sizes default to a common grid up
    to the smaller of the two pools.
    """
    scores = read_scores(scores)
    rng = np.random.default_rng(seed)
    # Paired once per mode: the curves and the per-question theory below share the arrays.
    pairs = {mode: paired_arrays(scores, model_a, model_b, mode, coupling)[:3]
             for mode in MODES}
    values = {mode: _unit_values(*arrays, unit) for mode, arrays in pairs.items()}
    n_common = min(len(v) for v in values.values())
    if unit == "question" and n_common < MIN_RATIO_QUESTIONS:
        raise ValueError(f"scores: {n_common} questions in the smaller mode; the question-unit "
                         f"saving and its interval need at least {MIN_RATIO_QUESTIONS}")
    sizes = default_sizes(n_common) if sizes is None else np.asarray(sizes)
    frames, scales = [], {}
    for mode, vals in values.items():
        errors = subsample_mean_errors(vals, sizes, n_resamples, replace=replace, rng=rng)
        frame = _curve_frame(errors, sizes, alpha, mode, unit)
        frames.append(frame)
        scales[mode] = fit_error_scale(frame, len(vals), replace)
    n_ind_total = len(values["independent"])
    if error is None:
        if replace:
            error = scales["independent"] / np.sqrt(n_ind_total)
        else:  # the law is 0 at N; use half the pool instead
            error = scales["independent"] * np.sqrt(1.0 / (n_ind_total / 2) - 1.0 / n_ind_total)
    if not error > 0:
        raise ValueError("scores: the independent error curve is 0 at every size (no variance "
                         "in the independent differences); there is no saving to estimate")
    n_c = samples_for_error(scales["coupled"], error, len(values["coupled"]), replace)
    n_i = samples_for_error(scales["independent"], error, n_ind_total, replace)
    if unit == "row":
        reduction = _variance_reduction(scores, model_a, model_b, coupling=coupling,
                                        independent="measured", alpha=alpha)
        theory, low, high = reduction.saving, reduction.saving_ci_low, reduction.saving_ci_high
    else:
        theory, low, high = _question_saving(scores, model_a, model_b, coupling, alpha, seed)
    saving = SampleSaving(unit=unit, error=float(error), scale_coupled=scales["coupled"],
                          scale_independent=scales["independent"], n_coupled=float(n_c),
                          n_independent=float(n_i),
                          saving=float(1.0 - (scales["coupled"] / scales["independent"]) ** 2),
                          theoretical_saving=float(theory), theoretical_ci_low=float(low),
                          theoretical_ci_high=float(high))
    return pd.concat(frames, ignore_index=True), saving
