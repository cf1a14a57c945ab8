"""The vectorised generator used by the coverage tests (coupled.analysis.pairwise_simulation) is
equivalent to coupled.simulate's noise-driven ``simulate_comparisons`` in the canonical two-outcome
setting, and its truth equals coupled.theory's — so the coverage proven on it holds for
``coupled.simulate`` data; an end-to-end check on ``coupled.simulate`` tables closes the loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from coupled.analysis.pairwise import average_win_rates, pair_counts
from coupled.analysis.pairwise_simulation import (
    simulate_pair_counts,
    true_average_win_rates,
    true_pair_rates,
)
from coupled.analysis.ranksets import rank_sets
from coupled.simulate import simulate_comparisons
from coupled.tables import read_comparisons
from coupled.theory import average_win_rates as theory_average_win_rates
from coupled.theory import pairwise_rates

NAMES = ["m0", "m1", "m2"]


def _dists(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Setting 1 as single-token models: token 1 is the preferred answer (reward 1)."""
    dists = np.stack([1 - probs, probs], axis=-1)                  # (N, M, 2)
    rewards = np.tile([0.0, 1.0], (probs.shape[0], 1))
    return dists, rewards


@pytest.mark.parametrize("mode, coupling", [("coupled", "gumbel"), ("independent", "independent")])
def test_truth_matches_theory(mode, coupling):
    probs = np.random.default_rng(0).uniform(0.05, 0.95, (25, 5))
    rates = pairwise_rates(probs, coupling=coupling)
    ia, ib = np.triu_indices(5, 1)
    win_a, win_b = true_pair_rates(probs, mode)
    np.testing.assert_allclose(win_a, rates.win[ia, ib], atol=1e-12)
    np.testing.assert_allclose(win_b, rates.win[ib, ia], atol=1e-12)
    np.testing.assert_allclose(true_average_win_rates(probs, mode),
                               theory_average_win_rates(rates), atol=1e-12)


@pytest.mark.parametrize("mode", ["coupled", "independent"])
def test_joint_outcome_law_matches_coupled_simulate(mode):
    """Same prompts, many seeds: the joint law of all three comparisons of a (prompt, seed) —
    which carries the correlation of comparisons sharing a model — is the same in both
    generators (two-sample chi-square over (prompt, outcome-vector) cells; the test is exact
    under equivalence, so a p-value below 1e-3 would flag a difference)."""
    probs = np.random.default_rng(1).uniform(0.2, 0.9, (12, 3))
    n_seeds = 1500
    dists, rewards = _dists(probs)
    table = simulate_comparisons(dists, rewards, n_seeds, models=NAMES, modes=(mode,),
                                 seed=3, judge_noise=0.1)
    table = read_comparisons(table)
    code = table["outcome"].map({"tie": 0, "a": 1, "b": 2}).to_numpy()
    pair = (table["model_a"].map({n: i for i, n in enumerate(NAMES)}).to_numpy() * 3
            + table["model_b"].map({n: i for i, n in enumerate(NAMES)}).to_numpy())
    pair_slot = pd.Series(pair).map({1: 0, 2: 1, 5: 2}).to_numpy()
    theirs = np.zeros((12, n_seeds, 3), dtype=int)
    prompt = table["prompt_id"].astype(int).to_numpy()
    seed = table["seed"].to_numpy() - table["seed"].min()
    theirs[prompt, seed, pair_slot] = code
    sim = simulate_pair_counts(probs, 12, n_seeds, mode, 4, judge_noise=0.1,
                               prompt_type=np.arange(12)[None, :])
    ours = sim.outcome[0]                                            # (12, S, 3)
    cells = lambda o: (np.arange(12)[:, None] * 27 + o[..., 0] * 9 + o[..., 1] * 3  # noqa: E731
                       + o[..., 2]).ravel()
    counts = np.array([np.bincount(cells(x), minlength=12 * 27) for x in (theirs, ours)])
    counts = counts[:, counts.sum(axis=0) > 0]
    pvalue = stats.chi2_contingency(counts)[1]
    assert pvalue > 1e-3, pvalue


def test_end_to_end_on_coupled_simulate_tables():
    """Reduced end-to-end check through the DataFrame API on coupled.simulate tables: average
    win-rate intervals (both modes) and rank-sets cover the theory's truth. 80 replicates,
    band = 0.935 - 3.3 MC SEs of 80 replicates (one-sided: these are checks of the pipeline,
    the calibration itself is proven at scale in test_coverage_pairwise.py)."""
    rng = np.random.default_rng(2)
    probs = rng.uniform(0.2, 0.9, (60, 3))
    dists, rewards = _dists(probs)
    truth = {"coupled": theory_average_win_rates(pairwise_rates(probs, coupling="gumbel")),
             "independent": theory_average_win_rates(pairwise_rates(probs,
                                                                    coupling="independent"))}
    truth = {m: 0.9 * t + 0.1 / 2 for m, t in truth.items()}       # judge_noise = 0.1
    replicates, covered, ranks_ok = 80, [], []
    for r in range(replicates):
        table = simulate_comparisons(dists, rewards, 2, models=NAMES, seed=r, judge_noise=0.1)
        ranks = rank_sets(table, n_draws=2000).set_index(["mode", "model"])
        for mode, values in truth.items():
            block = ranks.loc[mode].loc[NAMES]
            covered.extend((block["ci_low"] <= values) & (values <= block["ci_high"]))
            order = np.argsort(-values)
            true_rank = np.empty(3, int)
            true_rank[order] = np.arange(1, 4)
            ranks_ok.append(bool(((block["rank_low"] <= true_rank)
                                  & (true_rank <= block["rank_high"])).all()))
    floor = 0.935 - 3.3 * np.sqrt(0.95 * 0.05 / replicates)
    assert np.mean(covered) >= floor
    assert np.mean(ranks_ok) >= floor
    # The DataFrame path's average win-rates equal rank_sets' (one estimator, two views).
    np.testing.assert_allclose(average_win_rates(table).set_index(["mode", "model"])["win_rate"],
                               ranks["win_rate"].loc[average_win_rates(table).set_index(
                                   ["mode", "model"]).index], rtol=1e-12)
    assert pair_counts(read_comparisons(table)).n.sum() == len(table)
