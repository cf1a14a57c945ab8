"""Planning: power solvers, Connor's McNemar formula, variance components from assumptions and
pilots. Calibration against simulation (planned power achieved) is in
tests/test_coverage_benchmark.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from test_analysis_benchmark_sim import make_population, simulate_replicates, to_scores

from coupled.analysis._clustered import VarianceComponents
from coupled.analysis.planning import (
    components_from_accuracies,
    components_from_distributions,
    components_from_pilot,
    mcnemar_power,
    mcnemar_power_exact,
    mcnemar_sample_size,
    minimum_detectable_effect,
    plan_from_accuracies,
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
    assert power_mean_difference(COMPONENTS, mde, plan.n_questions, n_seeds,
                                 mode=mode) == pytest.approx(power, abs=1e-6)
    assert plan.power_method == "normal approximation"  # graded (binary=False): no law


@given(st.integers(20, 2000), st.floats(0.6, 0.95))
def test_mcnemar_mde_round_trip(n_questions, power):
    psi = COMPONENTS.total("independent") + COMPONENTS.effect**2
    try:
        mde = minimum_detectable_effect(COMPONENTS, n_questions, 1, mode="independent",
                                        power=power, binary=True)
    except ValueError as error:  # only where even effect = psi cannot reach the power
        assert "cannot reach" in str(error)
        assert mcnemar_power_exact(psi, psi, n_questions) < power
        return
    assert 0 < mde <= psi
    assert mcnemar_power_exact(psi, mde, n_questions) == pytest.approx(power, abs=1e-6)


def test_exact_mcnemar_power_matches_brute_force_and_connor_at_large_n():
    # brute force over the trinomial (b, c) for n = 12, against the z test's rejection rule
    psi, effect, n = 0.3, 0.1, 12
    p10, p01 = (psi + effect) / 2, (psi - effect) / 2
    z = stats.norm.isf(0.025)
    total = 0.0
    for b in range(n + 1):
        for c in range(n + 1 - b):
            if b + c and abs(b - c) / np.sqrt(b + c) > z:
                total += stats.multinomial.pmf([b, c, n - b - c], n, [p10, p01, 1 - psi])
    assert mcnemar_power_exact(psi, effect, n) == pytest.approx(total, rel=1e-9)
    assert mcnemar_power_exact(0.23, 0.07, 3000) == pytest.approx(
        mcnemar_power(0.23, 0.07, 3000), abs=0.01)


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


def test_zero_variance_is_refused_not_planned_from():
    nothing = VarianceComponents(effect=0.1, between=0.0, within_coupled=0.0,
                                 within_independent=0.0)
    with pytest.raises(ValueError, match="zero variance"):
        questions_needed(nothing, 0.1, n_seeds=3)
    with pytest.raises(ValueError, match="effect must be non-zero"):
        questions_needed(COMPONENTS, 0.0)
    with pytest.raises(ValueError, match="mode"):
        questions_needed(COMPONENTS, 0.1, mode="both")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e308])
def test_non_finite_or_impossible_effects_name_the_option(bad):
    with pytest.raises(ValueError, match="effect"):
        questions_needed(COMPONENTS, bad)
    with pytest.raises(ValueError, match="effect"):
        power_mean_difference(COMPONENTS, bad, 100)
    broken = VarianceComponents(effect=0.1, between=float("nan"), within_coupled=0.1,
                                within_independent=0.2)
    with pytest.raises(ValueError, match="components"):
        questions_needed(broken, 0.05)
    with pytest.raises(ValueError, match="alpha"):
        questions_needed(COMPONENTS, 0.05, alpha=float("nan"))


def test_effect_equal_to_the_discordance_is_not_a_float_equality_failure():
    # comonotone with p_a >= p_b everywhere: b is never right when a is wrong, so the effect
    # equals P(discordant) exactly — up to the rounding of the variance sums.
    rng = np.random.default_rng(2)
    p_b = rng.uniform(0.3, 0.8, 300)
    p_a = np.minimum(p_b + rng.uniform(0, 0.2, 300), 1)
    components = components_from_accuracies(p_a, p_b)
    psi = components.total("coupled") + components.effect**2
    assert psi == pytest.approx(components.effect, rel=1e-12)
    for n_seeds in (1, 3):
        plan = questions_needed(components, components.effect, n_seeds=n_seeds, binary=True)
        assert plan.n_questions >= 2 and 0.8 <= plan.power <= 1
    table = plan_mean_difference(components, components.effect, binary=True)
    assert len(table) == 8


def test_mde_at_two_questions_is_an_error_not_a_number():
    with pytest.raises(ValueError, match="n_questions: 2 questions"):
        minimum_detectable_effect(COMPONENTS, 2, 1, binary=True)
    with pytest.raises(ValueError, match="n_questions: 2 questions"):
        minimum_detectable_effect(COMPONENTS, 2, 5)
    table = plan_mean_difference(COMPONENTS, budget_questions=3, binary=True)
    assert table["mde"].isna().any() and table["mde_note"].str.contains("cannot reach").any()


def test_pilot_that_never_disagrees_plans_from_an_upper_bound():
    a, _, mask = simulate_replicates(POP, 1, 20, 3, "coupled", np.random.default_rng(1))
    frame = to_scores(a[0], a[0], mask[0], "coupled")
    components = components_from_pilot(frame, "m_a", "m_b")
    assert components.within_coupled > 0.05  # a one-sided 95 % bound on 20 questions
    assert "upper bound" in components.note and "0 of 60" in components.note
    plan = questions_needed(components, 0.05, n_seeds=3, binary=True)
    assert plan.n_questions > 20  # not "2 questions suffice"
    point = components_from_pilot(frame, "m_a", "m_b", confidence=None)
    assert point.within_coupled == 0 and point.note == ""
    with pytest.raises(ValueError, match="zero variance"):
        questions_needed(point, 0.05, n_seeds=3)


def test_plan_from_accuracies_reports_the_honest_range():
    rng = np.random.default_rng(0)
    p_a, p_b = rng.uniform(0.5, 0.95, 200), rng.uniform(0.45, 0.9, 200)
    result = plan_from_accuracies(p_a, p_b, 0.05, seeds=(1, 5))
    plans = result.plans
    assert set(plans["assumption"]) == {"independence", "gumbel-single-token", "comonotone"}
    coupled = plans[plans["mode"] == "coupled"].pivot(index="n_seeds", columns="assumption",
                                                      values="n_questions")
    assert (coupled["independence"] >= coupled["gumbel-single-token"]).all()
    assert (coupled["gumbel-single-token"] >= coupled["comonotone"]).all()
    independent = plans[plans["mode"] == "independent"]
    assert independent.groupby("n_seeds")["n_questions"].nunique().eq(1).all()
    assert "several correct tokens" in result.labels["gumbel-single-token"]
    assert "worst case" in result.labels["independence"]
    # independence is the independent plan: no saving
    ind = independent[independent["assumption"] == "independence"].set_index("n_seeds")
    assert (coupled["independence"] == ind["n_questions"]).all()


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
