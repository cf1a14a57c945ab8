"""The paper's propositions, in their corrected / strengthened forms (DESIGN §1), and the cases
where coupling does not help. Brute-force moments below enumerate (prompt, T, T') outcomes
directly, so they share nothing with ``coupled.theory.rates`` but the joint laws (which
``test_theory_couplings.py`` checks against Monte Carlo)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupled.theory import (
    gumbel_max_joint,
    inverse_cdf_joint,
    is_counterfactually_stable,
    joint,
    pairwise_rates,
    score_difference_moments,
    variance_decomposition,
)

COUPLED = ("gumbel", "inverse_cdf")


def brute_force_moments(dists: np.ndarray, scores: np.ndarray, weights: np.ndarray,
                        coupling: str) -> dict[str, float]:
    """Var[R - R'], Cov[R, R'] and E_S[Cov(R, R' | S)] for models 0 and 1, by enumeration."""
    probability, first, second, prompt = [], [], [], []
    for n, w in enumerate(weights / weights.sum()):
        law = joint(dists[n, 0], dists[n, 1], coupling)
        for (a, b), cell in np.ndenumerate(law):
            probability.append(w * cell)
            first.append(scores[n, a])
            second.append(scores[n, b])
            prompt.append(n)
    probability, first, second, prompt = map(np.array, (probability, first, second, prompt))

    def expectation(values: np.ndarray) -> float:
        return float(probability @ values)

    difference = first - second
    conditional = 0.0
    for n, w in enumerate(weights / weights.sum()):
        here = prompt == n
        if w == 0:
            continue
        mass = probability[here] / w
        conditional += w * (mass @ (first[here] * second[here])
                            - (mass @ first[here]) * (mass @ second[here]))
    return {
        "variance": expectation(difference**2) - expectation(difference) ** 2,
        "covariance": expectation(first * second) - expectation(first) * expectation(second),
        "conditional_covariance": conditional,
    }


@st.composite
def benchmark(draw, max_prompts: int = 4, max_size: int = 5, graded: bool = True):
    """N prompts, two models' next-token distributions, per-token scores and prompt weights."""
    n_prompts = draw(st.integers(1, max_prompts))
    size = draw(st.integers(2, max_size))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dists = rng.dirichlet(np.full(size, draw(st.sampled_from([0.3, 1.0, 5.0]))),
                          size=(n_prompts, 2))
    if graded:
        scores = rng.integers(0, 3, size=(n_prompts, size)).astype(float)
    else:
        scores = np.zeros((n_prompts, size))
        scores[np.arange(n_prompts), rng.integers(0, size, n_prompts)] = 1.0
    weights = rng.random(n_prompts) + 0.05
    return dists, scores, weights


# ---------------------------------------------------------------- Prop. 1, corrected


@given(benchmark(), st.sampled_from(COUPLED))
def test_prop1_corrected_identity_on_prompt_mixtures(case, coupling):
    dists, scores, weights = case
    coupled = brute_force_moments(dists, scores, weights, coupling)
    independent = brute_force_moments(dists, scores, weights, "independent")
    # The corrected identity, on brute-force numbers: the maths.
    assert independent["variance"] == pytest.approx(
        coupled["variance"] + 2 * coupled["conditional_covariance"], abs=1e-12)
    assert coupled["conditional_covariance"] == pytest.approx(
        coupled["covariance"] - independent["covariance"], abs=1e-12)
    # The toolkit's decomposition reports exactly these numbers.
    result = variance_decomposition(dists, scores, coupling=coupling, weights=weights)
    expected = {
        "variance_independent": independent["variance"],
        "variance_coupled": coupled["variance"],
        "expected_conditional_covariance": coupled["conditional_covariance"],
        "covariance_coupled": coupled["covariance"],
        "covariance_independent": independent["covariance"],
        "printed_identity": coupled["variance"] + 2 * coupled["covariance"],
    }
    for field, value in expected.items():
        matrix = getattr(result, field)
        assert matrix[0, 1] == pytest.approx(value, abs=1e-12), field
        assert matrix[1, 0] == pytest.approx(value, abs=1e-12), field
        assert matrix[0, 0] == 0 and matrix[1, 1] == 0


@given(benchmark(max_prompts=1), st.sampled_from(COUPLED))
def test_prop1_printed_form_holds_for_a_fixed_prompt(case, coupling):
    dists, scores, weights = case
    result = variance_decomposition(dists, scores, coupling=coupling, weights=weights)
    assert result.printed_identity[0, 1] == pytest.approx(result.variance_independent[0, 1],
                                                          abs=1e-12)


def test_prop1_counterexample_to_the_printed_form():
    # Two equally likely prompts, correct token 0; prompt 2 swaps the models.
    p1, q1 = [0.9, 0.05, 0.05], [0.1, 0.45, 0.45]
    dists = np.array([[p1, q1], [q1, p1]])
    result = variance_decomposition(dists, np.array([1.0, 0.0, 0.0]))
    assert result.variance_coupled[0, 1] == pytest.approx(0.80, abs=1e-14)
    assert result.variance_independent[0, 1] == pytest.approx(0.82, abs=1e-14)
    assert result.covariance_coupled[0, 1] == pytest.approx(-0.15, abs=1e-14)
    assert result.expected_conditional_covariance[0, 1] == pytest.approx(0.01, abs=1e-14)
    # The printed identity would give 0.80 - 0.30 = 0.50, not 0.82: the paper's form is wrong.
    assert result.printed_identity[0, 1] == pytest.approx(0.50, abs=1e-14)
    # Coupling still helps (0.80 < 0.82) although the coupled covariance is negative.
    assert result.variance_coupled[0, 1] < result.variance_independent[0, 1]


# ---------------------------------------------------------------- Prop. 2 and Prop. 4


probability = st.floats(0.0, 1.0)
inner_probability = st.floats(1e-3, 1 - 1e-3)


@st.composite
def two_outcome_benchmark(draw):
    """Setting 1: probs (N, M) strictly inside (0, 1), and prompt weights."""
    n_prompts, n_models = draw(st.integers(1, 5)), draw(st.integers(2, 4))
    values = draw(st.lists(inner_probability, min_size=n_prompts * n_models,
                           max_size=n_prompts * n_models))
    weights = draw(st.lists(st.floats(0.1, 1.0), min_size=n_prompts, max_size=n_prompts))
    return np.reshape(values, (n_prompts, n_models)), np.array(weights)


@given(two_outcome_benchmark(), st.sampled_from(COUPLED))
def test_prop2_coupled_variance_is_strictly_smaller(case, coupling):
    probs, weights = case
    result = variance_decomposition(probs, coupling=coupling, weights=weights)
    w = weights / weights.sum()
    for i, j in zip(*np.triu_indices(probs.shape[1], k=1), strict=True):
        p, q = probs[:, i], probs[:, j]
        # Comonotone coupling: the per-prompt covariance is min(p, q) - p q > 0.
        gap = 2 * w @ (np.minimum(p, q) - p * q)
        difference = result.variance_independent[i, j] - result.variance_coupled[i, j]
        assert difference == pytest.approx(gap, rel=1e-9, abs=1e-15)
        assert difference > 0


@given(probability, probability)
def test_prop4_closed_forms(p_m, p_other):
    probs = np.array([[p_m, p_other]])
    for coupling in COUPLED:
        rates = pairwise_rates(probs, coupling=coupling)
        assert rates.win[0, 1] == pytest.approx(max(p_m - p_other, 0.0), abs=1e-15)
        assert rates.win[1, 0] == pytest.approx(max(p_other - p_m, 0.0), abs=1e-15)
        assert rates.tie[0, 1] == pytest.approx(1 - abs(p_m - p_other), abs=1e-15)
    rates = pairwise_rates(probs, coupling="independent")
    assert rates.win[0, 1] == pytest.approx(p_m * (1 - p_other), abs=1e-15)
    assert rates.win[1, 0] == pytest.approx(p_other * (1 - p_m), abs=1e-15)
    # The difference of win-rates is the same in both modes (paper, after Prop. 4).
    coupled = pairwise_rates(probs, coupling="gumbel")
    assert (rates.win[1, 0] - rates.win[0, 1]) == pytest.approx(
        coupled.win[1, 0] - coupled.win[0, 1], abs=1e-15)


# ---------------------------------------------------------------- Props. 3 and 5, global


@st.composite
def full_support_pair(draw):
    """Full-support pairs from near (q a small perturbation of p) to far (unrelated)."""
    size = draw(st.integers(2, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p = rng.dirichlet(np.full(size, draw(st.sampled_from([0.2, 1.0, 5.0]))))
    other = rng.dirichlet(np.full(size, draw(st.sampled_from([0.2, 1.0, 5.0]))))
    distance = draw(st.sampled_from([1e-4, 1e-2, 0.3, 1.0]))  # 1.0: unrelated models
    q = (1 - distance) * p + distance * other
    floor = 1e-6  # keep full support
    p, q = (p + floor) / (1 + size * floor), (q + floor) / (1 + size * floor)
    return p, q


@given(full_support_pair())
def test_prop3_global_both_correct_bound(p_q):
    p, q = p_q
    law = gumbel_max_joint(p, q)
    for c in range(p.size):
        both = law[c, c]
        bound = p[c] * q[c] / (p[c] + q[c] - p[c] * q[c])
        assert both >= bound * (1 - 1e-12)
        # hence a strictly positive per-prompt covariance of the 0/1 scores, near or far
        assert both > p[c] * q[c]


@given(st.lists(full_support_pair(), min_size=1, max_size=3).filter(
    lambda pairs: len({p.size for p, _ in pairs}) == 1), st.integers(0, 2**32 - 1))
def test_prop3_global_variance_over_prompts(pairs, seed):
    rng = np.random.default_rng(seed)
    dists = np.array([[p, q] for p, q in pairs])
    scores = np.zeros((len(pairs), dists.shape[2]))
    scores[np.arange(len(pairs)), rng.integers(0, dists.shape[2], len(pairs))] = 1.0
    result = variance_decomposition(dists, scores, weights=rng.random(len(pairs)) + 0.1)
    assert result.expected_conditional_covariance[0, 1] > 0
    assert result.variance_coupled[0, 1] < result.variance_independent[0, 1]


def test_prop3_holds_for_models_far_apart():
    # The paper asks m' to be near m; Gumbel-max needs no such condition.
    p, q = np.array([0.9, 0.05, 0.05]), np.array([0.05, 0.05, 0.9])
    moments = score_difference_moments(np.array([[p, q]]), np.array([1.0, 0.0, 0.0]))
    assert moments.conditional_covariance[0, 1] > 0


@given(full_support_pair(), st.data())
def test_prop5_global_ties_never_fewer(p_q, data):
    p, q = p_q
    scores = np.array(data.draw(st.lists(st.integers(0, 2), min_size=p.size,
                                         max_size=p.size)), dtype=float)
    law = gumbel_max_joint(p, q)
    # Harris/FKG: P(T in L, T' in L) >= p(L) q(L) for every level set L of the scores.
    for level in np.unique(scores):
        members = scores == level
        assert law[np.ix_(members, members)].sum() >= p[members].sum() * q[members].sum() - 1e-15
    coupled = pairwise_rates(np.array([[p, q]]), scores, coupling="gumbel")
    independent = pairwise_rates(np.array([[p, q]]), scores, coupling="independent")
    assert coupled.tie[0, 1] >= independent.tie[0, 1] - 1e-15
    if np.unique(scores).size == scores.size:  # distinct scores: strictly more ties
        assert coupled.tie[0, 1] > independent.tie[0, 1]


# ---------------------------------------------------------------- where coupling fails


def test_graded_scores_can_make_coupling_worse():
    scores = np.array([0.0, 1.0, 2.0])
    dists = np.array([[[0.7, 0.25, 0.05], [0.05, 0.25, 0.7]]])
    result = variance_decomposition(dists, scores)
    assert result.variance_independent[0, 1] == pytest.approx(0.655, abs=1e-14)
    assert result.variance_coupled[0, 1] == pytest.approx(0.7130303, abs=1e-7)
    assert result.variance_coupled[0, 1] > result.variance_independent[0, 1]
    # Ties still do not decrease: it is the graded score, not the coupling, that hurts.
    coupled = pairwise_rates(dists, scores, coupling="gumbel")
    independent = pairwise_rates(dists, scores, coupling="independent")
    assert coupled.tie[0, 1] >= independent.tie[0, 1]


def test_inverse_cdf_coupling_can_give_negative_covariance():
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.1, 0.3, 0.6])
    scores = np.array([0.0, 1.0, 0.0])  # token 1 is correct
    law = inverse_cdf_joint(p, q)
    assert law[1, 1] == 0.0  # U in [0.5, 0.8) for one model, [0.1, 0.4) for the other
    result = variance_decomposition(np.array([[p, q]]), scores, coupling="inverse_cdf")
    assert result.covariance_coupled[0, 1] == pytest.approx(-0.09, abs=1e-15)
    assert result.variance_coupled[0, 1] == pytest.approx(0.60, abs=1e-14)
    assert result.variance_independent[0, 1] == pytest.approx(0.42, abs=1e-14)
    # Gumbel-max on the same pair helps, as Prop. 3 (global) says.
    gumbel = variance_decomposition(np.array([[p, q]]), scores, coupling="gumbel")
    assert gumbel.covariance_coupled[0, 1] > 0
    # Note: this particular inverse-CDF joint does satisfy Definition 1 (its off-diagonal mass
    # is all on allowed cells), so counterfactual stability alone does not guarantee a positive
    # covariance once V > 2; the Gumbel-max law has the stronger (FKG) property.
    assert is_counterfactually_stable(law, p, q)
