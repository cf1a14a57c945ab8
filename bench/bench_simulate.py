"""Speed of coupled.simulate, each figure against a baseline measured in the same process.

1. Coupled Gumbel-max draws per second at V = 32 768 (noise hashed from its key, float64
   Gumbels, argmax) against numpy's raw Gumbel generation (``rng.gumbel``, V variates per draw)
   and against a plain numpy Gumbel-max (``argmax(log p + rng.gumbel)``). Goal: >= 0.5x raw.
2. The fast path ``sample_pairs_from_joint`` (token pairs straight from the exact joint law)
   in pairs per second for small V, against ``rng.random`` (one uniform per pair).
   Goal: >= 1e7 pairs/s.
3. ``simulate_scores`` at the size of the analysis coverage tests (50 prompts x 5 seeds x 4
   models, V = 4, both modes), against building the same-size DataFrame from ready arrays.
4. ``simulate_family()`` with the default config (the CLI's work): tables, and the exact truth.

Run: ``.venv/bin/python bench/bench_simulate.py`` (best of a few repetitions; the machine is
shared, so compare ratios rather than absolute rates).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from coupled.simulate import noise, sample_pairs_from_joint, simulate_family, simulate_scores
from coupled.simulate.samplers import gumbel_max_tokens
from coupled.theory import joint


def best_time(func, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def bench_gumbel(vocab: int = 32_768, n_rows: int = 256) -> None:
    rng = np.random.default_rng(0)
    log_probs = np.log(rng.dirichlet(np.ones(vocab), size=6))
    rows = noise.row_keys_grid("bench", [str(i) for i in range(n_rows)], [0])[:, 0, :]  # (R, 1)
    raw = best_time(lambda: rng.gumbel(size=(n_rows, vocab)))
    plain = best_time(lambda: np.argmax(log_probs[0] + rng.gumbel(size=(n_rows, vocab)), -1))
    ours_one = best_time(lambda: gumbel_max_tokens(log_probs[0], rows, 3))
    ours_six = best_time(lambda: gumbel_max_tokens(log_probs, rows, 3))
    print(f"V = {vocab}, {n_rows} rows per call")
    print(f"  rng.gumbel (raw, V variates/draw)      {n_rows / raw:10.0f} draws/s   1.00x")
    print(f"  numpy Gumbel-max (rng.gumbel + argmax) {n_rows / plain:10.0f} draws/s   "
          f"{raw / plain:.2f}x")
    print(f"  coupled Gumbel-max, 1 model            {n_rows / ours_one:10.0f} draws/s   "
          f"{raw / ours_one:.2f}x")
    print(f"  coupled Gumbel-max, 6 models (shared)  {6 * n_rows / ours_six:10.0f} draws/s   "
          f"{6 * raw / ours_six:.2f}x  (model-draws)")


def bench_pairs(n: int = 10_000_000) -> None:
    rng = np.random.default_rng(0)
    uniform = best_time(lambda: rng.random(n), repeat=3)
    print(f"fast path, {n:.0e} pairs per call")
    print(f"  rng.random (one uniform per pair)      {n / uniform:12.3e} /s        1.00x")
    for vocab in (2, 4, 8, 16, 64):
        p, q = rng.dirichlet(np.ones(vocab), size=2)
        law = joint(p, q, "gumbel")
        seconds = best_time(lambda law=law: sample_pairs_from_joint(law, n, rng), repeat=3)
        print(f"  sample_pairs_from_joint V = {vocab:3d}       {n / seconds:12.3e} pairs/s  "
              f"{uniform / seconds:.2f}x")


def bench_small_tables(calls: int = 200) -> None:
    rng = np.random.default_rng(0)
    dists = rng.dirichlet(np.ones(4), size=(50, 4))
    correct = rng.integers(0, 4, size=50)

    def ours() -> None:
        for replicate in range(calls):
            simulate_scores(dists, correct, 5, seed=replicate)

    columns = simulate_scores(dists, correct, 5).to_dict("series")
    arrays = {name: column.to_numpy() for name, column in columns.items()}

    def baseline() -> None:
        for _ in range(calls):
            pd.DataFrame({name: pd.Series(values, dtype=values.dtype)
                          for name, values in arrays.items()})

    seconds, frame_only = best_time(ours, repeat=3), best_time(baseline, repeat=3)
    print("simulate_scores, 50 prompts x 5 seeds x 4 models, V = 4, both modes (2000 rows)")
    print(f"  {1e3 * seconds / calls:.2f} ms per call; building the same DataFrame from ready "
          f"arrays {1e3 * frame_only / calls:.2f} ms ({seconds / frame_only:.1f}x)")


def bench_family() -> None:
    tables = best_time(lambda: simulate_family(None, progress=False, truth=False), repeat=2)
    full = best_time(lambda: simulate_family(None, progress=False, truth=True), repeat=2)
    print("simulate_family(), default config (6 models, 200 + 200 prompts, 10 seeds, 2 modes)")
    print(f"  tables only {tables:6.2f} s;  tables + exact truth {full:6.2f} s")


if __name__ == "__main__":
    bench_gumbel()
    bench_pairs()
    bench_small_tables()
    bench_family()
