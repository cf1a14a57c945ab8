"""Per-model accuracy (mean score) with a question-clustered interval, per mode (issue 13 §4).

The number a user looks for first: each model's mean score over questions (every question
weighs the same whatever its number of seeds — the estimand of
:func:`coupled.analysis.benchmark.mean_difference`, for one model), with a ``1 - alpha``
interval that holds for accuracies near 0 or 1, few questions and unbalanced seeds. A
single-model table is valid input.

Interval: a score interval on an effective count, the one-model counterpart of
:mod:`coupled.analysis.intervals`. Scores are rescaled to ``[0, 1]`` if they leave it, by the
range of the whole table (every model in the same units, binary judged after rescaling); the
effective count is ``m (1 - m) / se^2`` (``m`` the mean, ``se`` the question-clustered SE,
``ddof = 1``) — the largest variance a score in ``[0, 1]`` with mean ``m`` can have, over the
observed one — capped by a per-question variance model (each question's rows have variance at
most ``m_q (1 - m_q)``, shrunk towards the average by one pseudo-row, so a question run once
is not credited with no variance), and the worst case, one row per question, where nothing
varies. The interval is ``{p : (m - p)^2 <= c^2 V(p)}``, the variance evaluated at the
hypothesised accuracy ``p``: at least Wilson's ``p (1 - p) / n_eff`` (the binomial form, the
whole variance scaling like ``p (1 - p)``), and at least the same variance split in two — the
within-question part (the variance model's, a question run once counting wholly: one
Bernoulli draw of its mean) scaling like ``p (1 - p)``, the between-question rest like
``(p (1 - p))^2``, as question accuracies spread under a logistic (Rasch-type) difficulty
model (delta method: ``Var expit(X) ~ (p (1 - p))^2 Var X``). Towards 1/2 the between part
grows faster than the binomial form: a sample of questions near 0.9 that missed the few hard
ones shows a small spread, and this is where Wilson's form alone under-covered. One binary
seed per question: the plain Wilson interval on ``Q`` rows with the normal quantile; otherwise
Student's t on ``Q - 1`` degrees of freedom.

Calibrated on the coverage grid of ``tests/test_coverage_grid.py`` (450 cells, 2000
replicates each): Wilson's form alone left one cell below the band — 10 questions x 20 seeds
of a model near 0.9 whose question accuracies are skewed (skewness -2.4), 90.8 % (old
clustered t 86.7 %) — and 20-seed cells near 0.9 at 92-93 %; with the between part 93.8 % in
that cell, the lowest cell 92.4 %, the same 9 cells above the band (5 with >= 10 minority
rows), median width unchanged (up to 1.43x in the 10 x 20 cells near 0.9). Tried and not
adopted: t on the moment (Satterthwaite) df of the questions' squared deviations (91.1 %, 12
more cells over-covering), a Cornish-Fisher shift by the skewness beyond the binomial one
(91.2 %), Hall's (1992) skewness-removing transform (17 cells below the band: ten sample
skewnesses are too noisy), its union with Wilson's interval (92.4 %, 30 more cells
over-covering), the split variance without Wilson's floor (a graded 10 x 20 cell at 91.3 %)
and with the single-seed questions split like the others (6 more cells over-covering). The
interval is solved by vectorised bisection (the critical value varies with each replicate's
number of questions, and no library has this variance function).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from coupled.analysis._clustered import QUESTION, pad_by_question
from coupled.analysis.intervals import bisect, effective_count, unit_range
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
                   alpha: float = 0.05, *,
                   score_range: tuple[float, float] | None = None) -> ScoreInterval:
    """Array core of :func:`model_scores`: ``scores, mask`` padded ``(..., Q, S)``.

    Scores outside ``[0, 1]`` are rescaled by :func:`~coupled.analysis.intervals.unit_range`
    of ``score_range`` (``(low, high)``, which must hold every score; default: the observed
    range of ``scores``) — pass the range of the whole table so that every model's interval
    is computed in the same units."""
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
    if score_range is not None:
        if not score_range[0] <= low_score <= high_score <= score_range[1]:
            raise ValueError(f"score_range {tuple(score_range)} does not hold the scores' "
                             f"range [{low_score:g}, {high_score:g}]")
        low_score, high_score = map(float, score_range)
    offset, scale = unit_range(low_score, high_score)  # to [0, 1] before any square
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
    binary = bool(np.isin(unit[mask], (0.0, 1.0)).all())  # after rescaling: {0, 100} is binary
    one_seed = np.all(np.where(present, n_q == 1, True), axis=-1) & binary
    n_eff = effective_count(bernoulli, se, shrunk, n_q, q, one_seed)
    with np.errstate(invalid="ignore"):
        critical = np.where(one_seed | (q < 2), stats.norm.isf(alpha / 2),
                            stats.t.isf(alpha / 2, np.maximum(q - 1, 1)))
    # The variance at the mean, split: within questions (the model's, a question run once
    # wholly), between questions the rest.
    total = np.where(bernoulli > 0, bernoulli / n_eff, 0.0)
    per_question = np.where(n_q == 1, bernoulli[..., None], shrunk / safe_n)
    within_part = np.minimum(total, np.where(present, per_question, 0.0).sum(axis=-1) / q**2)
    within_part = np.where(one_seed, total, within_part)
    between_part = total - within_part
    with np.errstate(divide="ignore", invalid="ignore"):
        n_within = np.where((bernoulli > 0) & (within_part > 0), bernoulli / within_part, np.inf)
    n_within = np.where(bernoulli > 0, n_within, n_eff)
    safe_bernoulli = np.where(bernoulli > 0, bernoulli, 1.0)

    def outside(p):
        spread = p * (1 - p)
        scaled = np.where(bernoulli > 0, spread / safe_bernoulli, 0.0)
        variance = np.maximum(spread / n_eff, spread / n_within + between_part * scaled**2)
        return np.square(mean - p) > np.square(critical) * variance

    low, high = (bisect(outside, mean, np.full(mean.shape, end)) for end in (0.0, 1.0))
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
    # one range for the whole table: every model's and mode's interval in the same units
    score_range = (float(scores["score"].min()), float(scores["score"].max()))
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
        result = score_interval(values, mask, alpha=alpha, score_range=score_range)
        rows.append({"model": model, "mode": mode, "coupling": coupling,
                     "n_questions": int(result.n_questions), "n_rows": int(mask.sum()),
                     "mean": result.mean, "ci_low": result.ci_low, "ci_high": result.ci_high,
                     "se": result.se, "n_effective": result.n_effective})
    return pd.DataFrame(rows, columns=[*COLUMNS, "se", "n_effective"])
