"""A vectorised generator of pairwise comparisons with known truth, for validity checks,
planning checks and benchmarks (it is not an estimator).

Canonical setting 1 (DESIGN §1, paper Prop. 4): on a prompt of *type* ``t`` model ``m`` answers
correctly with probability ``p[t, m]``; a comparison says which answer is right (``a``/``b``) or
``tie`` when both are right or both wrong. Under a counterfactually stable coupling the models
share one uniform per (prompt, seed) — ``correct_m = U < p_m`` (comonotone) — and under
independent generation each model draws its own. A model's answer for a (prompt, seed) is shared
by all its comparisons, so comparisons sharing a prompt, a seed or a model are correlated exactly
as in a real run. Optionally a noisy judge replaces an outcome by a fair coin ``a``/``b`` with
probability ``judge_noise``. Prompts are drawn uniformly from the types, so the truth is the
average over types of the per-prompt rates of Prop. 4 (:func:`true_pair_rates`).

Counts come out in the layout of the array cores of :mod:`coupled.analysis.pairwise`
(``[R, Q, P]`` with a leading replicate axis); :func:`simulated_comparisons_table` writes one
replicate as a comparisons table with the same draws, so tests can check both paths agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from coupled.analysis.pairwise import average_win_rate_map, pair_indices

__all__ = ["SimulatedCounts", "simulate_pair_counts", "simulated_comparisons_table",
           "true_pair_rates", "true_average_win_rates"]


@dataclass(frozen=True)
class SimulatedCounts:
    wins_a: np.ndarray     # [R, Q, P]
    wins_b: np.ndarray
    n: np.ndarray
    prompt_type: np.ndarray  # [R, Q]
    outcome: np.ndarray      # [R, Q, S, P] int8: 0 tie, 1 a, 2 b, -1 not compared


def true_pair_rates(prompt_probs: np.ndarray, mode: str, judge_noise: float = 0.0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """True P(model_a wins), P(model_b wins) per unordered pair ``[P]``: Prop. 4 averaged over
    prompt types (``coupled.theory.pairwise_rates``; the comonotone draws here are setting 1's
    Gumbel-max coupling), then a noisy judge moves ``judge_noise`` of the mass to a fair coin."""
    from coupled.theory import pairwise_rates

    if mode not in ("coupled", "independent"):
        raise ValueError(f"mode must be 'coupled' or 'independent', got {mode!r}")
    p = np.asarray(prompt_probs, dtype=float)
    rates = pairwise_rates(p, coupling="gumbel" if mode == "coupled" else "independent")
    ia, ib = pair_indices(p.shape[1])
    return tuple((1 - judge_noise) * rates.win[first, second] + judge_noise / 2
                 for first, second in ((ia, ib), (ib, ia)))


def true_average_win_rates(prompt_probs: np.ndarray, mode: str, judge_noise: float = 0.0
                           ) -> np.ndarray:
    """True average win-rate of each model (mean over opponents of P(beats opponent))."""
    win_a, win_b = true_pair_rates(prompt_probs, mode, judge_noise)
    first, second = average_win_rate_map(np.asarray(prompt_probs).shape[1])
    return first @ win_a + second @ win_b


def simulate_pair_counts(prompt_probs: np.ndarray, n_prompts: int, n_seeds: int | tuple[int, int],
                         mode: str, rng: np.random.Generator | int, n_replicates: int = 1, *,
                         judge_noise: float = 0.0, pair_keep: float = 1.0,
                         shared_uniforms: np.ndarray | None = None,
                         prompt_type: np.ndarray | None = None) -> SimulatedCounts:
    """Simulate ``n_replicates`` experiments of ``n_prompts`` prompts.

    ``n_seeds``: seeds per prompt, or ``(low, high)`` for a per-prompt count drawn uniformly in
    ``[low, high]`` (an unbalanced design); ``pair_keep`` < 1 drops each comparison independently
    (unbalanced pairs). Both are independent of the outcomes, so the estimands are unchanged.
    ``shared_uniforms`` ``[R, Q, S]`` (optional) are the per-(prompt, seed) uniforms of coupled
    mode — pass the same ones to two calls to get coupled and independent data on shared draws;
    ``prompt_type`` ``[R, Q]`` (optional) fixes which prompt types are drawn, so two calls can
    share their prompts (as the two modes of one run do)."""
    rng = np.random.default_rng(rng)
    probs = np.asarray(prompt_probs, dtype=float)
    if probs.ndim != 2 or np.any((probs < 0) | (probs > 1)):
        raise ValueError("prompt_probs must be a [types, models] array of probabilities")
    k = probs.shape[1]
    low, high = (n_seeds, n_seeds) if np.isscalar(n_seeds) else n_seeds
    shape = (n_replicates, n_prompts, high)
    if prompt_type is None:
        prompt_type = rng.integers(0, probs.shape[0], size=shape[:2])
    p = probs[prompt_type]                                            # [R, Q, k]
    if mode == "coupled":
        u = rng.random(shape) if shared_uniforms is None else shared_uniforms
        correct = u[..., None] < p[:, :, None, :]                      # [R, Q, S, k]
    elif mode == "independent":
        correct = rng.random(shape + (k,)) < p[:, :, None, :]
    else:
        raise ValueError(f"mode must be 'coupled' or 'independent', got {mode!r}")
    ia, ib = pair_indices(k)
    ca, cb = correct[..., ia], correct[..., ib]
    outcome = np.where(ca & ~cb, 1, np.where(cb & ~ca, 2, 0)).astype(np.int8)
    if judge_noise > 0:
        noisy = rng.random(outcome.shape) < judge_noise
        coin = (1 + (rng.random(outcome.shape) < 0.5)).astype(np.int8)
        outcome = np.where(noisy, coin, outcome)
    seeds = rng.integers(low, high + 1, size=shape[:2])
    compared = np.arange(high)[None, None, :, None] < seeds[:, :, None, None]
    if pair_keep < 1:
        compared = compared & (rng.random(outcome.shape) < pair_keep)
    outcome = np.where(compared, outcome, -1).astype(np.int8)
    return SimulatedCounts(wins_a=(outcome == 1).sum(axis=2).astype(float),
                           wins_b=(outcome == 2).sum(axis=2).astype(float),
                           n=(outcome >= 0).sum(axis=2).astype(float),
                           prompt_type=prompt_type, outcome=outcome)


def simulated_comparisons_table(sim: SimulatedCounts, models: list[str], mode: str,
                                replicate: int = 0, task: str = "sim",
                                coupling: str = "gumbel") -> pd.DataFrame:
    """One replicate of :func:`simulate_pair_counts` as a comparisons table (same draws)."""
    models = sorted(models)
    ia, ib = pair_indices(len(models))
    outcome = sim.outcome[replicate]                                   # [Q, S, P]
    q, s, p = np.nonzero(outcome >= 0)
    names = np.array(models, dtype=object)
    return pd.DataFrame({
        "task": task, "prompt_id": q.astype(str), "seed": s, "mode": mode,
        "coupling": coupling, "model_a": names[ia[p]], "model_b": names[ib[p]],
        "outcome": np.array(["tie", "a", "b"], dtype=object)[outcome[q, s, p]],
    })
