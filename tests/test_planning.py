"""Planning: power solvers, Connor's McNemar formula, variance components from assumptions and
pilots. Calibration against simulation (planned power achieved) is in
tests/test_coverage_benchmark.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from statsmodels.stats.contingency_tables import mcnemar
from test_analysis_benchmark_sim import make_population, simulate_replicates, to_scores

from coupled.analysis._clustered import VarianceComponents
from coupled.analysis.planning import (
    components_from_accuracies,
    components_from_distributions,
    components_from_pilot,
    mcnemar_power,
    mcnemar_sample_size,
    minimum_detectable_effect,
    plan_mean_difference,
    power_mean_difference,
    questions_needed,
)

POP = make_population()
COMPONENTS = components_from_accuracies(POP.p_right, POP.q_right, POP.both_right_coupled)

probabilities = st.floats(0.05, 0.95)


@given(st.floats(0.05, 0.9), st.floats(0.1, 0.9), st.floats(0.5, 0.95))
def test_mcnemar_sample_size_and_power_are_inverse(psi, share, power):
    effect = share * psi
    n = mcnemar_sample_size(psi, effect, power)
    assert mcnemar_power(psi, effect, n) == pytest.approx(power, abs=1e-9)
    assert mcnemar_power(psi, -effect, n) == pytest.approx(power, abs=1e-9)


def test_mcnemar_power_matches_simulated_uncorrected_mcnemar():
    # Connor's normal approximation vs 4000 simulated McNemar tests on i.i.d. pairs with
    # P(10) = .15, P(01) = .08 (psi = .23, effect = .07), at the planned n: within 4 MC SEs.
    psi, effect = 0.23, 0.07
    n = int(np.ceil(mcnemar_sample_size(psi, effect, 0.8)))
    rng = np.random.default_rng(3)
    cells = rng.multinomial(n, [0.15, 0.08, 1 - psi], size=4000)
    rejected = np.mean([mcnemar([[0, x], [y, 0]], exact=False, correction=False).pvalue < 0.05
                        for x, y, _ in cells])
    planned = mcnemar_power(psi, effect, n)
    assert abs(rejected - planned) < 4 * np.sqrt(planned * (1 - planned) / 4000)


def test_mcnemar_power_is_alpha_at_zero_effect_and_rejects_impossible_input():
    assert mcnemar_power(0.3, 0.0, 100) == 0.05
    with pytest.raises(ValueError, match="cannot exceed"):
        mcnemar_power(0.1, 0.2, 100)
    with pytest.raises(ValueError, match="p_discordant"):
        mcnemar_sample_size(0.0, 0.0)


@given(st.lists(st.tuples(probabilities, probabilities), min_size=2, max_size=30))
def test_components_from_accuracies_order_the_modes(pairs):
    p_a, p_b = np.array(pairs).T
    coupled = components_from_accuracies(p_a, p_b)
    as_product = components_from_accuracies(p_a, p_b, p_a * p_b)
    # comonotone joint: within variance |p - q| - (p - q)^2 <= independent's; a product joint
    # reproduces the independent within variance exactly.
    assert coupled.within_coupled <= coupled.within_independent + 1e-12
    assert as_product.within_coupled == pytest.approx(as_product.within_independent)
    assert coupled.effect == pytest.approx(np.mean(p_a - p_b))
    assert coupled.between == pytest.approx(np.var(p_a - p_b))


def test_components_from_accuracies_rejects_impossible_joint():
    with pytest.raises(ValueError, match="Fréchet"):
        components_from_accuracies([0.5], [0.5], [0.6])
    with pytest.raises(ValueError, match="p_a"):
        components_from_accuracies([1.5], [0.5])


@given(st.integers(2, 20), st.sampled_from(["coupled", "independent"]),
       st.floats(0.02, 0.2), st.floats(0.6, 0.95))
def test_questions_needed_is_the_smallest_design_reaching_power(n_seeds, mode, effect, power):
    plan = questions_needed(COMPONENTS, effect, n_seeds=n_seeds, mode=mode, power=power)
    assert plan.power >= power - 1e-9
    if plan.n_questions > 2:
        below = power_mean_difference(COMPONENTS, effect, plan.n_questions - 1, n_seeds,
                                      mode=mode)
        assert below < power
    mde = minimum_detectable_effect(COMPONENTS, plan.n_questions, n_seeds, mode=mode,
                                    power=power)
    assert mde <= effect + 1e-9
    # statsmodels' solve_power stops at ~1e-5 in power: a solver tolerance, not statistics.
    assert power_mean_difference(COMPONENTS, mde, plan.n_questions, n_seeds,
                                 mode=mode) == pytest.approx(power, abs=1e-4)


@given(st.integers(20, 2000), st.floats(0.6, 0.95))
def test_mcnemar_mde_round_trip(n_questions, power):
    mde = minimum_detectable_effect(COMPONENTS, n_questions, 1, mode="independent",
                                    power=power, binary=True)
    psi = COMPONENTS.total("independent") + COMPONENTS.effect**2
    assert 0 < mde <= psi
    if mde < psi:
        assert mcnemar_power(psi, mde, n_questions) == pytest.approx(power, abs=1e-6)


def test_coupling_needs_fewer_questions_and_design_effect_grows_with_seeds():
    table = plan_mean_difference(COMPONENTS, POP.effect, seeds=(1, 2, 5, 10),
                                 budget_questions=300, binary=True)
    wide = table.pivot(index="n_seeds", columns="mode", values="n_questions")
    assert (wide["coupled"] < wide["independent"]).all()
    assert (np.diff(wide["coupled"].to_numpy()) < 0).all()  # more seeds, fewer questions
    mde = table.pivot(index="n_seeds", columns="mode", values="mde")
    assert (mde["coupled"] < mde["independent"]).all()
    deff = table[table["mode"] == "coupled"]["design_effect"].to_numpy()
    assert deff[0] == pytest.approx(1.0) and (np.diff(deff) > 0).all()
    assert table.loc[(table["n_seeds"] == 1), "test"].eq("mcnemar").all()


def test_zero_variance_plans_plainly():
    nothing = VarianceComponents(effect=0.1, between=0.0, within_coupled=0.0,
                                 within_independent=0.0)
    plan = questions_needed(nothing, 0.1, n_seeds=3)
    assert plan.n_questions == 2 and plan.power == 1.0
    with pytest.raises(ValueError, match="effect must be non-zero"):
        questions_needed(COMPONENTS, 0.0)
    with pytest.raises(ValueError, match="mode"):
        questions_needed(COMPONENTS, 0.1, mode="both")


def test_components_from_a_pilot_estimate_the_truth():
    # Pilots of 300 questions × 8 seeds in each mode: the mean of 20 replicated pilots'
    # method-of-moments estimates lies within 4 SEs (their own spread / sqrt(20)) of the truth.
    rng = np.random.default_rng(12)
    estimates = []
    for _ in range(20):
        a, b, mask = simulate_replicates(POP, 1, 300, 8, "coupled", rng)
        ia, ib, imask = simulate_replicates(POP, 1, 300, 8, "independent", rng)
        frame = pd.concat([to_scores(a[0], b[0], mask[0], "coupled"),
                           to_scores(ia[0], ib[0], imask[0], "independent")])
        c = components_from_pilot(frame, "m_a", "m_b")
        estimates.append([c.effect, c.between, c.within_coupled, c.within_independent])
    estimates = np.array(estimates)
    truth = np.array([POP.effect, POP.between, POP.within("coupled"),
                      POP.within("independent")])
    se = estimates.std(axis=0, ddof=1) / np.sqrt(len(estimates))
    assert np.all(np.abs(estimates.mean(axis=0) - truth) < 4 * se)


def test_pilot_with_one_seed_is_refused_by_name():
    a, b, mask = simulate_replicates(POP, 1, 50, 1, "coupled", np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 2 seeds"):
        components_from_pilot(to_scores(a[0], b[0], mask[0], "coupled"), "m_a", "m_b")


def test_components_from_distributions_use_the_exact_gumbel_joint():
    pytest.importorskip("coupled.theory")
    from_dists = components_from_distributions(POP.p, POP.q, np.zeros(len(POP.p), dtype=int))
    assert from_dists.effect == pytest.approx(POP.effect, abs=1e-12)
    assert from_dists.between == pytest.approx(POP.between, abs=1e-12)
    assert from_dists.within_coupled == pytest.approx(POP.within("coupled"), abs=1e-12)
    assert from_dists.within_independent == pytest.approx(POP.within("independent"), abs=1e-12)
    mask = np.zeros(POP.p.shape, dtype=bool)
    mask[:, 0] = True
    assert components_from_distributions(POP.p, POP.q, mask) == from_dists
    with pytest.raises(ValueError, match="correct"):
        components_from_distributions(POP.p, POP.q, np.zeros(3))
