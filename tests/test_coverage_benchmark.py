"""Calibration of every statistical claim the benchmark analysis prints, on data with known truth.

Data: the vectorised Gumbel-max generator of ``test_analysis_benchmark_sim`` (the same law as
``coupled.simulate`` and as the exact joint — tested there), with questions drawn i.i.d. from a
fixed population whose mean difference, variance components and variance ratio are exact.

Full checks (``-m slow``): ≥ 2000 replicates per configuration; bands as the issue states
(95 % CIs cover within 93.5–96.5 %, planned power within ±5 points). The CI versions run fewer
replicates and widen each band by 3.3 Monte-Carlo SEs of their own replicate count,
``3.3 * sqrt(p (1 - p) / R)``, so they fail only on real miscalibration.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_analysis_benchmark_sim import make_population, simulate_replicates

from coupled.analysis._clustered import question_moments
from coupled.analysis.benchmark import mean_difference_replicates, variance_ratio_from_moments
from coupled.analysis.planning import (
    components_from_accuracies,
    minimum_detectable_effect,
    questions_needed,
)

POP = make_population()
LEVEL = 0.95
DESIGNS = {  # name: (questions, seeds, unbalanced)
    "balanced": (60, 10, False),
    "unbalanced": (80, 8, True),
    "one-seed": (150, 1, False),
}


def _band(target: float, reps: int, full: bool, half_width: float) -> tuple[float, float]:
    widen = 0.0 if full else 3.3 * np.sqrt(target * (1 - target) / reps)
    return target - half_width - widen, target + half_width + widen


def _check_rate(rate: float, target: float, reps: int, full: bool, half_width: float, what):
    if full:  # the figures bench/analysis_benchmark.md records
        print(f"\nFULL {what}: {rate:.4f} (target {target:.4f}, {reps} reps)")
    low, high = _band(target, reps, full, half_width)
    assert low <= rate <= high, f"{what}: {rate:.4f} outside [{low:.4f}, {high:.4f}] ({reps} reps)"


def _reduced_and_full(reduced_reps: int, full_reps: int):
    """Parametrise a check over its reduced run and its full run (``-m slow``). Each run keeps
    its own seed, so the full runs reproduce the recorded figures."""
    return pytest.mark.parametrize(("reps", "full"), [
        pytest.param(reduced_reps, False, id="reduced"),
        pytest.param(full_reps, True, id="full", marks=pytest.mark.slow)])


# ----------------------------------------------------------------------------- mean difference
def _mean_difference_coverage(mode: str, design: str, reps: int, seed: int) -> float:
    n_questions, n_seeds, unbalanced = DESIGNS[design]
    rng = np.random.default_rng(seed)
    covered = 0
    for start in range(0, reps, 1000):  # chunks keep memory small
        r = min(1000, reps - start)
        a, b, mask = simulate_replicates(POP, r, n_questions, n_seeds, mode, rng, unbalanced)
        result = mean_difference_replicates(a, b, mask, alpha=1 - LEVEL)
        covered += int(np.sum((result.ci_low <= POP.effect) & (POP.effect <= result.ci_high)))
    return covered / reps


@_reduced_and_full(1000, 4000)
@pytest.mark.parametrize("design", list(DESIGNS))
@pytest.mark.parametrize("mode", ["coupled", "independent"])
def test_mean_difference_ci_coverage(mode, design, reps, full):
    seed = 1 + len(mode) * 7 + len(design) if full else len(mode) * 10 + len(design)
    rate = _mean_difference_coverage(mode, design, reps, seed)
    _check_rate(rate, LEVEL, reps, full, 0.015, f"mean-difference coverage {mode}/{design}")


# ----------------------------------------------------------------------------- variance ratio
def _ratio_coverage(source: str, design: str, reps: int, seed: int) -> float:
    n_questions, n_seeds, unbalanced = DESIGNS[design]
    rng = np.random.default_rng(seed)
    a, b, mask = simulate_replicates(POP, reps, n_questions, n_seeds, "coupled", rng, unbalanced)
    if source == "measured":
        ia, ib, imask = simulate_replicates(POP, reps, n_questions, n_seeds, "independent", rng,
                                            unbalanced)
    truth, covered = POP.ratio(), 0
    for r in range(reps):  # one benchmark at a time: the jackknife is over its questions
        independent = (question_moments(ia[r], ib[r], imask[r]) if source == "measured"
                       else None)
        numbers = variance_ratio_from_moments(question_moments(a[r], b[r], mask[r]),
                                              independent, alpha=1 - LEVEL)
        covered += numbers["ratio_ci_low"] <= truth <= numbers["ratio_ci_high"]
    return covered / reps


@_reduced_and_full(400, 2000)
@pytest.mark.parametrize("design", ["balanced", "unbalanced"])
@pytest.mark.parametrize("source", ["from_coupled", "measured"])
def test_variance_ratio_ci_coverage(source, design, reps, full):
    seed = 100 * full + len(source) * 10 + len(design)
    rate = _ratio_coverage(source, design, reps, seed)
    _check_rate(rate, LEVEL, reps, full, 0.015, f"variance-ratio coverage {source}/{design}")


# ----------------------------------------------------------------------------- planned power
def _rejection_rate(pop, n_questions: int, n_seeds: int, mode: str, reps: int, seed: int
                    ) -> float:
    """How often mean_difference's test (the array core) rejects at 5 % on replicated designs."""
    rng = np.random.default_rng(seed)
    rejected = 0
    for start in range(0, reps, 500):
        r = min(500, reps - start)
        a, b, mask = simulate_replicates(pop, r, n_questions, n_seeds, mode, rng)
        rejected += int(np.sum(mean_difference_replicates(a, b, mask).pvalue < 0.05))
    return rejected / reps


def _achieved_power(mode: str, n_seeds: int, reps: int, seed: int, pop=POP,
                    effect: float | None = None) -> tuple[float, float, int]:
    components = components_from_accuracies(pop.p_right, pop.q_right, pop.both_right_coupled)
    plan = questions_needed(components, pop.effect if effect is None else effect,
                            n_seeds=n_seeds, mode=mode, power=0.8, binary=True)
    achieved = _rejection_rate(pop, plan.n_questions, n_seeds, mode, reps, seed)
    return achieved, plan.power, plan.n_questions


@_reduced_and_full(600, 2000)
@pytest.mark.parametrize("n_seeds", [1, 5])
@pytest.mark.parametrize("mode", ["coupled", "independent"])
def test_planned_power_is_achieved(mode, n_seeds, reps, full):
    achieved, planned, _ = _achieved_power(mode, n_seeds, reps, seed=50 * full + n_seeds * 3
                                           + len(mode))
    _check_rate(achieved, planned, reps, full, 0.05, f"power {mode}, {n_seeds} seeds")


# A population with a large effect, so plans are small (the smallest sizes a plan reports are
# where normal approximations fail: issue 11 measured 93.6 % for a planned 80 % with 5 seeds).
BIG = make_population(shift=1.0, seed=3)


@_reduced_and_full(600, 2000)
@pytest.mark.parametrize("n_seeds", [1, 5, 20])
def test_small_plans_achieve_their_power(n_seeds, reps, full):
    achieved, planned, n_questions = _achieved_power("coupled", n_seeds, reps,
                                                     seed=70 + n_seeds + 100 * full, pop=BIG)
    assert n_questions <= 60, n_questions  # the regime this test is for
    _check_rate(achieved, planned, reps, full, 0.05,
                f"power of a small plan ({n_questions} questions x {n_seeds} seeds)")


@_reduced_and_full(800, 4000)
@pytest.mark.parametrize("n_questions", [12, 40, 300])
def test_mcnemar_mde_is_detected_with_the_planned_power(n_questions, reps, full):
    # one binary seed: the MDE at fixed discordance, checked on i.i.d. trinomial pairs
    # through mean_difference's test
    components = components_from_accuracies(POP.p_right, POP.q_right, POP.both_right_coupled)
    psi = components.total("coupled") + components.effect**2
    try:
        mde = minimum_detectable_effect(components, n_questions, 1, binary=True)
    except ValueError as error:
        assert "cannot reach" in str(error) and n_questions == 12
        return
    rng = np.random.default_rng(n_questions + 1000 * full)
    cells = rng.multinomial(1, [(psi + mde) / 2, (psi - mde) / 2, 1 - psi],
                            size=(reps, n_questions))
    a = (cells[..., 0] == 1).astype(float)[..., None]
    b = (cells[..., 1] == 1).astype(float)[..., None]
    achieved = np.mean(mean_difference_replicates(a, b).pvalue < 0.05)
    _check_rate(achieved, 0.8, reps, full, 0.05, f"MDE power at {n_questions} questions")


# ----------------------------------------------------------------------------- coupled.simulate
def _coverage_on_simulate(mode: str, unbalanced: bool, reps: int, seed: int) -> float:
    """The DataFrame API end to end on ``coupled.simulate.simulate_scores`` tables (noise
    function and all): 60 questions drawn from the population, 5 seeds; unbalanced drops a
    random 30 % of model b's rows."""
    simulate = pytest.importorskip("coupled.simulate")
    from coupled.analysis.benchmark import mean_difference

    rng = np.random.default_rng(seed)
    covered = 0
    for r in range(reps):
        index = rng.integers(0, len(POP.p), size=60)
        frame = simulate.simulate_scores({"m_a": POP.p[index], "m_b": POP.q[index]},
                                         np.zeros(60, dtype=int), 5, models=["m_a", "m_b"],
                                         modes=[mode], seed=seed * 100_000 + r)
        if unbalanced:
            drop = (frame["model"] == "m_b").to_numpy() & (rng.random(len(frame)) < 0.3)
            frame = frame[~drop]
        # a question can lose all of b's rows (0.3^5): drop it explicitly (missing at random)
        result = mean_difference(frame, "m_a", "m_b", mode=mode, missing_questions="drop")
        covered += result.ci_low <= POP.effect <= result.ci_high
    return covered / reps


# ~0.1 s per replicate (noise function + validation), so each run covers two of the four
# configurations (the full run the other two); all four are calibrated on the array path above.
# The reduced run (60 replicates) is an end-to-end smoke check.
@pytest.mark.parametrize(("mode", "unbalanced", "reps", "full"), [
    pytest.param("coupled", False, 60, False, id="reduced-coupled-balanced"),
    pytest.param("independent", True, 60, False, id="reduced-independent-unbalanced"),
    pytest.param("coupled", True, 2000, True, id="full-coupled-unbalanced",
                 marks=pytest.mark.slow),
    pytest.param("independent", False, 2000, True, id="full-independent-balanced",
                 marks=pytest.mark.slow)])
def test_mean_difference_coverage_on_coupled_simulate_data(mode, unbalanced, reps, full):
    seed = 10 + len(mode) + unbalanced if full else len(mode)
    rate = _coverage_on_simulate(mode, unbalanced, reps, seed)
    balance = "unbalanced" if unbalanced else "balanced"
    _check_rate(rate, LEVEL, reps, full, 0.015,
                f"coverage on coupled.simulate data {mode}/{balance}")
