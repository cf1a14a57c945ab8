"""Rank-sets: the table contract, the construction of the sets, the max-|t| quantile and the
public code's variance bug (exact checks; coverage is in test_coverage_pairwise.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from coupled.analysis.pairwise import average_win_rates_from_counts
from coupled.analysis.pairwise_simulation import simulate_pair_counts, simulated_comparisons_table
from coupled.analysis.ranksets import (
    REQUIRED_COLUMNS,
    public_code_covariance,
    rank_sets,
    rank_sets_from_estimates,
    true_rank_range,
    win_rate_label,
)
from coupled.cli.main import main

MODELS = ["m0", "m1", "m2", "m3"]


def _two_mode_table(seed=0, n_prompts=60, probs=None):
    probs = np.random.default_rng(seed).uniform(0.2, 0.9, (30, 4)) if probs is None else probs
    frames = []
    for offset, mode in enumerate(("coupled", "independent")):
        sim = simulate_pair_counts(probs, n_prompts, 3, mode, seed + offset, judge_noise=0.1)
        frames.append(simulated_comparisons_table(sim, MODELS, mode))
    return pd.concat(frames, ignore_index=True)


def test_rank_sets_table_contract(tmp_path):
    table = _two_mode_table()
    result = rank_sets(table)
    assert list(result.columns[:7]) == REQUIRED_COLUMNS
    assert list(result.columns[:7]) == ["model", "mode", "win_rate", "ci_low", "ci_high",
                                        "rank_low", "rank_high"]
    assert sorted(result["mode"].unique()) == ["coupled", "independent"]
    for _, block in result.groupby("mode"):
        assert sorted(block["model"]) == MODELS
        assert (np.diff(block["win_rate"].to_numpy()) <= 0).all()    # best first
        assert ((1 <= block["rank_low"]) & (block["rank_low"] <= block["rank_high"])
                & (block["rank_high"] <= 4)).all()
        assert ((block["ci_low"] <= block["win_rate"])
                & (block["win_rate"] <= block["ci_high"])).all()
    path = tmp_path / "comparisons.parquet"
    table.to_parquet(path)
    pd.testing.assert_frame_equal(rank_sets(path), result)
    assert not result["derived"].any()


def test_rank_sets_from_scores_are_flagged_derived():
    rng = np.random.default_rng(0)
    scores = pd.DataFrame([
        {"task": "t", "prompt_id": str(q), "seed": s, "mode": "coupled", "coupling": "gumbel",
         "model": m, "score": float(rng.random() < p)}
        for q in range(40) for s in range(2) for m, p in (("x", 0.2), ("y", 0.5), ("z", 0.9))])
    result = rank_sets(scores)
    assert result["derived"].all()
    assert list(result["model"]) == ["z", "y", "x"]
    # Derived once and passed on (as paper_figures does), the flag is kept.
    from coupled.analysis.pairwise import derive_comparisons

    pd.testing.assert_frame_equal(rank_sets(derive_comparisons(scores)), result)


def test_well_separated_models_get_exact_ranks():
    probs = np.tile([0.1, 0.4, 0.7, 0.95], (5, 1))
    result = rank_sets(_two_mode_table(probs=probs, n_prompts=400))
    for _, block in result.groupby("mode"):
        assert list(block["model"]) == ["m3", "m2", "m1", "m0"]
        assert list(block["rank_low"]) == [1, 2, 3, 4]
        assert list(block["rank_high"]) == [1, 2, 3, 4]


def test_each_mode_ranks_the_models_it_compared():
    table = _two_mode_table()
    # The independent run compared only m0..m2: it ranks those three, the coupled run all four.
    independent = table["mode"] == "independent"
    table = table[~independent | ((table["model_a"] != "m3") & (table["model_b"] != "m3"))]
    result = rank_sets(table)
    assert sorted(result.loc[result["mode"] == "independent", "model"]) == ["m0", "m1", "m2"]
    assert result.loc[result["mode"] == "independent", "rank_high"].max() <= 3
    assert sorted(result.loc[result["mode"] == "coupled", "model"]) == MODELS
    alone = rank_sets(table[table["mode"] == "independent"])
    pd.testing.assert_frame_equal(
        result[result["mode"] == "independent"].reset_index(drop=True), alone)


def test_incomplete_designs_are_refused_with_names():
    table = _two_mode_table()
    gap = (table["mode"] == "coupled") & (table["model_a"] == "m1") & (table["model_b"] == "m2")
    with pytest.raises(ValueError, match=r"mode 'coupled'.*never compared.*\(m1, m2\)"):
        rank_sets(table[~gap])
    one_prompt = table[table["prompt_id"] == "0"]
    with pytest.raises(ValueError, match="single prompt"):
        rank_sets(one_prompt)


@given(st.lists(st.floats(0, 1), min_size=2, max_size=6), st.floats(0.001, 0.05))
def test_rank_set_construction(values, sd):
    k = len(values)
    estimate = np.array([values])
    covariance = np.eye(k)[None] * sd ** 2
    ranks = rank_sets_from_estimates(estimate, covariance, method="bonferroni")
    c = ranks.critical_value[0]
    for i in range(k):
        better = sum(values[j] - values[i] > c * np.sqrt(2) * sd + 1e-12 for j in range(k))
        worse = sum(values[i] - values[j] > c * np.sqrt(2) * sd + 1e-12 for j in range(k))
        assert ranks.rank_low[0, i] == 1 + better
        assert ranks.rank_high[0, i] == k - worse
    low, high = true_rank_range(estimate[0])
    # With zero noise the sets contain the point ranking.
    assert ((ranks.rank_low[0] <= low) & (high <= ranks.rank_high[0])).all()


def test_max_t_quantile_is_exact_for_two_models_and_below_bonferroni():
    # k = 2: a single difference, so the max-|t| quantile is the normal one, z_{1-alpha/2};
    # with 40 000 draws its Monte-Carlo SE is ~0.013 (asymptotic quantile SE), tolerance 4 SE.
    ranks = rank_sets_from_estimates(np.array([[0.4, 0.5]]),
                                     np.array([[[1e-3, 2e-4], [2e-4, 2e-3]]]), n_draws=40_000)
    assert ranks.critical_value[0] == pytest.approx(stats.norm.isf(0.025), abs=0.05)
    # With df (prompts - 1) the reference is Student's t: the same draws, scaled.
    with_df = rank_sets_from_estimates(np.array([[0.4, 0.5]]),
                                       np.array([[[1e-3, 2e-4], [2e-4, 2e-3]]]), n_draws=40_000,
                                       df=9)
    assert with_df.critical_value[0] == pytest.approx(stats.t.isf(0.025, 9), abs=0.07)
    bonferroni_t = rank_sets_from_estimates(np.zeros((1, 3)), np.eye(3)[None],
                                            method="bonferroni", df=20).critical_value[0]
    assert bonferroni_t == pytest.approx(stats.t.isf(0.05 / 6, 20))
    rng = np.random.default_rng(0)
    a = rng.normal(size=(1, 6, 6))
    cov = a @ a.transpose(0, 2, 1)
    est = np.zeros((1, 6))
    max_t = rank_sets_from_estimates(est, cov, n_draws=20_000).critical_value[0]
    bonferroni = rank_sets_from_estimates(est, cov, method="bonferroni").critical_value[0]
    assert max_t < bonferroni


def test_replicate_axis_agrees_with_single_calls():
    probs = np.random.default_rng(1).uniform(0.2, 0.9, (30, 4))
    sim = simulate_pair_counts(probs, 50, 2, "independent", 3, n_replicates=5, judge_noise=0.1)
    avg = average_win_rates_from_counts(sim.wins_a, sim.wins_b, sim.n)
    together = rank_sets_from_estimates(avg.estimate, avg.covariance, n_draws=2000)
    for r in range(5):
        alone = average_win_rates_from_counts(sim.wins_a[r:r + 1], sim.wins_b[r:r + 1],
                                              sim.n[r:r + 1])
        np.testing.assert_allclose(alone.covariance, avg.covariance[r:r + 1], rtol=1e-12)
        single = rank_sets_from_estimates(alone.estimate, alone.covariance, n_draws=2000)
        assert single.critical_value[0] == together.critical_value[r]
        np.testing.assert_array_equal(single.rank_low[0], together.rank_low[r])
        np.testing.assert_array_equal(single.rank_high[0], together.rank_high[r])


@pytest.mark.parametrize("k", [4, 8])
def test_public_code_shrinks_the_variance_by_k_over_2_squared(k):
    probs = np.random.default_rng(k).uniform(0.2, 0.9, (30, k))
    sim = simulate_pair_counts(probs, 40, 2, "independent", 0, judge_noise=0.1)
    ours = average_win_rates_from_counts(sim.wins_a, sim.wins_b, sim.n).covariance
    theirs = public_code_covariance(sim.wins_a, sim.wins_b, sim.n)
    np.testing.assert_allclose(ours, theirs * (k / 2) ** 2, rtol=1e-10)


def test_bad_arguments():
    with pytest.raises(ValueError, match="alpha"):
        rank_sets_from_estimates(np.zeros((1, 3)), np.eye(3)[None], alpha=0)
    with pytest.raises(ValueError, match="method"):
        rank_sets_from_estimates(np.zeros((1, 3)), np.eye(3)[None], method="holm")
    with pytest.raises(ValueError, match="covariance"):
        rank_sets_from_estimates(np.zeros((1, 3)), np.eye(2)[None])
    with pytest.raises(ValueError, match="ci_level"):
        rank_sets(_two_mode_table(), ci_level=95)


# ---------------------------------------------------------------- CLI

def test_cli_prints_table_json_and_writes_out(tmp_path, capsys):
    path = tmp_path / "comparisons.csv"
    _two_mode_table().to_csv(path, index=False)
    assert main(["rank", str(path)]) == 0
    text = capsys.readouterr().out
    assert "coupled rank" in text and "independent avg win-rate" in text
    table = rank_sets(path)
    for row in table.itertuples():      # every model's rate and interval is shown
        assert win_rate_label(row.win_rate, row.ci_low, row.ci_high) in text
    out = tmp_path / "ranks.json"
    assert main(["rank", str(path), "--json", "--alpha", "0.1", "--out", str(out)]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 8 and set(REQUIRED_COLUMNS) <= set(records[0])
    assert json.loads(out.read_text()) == records


def test_rate_label_uses_plus_minus_only_for_symmetric_intervals():
    assert win_rate_label(0.5, 0.45, 0.55) == "0.5000 \u00b1 0.0500"
    # Score-type intervals near 0 are asymmetric: shown as an interval, never as a +-.
    assert win_rate_label(0.0, 0.0, 0.16) == "0.0000 [0.0000, 0.1600]"


def test_cli_writes_csv_and_parquet_atomically(tmp_path, capsys):
    path = tmp_path / "comparisons.csv"
    _two_mode_table().to_csv(path, index=False)
    expected = rank_sets(path)
    for suffix, reader in ((".csv", pd.read_csv), (".parquet", pd.read_parquet)):
        out = tmp_path / f"ranks{suffix}"
        assert main(["rank", str(path), "--out", str(out)]) == 0
        written = reader(out)
        assert list(written.columns) == list(expected.columns)
        np.testing.assert_allclose(written["win_rate"], expected["win_rate"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "comparisons.csv", "ranks.csv", "ranks.parquet"]          # no temporary left behind
    capsys.readouterr()
    assert main(["rank", str(path), "--out", str(tmp_path / "nowhere" / "r.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_says_when_comparisons_are_derived(tmp_path, capsys):
    scores = pd.DataFrame({"task": "t", "prompt_id": ["1", "1", "2", "2"], "seed": 0,
                           "mode": "coupled", "coupling": "gumbel",
                           "model": ["x", "y", "x", "y"], "score": [1.0, 0.0, 0.0, 1.0]})
    path = tmp_path / "scores.csv"
    scores.to_csv(path, index=False)
    assert main(["rank", str(path)]) == 0
    assert "derived" in capsys.readouterr().out


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    bad = _two_mode_table()
    bad.loc[3, "outcome"] = "maybe"
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    out = tmp_path / "ranks.csv"
    assert main(["rank", str(path), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "coupled rank: error" in error and "outcome" in error and "maybe" in error
    assert not out.exists() and list(tmp_path.iterdir()) == [path]
    assert main(["rank", str(tmp_path / "missing.csv")]) == 2
    assert main(["rank", str(path.with_name("x.csv")), "--out", str(tmp_path / "r.txt")]) == 2


def test_tie_rates_are_the_mean_over_opponents_and_shown_in_rank(tmp_path, capsys):
    """issue 13 §4: tie rates beside win-rates; coupled ties exceed independent ones."""
    from coupled.analysis.pairwise import win_rate_matrix

    table = _two_mode_table()
    ranks = rank_sets(table).set_index(["mode", "model"])
    matrix = win_rate_matrix(table).groupby(["mode", "model"])["tie_rate"].mean()
    np.testing.assert_allclose(ranks["tie_rate"], matrix.loc[ranks.index])
    tie = ranks["tie_rate"].unstack("mode")
    assert (tie["coupled"] > tie["independent"]).all()
    path = tmp_path / "comparisons.csv"
    table.to_csv(path, index=False)
    assert main(["rank", str(path)]) == 0
    text = capsys.readouterr().out
    assert "coupled tie rate" in text and "same reply" in text
    for value in ranks["tie_rate"]:
        assert f"{value:.3f}" in text


def test_auto_method_uses_bonferroni_for_few_prompts_per_model():
    small = rank_sets(_two_mode_table(n_prompts=30))           # 4 models, ~29 df < 40
    large = rank_sets(_two_mode_table(n_prompts=200))          # ~199 df >= 40
    assert (small["critical_method"] == "bonferroni").all()
    assert (large["critical_method"] == "max_t").all()
    forced = rank_sets(_two_mode_table(n_prompts=30), method="max_t")
    assert (forced["critical_method"] == "max_t").all()
    assert (forced["critical_value"] <= small["critical_value"] + 1e-9).all()
