"""Speed of the pairwise half: rank-sets with CIs for k = 50 models and ~10^6 comparisons
(target <= 5 s), and deriving ~10^6 comparisons from scores, each against a naive baseline
computing the same numbers, run in the same process (the machine is shared: ratios are the
figures to compare).

    .venv/bin/python bench/bench_ranksets.py [--prompts 816] [--models 50] [--repeats 3]

Baselines. Average win-rates with prompt-clustered SEs: a Python loop over the model pairs, each
pair's comparisons counted per prompt with a pandas groupby, influence functions accumulated per
model (what one writes without array cores). Derived comparisons: a loop over score keys and
model pairs building the same table row by row.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from coupled.analysis.bradley_terry import bradley_terry, bradley_terry_from_counts
from coupled.analysis.pairwise import (
    average_win_rates,
    average_win_rates_from_counts,
    block_counts,
    derive_comparisons,
    pair_counts,
)
from coupled.analysis.pairwise_simulation import simulate_pair_counts, simulated_comparisons_table
from coupled.analysis.ranksets import difference_df, rank_sets, rank_sets_from_estimates
from coupled.tables import read_comparisons


def best_of(repeats: int, function, *args, **kwargs):
    """Result and best wall time of ``repeats`` calls (the least disturbed by other jobs)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return result, min(times)


def naive_average_win_rates(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Baseline: average win-rates and their prompt-clustered SEs, one pair at a time."""
    models = sorted(set(comparisons["model_a"]) | set(comparisons["model_b"]))
    k = len(models)
    prompts = pd.Index(sorted(set(zip(comparisons["task"], comparisons["prompt_id"],
                                      strict=True))))
    influence = np.zeros((len(prompts), k))
    estimate = np.zeros(k)
    for (a, b), pair in comparisons.groupby(["model_a", "model_b"]):
        per_prompt = (pair.groupby(["task", "prompt_id"])["outcome"].value_counts()
                      .unstack(fill_value=0).reindex(columns=["a", "b", "tie"], fill_value=0))
        n = per_prompt.sum(axis=1).to_numpy(dtype=float)
        rows = prompts.get_indexer(per_prompt.index)
        total = n.sum()
        for model, column in ((a, "a"), (b, "b")):
            wins = per_prompt[column].to_numpy(dtype=float)
            rate = wins.sum() / total
            i = models.index(model)
            estimate[i] += rate / (k - 1)
            influence[rows, i] += (wins - rate * n) / total / (k - 1)
    q = len(prompts)
    covariance = influence.T @ influence * q / (q - 1)
    return pd.DataFrame({"model": models, "win_rate": estimate,
                         "se": np.sqrt(np.diag(covariance))})


def naive_derive(scores: pd.DataFrame) -> pd.DataFrame:
    """Baseline: a loop over score keys and model pairs, one output row at a time."""
    key = ["task", "prompt_id", "seed", "mode", "coupling"]
    rows = []
    for values, group in scores.groupby(key):
        by_model = dict(zip(group["model"], group["score"], strict=True))
        for a, b in itertools.combinations(sorted(by_model), 2):
            outcome = "a" if by_model[a] > by_model[b] else "b" if by_model[a] < by_model[b] \
                else "tie"
            rows.append((*values, a, b, outcome))
    return pd.DataFrame(rows, columns=key + ["model_a", "model_b", "outcome"])


def stages(comparisons: pd.DataFrame) -> dict[str, float]:
    """Time of each stage of one rank_sets call (validation, counting, covariance, sets+CIs)."""
    out = {}
    start = time.perf_counter()
    data = read_comparisons(comparisons)
    out["validate (coupled.tables)"] = time.perf_counter() - start
    start = time.perf_counter()
    counts = pair_counts(data)
    block = block_counts(counts, *counts.blocks[0])
    out["count per prompt and pair"] = time.perf_counter() - start
    start = time.perf_counter()
    avg = average_win_rates_from_counts(*block.arrays)
    out["average win-rates + clustered covariance"] = time.perf_counter() - start
    start = time.perf_counter()
    df = difference_df(avg.influence, avg.cluster_sizes)
    out["per-difference degrees of freedom (cluster_df)"] = time.perf_counter() - start
    start = time.perf_counter()
    rank_sets_from_estimates(avg.estimate, avg.covariance, df=df, method="auto")
    out["critical value (auto: max-|t| 10 000 draws or Bonferroni) + rank-sets"] = (
        time.perf_counter() - start)
    start = time.perf_counter()
    bradley_terry_from_counts(block.wins_a[0], block.wins_b[0], block.n[0], block.models)
    out["Bradley-Terry fit (statsmodels GLM) + clustered sandwich"] = time.perf_counter() - start
    return out


def statsmodels_cluster_bradley_terry(wins_a, wins_b, n):
    """Baseline: statsmodels' binomial GLM on every (prompt, pair) row with
    ``cov_type="cluster"`` (what one writes directly; a dense rows x models design)."""
    import warnings

    import statsmodels.api as sm

    k = int(round((1 + np.sqrt(1 + 8 * n.shape[1])) / 2))
    ia, ib = np.triu_indices(k, 1)
    q, p = np.nonzero(n > 0)
    counts = n[q, p]
    points = wins_a[q, p] + 0.5 * (counts - wins_a[q, p] - wins_b[q, p])
    design = np.zeros((len(q), k))
    design[np.arange(len(q)), ia[p]] = 1
    design[np.arange(len(q)), ib[p]] = -1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sm.GLM(points / counts, design[:, 1:], family=sm.families.Binomial(),
                     var_weights=counts).fit(cov_type="cluster", cov_kwds={"groups": q})
    return fit.params, fit.cov_params()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=816)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    k, q = args.models, args.prompts
    rng = np.random.default_rng(0)
    probs = np.clip(rng.uniform(0.2, 0.9, (100, k)) + np.linspace(0, 0.1, k), 0, 1)
    sim = simulate_pair_counts(probs, q, 1, "coupled", 1, judge_noise=0.1)
    names = [f"model-{i:02d}" for i in range(k)]
    comparisons = simulated_comparisons_table(sim, names, "coupled")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    print(f"k = {k} models, {q} prompts, {len(comparisons):,} comparisons; "
          f"best of {args.repeats}")

    ranks, t_ranks = best_of(args.repeats, rank_sets, comparisons)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "comparisons.parquet"
        comparisons.to_parquet(path, index=False)
        from_file, t_file = best_of(args.repeats, rank_sets, path)
    pd.testing.assert_frame_equal(ranks, from_file)
    ours, t_avg = best_of(args.repeats, average_win_rates, comparisons)
    naive, t_naive = best_of(1, naive_average_win_rates, comparisons)
    ours = ours.set_index("model").loc[naive["model"]]
    assert np.allclose(ours["win_rate"], naive["win_rate"].to_numpy(), rtol=1e-12)
    assert np.allclose(ours["se"], naive["se"].to_numpy(), rtol=1e-9), "baseline disagrees"
    print(f"rank_sets(DataFrame), everything (validate, count, covariance, max-|t|, CIs): "
          f"{t_ranks:.2f} s")
    print(f"rank_sets(parquet file), reading included:                                 "
          f"{t_file:.2f} s")
    print(f"average_win_rates(DataFrame) (same without rank-sets):                     "
          f"{t_avg:.2f} s")
    print(f"naive loop over pairs (average win-rates and SEs only):                    "
          f"{t_naive:.2f} s  -> naive / average_win_rates = {t_naive / t_avg:.1f}x, "
          f"naive / rank_sets = {t_naive / t_ranks:.1f}x")
    for name, seconds in stages(comparisons).items():
        print(f"  stage: {name:<70} {seconds:.3f} s")
    bt, t_bt = best_of(args.repeats, bradley_terry, comparisons)
    assert len(bt) == k
    print(f"bradley_terry(DataFrame), everything (validate, count, fit, sandwich, rank-sets): "
          f"{t_bt:.2f} s -> bradley_terry / rank_sets = {t_bt / t_ranks:.2f}x")
    # statsmodels' own cluster fit on the (prompt, pair) rows, on a subset it can hold in
    # memory (its dense design is rows x models): the first 10 models
    small = comparisons[comparisons["model_a"].isin(names[:10])
                        & comparisons["model_b"].isin(names[:10])]
    counts = pair_counts(small)
    block = block_counts(counts, *counts.blocks[0])
    ours_fit, t_ours = best_of(args.repeats, bradley_terry_from_counts, block.wins_a[0],
                               block.wins_b[0], block.n[0], block.models)
    (params, cov), t_sm = best_of(1, statsmodels_cluster_bradley_terry, block.wins_a[0],
                                  block.wins_b[0], block.n[0])
    embed = np.vstack([np.zeros((1, 9)), np.eye(9)])
    centring = embed - embed.mean(axis=0)
    assert np.allclose(ours_fit.score, centring @ params, atol=1e-7)
    assert np.allclose(ours_fit.covariance, centring @ cov @ centring.T, rtol=1e-6)
    print(f"Bradley-Terry, 10 models x {q} prompts ({int(block.n.sum()):,} comparisons): "
          f"bradley_terry_from_counts {t_ours * 1e3:.1f} ms; statsmodels cluster GLM on the "
          f"(prompt, pair) rows {t_sm * 1e3:.1f} ms (same numbers) -> {t_sm / t_ours:.1f}x")

    scores = pd.DataFrame({
        "task": "bench", "prompt_id": np.repeat(np.arange(q).astype(str), k), "seed": 0,
        "mode": "coupled", "coupling": "gumbel", "model": np.tile(names, q),
        "score": rng.integers(0, 3, q * k).astype(float)})
    derived, t_derive = best_of(args.repeats, derive_comparisons, scores)
    baseline, t_naive_derive = best_of(1, naive_derive, scores)
    assert len(baseline) == len(derived)
    assert (baseline["outcome"].value_counts() == derived["outcome"].value_counts()).all()
    print(f"derive_comparisons: {len(derived):,} comparisons from {len(scores):,} scores in "
          f"{t_derive:.2f} s (validation included); naive loop {t_naive_derive:.2f} s "
          f"-> ratio {t_naive_derive / t_derive:.1f}x")
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    assert len(ranks) == k


if __name__ == "__main__":
    main()
