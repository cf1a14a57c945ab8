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
from statsmodels.stats.contingency_tables import mcnemar
from test_analysis_benchmark_sim import make_population, simulate_replicates

from coupled.analysis._clustered import question_moments
from coupled.analysis.benchmark import mean_difference_replicates, variance_ratio_from_moments
from coupled.analysis.planning import components_from_accuracies, questions_needed

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
    for r in range(reps):  # the bootstrap is vectorised over resamples, not replicates
        independent = (question_moments(ia[r], ib[r], imask[r]) if source == "measured"
                       else None)
        numbers = variance_ratio_from_moments(question_moments(a[r], b[r], mask[r]),
                                              independent, alpha=1 - LEVEL, n_resamples=999,
                                              rng=r)
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
def _achieved_power(mode: str, n_seeds: int, reps: int, seed: int) -> tuple[float, float]:
    components = components_from_accuracies(POP.p_right, POP.q_right, POP.both_right_coupled)
    plan = questions_needed(components, POP.effect, n_seeds=n_seeds, mode=mode, power=0.8,
                            binary=True)
    rng = np.random.default_rng(seed)
    rejected = 0
    for start in range(0, reps, 500):
        r = min(500, reps - start)
        a, b, mask = simulate_replicates(POP, r, plan.n_questions, n_seeds, mode, rng)
        if plan.test == "mcnemar":  # the test mean_difference runs for one binary seed
            n10 = ((a == 1) & (b == 0)).sum(axis=(1, 2))
            n01 = ((a == 0) & (b == 1)).sum(axis=(1, 2))
            pvalues = np.array([mcnemar([[0, x], [y, 0]], exact=x + y < 25,
                                        correction=False).pvalue
                                for x, y in zip(n10, n01, strict=True)])
        else:
            pvalues = mean_difference_replicates(a, b, mask).pvalue
        rejected += int(np.sum(pvalues < 0.05))
    return rejected / reps, plan.power


@_reduced_and_full(600, 2000)
@pytest.mark.parametrize("n_seeds", [1, 5])
@pytest.mark.parametrize("mode", ["coupled", "independent"])
def test_planned_power_is_achieved(mode, n_seeds, reps, full):
    achieved, planned = _achieved_power(mode, n_seeds, reps, seed=50 * full + n_seeds * 3
                                        + len(mode))
    _check_rate(achieved, planned, reps, full, 0.05, f"power {mode}, {n_seeds} seeds")


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
        result = mean_difference(frame, "m_a", "m_b", mode=mode)
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
