"""``coupled.analysis.accuracy.score_interval`` on hand-built designs (its coverage is checked
on the grid of ``test_coverage_grid.py``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from coupled.analysis.accuracy import model_scores, score_interval


def test_one_binary_seed_per_question_is_the_wilson_interval():
    rng = np.random.default_rng(3)
    scores = (rng.random((40, 1)) < 0.85).astype(float)
    result = score_interval(scores, alpha=0.05)
    low, high = proportion_confint(int(scores.sum()), 40, alpha=0.05, method="wilson")
    assert result.ci_low == pytest.approx(low, abs=1e-12)
    assert result.ci_high == pytest.approx(high, abs=1e-12)


def _spread_questions(n_questions: int, n_seeds: int, seed: int) -> np.ndarray:
    """Binary scores whose question accuracies spread (logit-normal), well measured per
    question (many seeds): most of the mean's variance is between questions."""
    rng = np.random.default_rng(seed)
    accuracy = 1 / (1 + np.exp(-rng.normal(2.2, 1.3, n_questions)))
    return (rng.random((n_questions, n_seeds)) < accuracy[:, None]).astype(float)


def test_between_question_spread_widens_the_side_towards_one_half_only():
    # Between-question variance grows like (p (1 - p))^2 towards 1/2 (faster than the binomial
    # p (1 - p)); away from 1/2 it grows slower, and Wilson's form is the floor there.
    scores = _spread_questions(10, 20, seed=4)
    result = score_interval(scores, alpha=0.05)
    mean = scores.mean()
    assert mean > 0.5
    critical = stats.t.isf(0.025, 9)
    wilson_low = (mean + critical**2 / (2 * result.n_effective)
                  - critical * np.sqrt(mean * (1 - mean) / result.n_effective
                                       + critical**2 / (4 * result.n_effective**2))
                  ) / (1 + critical**2 / result.n_effective)
    wilson_high = (mean + critical**2 / (2 * result.n_effective)
                   + critical * np.sqrt(mean * (1 - mean) / result.n_effective
                                        + critical**2 / (4 * result.n_effective**2))
                   ) / (1 + critical**2 / result.n_effective)
    assert result.ci_high == pytest.approx(wilson_high, abs=1e-9)  # bisection's resolution
    assert result.ci_low < wilson_low - 0.005


def test_every_question_run_once_reduces_to_wilson_on_graded_scores_too():
    # A question run once is one draw of its mean: all of its variance takes the binomial
    # form, so nothing is split off as between-question variance.
    rng = np.random.default_rng(5)
    scores = rng.choice([0.0, 0.2, 0.5, 1.0], size=(30, 1), p=[0.1, 0.1, 0.1, 0.7])
    result = score_interval(scores, alpha=0.05)
    p, n = scores.mean(), result.n_effective
    critical = stats.t.isf(0.025, 29)
    for bound in (result.ci_low, result.ci_high):
        assert (p - bound) ** 2 == pytest.approx(critical**2 * bound * (1 - bound) / n, rel=1e-9)


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_constant_scores_get_a_width_of_the_rule_of_three_order(value):
    result = score_interval(np.full((15, 3), value), alpha=0.05)
    width = result.ci_high - result.ci_low
    assert 0.1 < width < 0.4
    assert result.ci_low <= value <= result.ci_high


def _two_model_table(scale: float) -> pd.DataFrame:
    rng = np.random.default_rng(6)
    rows = []
    for model, accuracy in (("never", 0.0), ("often", 0.8)):
        for q in range(12):
            for seed in range(3):
                rows.append({"task": "t", "prompt_id": f"q{q}", "seed": seed, "mode": "coupled",
                             "coupling": "gumbel", "model": model,
                             "score": scale * float(rng.random() < accuracy)})
    return pd.DataFrame(rows)


def test_every_model_of_a_0_100_table_is_rescaled_by_the_table_range():
    # Each model was rescaled by its own range: a model scoring 0 throughout had no range,
    # fell back to [0, 1] and got an interval of 0-0.41 *points* out of 100.
    unit = model_scores(_two_model_table(1.0))
    hundred = model_scores(_two_model_table(100.0))
    for column in ("mean", "ci_low", "ci_high", "se"):
        np.testing.assert_allclose(hundred[column], 100 * unit[column], rtol=1e-12, atol=1e-12)
    assert hundred.loc[hundred["model"] == "never", "ci_high"].item() > 10


def test_binary_scores_on_a_0_100_scale_get_the_wilson_interval():
    rng = np.random.default_rng(7)
    scores = (rng.random((40, 1)) < 0.85).astype(float)
    unit = score_interval(scores)
    hundred = score_interval(100 * scores)
    assert hundred.ci_low == pytest.approx(100 * unit.ci_low, rel=1e-12)
    assert hundred.ci_high == pytest.approx(100 * unit.ci_high, rel=1e-12)


def test_scores_all_one_value_outside_0_1_match_all_ones_on_a_0_100_scale():
    unit = score_interval(np.ones((15, 3)))
    hundred = score_interval(np.full((15, 3), 100.0))
    assert hundred.ci_low == pytest.approx(100 * unit.ci_low, rel=1e-12)
    assert hundred.ci_high == pytest.approx(100 * unit.ci_high, rel=1e-12)


def test_a_score_range_that_does_not_hold_the_scores_is_an_error():
    with pytest.raises(ValueError, match="score_range"):
        score_interval(np.full((4, 2), 5.0), score_range=(0.0, 1.0))
