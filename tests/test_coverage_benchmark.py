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
    low, high = _band(target, reps, full, half_width)
    assert low <= rate <= high, f"{what}: {rate:.4f} outside [{low:.4f}, {high:.4f}] ({reps} reps)"


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


@pytest.mark.parametrize("design", list(DESIGNS))
@pytest.mark.parametrize("mode", ["coupled", "independent"])
def test_mean_difference_ci_coverage(mode, design):
    reps = 1000
    rate = _mean_difference_coverage(mode, design, reps, seed=len(mode) * 10 + len(design))
    _check_rate(rate, LEVEL, reps, False, 0.015, f"{mode}/{design} coverage")


@pytest.mark.slow
@pytest.mark.parametrize("design", list(DESIGNS))
@pytest.mark.parametrize("mode", ["coupled", "independent"])
def test_mean_difference_ci_coverage_full(mode, design):
    reps = 4000
    rate = _mean_difference_coverage(mode, design, reps, seed=1 + len(mode) * 7 + len(design))
    print(f"\nFULL mean-difference coverage {mode}/{design}: {rate:.4f} ({reps} reps)")
    _check_rate(rate, LEVEL, reps, True, 0.015, f"{mode}/{design} coverage")


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


@pytest.mark.parametrize("design", ["balanced", "unbalanced"])
@pytest.mark.parametrize("source", ["from_coupled", "measured"])
def test_variance_ratio_ci_coverage(source, design):
    reps = 400
    rate = _ratio_coverage(source, design, reps, seed=len(source) * 10 + len(design))
    _check_rate(rate, LEVEL, reps, False, 0.015, f"ratio CI {source}/{design}")


@pytest.mark.slow
@pytest.mark.parametrize("design", ["balanced", "unbalanced"])
@pytest.mark.parametrize("source", ["from_coupled", "measured"])
def test_variance_ratio_ci_coverage_full(source, design):
    reps = 2000
    rate = _ratio_coverage(source, design, reps, seed=100 + len(source) * 10 + len(design))
    print(f"\nFULL variance-ratio coverage {source}/{design}: {rate:.4f} ({reps} reps)")
    _check_rate(rate, LEVEL, reps, True, 0.015, f"ratio CI {source}/{design}")


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


@pytest.mark.parametrize("n_seeds", [1, 5])
@pytest.mark.parametrize("mode", ["coupled", "independent"])
def test_planned_power_is_achieved(mode, n_seeds):
    reps = 600
    achieved, planned = _achieved_power(mode, n_seeds, reps, seed=n_seeds * 3 + len(mode))
    _check_rate(achieved, planned, reps, False, 0.05, f"power {mode}, {n_seeds} seeds")


@pytest.mark.slow
@pytest.mark.parametrize("n_seeds", [1, 5])
@pytest.mark.parametrize("mode", ["coupled", "independent"])
def test_planned_power_is_achieved_full(mode, n_seeds):
    reps = 2000
    achieved, planned = _achieved_power(mode, n_seeds, reps, seed=50 + n_seeds * 3 + len(mode))
    print(f"\nFULL power {mode}, {n_seeds} seeds: planned {planned:.4f}, achieved "
          f"{achieved:.4f} ({reps} reps)")
    _check_rate(achieved, planned, reps, True, 0.05, f"power {mode}, {n_seeds} seeds")


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


@pytest.mark.parametrize("mode", ["coupled", "independent"])
def test_mean_difference_coverage_on_coupled_simulate_data(mode):
    reps = 60  # end-to-end smoke check; the calibrated runs are the array ones above
    rate = _coverage_on_simulate(mode, mode == "independent", reps, seed=len(mode))
    _check_rate(rate, LEVEL, reps, False, 0.015, f"{mode} coverage on coupled.simulate data")


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "unbalanced"), [("coupled", True), ("independent", False)])
def test_mean_difference_coverage_on_coupled_simulate_data_full(mode, unbalanced):
    # ~0.1 s per replicate (noise function + validation), so two of the four configurations;
    # the other two run in the reduced test above, all four on the array path.
    reps = 2000
    rate = _coverage_on_simulate(mode, unbalanced, reps, seed=10 + len(mode) + unbalanced)
    print(f"\nFULL coverage on coupled.simulate data {mode}/"
          f"{'unbalanced' if unbalanced else 'balanced'}: {rate:.4f} ({reps} reps)")
    _check_rate(rate, LEVEL, reps, True, 0.015, f"{mode} coverage on coupled.simulate data")
