"""Joint laws of coupled samplers: marginals, the fast form against the integral form, zero and
tiny probabilities, counterfactual stability, and agreement with brute-force Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from coupled.theory import (
    gumbel_max_joint,
    gumbel_max_joint_integral,
    independent_joint,
    inverse_cdf_joint,
    is_counterfactually_stable,
    joint,
)

COUPLINGS = ("gumbel", "inverse_cdf", "independent")


def distribution(size: int, zeros: bool = True, tiny: bool = False,
                 tiny_values: tuple[float, ...] = (1e-300, 1e-120, 1e-40, 1e-17, 1e-9)
                 ) -> st.SearchStrategy:
    """Distributions over ``size`` tokens; optionally with exact zeros and tiny entries."""
    entry = st.floats(1e-4, 1.0)
    if tiny:
        entry = st.one_of(entry, st.sampled_from(tiny_values))
    if zeros:
        entry = st.one_of(entry, st.just(0.0))
    return (st.lists(entry, min_size=size, max_size=size)
            .filter(lambda w: sum(w) > 0.01)
            .map(lambda w: np.array(w) / np.sum(w)))


def pair(min_size: int = 2, max_size: int = 8, **kwargs) -> st.SearchStrategy:
    return st.integers(min_size, max_size).flatmap(
        lambda size: st.tuples(distribution(size, **kwargs), distribution(size, **kwargs)))


# ---------------------------------------------------------------- marginals and exact forms


@given(pair(tiny=True), st.sampled_from(COUPLINGS))
def test_joint_is_a_coupling_of_p_and_q(p_q, coupling):
    p, q = p_q
    law = joint(p, q, coupling)
    assert law.shape == (p.size, p.size)
    assert np.all(np.isfinite(law)) and np.all(law >= 0)
    np.testing.assert_allclose(law.sum(axis=1), p, rtol=0, atol=1e-14)
    np.testing.assert_allclose(law.sum(axis=0), q, rtol=0, atol=1e-14)
    # A token with probability 0 is never sampled: its row / column is exactly zero.
    assert np.all(law[p == 0, :] == 0) and np.all(law[:, q == 0] == 0)


@given(pair())
def test_fast_gumbel_form_equals_the_integral_form(p_q):
    p, q = p_q
    np.testing.assert_allclose(gumbel_max_joint(p, q), gumbel_max_joint_integral(p, q),
                               rtol=1e-12, atol=1e-15)


# Down to 1e-60 only: the reference multiplies ratios such as p_j / p_a, which overflow once two
# tiny entries meet below about 1e-75 (the fast form forms no such products; its marginals are
# checked down to 1e-300 above).
@given(pair(tiny=True, tiny_values=(1e-60, 1e-30, 1e-17, 1e-9)))
def test_tiny_probabilities_keep_relative_accuracy(p_q):
    p, q = p_q
    fast = gumbel_max_joint(p, q)
    reference = gumbel_max_joint_integral(p, q)
    # Cells far below machine epsilon must still be right relative to their own size (the
    # reference integrates each cell separately, so it has no cancellation between cells). The
    # floor 1e-13 p_a q_b is the rounding of the inputs' odds: p_a q_b (F(r_a) - F(r_b)) moves by
    # about p_a q_b * eps when r_a or r_b is perturbed by one ulp (dF/dr = 1 / G^2 <= 1 / r^2).
    tolerance = 1e-10 * reference + 1e-13 * np.outer(p, q)
    assert np.all(np.abs(fast - reference) <= tolerance)


@settings(max_examples=15)  # each example runs an adaptive quadrature
@given(pair(zeros=False, max_size=6), st.data())
def test_diagonal_formula_equals_the_gumbel_integral(p_q, data):
    p, q = p_q
    a = data.draw(st.integers(0, p.size - 1))
    # P(T = T' = a) straight from the Gumbel-max definition: g_a = g beats every other token
    # for both models, i.e. g_j < g + min(log p_a - log p_j, log q_a - log q_j).
    margin = np.minimum(np.log(p[a]) - np.log(p), np.log(q[a]) - np.log(q))
    margin = np.delete(margin, a)

    def density(g: float) -> float:
        # Gumbel(0, 1) density at g times the Gumbel CDFs exp(-exp(-x)) of the other tokens
        # (written out: scipy.stats' per-call overhead made this test 5x slower).
        with np.errstate(over="ignore"):  # exp(-g) overflows far in the left tail: density 0
            return np.exp(-g - np.exp(-g) - np.sum(np.exp(-(g + margin))))

    value, error = integrate.quad(density, -np.inf, np.inf, epsabs=1e-13, epsrel=1e-11)
    assert gumbel_max_joint(p, q)[a, a] == pytest.approx(value, rel=1e-8, abs=10 * error)


def test_point_mass_gives_exact_zeros_no_nan():
    # Appendix B.6 has a model with p' = 1.
    law = gumbel_max_joint(np.array([1.0, 0.0]), np.array([0.9, 0.1]))
    np.testing.assert_allclose(law, [[0.9, 0.1], [0.0, 0.0]], rtol=0, atol=1e-16)
    assert np.all(law[1] == 0)
    law = gumbel_max_joint(np.array([0.3, 0.0, 0.7, 0.0]), np.array([0.0, 0.5, 0.5, 0.0]))
    assert np.all(np.isfinite(law))
    assert np.all(law[[1, 3], :] == 0) and np.all(law[:, [0, 3]] == 0)
    np.testing.assert_allclose(law.sum(axis=1), [0.3, 0, 0.7, 0], atol=1e-15)
    np.testing.assert_allclose(law.sum(axis=0), [0, 0.5, 0.5, 0], atol=1e-15)


def test_identical_models_never_disagree():
    p = np.array([0.5, 0.25, 0.125, 0.125, 0.0])
    for coupling in ("gumbel", "inverse_cdf"):
        np.testing.assert_array_equal(joint(p, p, coupling), np.diag(p))


@given(st.integers(1, 5), st.integers(2, 7), st.integers(0, 2**32 - 1),
       st.sampled_from(COUPLINGS))
def test_stacks_equal_one_prompt_at_a_time(n_prompts, size, seed, coupling):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(size), size=n_prompts)
    q = rng.dirichlet(np.ones(size), size=n_prompts)
    p[0, 0] = 0.0  # a zero inside a stack is handled row by row
    p[0] /= p[0].sum()
    stacked = joint(p, q, coupling)
    assert stacked.shape == (n_prompts, size, size)
    for row in range(n_prompts):
        np.testing.assert_array_equal(stacked[row], joint(p[row], q[row], coupling))


def test_named_functions_match_joint():
    p, q = np.array([0.2, 0.3, 0.5]), np.array([0.6, 0.1, 0.3])
    np.testing.assert_array_equal(gumbel_max_joint(p, q), joint(p, q, "gumbel"))
    np.testing.assert_array_equal(inverse_cdf_joint(p, q), joint(p, q, "inverse_cdf"))
    np.testing.assert_array_equal(independent_joint(p, q), np.outer(p, q))


def test_gumbel_joint_at_large_vocabulary_is_a_coupling():
    rng = np.random.default_rng(7)
    p = rng.dirichlet(np.full(1024, 0.1))
    q = rng.dirichlet(np.full(1024, 0.1))
    law = gumbel_max_joint(p, q)
    np.testing.assert_allclose(law.sum(axis=1), p, atol=1e-15)
    np.testing.assert_allclose(law.sum(axis=0), q, atol=1e-15)
    assert is_counterfactually_stable(law, p, q)


# ---------------------------------------------------------------- input checks


@pytest.mark.parametrize(("p", "q", "message"), [
    ([0.5, -0.1, 0.6], [0.3, 0.3, 0.4], "p has a negative entry"),
    ([0.5, 0.5], [np.nan, 1.0], "q has a NaN"),
    ([0.5, 0.4], [0.5, 0.5], "p must sum to 1"),
    ([0.5, 0.5], [0.2, 0.3, 0.5], "same shape"),
    ([[[1.0]]], [[[1.0]]], "p must have shape"),
    ([], [], "p must have shape"),
    ([[0.5, 0.5], [0.2, 0.7]], [[0.5, 0.5], [0.5, 0.5]], r"p must sum to 1.*row 1"),
])
def test_bad_distributions_are_refused_by_name(p, q, message):
    with pytest.raises(ValueError, match=message):
        joint(p, q)


def test_sum_tolerance_is_1e_9():
    joint([0.5, 0.5 + 5e-10], [0.5, 0.5])
    with pytest.raises(ValueError, match="sum to 1"):
        joint([0.5, 0.5 + 5e-9], [0.5, 0.5])


def test_unknown_coupling_is_refused():
    with pytest.raises(ValueError, match="coupling must be one of"):
        joint([1.0], [1.0], "gumbel-max")


# ---------------------------------------------------------------- counterfactual stability


@given(pair(tiny=True))
def test_gumbel_max_joint_is_counterfactually_stable(p_q):
    p, q = p_q
    assert is_counterfactually_stable(gumbel_max_joint(p, q), p, q)


def test_exact_odds_ties_leave_no_forbidden_mass():
    # r_0 = r_1 exactly: T = 0, T' = 1 and T = 1, T' = 0 are both forbidden.
    p, q = np.array([0.2, 0.4, 0.4]), np.array([0.1, 0.2, 0.7])
    law = gumbel_max_joint(p, q)
    assert law[0, 1] == 0 and law[1, 0] == 0
    assert is_counterfactually_stable(law, p, q, atol=0.0)


@given(distribution(2), distribution(2))
def test_inverse_cdf_is_stable_with_two_tokens(p, q):
    assert is_counterfactually_stable(inverse_cdf_joint(p, q), p, q)


def test_inverse_cdf_is_not_counterfactually_stable_with_three_tokens():
    # q_0 / p_0 = 0.75 >= q_1 / p_1 = 0.5, so T = 0, T' = 1 is forbidden, yet the shared
    # uniform puts U in [0.3, 0.4) there with probability 0.1.
    p, q = np.array([0.4, 0.4, 0.2]), np.array([0.3, 0.2, 0.5])
    law = inverse_cdf_joint(p, q)
    assert law[0, 1] == pytest.approx(0.1, abs=1e-15)
    assert not is_counterfactually_stable(law, p, q)
    assert is_counterfactually_stable(gumbel_max_joint(p, q), p, q)


def test_the_independent_coupling_is_not_stable():
    p, q = np.array([0.6, 0.4]), np.array([0.7, 0.3])
    assert not is_counterfactually_stable(independent_joint(p, q), p, q)


def test_stability_check_refuses_a_non_coupling():
    p, q = np.array([0.5, 0.5]), np.array([0.5, 0.5])
    with pytest.raises(ValueError, match="not a coupling"):
        is_counterfactually_stable(np.diag([0.6, 0.4]), p, q)
    with pytest.raises(ValueError, match="joint_law must have shape"):
        is_counterfactually_stable(np.eye(3) / 3, p, q)


# ---------------------------------------------------------------- brute-force Monte Carlo


def sample_pairs(p: np.ndarray, q: np.ndarray, coupling: str, n: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Draw n token pairs by running the samplers themselves (not the closed forms)."""
    with np.errstate(divide="ignore"):
        log_p, log_q = np.log(p), np.log(q)
    if coupling == "gumbel":
        gumbels = rng.gumbel(size=(n, p.size))
        return np.stack([np.argmax(log_p + gumbels, axis=1),
                         np.argmax(log_q + gumbels, axis=1)], axis=1)
    if coupling == "inverse_cdf":
        uniform = rng.random(n)
        # clipped: a cumulative sum may end one ulp below 1
        return np.stack([np.searchsorted(np.cumsum(p), uniform, side="right"),
                         np.searchsorted(np.cumsum(q), uniform, side="right")],
                        axis=1).clip(max=p.size - 1)
    return np.stack([np.argmax(log_p + rng.gumbel(size=(n, p.size)), axis=1),
                     np.argmax(log_q + rng.gumbel(size=(n, p.size)), axis=1)], axis=1)


def assert_cells_agree(counts: np.ndarray, law: np.ndarray, n: int) -> None:
    """Each cell count against its *theoretical* probability: within 5 standard errors when
    the normal approximation is good (>= 30 expected in and out of the cell), otherwise an exact
    binomial test at level 1e-6 (about the two-sided tail of 5 standard errors); impossible
    cells must be empty."""
    for (a, b), probability in np.ndenumerate(law):
        count = counts[a, b]
        if probability == 0:
            assert count == 0, (a, b)
        elif min(n * probability, n * (1 - probability)) >= 30:
            standard_error = np.sqrt(n * probability * (1 - probability))
            assert abs(count - n * probability) <= 5 * standard_error, (a, b, count, probability)
        else:
            assert stats.binomtest(int(count), n, probability).pvalue > 1e-6, (a, b)


@pytest.mark.parametrize("coupling", COUPLINGS)
@pytest.mark.parametrize(("p", "q"), [
    ([0.5, 0.3, 0.2], [0.1, 0.3, 0.6]),
    ([0.05, 0.6, 0.0, 0.3, 0.05], [0.2, 0.2, 0.2, 0.0, 0.4]),
    ([1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]),
    ([0.001, 0.009, 0.09, 0.9], [0.9, 0.09, 0.009, 0.001]),
])
def test_joint_agrees_with_monte_carlo(coupling, p, q):
    p, q = np.array(p), np.array(q)
    n = 200_000
    tokens = sample_pairs(p, q, coupling, n, np.random.default_rng(20261123))
    counts = np.zeros((p.size, p.size), dtype=np.int64)
    np.add.at(counts, (tokens[:, 0], tokens[:, 1]), 1)
    assert_cells_agree(counts, joint(p, q, coupling), n)


def test_monte_carlo_check_has_power():
    # The same check rejects a wrong law: the independent joint against Gumbel-max samples.
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.1, 0.3, 0.6])
    n = 200_000
    tokens = sample_pairs(p, q, "gumbel", n, np.random.default_rng(1))
    counts = np.zeros((3, 3), dtype=np.int64)
    np.add.at(counts, (tokens[:, 0], tokens[:, 1]), 1)
    with pytest.raises(AssertionError):
        assert_cells_agree(counts, independent_joint(p, q), n)
