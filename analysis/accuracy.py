"""Per-model accuracy (mean score) with a question-clustered interval, per mode (issue 13 §4).

The number a user looks for first: each model's mean score over questions (every question
weighs the same whatever its number of seeds — the estimand of
:func:`coupled.analysis.benchmark.mean_difference`, for one model), with a ``1 - alpha``
interval that holds for accuracies near 0 or 1, few questions and unbalanced seeds. A
single-model table is valid input.

Interval: a Wilson score interval on an effective count, the one-model counterpart of
:mod:`coupled.analysis.intervals`. Scores are rescaled to ``[0, 1]`` if they leave it; the
effective count is ``p (1 - p) / se^2`` (``se`` the question-clustered SE, ``ddof = 1``) —
the largest variance a score in ``[0, 1]`` with mean ``p`` can have, over the observed one —
capped by a per-question variance model (each question's rows have variance at most
``m_q (1 - m_q)``, shrunk towards the average by one pseudo-row, so a question run once is not
credited with no variance), and the worst case, one row per question, where nothing varies.
One binary seed per question: the plain Wilson interval on ``Q`` rows with the normal
quantile; otherwise Student's t on ``Q - 1`` degrees of freedom. Calibrated on the coverage
grid of ``tests/test_coverage_grid.py``: 449 of 450 cells within the band's lower edge; the
one below is 10 questions x 20 seeds of a model near 0.9 whose question accuracies are skewed
(skewness -2.4): 90.8 % (old clustered t 86.7 %), the truth falling below the interval when
the sample holds none of the few hard questions — then nothing in the data shows the tail.
Tried on the grid's replicates and not adopted: t on the moment (Satterthwaite) df of the
questions' squared deviations (91.1 %, 12 more cells over-covering), a Cornish-Fisher shift
by the skewness beyond the binomial one (91.2 %), Hall's (1992) skewness-removing transform
(17 cells below the band: ten sample skewnesses are too noisy), and its union with this
interval (92.4 % there, but 30 more cells over-covering). Wilson's formula is
:func:`coupled.analysis.intervals.wilson_interval` (the critical value here varies with each
replicate's number of questions, which statsmodels' ``proportion_confint`` does not take); the
effective count and its cap are written here because no library has them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from coupled.analysis._clustered import QUESTION, pad_by_question
from coupled.analysis.intervals import effective_count, wilson_interval
from coupled.tables import read_scores

COLUMNS = ("model", "mode", "coupling", "n_questions", "n_rows", "mean", "ci_low", "ci_high")


@dataclass(frozen=True)
class ScoreInterval:
    """Mean score over questions with its interval (floats or replicate arrays)."""

    mean: np.ndarray | float
    se: np.ndarray | float
    ci_low: np.ndarray | float
    ci_high: np.ndarray | float
    n_questions: np.ndarray | int
    n_effective: np.ndarray | float


def score_interval(scores: np.ndarray, mask: np.ndarray | None = None,
                   alpha: float = 0.05) -> ScoreInterval:
    """Array core of :func:`model_scores`: ``scores, mask`` padded ``(..., Q, S)``."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    scores = np.asarray(scores, dtype=float)
    mask = np.ones(scores.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    observed = scores[mask]
    if observed.size == 0:
        raise ValueError("scores: no rows")
    if not np.all(np.isfinite(observed)):
        raise ValueError("scores: must be finite")
    low_score, high_score = float(observed.min()), float(observed.max())
    offset, scale = 0.0, 1.0
    if low_score < 0.0 or high_score > 1.0:  # rescale to [0, 1] before any square
        offset, scale = low_score, high_score - low_score
        if scale == 0.0:  # one value outside [0, 1]: the smallest range holding it and [0, 1]
            offset = min(low_score, 0.0)
            scale = max(high_score, 1.0) - offset
        if not np.isfinite(scale):
            raise ValueError(f"scores: range [{low_score:g}, {high_score:g}] overflows a float; "
                             "rescale the scores")
    unit = np.where(mask, (scores - offset) / scale, 0.0)
    weight = mask.astype(float)
    n_q = weight.sum(axis=-1)
    present = n_q > 0
    q = present.sum(axis=-1).astype(float)
    if np.any(q < 1):
        raise ValueError("scores: need at least 1 question")
    safe_n = np.maximum(n_q, 1.0)
    means = unit.sum(axis=-1) / safe_n
    mean = np.where(present, means, 0.0).sum(axis=-1) / q
    centred = np.where(present, means - mean[..., None], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.where(q > 1, np.sqrt((centred**2).sum(axis=-1) / np.maximum(q - 1, 1) / q), 0.0)
    bernoulli = mean * (1 - mean)
    # the variance model: a question's rows vary at most m_q (1 - m_q), shrunk by one pseudo-row
    within = means * (1 - means)
    shrunk = (n_q * within + bernoulli[..., None]) / (n_q + 1.0)
    binary = bool(np.isin(observed, (0.0, 1.0)).all())
    one_seed = np.all(np.where(present, n_q == 1, True), axis=-1) & binary
    n_eff = effective_count(bernoulli, se, shrunk, n_q, q, one_seed)
    with np.errstate(invalid="ignore"):
        critical = np.where(one_seed | (q < 2), stats.norm.isf(alpha / 2),
                            stats.t.isf(alpha / 2, np.maximum(q - 1, 1)))
    low, high = wilson_interval(mean, n_eff, critical)
    low, high = np.minimum(low, mean), np.maximum(high, mean)
    result = ScoreInterval(mean=mean * scale + offset, se=se * scale, ci_low=low * scale + offset,
                           ci_high=high * scale + offset, n_questions=q, n_effective=n_eff)
    if scores.ndim == 2:
        return ScoreInterval(**{k: np.asarray(v).item() for k, v in result.__dict__.items()})
    return result


def model_scores(scores, *, alpha: float = 0.05, models: list[str] | None = None
                 ) -> pd.DataFrame:
    """Each model's mean score over questions ± a question-clustered ``1 - alpha`` interval.

    One row per (model, mode, coupling) present: columns ``model, mode, coupling,
    n_questions, n_rows, mean, ci_low, ci_high`` (and ``se``, ``n_effective``). Valid for a
    single-model table. The interval can be wide with few questions; it is never zero-width.
    """
    scores = read_scores(scores)
    if models is not None:
        unknown = sorted(set(models) - set(scores["model"]))
        if unknown:
            raise ValueError(f"models: {unknown} not in the scores table "
                             f"(present: {sorted(scores['model'].unique())})")
        scores = scores[scores["model"].isin(models)]
    rows = []
    for (model, mode, coupling), part in scores.groupby(["model", "mode", "coupling"],
                                                        sort=True):
        (values,), mask, _ = pad_by_question(part, ["score"], QUESTION)
        result = score_interval(values, mask, alpha=alpha)
        rows.append({"model": model, "mode": mode, "coupling": coupling,
                     "n_questions": int(result.n_questions), "n_rows": int(mask.sum()),
                     "mean": result.mean, "ci_low": result.ci_low, "ci_high": result.ci_high,
                     "se": result.se, "n_effective": result.n_effective})
    return pd.DataFrame(rows, columns=[*COLUMNS, "se", "n_effective"])
