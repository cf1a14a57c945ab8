"""Benchmark of ``coupled.theory.gumbel_max_joint`` (run: ``.venv/bin/python bench/bench_theory.py``).

For V in {16, 128, 1024}, in one process: the fast O(V log V + V^2) form, the direct O(V^3)
integral form of DESIGN §1 (the reference the tests use) and a numpy baseline of the same
output size (``np.outer(p, q)``, i.e. the independent joint). Times are the median of repeated
runs (``timeit``); from V = 128 on, the O(V^3) reference would take minutes to hours, so it is
timed once on 1000 random off-diagonal cells and scaled to V^2 cells (stated in the output). Also: a batch of
prompts through one call vs a Python loop over prompts. Figures go to ``bench/theory.md``.
"""

from __future__ import annotations

import platform
import statistics
import timeit

import numpy as np

from coupled.theory import gumbel_max_joint, gumbel_max_joint_integral, joint
from coupled.theory.couplings import _integral_of_inverse_square


def median_seconds(function, repeat: int = 7) -> float:
    timer = timeit.Timer(function)
    number, _ = timer.autorange()
    return statistics.median(t / number for t in timer.repeat(repeat=repeat, number=number))


def reference_seconds(p: np.ndarray, q: np.ndarray, rng: np.random.Generator) -> tuple[float, str]:
    size = p.size
    if size <= 16:
        return median_seconds(lambda: gumbel_max_joint_integral(p, q), repeat=3), "full matrix"
    cells = 1000
    rows = rng.integers(0, size, cells)
    columns = (rows + rng.integers(1, size, cells)) % size  # off-diagonal cells

    def sample() -> None:
        for a, b in zip(rows, columns, strict=True):
            start, stop = p[b] / p[a], q[b] / q[a]
            if stop > start:
                _integral_of_inverse_square(p, q, a, b, start, stop)

    seconds = timeit.timeit(sample, number=1)  # one pass: each takes seconds
    return seconds * size * size / cells, f"{cells} sampled cells x V^2/{cells}"


def main() -> None:
    rng = np.random.default_rng(0)
    lines = [
        f"machine: {platform.processor() or platform.machine()}, numpy {np.__version__}, "
        "median of repeated runs",
        "",
        "| V | gumbel_max_joint | np.outer (baseline) | integral reference (O(V^3)) "
        "| fast / outer | reference / fast |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for size in (16, 128, 1024):
        p = rng.dirichlet(np.ones(size))
        q = rng.dirichlet(np.ones(size))
        fast = median_seconds(lambda p=p, q=q: gumbel_max_joint(p, q))
        outer = median_seconds(lambda p=p, q=q: np.outer(p, q))
        reference, how = reference_seconds(p, q, rng)
        lines.append(f"| {size} | {fast * 1e3:.3f} ms | {outer * 1e3:.4f} ms | "
                     f"{reference:.3g} s ({how}) | {fast / outer:.0f}x | "
                     f"{reference / fast:.0f}x |")
    n_prompts, size = 256, 32
    P = rng.dirichlet(np.ones(size), size=n_prompts)
    Q = rng.dirichlet(np.ones(size), size=n_prompts)
    batched = median_seconds(lambda: joint(P, Q))
    looped = median_seconds(lambda: [gumbel_max_joint(p, q) for p, q in zip(P, Q, strict=True)])
    lines += ["", f"batch of {n_prompts} prompts at V = {size}: one call {batched * 1e3:.2f} ms, "
              f"loop over prompts {looped * 1e3:.2f} ms (loop / batch {looped / batched:.1f}x)"]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
