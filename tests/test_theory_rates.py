"""Win / tie / loss matrices, average win-rates, rankings and score moments for M models; the
appendix B.6 example and `coupled theory example`."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import coupled.theory.rates as rates_module
from coupled.cli.main import main
from coupled.theory import (
    B6_PROBABILITIES,
    average_win_rates,
    joint,
    pairwise_rates,
    ranking,
    score_difference_moments,
    three_model_example,
)
from coupled.theory.examples import decimal_string

COUPLINGS = ("gumbel", "inverse_cdf", "independent")


@st.composite
def models_on_prompts(draw):
    """Setting 2: dists (N, M, V), integer-valued scores (N, V) (ties likely), weights (N,)."""
    n_prompts, n_models, size = (draw(st.integers(1, 4)), draw(st.integers(2, 4)),
                                 draw(st.integers(2, 5)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dists = rng.dirichlet(np.ones(size), size=(n_prompts, n_models))
    scores = rng.integers(0, 3, size=(n_prompts, size)).astype(float)
    return dists, scores, rng.random(n_prompts) + 0.05


# ---------------------------------------------------------------- pairwise rates


@given(models_on_prompts(), st.sampled_from(COUPLINGS))
def test_rates_are_probabilities_with_the_documented_orientation(case, coupling):
    dists, scores, weights = case
    rates = pairwise_rates(dists, scores, coupling=coupling, weights=weights)
    n_models = dists.shape[1]
    for matrix in (rates.win, rates.tie, rates.loss):
        assert matrix.shape == (n_models, n_models)
        assert np.all(matrix >= -1e-15) and np.all(matrix <= 1 + 1e-15)
    np.testing.assert_allclose(rates.win + rates.tie + rates.loss, 1.0, atol=1e-12)
    np.testing.assert_array_equal(rates.loss, rates.win.T)
    np.testing.assert_array_equal(rates.tie, rates.tie.T)
    np.testing.assert_array_equal(np.diag(rates.win), 0.0)
    np.testing.assert_array_equal(np.diag(rates.tie), 1.0)
    # win[i, j] is P(model i beats model j): the per-prompt sum over the joint law, by hand.
    w = weights / weights.sum()
    expected = sum(w[n] * np.sum(joint(dists[n, 0], dists[n, 1], coupling)
                                 * (scores[n][:, None] > scores[n][None, :]))
                   for n in range(len(w)))
    assert rates.win[0, 1] == pytest.approx(expected, abs=1e-14)


def test_row_model_beats_column_model():
    # Model 0 always outputs the correct token, model 1 never: model 0 wins every time.
    rates = pairwise_rates(np.array([[1.0, 0.0]]))
    assert rates.win[0, 1] == 1 and rates.win[1, 0] == 0 and rates.loss[1, 0] == 1


@given(models_on_prompts(), st.sampled_from(COUPLINGS))
def test_weights_act_like_repeated_prompts(case, coupling):
    dists, scores, _ = case
    repeats = np.arange(1, dists.shape[0] + 1)
    weighted = pairwise_rates(dists, scores, coupling=coupling, weights=repeats)
    repeated = pairwise_rates(np.repeat(dists, repeats, axis=0),
                              np.repeat(scores, repeats, axis=0), coupling=coupling)
    np.testing.assert_allclose(weighted.win, repeated.win, atol=1e-14)
    np.testing.assert_allclose(weighted.tie, repeated.tie, atol=1e-14)


def test_setting1_is_setting2_with_two_tokens():
    rng = np.random.default_rng(3)
    probs = rng.random((6, 3))
    dists = np.stack([probs, 1 - probs], axis=-1)
    for coupling in COUPLINGS:
        one = pairwise_rates(probs, coupling=coupling)
        two = pairwise_rates(dists, np.array([1.0, 0.0]), coupling=coupling)
        np.testing.assert_allclose(one.win, two.win, atol=1e-15)
        m1 = score_difference_moments(probs, coupling=coupling)
        m2 = score_difference_moments(dists, np.array([1.0, 0.0]), coupling=coupling)
        np.testing.assert_allclose(m1.covariance, m2.covariance, atol=1e-15)


def test_chunking_does_not_change_results(monkeypatch):
    rng = np.random.default_rng(5)
    dists = rng.dirichlet(np.ones(4), size=(9, 3))
    scores = rng.random((9, 4))
    whole = pairwise_rates(dists, scores)
    moments = score_difference_moments(dists, scores)
    monkeypatch.setattr(rates_module, "_CHUNK_CELLS", 32)  # two prompts per chunk
    chunked = pairwise_rates(dists, scores)
    np.testing.assert_array_equal(whole.win, chunked.win)
    np.testing.assert_array_equal(moments.covariance, score_difference_moments(
        dists, scores).covariance)


def test_pairwise_rates_of_three_coupled_models_match_monte_carlo():
    # All M models share one Gumbel vector per draw; the pairwise rates must be the pairwise
    # marginals of that M-way coupling.
    rng = np.random.default_rng(11)
    dists = rng.dirichlet(np.ones(4), size=(2, 3))
    scores = np.array([[0.0, 1.0, 1.0, 2.0], [2.0, 0.0, 1.0, 0.0]])
    rates = pairwise_rates(dists, scores)
    n = 100_000  # draws per prompt
    empirical = np.zeros((3, 3))
    for prompt in range(2):
        gumbels = rng.gumbel(size=(n, 4))
        tokens = np.argmax(np.log(dists[prompt])[None, :, :] + gumbels[:, None, :], axis=2)
        score = scores[prompt][tokens]  # (n, 3)
        empirical += 0.5 * (score[:, :, None] > score[:, None, :]).mean(axis=0)
    # Each entry is a mean of 2n Bernoulli-ish draws: 5 standard errors of the theoretical rate
    # (the per-prompt halves have variance <= p (1 - p) / n each).
    standard_error = np.sqrt(rates.win * (1 - rates.win) / (2 * n)) + 1e-12
    assert np.all(np.abs(empirical - rates.win) <= 5 * standard_error)


def test_moments_match_monte_carlo():
    rng = np.random.default_rng(12)
    dists = np.array([[[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]], [[0.1, 0.1, 0.8], [0.5, 0.4, 0.1]]])
    scores = np.array([[0.0, 1.0, 3.0], [1.0, 0.0, 2.0]])
    n = 200_000
    prompt = rng.integers(0, 2, n)
    gumbels = rng.gumbel(size=(n, 3))
    tokens = np.argmax(np.log(dists[prompt]) + gumbels[:, None, :], axis=2)  # (n, 2)
    values = np.take_along_axis(scores[prompt], tokens, axis=1)
    difference = values[:, 0] - values[:, 1]
    moments = score_difference_moments(dists, scores)
    mean, variance = moments.mean_difference[0, 1], moments.variance_difference[0, 1]
    # 5 standard errors: of the mean, sqrt(var / n); of the sample variance, sqrt((mu4 -
    # var^2) / n) with the fourth central moment mu4 estimated from the draws.
    assert abs(difference.mean() - mean) <= 5 * np.sqrt(variance / n)
    mu4 = np.mean((difference - mean) ** 4)
    assert abs(difference.var() - variance) <= 5 * np.sqrt((mu4 - variance**2) / n)
    np.testing.assert_allclose(moments.mean, [
        0.5 * (dists[0, m] @ scores[0] + dists[1, m] @ scores[1]) for m in range(2)])


# ---------------------------------------------------------------- average win-rate, ranking


def test_average_win_rate_is_mean_over_opponents():
    win = np.array([[0.0, 0.2, 0.4], [0.1, 0.0, 0.3], [0.5, 0.6, 0.0]])
    np.testing.assert_allclose(average_win_rates(win), [0.3, 0.2, 0.55])
    rates = pairwise_rates(np.array([[0.2, 0.5, 0.9]]))
    np.testing.assert_array_equal(average_win_rates(rates), average_win_rates(rates.win))


def test_ranking_is_best_first_and_stable():
    np.testing.assert_array_equal(ranking(np.array([0.1, 0.3, 0.2])), [1, 2, 0])
    np.testing.assert_array_equal(ranking(np.array([0.5, 0.5, 0.7])), [2, 0, 1])


# ---------------------------------------------------------------- input checks


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ((np.array([[0.5, 1.2]]),), {}, r"probs must be probabilities in \[0, 1\]"),
    ((np.array([[0.5, np.nan]]),), {}, "probs must be probabilities"),
    ((np.array([[0.5, 0.5]]), np.array([1.0, 0.0])), {}, "scores are only for setting 2"),
    ((np.ones((1, 2, 2)) / 2,), {}, "needs scores"),
    ((np.ones((1, 2, 2)) / 2, np.array([1.0, 0.0, 2.0])), {}, "scores must have shape"),
    ((np.ones((1, 2, 2)) / 2, np.array([1.0, np.inf])), {}, "scores must be finite"),
    ((np.array([[[0.5, 0.6], [0.5, 0.5]]]), np.array([1.0, 0.0])), {}, "dists must sum to 1"),
    ((np.array([0.5, 0.5]),), {}, "expected probs of shape"),
    ((np.array([[0.5, 0.5]]),), {"weights": np.array([1.0, 1.0])}, "weights must have shape"),
    ((np.array([[0.5, 0.5]]),), {"weights": np.array([-1.0])}, "weights must be finite"),
    ((np.array([[0.5, 0.5]]),), {"coupling": "shared"}, "coupling must be one of"),
])
def test_bad_inputs_are_refused_by_name(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pairwise_rates(*args, **kwargs)


def test_bad_win_matrices_and_values_are_refused():
    with pytest.raises(ValueError, match="square"):
        average_win_rates(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="finite 1-d"):
        ranking(np.array([0.1, np.nan]))


# ---------------------------------------------------------------- appendix B.6


def test_three_model_example_exact_numbers():
    example = three_model_example()
    assert example.average_win_rate_independent == (
        Fraction("0.1545"), Fraction("0.15675"), Fraction("0.16225"))
    assert example.average_win_rate_coupled == (
        Fraction("0.0525"), Fraction("0.0225"), Fraction("0.03"))
    assert example.average_accuracy == (Fraction("0.70"), Fraction("0.69"), Fraction("0.695"))
    assert example.ranking_accuracy == ("m1", "m3", "m2")
    assert example.ranking_coupled == ("m1", "m3", "m2")
    assert example.ranking_independent == ("m3", "m2", "m1")


def test_three_model_example_agrees_with_the_float_engine():
    probs = np.array(B6_PROBABILITIES, dtype=float)
    example = three_model_example()
    for coupling, exact in (("gumbel", example.average_win_rate_coupled),
                            ("inverse_cdf", example.average_win_rate_coupled),
                            ("independent", example.average_win_rate_independent)):
        computed = average_win_rates(pairwise_rates(probs, coupling=coupling))
        np.testing.assert_allclose(computed, [float(v) for v in exact], rtol=1e-13)
        assert tuple(example.models[k] for k in ranking(computed)) == (
            example.ranking_independent if coupling == "independent"
            else example.ranking_coupled)
    moments = score_difference_moments(probs)
    np.testing.assert_allclose(moments.mean, [float(v) for v in example.average_accuracy],
                               rtol=1e-15)


def test_cli_example_json(capsys):
    assert main(["theory", "example", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["average_win_rate_independent"]["float"] == [0.1545, 0.15675, 0.16225]
    assert payload["average_win_rate_independent"]["exact"] == ["309/2000", "627/4000",
                                                                "649/4000"]
    assert payload["average_win_rate_coupled"]["float"] == [0.0525, 0.0225, 0.03]
    assert payload["average_accuracy"]["float"] == [0.7, 0.69, 0.695]
    assert payload["ranking_independent"] == ["m3", "m2", "m1"]
    assert payload["ranking_coupled"] == ["m1", "m3", "m2"]


def test_cli_example_table(capsys):
    assert main(["theory", "example"]) == 0
    out = capsys.readouterr().out
    for number in ("0.1545", "0.15675", "0.16225", "0.0525", "0.0225", "0.03", "0.695"):
        assert number in out
    assert "m3 > m2 > m1" in out and "m1 > m3 > m2" in out and "flips" in out


def test_cli_theory_without_subcommand_prints_help(capsys):
    assert main(["theory"]) == 2
    assert "example" in capsys.readouterr().out


def test_decimal_string_has_enough_digits():
    assert decimal_string(Fraction(1, 3)) == "0.333333333333333"  # 15 significant digits
    assert decimal_string(Fraction(627, 4000)) == "0.15675"
    assert decimal_string(Fraction(0)) == "0"
