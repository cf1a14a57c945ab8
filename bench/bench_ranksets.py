"""Speed of the pairwise half: rank-sets with CIs for k = 50 models and ~10^6 comparisons
(target <= 5 s), and deriving ~10^6 comparisons from scores, each against a naive baseline run in
the same process (a Python loop over pairs / a pandas groupby-apply computing the same numbers).

    .venv/bin/python bench/bench_ranksets.py [--prompts 816] [--models 50]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import pandas as pd

from coupled.analysis.pairwise import average_win_rates, derive_comparisons
from coupled.analysis.pairwise_simulation import simulate_pair_counts, simulated_comparisons_table
from coupled.analysis.ranksets import rank_sets


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def naive_average_win_rates(comparisons: pd.DataFrame) -> pd.Series:
    """Baseline: a Python loop over pairs, a groupby by prompt for each, influence functions
    accumulated per model — the same estimator and clustered variance, written plainly."""
    models = sorted(set(comparisons["model_a"]) | set(comparisons["model_b"]))
    k = len(models)
    prompts = pd.Index(sorted(set(zip(comparisons["task"], comparisons["prompt_id"],
                                      strict=True))))
    influence = np.zeros((len(prompts), k))
    estimate = np.zeros(k)
    for (a, b), pair in comparisons.groupby(["model_a", "model_b"]):
        per_prompt = pair.groupby(["task", "prompt_id"])["outcome"].agg(
            wins_a=lambda o: (o == "a").sum(), wins_b=lambda o: (o == "b").sum(), n="size")
        rows = prompts.get_indexer(per_prompt.index)
        total = per_prompt["n"].sum()
        for model, wins in ((a, "wins_a"), (b, "wins_b")):
            rate = per_prompt[wins].sum() / total
            i = models.index(model)
            estimate[i] += rate / (k - 1)
            influence[rows, i] += ((per_prompt[wins] - rate * per_prompt["n"]) / total
                                   / (k - 1)).to_numpy()
    q = len(prompts)
    covariance = influence.T @ influence * q / (q - 1)
    return pd.Series(np.sqrt(np.diag(covariance)), index=models)


def naive_derive(scores: pd.DataFrame) -> int:
    """Baseline: groupby-apply over keys, a Python loop over model pairs."""
    count = 0
    for _, group in scores.groupby(["task", "prompt_id", "seed", "mode", "coupling"]):
        values = dict(zip(group["model"], group["score"], strict=True))
        for a, b in itertools.combinations(sorted(values), 2):
            _ = "a" if values[a] > values[b] else "b" if values[a] < values[b] else "tie"
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=816)
    parser.add_argument("--models", type=int, default=50)
    args = parser.parse_args()
    k, q = args.models, args.prompts
    rng = np.random.default_rng(0)
    probs = np.clip(rng.uniform(0.2, 0.9, (100, k)) + np.linspace(0, 0.1, k), 0, 1)
    sim = simulate_pair_counts(probs, q, 1, "coupled", 1, judge_noise=0.1)
    names = [f"model-{i:02d}" for i in range(k)]
    comparisons = simulated_comparisons_table(sim, names, "coupled")
    print(f"k = {k} models, {q} prompts, {len(comparisons):,} comparisons")

    ranks, t_ranks = timed(rank_sets, comparisons)
    _, t_avg = timed(average_win_rates, comparisons)
    naive_se, t_naive = timed(naive_average_win_rates, comparisons)
    ours = average_win_rates(comparisons).set_index("model")["se"]
    assert np.allclose(ours[naive_se.index], naive_se, rtol=1e-9), "baseline disagrees"
    print(f"rank_sets (read+validate+counts+covariance+max-|t| 10k draws+CIs): {t_ranks:.2f} s")
    print(f"average_win_rates (same without rank-sets):                      {t_avg:.2f} s")
    print(f"naive loop over pairs (average win-rate SEs only):               {t_naive:.2f} s"
          f"  -> ratio naive / ours (average) = {t_naive / t_avg:.1f}x")

    scores = pd.DataFrame({
        "task": "bench", "prompt_id": np.repeat(np.arange(q).astype(str), k), "seed": 0,
        "mode": "coupled", "coupling": "gumbel", "model": np.tile(names, q),
        "score": rng.integers(0, 3, q * k).astype(float)})
    derived, t_derive = timed(derive_comparisons, scores)
    count, t_naive_derive = timed(naive_derive, scores)
    assert count == len(derived)
    print(f"derive_comparisons: {len(derived):,} comparisons from {len(scores):,} scores in "
          f"{t_derive:.2f} s; naive groupby-apply {t_naive_derive:.2f} s "
          f"-> ratio {t_naive_derive / t_derive:.1f}x")
    assert len(ranks) == k


if __name__ == "__main__":
    main()
