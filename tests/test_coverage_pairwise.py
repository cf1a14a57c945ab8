"""Validity of every statistical claim of the pairwise half, by Monte Carlo with known truth
(issue 4, item 7): win/tie/loss-rate and average-win-rate intervals, simultaneous rank-sets, the
coupled-vs-independent z-test (and Holm's family-wise error), and planned power.

Data: :mod:`coupled.analysis.pairwise_simulation` — the canonical two-outcome setting with a
noisy judge, whose truth is Prop. 4 averaged over prompt types (the B.6 numbers are checked in
test_pairwise.py). Replicates are vectorised through the array cores (leading replicate axis),
whose agreement with the DataFrame API is tested in test_pairwise.py / test_ranksets.py.

Each check runs twice: a reduced version in CI (``REDUCED`` replicates), whose band is the
target band widened by 3.3 Monte-Carlo standard errors of its own replicate count, and the full
version (``FULL`` = 2000 replicates, ``-m slow``) against the target band itself. Monte-Carlo SEs
are those of one binomial proportion, sqrt(c(1-c)/R); pooled coverages over several rates are
at least that precise, so the band is never too tight.
"""

from __future__ import annotations

import numpy as np
import pytest

from coupled.analysis.pairwise import (
    average_win_rate_intervals,
    average_win_rates_from_counts,
    clustered_variance,
    directed_rate_intervals,
    mode_difference_from_rates,
    pair_rates_from_counts,
    two_sided_pvalue,
)
from coupled.analysis.pairwise_planning import (
    plan_win_rate_separation,
    separation_test_from_counts,
)
from coupled.analysis.pairwise_simulation import (
    simulate_pair_counts,
    true_average_win_rates,
    true_pair_rates,
)
from coupled.analysis.ranksets import (
    public_code_covariance,
    rank_sets_from_estimates,
    true_rank_range,
)

REDUCED, FULL = 300, 2000
JUDGE_NOISE = 0.1          # keeps every rate away from 0 and 1 in these designs
DESIGNS = {                # (seeds per prompt, probability a comparison is kept)
    "balanced": (3, 1.0),
    "unbalanced": ((1, 5), 0.7),
}
RESULTS: dict[str, float] = {}   # printed with -s, recorded in bench/ranksets.md


def _mc_se(p: float, replicates: int) -> float:
    return float(np.sqrt(p * (1 - p) / replicates))


def _band(replicates: int, low: float, high: float, centre: float) -> tuple[float, float]:
    if replicates >= FULL:
        return low, high
    widen = 3.3 * _mc_se(centre, replicates)
    return low - widen, high + widen


def _probs(k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.2, 0.9, (30, k))


def _replicates(request) -> int:
    return FULL if request.node.get_closest_marker("slow") else REDUCED


def _both(reduced_test):
    """Parametrise a check over (reduced, full-and-slow) replicate counts."""
    return pytest.mark.parametrize("replicates", [
        pytest.param(REDUCED, id="reduced"),
        pytest.param(FULL, id="full", marks=pytest.mark.slow),
    ])(reduced_test)


# ---------------------------------------------------------------- interval coverage

@_both
@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("mode", ["coupled", "independent"])
def test_win_rate_and_average_intervals_cover(mode, design, replicates):
    seeds, keep = DESIGNS[design]
    probs = _probs(4)
    sim = simulate_pair_counts(probs, 100, seeds, mode, 123, replicates,
                               judge_noise=JUDGE_NOISE, pair_keep=keep)
    rates = pair_rates_from_counts(sim.wins_a, sim.wins_b, sim.n)
    truth_a, truth_b = true_pair_rates(probs, mode, JUDGE_NOISE)
    covered = []
    intervals = directed_rate_intervals(rates, sim.n)                # as win_rate_matrix
    for label, truth in (("win", truth_a), ("loss", truth_b), ("tie", 1 - truth_a - truth_b)):
        _, low, high = intervals[label]
        covered.append((low <= truth) & (truth <= high))
    pair_coverage = float(np.mean(covered))

    avg = average_win_rates_from_counts(sim.wins_a, sim.wins_b, sim.n, rates)
    truth = true_average_win_rates(probs, mode, JUDGE_NOISE)
    low, high = average_win_rate_intervals(avg)                      # as average_win_rates
    average_coverage = float(np.mean((low <= truth) & (truth <= high)))
    RESULTS[f"rates {mode} {design} R={replicates}"] = pair_coverage
    RESULTS[f"average {mode} {design} R={replicates}"] = average_coverage
    low_band, high_band = _band(replicates, 0.935, 0.965, 0.95)
    assert low_band <= pair_coverage <= high_band, pair_coverage
    assert low_band <= average_coverage <= high_band, average_coverage


def _near_boundary_probs() -> np.ndarray:
    """Coupled rates at and near 0 and 1 (Prop. 4): m1 beats m0 on most prompt types and loses
    by a hair on three (P(m0 beats m1) = 0.002); m2 and m3 are identical (never win against
    each other, always tie); P(m1 beats m0) = 0.027."""
    base = np.random.default_rng(0).uniform(0.3, 0.7, (30, 1))
    step = np.where(np.arange(30)[:, None] < 3, -0.02, 0.03)
    return np.hstack([base, base + step, base + 0.1, base + 0.1])


@_both
@pytest.mark.parametrize("design", DESIGNS)
def test_score_intervals_cover_at_and_near_the_boundary(design, replicates):
    """Coupled win-rates can sit at 0 (no judge noise). Rates of exactly 0 or 1 are covered
    always (the interval contains its estimate, which then equals the truth); each rate near the
    boundary (0.002, 0.027 and the 0.971 tie rate) is covered on its own; the interior rates of
    the same data within the usual band (pooled). Contrast: a Wald interval covers the 0.002
    rate about 40 % of the time."""
    seeds, keep = DESIGNS[design]
    probs = _near_boundary_probs()
    sim = simulate_pair_counts(probs, 100, seeds, "coupled", 31, replicates, pair_keep=keep)
    rates = pair_rates_from_counts(sim.wins_a, sim.wins_b, sim.n)
    truth_a, truth_b = true_pair_rates(probs, "coupled")
    assert truth_a[0] == pytest.approx(0.002) and truth_a[-1] == truth_b[-1] == 0
    coverage, wald, truths = [], [], []
    intervals = directed_rate_intervals(rates, sim.n)
    for (label, influence), truth in zip((("win", rates.if_a), ("loss", rates.if_b),
                                          ("tie", rates.if_tie)),
                                         (truth_a, truth_b, 1 - truth_a - truth_b), strict=True):
        estimate, low, high = intervals[label]
        se = np.sqrt(clustered_variance(influence, rates.n_prompts))
        coverage.append(np.mean((low <= truth) & (truth <= high), axis=0))
        wald.append(np.mean(np.abs(estimate - truth) <= 1.959964 * se, axis=0))
        truths.append(truth)
    coverage, wald, truth = map(np.concatenate, (coverage, wald, truths))
    exact = (truth < 1e-12) | (truth > 1 - 1e-12)
    near = ~exact & ((truth < 0.05) | (truth > 0.95))
    interior = ~exact & ~near
    assert exact.sum() == 7 and near.sum() == 3 and interior.sum() == 8
    RESULTS[f"boundary near-0/1 rates (worst) {design} R={replicates}"] = float(
        coverage[near].min())
    RESULTS[f"boundary interior rates (pooled) {design} R={replicates}"] = float(
        coverage[interior].mean())
    RESULTS[f"boundary Wald at 0.002 {design} R={replicates}"] = float(wald[0])
    assert (coverage[exact] == 1).all()
    low_band, high_band = _band(replicates, 0.935, 0.965, 0.95)
    # Each near-boundary rate on its own (MC SE of one proportion), never below the band.
    assert coverage[near].min() >= low_band, coverage[near]
    assert low_band <= coverage[interior].mean() <= high_band, coverage[interior]
    assert wald[0] < 0.8


def test_naive_iid_average_interval_undercovers():
    """Documented contrast: the paper notebook's interval (every comparison independent) is far
    too narrow for average win-rates: comparisons share prompts, seeds and models."""
    probs = _probs(4)
    sim = simulate_pair_counts(probs, 100, 5, "independent", 7, REDUCED, judge_noise=JUDGE_NOISE)
    avg = average_win_rates_from_counts(sim.wins_a, sim.wins_b, sim.n)
    truth = true_average_win_rates(probs, "independent", JUDGE_NOISE)
    naive_se = np.sqrt(avg.estimate * (1 - avg.estimate) / avg.n_total)
    naive = np.mean(np.abs(avg.estimate - truth) <= 1.96 * naive_se)
    assert np.median(avg.se / naive_se) > 1.3
    assert naive < 0.935 - 3.3 * _mc_se(0.95, REDUCED)


# ---------------------------------------------------------------- rank-sets

def _exchangeable(k: int, groups: int = 1) -> np.ndarray:
    """Prompt types closed under cyclic shifts within each group of models: models of a group
    have equal true average win-rates (the hardest case for rank-sets: any significant call
    among them is an error); groups are separated by 0.15 in accuracy."""
    size = k // groups
    base = np.linspace(0.3, 0.75, size)
    return np.array([np.concatenate([np.roll(base, s) + 0.15 * g for g in range(groups)])
                     for s in range(size)])


# (models, groups of tied models, prompts); designs unbalanced (1-4 seeds, 10 % pairs dropped),
# and the smallest design the issue allows (50 prompts) at the largest k.
RANK_CASES = [(2, 1, 100), (4, 1, 100), (4, 2, 100), (8, 1, 100), (8, 2, 100), (8, 1, 50)]


@_both
@pytest.mark.parametrize("k, groups, n_prompts", RANK_CASES)
@pytest.mark.parametrize("mode", ["coupled", "independent"])
def test_rank_sets_cover_the_true_ranking(mode, k, groups, n_prompts, replicates):
    probs = _exchangeable(k, groups)
    sim = simulate_pair_counts(probs, n_prompts, (1, 4), mode, 5, replicates,
                               judge_noise=JUDGE_NOISE, pair_keep=0.9)
    avg = average_win_rates_from_counts(sim.wins_a, sim.wins_b, sim.n)
    best, worst = true_rank_range(true_average_win_rates(probs, mode, JUDGE_NOISE), 1e-9)
    ranks = rank_sets_from_estimates(avg.estimate, avg.covariance, 0.05, rng=1,
                                     df=avg.df, method="auto")     # as rank_sets does
    coverage = float(np.mean(((ranks.rank_low <= best) & (worst <= ranks.rank_high)).all(1)))
    RESULTS[f"ranks {mode} k={k} groups={groups} Q={n_prompts} R={replicates}"] = coverage
    low_band, _ = _band(replicates, 0.95 - 0.015, 1.0, 0.95)
    assert coverage >= low_band, coverage


@pytest.mark.parametrize("mode", ["coupled", "independent"])
def test_public_code_variance_collapses_rank_coverage(mode):
    """Documented contrast: dividing by the total number of comparisons (the public rank-set
    code) shrinks the variance by (k/2)^2 = 16 at k = 8, and simultaneous coverage collapses
    (the issue measured 0.24 on its design; on these near-tied designs it is near 0), while
    ours holds on the same data."""
    probs = _exchangeable(8, 2)
    sim = simulate_pair_counts(probs, 100, 3, mode, 9, REDUCED, judge_noise=JUDGE_NOISE)
    avg = average_win_rates_from_counts(sim.wins_a, sim.wins_b, sim.n)
    best, worst = true_rank_range(true_average_win_rates(probs, mode, JUDGE_NOISE), 1e-9)

    def coverage(covariance):
        ranks = rank_sets_from_estimates(avg.estimate, covariance, 0.05, rng=1, df=avg.df)
        return float(np.mean(((ranks.rank_low <= best) & (worst <= ranks.rank_high)).all(1)))

    ours = coverage(avg.covariance)
    theirs = coverage(public_code_covariance(sim.wins_a, sim.wins_b, sim.n))
    RESULTS[f"public-code ranks {mode} k=8"] = theirs
    assert ours >= 0.935 - 3.3 * _mc_se(0.95, REDUCED)
    assert theirs < 0.5


# ---------------------------------------------------------------- coupled vs independent test

def _null_pair(replicates: int, seed: int):
    """Two independent-generation runs on the same prompts, labelled coupled/independent:
    the null (equal win-rates) holds, and the shared prompts correlate the two estimates."""
    probs = _probs(4, seed)
    first = simulate_pair_counts(probs, 100, 3, "independent", seed + 1, replicates,
                                 judge_noise=JUDGE_NOISE)
    second = simulate_pair_counts(probs, 100, 3, "independent", seed + 2, replicates,
                                  judge_noise=JUDGE_NOISE, prompt_type=first.prompt_type)
    return first, second


@_both
def test_mode_z_test_has_its_size_and_holm_controls_the_family(replicates):
    first, second = _null_pair(replicates, 11)
    rates_1 = pair_rates_from_counts(first.wins_a, first.wins_b, first.n)
    rates_2 = pair_rates_from_counts(second.wins_a, second.wins_b, second.n)
    test = mode_difference_from_rates(rates_1, rates_2, first.n, second.n)
    pvalues = test.pvalue.reshape(replicates, -1)                     # 12 ordered pairs
    size = float(np.mean(pvalues < 0.05))
    # Holm: reject the family's smallest p-value first; FWER = P(any rejection) under the
    # global null = P(min p < alpha / m).
    fwer = float(np.mean(pvalues.min(axis=1) < 0.05 / pvalues.shape[1]))
    RESULTS[f"z-test size R={replicates}"] = size
    RESULTS[f"Holm FWER R={replicates}"] = fwer
    low_band, high_band = _band(replicates, 0.035, 0.065, 0.05)
    assert low_band <= size <= high_band, size
    assert fwer <= 0.05 + 3.3 * _mc_se(0.05, replicates), fwer


def test_sum_of_variances_z_test_is_conservative():
    """Documented contrast: ignoring that the modes share prompts (sum of the two variances)
    overstates the variance, so the test rejects less often than alpha under the null."""
    first, second = _null_pair(REDUCED, 11)
    rates_1 = pair_rates_from_counts(first.wins_a, first.wins_b, first.n)
    rates_2 = pair_rates_from_counts(second.wins_a, second.wins_b, second.n)
    paired = mode_difference_from_rates(rates_1, rates_2, first.n, second.n)
    separate = np.sqrt(clustered_variance(rates_1.if_a, rates_1.n_clusters)
                       + clustered_variance(rates_2.if_a, rates_2.n_clusters))
    assert np.mean(paired.se[:, 0] < separate) > 0.9
    naive_size = np.mean(two_sided_pvalue(paired.difference[:, 0] / separate) < 0.05)
    assert naive_size < 0.05


# ---------------------------------------------------------------- planning

@_both
@pytest.mark.parametrize("target", ["average", "pairwise"])
@pytest.mark.parametrize("mode", ["coupled", "independent"])
def test_planned_power_is_achieved(mode, target, replicates):
    rng = np.random.default_rng(5)
    probs = rng.uniform(0.3, 0.9, (50, 4))
    probs[:, 1] = np.clip(probs[:, 0] + 0.06, 0, 1)
    plan = plan_win_rate_separation(model=1, opponent=0, target=target, n_seeds=3,
                                    prompt_probs=probs, judge_noise=JUDGE_NOISE, power=0.8)
    n_questions = plan.n_questions_coupled if mode == "coupled" else plan.n_questions_independent
    sim = simulate_pair_counts(probs, n_questions, 3, mode, 17, replicates,
                               judge_noise=JUDGE_NOISE)
    test = separation_test_from_counts(sim.wins_a, sim.wins_b, sim.n, 1, 0, target)
    power = float(np.mean(test.pvalue < 0.05))
    RESULTS[f"power {mode} {target} Q={n_questions} R={replicates}"] = power
    low_band, high_band = _band(replicates, 0.75, 0.85, 0.8)
    assert low_band <= power <= high_band, power


@pytest.mark.parametrize("budget", [40, 300])
def test_minimum_detectable_separation_inverts_the_sample_size(budget):
    probs = np.random.default_rng(5).uniform(0.3, 0.9, (50, 4))
    plan = plan_win_rate_separation(n_seeds=2, prompt_probs=probs, judge_noise=JUDGE_NOISE,
                                    budget=budget)
    assert plan.budget == budget
    for mode in ("coupled", "independent"):
        mde = getattr(plan, f"mde_{mode}")
        again = plan_win_rate_separation(n_seeds=2, prompt_probs=probs, judge_noise=JUDGE_NOISE,
                                         effect=mde)
        # Both are root-finds: the sample size for the MDE is the budget, up to rounding up.
        assert budget <= getattr(again, f"n_questions_{mode}") <= budget + 1
    assert plan.mde_coupled < plan.mde_independent      # coupling lowers the variance here
    with pytest.raises(ValueError, match="budget"):
        plan_win_rate_separation(prompt_probs=probs, budget=1)


def test_plan_from_a_pilot_agrees_with_the_assumptions():
    """A large pilot's variance components estimate the exact ones (within 4 SE-ish: a 1600-
    question pilot with 4 seeds; tolerance 15 % on the per-question sd)."""
    import pandas as pd

    from coupled.analysis.pairwise_simulation import simulated_comparisons_table

    rng = np.random.default_rng(5)
    probs = rng.uniform(0.3, 0.9, (50, 4))
    probs[:, 1] = np.clip(probs[:, 0] + 0.06, 0, 1)
    names = ["m0", "m1", "m2", "m3"]
    pilot = pd.concat([simulated_comparisons_table(
        simulate_pair_counts(probs, 1600, 4, mode, seed, judge_noise=JUDGE_NOISE), names, mode)
        for seed, mode in enumerate(("coupled", "independent"))])
    exact = plan_win_rate_separation(model=1, opponent=0, n_seeds=3, prompt_probs=probs,
                                     judge_noise=JUDGE_NOISE)
    piloted = plan_win_rate_separation(model="m1", opponent="m0", n_seeds=3, pilot=pilot,
                                       effect=exact.effect_coupled)
    assert piloted.sd_coupled == pytest.approx(exact.sd_coupled, rel=0.15)
    assert piloted.sd_independent == pytest.approx(exact.sd_independent, rel=0.15)
    assert piloted.saving == pytest.approx(exact.saving, abs=0.15)
    one_seed = pilot[pilot["seed"] == 0]
    with pytest.raises(ValueError, match="2 seeds"):
        plan_win_rate_separation(model="m1", opponent="m0", pilot=one_seed)
    with pytest.raises(ValueError, match="exactly one"):
        plan_win_rate_separation()


def teardown_module(module):
    for key, value in sorted(RESULTS.items()):
        print(f"{key}: {value:.4f}")
