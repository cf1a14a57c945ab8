"""``coupled.analysis.intervals``: the degrees of freedom of the paired score test (its
coverage is checked on the grid of ``test_coverage_grid.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from coupled.analysis.intervals import (
    QuestionSummaries,
    model_df,
    model_variance,
    paired_score_interval,
    score_test,
    tango_interval,
)


def test_model_df_is_unbounded_for_equal_contributions_and_two_for_one_question():
    n_q = np.full(10, 4.0)
    assert model_df(np.full(10, 0.3), n_q) > 1e12  # the normal, up to rounding
    # one question carries the whole model variance: 2 (sum u)^2 / (Q/(Q-1) sum (u - u_bar)^2)
    # = 2 / 1 exactly
    one = np.zeros(10)
    one[0] = 0.3 * 4.0
    assert model_df(one, n_q) == pytest.approx(2.0)


def _summaries(diff: np.ndarray) -> QuestionSummaries:
    n = np.full(diff.shape[:-1], float(diff.shape[-1]))
    return QuestionSummaries(n=n, mean=diff.mean(-1), plus=np.maximum(diff, 0).mean(-1),
                             minus=np.maximum(-diff, 0).mean(-1), second=(diff**2).mean(-1))


def test_t_reference_is_q_minus_1_unless_the_variance_model_binds():
    rng = np.random.default_rng(11)
    diff = rng.choice([-1.0, 0.0, 1.0], p=[0.2, 0.55, 0.25], size=(4000, 10, 5))
    summaries = _summaries(diff)
    test = score_test(summaries, 0.05, binary=True)
    n_q, q = summaries.n, test.n_clusters
    second = summaries.second
    shrunk = (n_q * second + second.mean(-1, keepdims=True)) / (n_q + 1)
    binds = model_variance(shrunk, n_q, q) > np.square(test.se)
    assert 0.2 < binds.mean() < 0.8  # both branches are exercised
    assert np.all(test.df[~binds] == 9)
    assert np.all(test.df[binds] >= 9) and np.any(test.df[binds] > 9)
    assert np.allclose(test.critical, stats.t.isf(0.025, test.df))
    assert np.allclose(test.pvalue[binds], 2 * stats.t.sf(
        np.abs(test.estimate[binds]) * np.sqrt(test.n_effective[binds]
                                                / (test.plus + test.minus)[binds]),
        test.df[binds]))


def _masked_summaries(diff: np.ndarray, mask: np.ndarray) -> QuestionSummaries:
    weight = mask.astype(float)
    n = weight.sum(-1)

    def mean(x):
        return (x * weight).sum(-1) / n

    return QuestionSummaries(n=n, mean=mean(diff), plus=mean(np.maximum(diff, 0)),
                             minus=mean(np.maximum(-diff, 0)), second=mean(diff**2))


@pytest.mark.parametrize(("n_questions", "n_seeds", "accuracy_a", "accuracy_b"),
                         [(10, 5, 0.6, 0.5), (10, 20, 0.9, 0.85), (5, 20, 0.7, 0.4),
                          (20, 1, 0.6, 0.5)])
def test_the_score_interval_inverts_the_test(n_questions, n_seeds, accuracy_a, accuracy_b):
    # The raw bisection bounds at the test's effective count and critical value, not
    # paired_score_interval's (which settles the side of 0 from the p-value, so they agree by
    # construction): 0 is outside [low, high] exactly when p < alpha, up to the bisection's
    # resolution — balanced and with 30 % of the rows dropped, where the model binds or not.
    rng = np.random.default_rng(13)
    a = (rng.random((3000, n_questions, n_seeds)) < accuracy_a).astype(float)
    b = (rng.random(a.shape) < accuracy_b).astype(float)
    dropped = rng.random(a.shape) < 0.3
    dropped[..., 0] = False
    for mask in (np.ones(a.shape, dtype=bool), ~dropped):
        test = score_test(_masked_summaries(a - b, mask), 0.05, binary=True)
        low, high = tango_interval(test.plus, test.minus, test.n_effective, test.critical)
        reject = test.pvalue < 0.05
        assert 0.01 < reject.mean() < 0.99  # both sides of the test are exercised
        disagree = reject != ((low > 0) | (high < 0))
        assert np.all(np.minimum(np.abs(low), np.abs(high))[disagree] < 1e-12)
        assert np.all(high > low)



_REPLICATES = 3000
_MC_SE = np.sqrt(0.95 * 0.05 / _REPLICATES)  # of a coverage (or size) near nominal: 0.40 points


def _spread_questions_pair(rng, n_questions: int, n_seeds: int, accuracy_a: float,
                           accuracy_b: float, comonotone: bool) -> tuple[np.ndarray, np.ndarray]:
    """Binary scores ``(R, Q, S)`` of two models whose question accuracies spread (Beta with
    concentration 4 around each model's mean), rows either driven by one uniform
    (comonotone, as coupled generation) or by independent ones."""
    shape = (_REPLICATES, n_questions)
    qa = rng.beta(4 * accuracy_a, 4 * (1 - accuracy_a), shape)
    qb = rng.beta(4 * accuracy_b, 4 * (1 - accuracy_b), shape)
    u = rng.random((*shape, n_seeds))
    other = u if comonotone else rng.random(u.shape)
    return (u < qa[..., None]).astype(float), (other < qb[..., None]).astype(float)


@pytest.mark.parametrize("n_questions", [2, 3, 5])
def test_few_questions_cover_and_keep_their_size(n_questions):
    # Below the coverage grid (10+ questions): where the variance model binds with few
    # questions the question means happen to lie close, so the model's own (large) df made
    # the interval too narrow (2 questions: size 10-13 %, coverage 87-90 %).
    rng = np.random.default_rng(100 + n_questions)
    for n_seeds, comonotone, accuracy_a, accuracy_b in [(20, False, 0.5, 0.5),
                                                        (50, True, 0.5, 0.5),
                                                        (50, False, 0.6, 0.4),
                                                        (20, True, 0.6, 0.4)]:
        a, b = _spread_questions_pair(rng, n_questions, n_seeds, accuracy_a, accuracy_b,
                                      comonotone)
        result = paired_score_interval(a, b, alpha=0.05)
        truth = accuracy_a - accuracy_b
        covered = np.mean((result.ci_low <= truth) & (truth <= result.ci_high))
        design = (n_questions, n_seeds, comonotone, truth)
        assert covered >= 0.935 - 3.9 * _MC_SE, design
        if truth == 0:
            assert np.mean(result.pvalue < 0.05) <= 0.05 + 3.9 * _MC_SE, design


def _same_interval_in_units(result, unit_result, scale):
    for field in ("estimate", "ci_low", "ci_high"):
        assert getattr(result, field) == pytest.approx(scale * getattr(unit_result, field),
                                                       rel=1e-12, abs=1e-12), field
    assert result.pvalue == pytest.approx(unit_result.pvalue, rel=1e-12)
    assert result.method == unit_result.method


def test_binary_scores_on_a_0_100_scale_are_tangos_design():
    # {0, 100} with one seed per question is the McNemar design: binary is judged after
    # rescaling (it was judged before, and the same data got p = 0.163 instead of 0.0455).
    a = np.array([[1.0]] * 5 + [[0.0]] * 15)
    b = np.zeros_like(a)
    unit = paired_score_interval(a, b)
    assert unit.method == "tango"
    assert unit.pvalue == pytest.approx(2 * stats.norm.sf(np.sqrt(5)), rel=1e-12)  # McNemar
    _same_interval_in_units(paired_score_interval(100 * a, 100 * b), unit, 100)


def test_scores_all_one_value_outside_0_1_are_the_same_design_as_all_ones():
    # One value outside [0, 1] has no range to rescale by (it gave NaN): the smallest range
    # holding it and [0, 1], as if the scores were all 1 on a 0/100 scale.
    ones = np.ones((12, 4))
    unit = paired_score_interval(ones, ones)
    result = paired_score_interval(100 * ones, 100 * ones)
    assert np.isfinite([result.estimate, result.ci_low, result.ci_high, result.pvalue]).all()
    assert result.ci_high > result.ci_low
    _same_interval_in_units(result, unit, 100)
