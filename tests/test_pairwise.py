"""Pairwise comparisons: deriving comparisons, counting, win/tie/loss matrices, average win-rates,
the paired coupled-vs-independent z-test and multiple-testing options (exact checks; the
Monte-Carlo calibration is in test_coverage_pairwise.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupled.analysis.pairwise import (
    adjust_pvalues,
    average_win_rates,
    average_win_rates_from_counts,
    clustered_covariance,
    compare_modes,
    derive_comparisons,
    load_comparisons,
    pair_counts,
    pair_rates_from_counts,
    significance_stars,
    wilson_effective_ci,
    win_rate_matrix,
)
from coupled.analysis.pairwise_simulation import (
    simulate_pair_counts,
    simulated_comparisons_table,
    true_average_win_rates,
)
from coupled.tables import read_comparisons

MODELS = ["m0", "m1", "m2", "m3"]


def _sim_table(mode="independent", seed=0, n_prompts=60, n_seeds=(1, 4), pair_keep=0.8,
               probs=None):
    probs = np.random.default_rng(seed).uniform(0.2, 0.9, (30, 4)) if probs is None else probs
    sim = simulate_pair_counts(probs, n_prompts, n_seeds, mode, seed + 1, judge_noise=0.1,
                               pair_keep=pair_keep)
    return sim, simulated_comparisons_table(sim, MODELS, mode)


# ---------------------------------------------------------------- derive_comparisons

score_rows = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 1), st.sampled_from(["x", "y", "z"]),
              st.integers(0, 2)),
    min_size=1, max_size=40, unique_by=lambda r: r[:3])


@given(score_rows)
def test_derive_comparisons_matches_a_naive_loop(rows):
    scores = pd.DataFrame([
        {"task": "t", "prompt_id": str(q), "seed": s, "mode": "coupled", "coupling": "gumbel",
         "model": m, "score": float(v)} for q, s, m, v in rows])
    if scores["model"].nunique() < 2:
        with pytest.raises(ValueError, match="model"):
            derive_comparisons(scores)
        return
    expected = set()
    for (q, s), group in scores.groupby(["prompt_id", "seed"]):
        by_model = dict(zip(group["model"], group["score"], strict=True))
        for a, b in itertools.combinations(sorted(by_model), 2):
            outcome = "a" if by_model[a] > by_model[b] else "b" if by_model[a] < by_model[b] \
                else "tie"
            expected.add((q, s, a, b, outcome))
    if not expected:
        with pytest.raises(ValueError, match="no two models share"):
            derive_comparisons(scores)
        return
    derived = derive_comparisons(scores)
    got = set(zip(derived["prompt_id"], derived["seed"], derived["model_a"], derived["model_b"],
                  derived["outcome"], strict=True))
    assert got == expected
    assert derived["derived"].all()
    read_comparisons(derived)      # a valid comparisons table


def test_scores_table_is_accepted_where_comparisons_are_expected(tmp_path):
    scores = pd.DataFrame({"task": "t", "prompt_id": ["1", "1", "2", "2"], "seed": 0,
                           "mode": "coupled", "coupling": "gumbel",
                           "model": ["x", "y", "x", "y"], "score": [1.0, 0.0, 0.0, 0.0]})
    path = tmp_path / "scores.csv"
    scores.to_csv(path, index=False)
    for source in (scores, path):
        table, derived = load_comparisons(source)
        assert derived and list(table["outcome"]) == ["a", "tie"]


# ---------------------------------------------------------------- counting and orientation

def test_dataframe_and_array_paths_agree():
    sim, table = _sim_table()
    counts = pair_counts(read_comparisons(table))
    order = counts.prompts["prompt_id"].astype(int).to_numpy()
    for name in ("wins_a", "wins_b", "n"):
        np.testing.assert_array_equal(getattr(counts, name)[0], getattr(sim, name)[0][order])
    core = average_win_rates_from_counts(sim.wins_a, sim.wins_b, sim.n)
    frame = average_win_rates(table)
    np.testing.assert_allclose(frame["win_rate"], core.estimate[0], rtol=1e-12)
    np.testing.assert_allclose(frame["se"], core.se[0], rtol=1e-12)


def test_matrix_orientation_and_complementarity():
    table = pd.DataFrame({
        "task": "t", "prompt_id": ["1", "2", "3", "4", "1"], "seed": 0, "mode": "coupled",
        "coupling": "gumbel", "model_a": ["a", "a", "a", "a", "b"],
        "model_b": ["b", "b", "b", "b", "c"], "outcome": ["a", "a", "b", "tie", "b"]})
    m = win_rate_matrix(table).set_index(["model", "opponent"])
    assert m.loc[("a", "b"), "win_rate"] == 0.5       # W[a, b] = P(a beats b)
    assert m.loc[("b", "a"), "win_rate"] == 0.25
    assert m.loc[("b", "a"), "loss_rate"] == 0.5
    assert m.loc[("c", "b"), "win_rate"] == 1.0
    # A pair with no comparisons (a, c) is reported as unknown, not as a rate.
    assert np.isnan(m.loc[("a", "c"), "win_rate"])
    m = m.dropna(subset=["win_rate"])
    rates = m[["win_rate", "tie_rate", "loss_rate"]].sum(axis=1)
    np.testing.assert_allclose(rates, 1.0)
    for column in ("win", "tie", "loss"):
        low, high = m[f"{column}_ci_low"], m[f"{column}_ci_high"]
        assert ((low <= m[f"{column}_rate"]) & (m[f"{column}_rate"] <= high)).all()
        assert ((0 <= low) & (high <= 1)).all()


def test_boundary_rates_get_a_score_interval_not_a_point():
    # Prop. 4: coupled win-rates can sit at 0; the interval must keep a width there.
    table = pd.DataFrame({
        "task": "t", "prompt_id": [str(q) for q in range(20) for _ in range(3)],
        "seed": [s for _ in range(20) for s in range(3)], "mode": "coupled",
        "coupling": "gumbel", "model_a": "a", "model_b": "b",
        "outcome": ["b", "tie", "tie"] * 20})
    row = win_rate_matrix(table).set_index(["model", "opponent"]).loc[("a", "b")]
    assert row["win_rate"] == 0 and row["win_ci_low"] == 0
    # No design effect is measurable at 0: worst case, one effective observation per prompt;
    # the critical value is t's on 20 - 1 prompts (issue 11: small-sample critical values).
    from scipy import stats

    t = stats.t.isf(0.025, 19)
    expected = t ** 2 / (20 + t ** 2)
    assert row["win_ci_high"] == pytest.approx(expected, rel=1e-5)


def test_a_pair_seen_on_one_prompt_gets_no_test_and_a_worst_case_interval():
    # (a, b) compared on prompts 1-4; (b, c) on prompt 1 only (3 seeds): its clustered
    # variance is 0 by construction, which must not read as certainty.
    table = pd.DataFrame({
        "task": "t", "prompt_id": ["1", "2", "3", "4", "1", "1", "1"],
        "seed": [0, 0, 0, 0, 0, 1, 2], "mode": "coupled", "coupling": "gumbel",
        "model_a": ["a"] * 4 + ["b"] * 3, "model_b": ["b"] * 4 + ["c"] * 3,
        "outcome": ["a", "a", "b", "tie", "b", "b", "a"]})
    m = win_rate_matrix(table).set_index(["model", "opponent"])
    row = m.loc[("b", "c")]
    assert np.isnan(row["pvalue"]) and row["stars"] == ""
    # One effective observation: the Wilson interval for n = 1, on t with 1 degree of freedom.
    low, high = wilson_effective_ci(np.array([1 / 3]), np.array([0.0]), np.array([3.0]),
                                    np.array([1.0]), df=1.0)
    assert (row["win_ci_low"], row["win_ci_high"]) == pytest.approx((low[0], high[0]))
    assert row["win_ci_high"] - row["win_ci_low"] > 0.7
    assert np.isfinite(m.loc[("a", "b"), "pvalue"])


@given(st.floats(0.01, 0.99), st.floats(1e-4, 0.2), st.integers(20, 500))
def test_wilson_effective_matches_wald_when_far_from_boundary(p, se, n):
    # Inside (0, 1) with a large effective size, Wilson ~ Wald with the clustered SE.
    n_eff = p * (1 - p) / se ** 2
    low, high = wilson_effective_ci(np.array([p]), np.array([se]), np.array([1e9]),
                                    np.array([n]))
    assert low[0] <= p <= high[0] and 0 <= low[0] and high[0] <= 1
    if n_eff > 2000:
        assert (high[0] - low[0]) / 2 == pytest.approx(1.959964 * se, rel=0.05)


@given(st.sampled_from([0.0, 1.0]), st.integers(1, 10_000))
def test_wilson_effective_contains_boundary_estimates_exactly(p, n):
    # Rounding must never leave a rate of exactly 0 or 1 outside its own interval.
    low, high = wilson_effective_ci(np.array([p]), np.array([0.0]), np.array([3.0 * n]),
                                    np.array([n]))
    assert low[0] <= p <= high[0] and high[0] - low[0] > 0


@pytest.mark.parametrize("successes, n", [(1, 200), (3, 200), (2, 40), (4, 200), (3, 40)])
def test_modified_wilson_uses_the_poisson_bound_for_few_successes(successes, n):
    from scipy import stats
    from statsmodels.stats.proportion import proportion_confint

    p = successes / n
    iid_se = np.sqrt(p * (1 - p) / n)                      # no design effect: n_eff = n
    low, high = wilson_effective_ci(np.array([p, 1 - p]), np.array([iid_se, iid_se]),
                                    np.array([n, n]), np.array([n, n]))
    wilson_low, wilson_high = proportion_confint(successes, n, method="wilson")
    few = 2 if n <= 50 else 3                              # Brown, Cai & DasGupta's x*
    expected_low = (stats.chi2.ppf(0.025, 2 * successes) / (2 * n)
                    if successes <= few else wilson_low)
    assert low[0] == pytest.approx(expected_low, rel=1e-9)
    assert high[0] == pytest.approx(wilson_high, rel=1e-9)
    # The mirror image near 1.
    assert high[1] == pytest.approx(1 - expected_low, rel=1e-9)


def test_clustered_variance_matches_leave_one_prompt_out_jackknife():
    sim, _ = _sim_table(n_prompts=200)
    core = average_win_rates_from_counts(sim.wins_a, sim.wins_b, sim.n)
    n_prompts = sim.n.shape[1]
    leave_out = np.array([
        average_win_rates_from_counts(*(np.delete(x, q, axis=1)
                                        for x in (sim.wins_a, sim.wins_b, sim.n))).estimate[0]
        for q in range(n_prompts)])
    jackknife = (n_prompts - 1) / n_prompts * ((leave_out - leave_out.mean(0)) ** 2).sum(0)
    # Linearisation and jackknife agree to O(1/Q) for ratio estimators.
    np.testing.assert_allclose(core.se[0] ** 2, jackknife, rtol=0.05)


def test_average_win_rates_reproduce_appendix_b6():
    probs = np.array([[0.4, 0.48, 0.5], [1.0, 0.9, 0.89]])
    np.testing.assert_allclose(true_average_win_rates(probs, "independent"),
                               [0.1545, 0.15675, 0.16225], atol=1e-12)
    np.testing.assert_allclose(true_average_win_rates(probs, "coupled"),
                               [0.0525, 0.0225, 0.03], atol=1e-12)


def test_average_win_rate_is_the_mean_over_opponents_of_the_matrix():
    _, table = _sim_table()
    matrix = win_rate_matrix(table)
    means = matrix.groupby("model")["win_rate"].mean()
    average = average_win_rates(table).set_index("model")["win_rate"]
    np.testing.assert_allclose(average[means.index], means, rtol=1e-12)


def test_average_needs_every_pair_and_bad_arguments_are_named():
    table = pd.DataFrame({"task": "t", "prompt_id": ["1", "2"], "seed": 0, "mode": "coupled",
                          "coupling": "gumbel", "model_a": ["a", "b"], "model_b": ["b", "c"],
                          "outcome": ["a", "b"]})
    with pytest.raises(ValueError, match="never compared"):
        average_win_rates(table)
    with pytest.raises(ValueError, match="alpha"):
        average_win_rates(table, alpha=1.5)
    with pytest.raises(ValueError, match="not in models"):
        pair_counts(read_comparisons(table), models=["a", "b"])
    with pytest.raises(ValueError, match="counts"):
        pair_rates_from_counts(np.ones((1, 2, 1)), np.ones((1, 2, 1)), np.ones((1, 2, 1)))


def test_clustered_covariance_is_positive_semidefinite_and_symmetric():
    sim, _ = _sim_table(mode="coupled")
    core = average_win_rates_from_counts(sim.wins_a, sim.wins_b, sim.n)
    cov = core.covariance[0]
    np.testing.assert_allclose(cov, cov.T)
    assert np.linalg.eigvalsh(cov).min() > -1e-15
    # Average win-rates of all models always sum to a constant minus the tie mass: the
    # covariance must reflect that linear constraint (rows of Sigma sum to Cov(sum A, A)).
    direct = clustered_covariance(core.influence.sum(axis=2, keepdims=True), core.n_clusters)
    assert direct[0, 0, 0] == pytest.approx(cov.sum(), rel=1e-10)


# ---------------------------------------------------------------- coupled vs independent

def test_compare_modes_uses_paired_variance_and_holm():
    probs = np.random.default_rng(3).uniform(0.2, 0.9, (30, 4))
    sim_c = simulate_pair_counts(probs, 80, 3, "coupled", 1, judge_noise=0.1)
    sim_i = simulate_pair_counts(probs, 80, 3, "independent", 2, judge_noise=0.1,
                                 prompt_type=sim_c.prompt_type)
    table = pd.concat([simulated_comparisons_table(sim_c, MODELS, "coupled"),
                       simulated_comparisons_table(sim_i, MODELS, "independent")])
    result = compare_modes(table)
    assert len(result) == 12                     # every ordered pair
    wm = win_rate_matrix(table).set_index(["mode", "model", "opponent"])["win_rate"]
    for _, row in result.iterrows():
        assert row["win_rate_coupled"] == wm[("coupled", row["model"], row["opponent"])]
        assert row["win_rate_independent"] == wm[("independent", row["model"], row["opponent"])]
    np.testing.assert_allclose(result["pvalue_adjusted"],
                               adjust_pvalues(result["pvalue"].to_numpy(), "holm"))
    # Shared prompts make the modes' estimates positively correlated: the paired SE is below
    # the root sum of the two separate variances.
    separate = win_rate_matrix(table)
    se_c = (separate[separate["mode"] == "coupled"]["win_ci_high"]
            - separate[separate["mode"] == "coupled"]["win_ci_low"]).to_numpy() / (2 * 1.96)
    se_i = (separate[separate["mode"] == "independent"]["win_ci_high"]
            - separate[separate["mode"] == "independent"]["win_ci_low"]).to_numpy() / (2 * 1.96)
    assert np.median(result["se"].to_numpy() / np.hypot(se_c, se_i)) < 1
    one = compare_modes(table, model="m1", correction="bonferroni")
    assert list(one["opponent"]) == ["m0", "m2", "m3"]
    np.testing.assert_allclose(one["pvalue_adjusted"], np.minimum(one["pvalue"] * 3, 1))
    with pytest.raises(ValueError, match="model 'zz'"):
        compare_modes(table, model="zz")
    with pytest.raises(ValueError, match="both 'coupled' and 'independent'"):
        compare_modes(table[table["mode"] == "coupled"])


def test_adjustment_and_stars():
    p = np.array([0.00005, 0.0005, 0.005, 0.03, 0.2, np.nan])
    assert list(significance_stars(p)) == ["****", "***", "**", "*", "", ""]
    holm = adjust_pvalues(p, "holm")
    assert np.isnan(holm[-1])
    np.testing.assert_allclose(holm[:5], [0.00025, 0.002, 0.015, 0.06, 0.2])
    np.testing.assert_array_equal(adjust_pvalues(p, "none")[:5], p[:5])
    with pytest.raises(ValueError, match="correction"):
        adjust_pvalues(p, "sidak-ish")


def test_even_pair_test_in_the_matrix_is_holm_adjusted_per_block():
    _, table = _sim_table()
    matrix = win_rate_matrix(table, correction="holm")
    pairs = matrix[matrix["model"] < matrix["opponent"]]
    np.testing.assert_allclose(pairs["pvalue_adjusted"],
                               adjust_pvalues(pairs["pvalue"].to_numpy(), "holm"))
    none = win_rate_matrix(table, correction="none")
    np.testing.assert_array_equal(none["pvalue_adjusted"], none["pvalue"])


def test_a_table_that_is_neither_reports_the_comparisons_problem(tmp_path):
    path = tmp_path / "odd.csv"
    pd.DataFrame({"task": ["t"], "prompt_id": ["1"], "seed": [0], "mode": ["coupled"],
                  "coupling": ["gumbel"], "model_a": ["a"], "model_b": ["b"]}).to_csv(path)
    with pytest.raises(ValueError, match="outcome"):
        load_comparisons(path)
    bad_scores = tmp_path / "scores.csv"
    pd.DataFrame({"task": ["t"], "prompt_id": ["1"], "seed": [0], "mode": ["coupled"],
                  "coupling": ["gumbel"], "model": ["a"], "score": [float("nan")]}
                 ).to_csv(bad_scores)
    with pytest.raises(ValueError, match="score"):
        load_comparisons(bad_scores)


@given(st.integers(3, 60), st.floats(0.1, 10.0))
def test_cluster_df_is_q_minus_1_for_equal_clusters_and_drops_when_one_dominates(q, scale):
    """``cluster_df``: equal-size clusters with equal contributions give the full G - 1; one
    prompt carrying nearly all of a statistic's variance gives about 1 (the variance estimate
    then rests on one cluster); always within [1, G - 1]."""
    from coupled.analysis.pairwise import cluster_df

    present = np.ones((1, q), dtype=bool)
    equal = np.full((1, q, 1), scale)
    sizes = np.full((1, q), 3.0)
    assert cluster_df(equal, present, sizes)[0, 0] == pytest.approx(q - 1)
    dominated = np.full((1, q, 1), 1e-6 * scale)
    dominated[0, 0, 0] = scale
    df = cluster_df(dominated, present, sizes)[0, 0]
    assert 1 <= df <= 2.5
    # Kish alone ignores the contributions: unequal sizes only
    assert cluster_df(dominated, present, sizes, moment=False)[0, 0] == pytest.approx(q - 1)
    uneven = sizes.copy()
    uneven[0, 0] = 20 * q
    assert cluster_df(equal, present, uneven, moment=False)[0, 0] < 3


def test_wilson_with_t_matches_statsmodels_at_the_matching_normal_level():
    """The hand-written Wilson form with a t critical value equals statsmodels' Wilson interval
    at the normal level that has the same quantile."""
    from scipy import stats
    from statsmodels.stats.proportion import proportion_confint

    p, n, df = 0.3, 200.0, 12.0
    se = np.sqrt(p * (1 - p) / n)
    low, high = wilson_effective_ci(np.array([p]), np.array([se]), np.array([n]),
                                    np.array([50.0]), df=df)
    level = 2 * stats.norm.sf(stats.t.isf(0.025, df))
    expected = proportion_confint(p * n, n, alpha=level, method="wilson")
    assert (low[0], high[0]) == pytest.approx(expected, rel=1e-9)
