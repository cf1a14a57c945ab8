"""An independent generator of pairwise comparisons with exact truth, for the small-design and
Bradley–Terry coverage checks (issue 11 §4-5). It shares no code with ``coupled.simulate`` or
``coupled.analysis.pairwise_simulation`` (those generate binary correctness; this one graded
replies), so a bug common to a generator and an estimator cannot hide.

Model. A prompt has a *type* ``t`` (drawn uniformly from ``T`` types, so the population truth is
an exact average over types). On type ``t`` model ``m`` replies with one of ``C`` options drawn
from a categorical law ``pi[t, m, :]``; option ``c`` has a quality ``quality[t, c]`` (graded, with
equal qualities, so ties arise from equal quality as well as from identical replies). A
comparison of two replies is ``a`` / ``b`` / ``tie`` by quality. Per (prompt, seed) a coin with
probability ``rho`` decides whether the models share one uniform (inverse-CDF coupling: every
model's reply is its quantile at that uniform, DESIGN's ``inverse_cdf`` sampler) or each draws
its own (independent generation); ``rho = 1`` is coupled, ``rho = 0`` independent.

Exact truth. Under the shared uniform, ``P(X = x, Y = y)`` is the length of the overlap of the
two CDF intervals of ``x`` and ``y``; under independence the product of the marginals; the
mixture weights them by ``rho``. Pair rates are sums of the joint over quality orders, averaged
over types — no Monte Carlo in the truth (checked against a large draw below).

Designs. Seeds per prompt: a number, or a tuple of choices drawn per prompt (``(1, 20)``: the
audit's unbalanced design); ``pair_keep`` drops each comparison independently (unbalanced
pairs). Both are independent of the outcomes, so the estimands are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

FULL = 2000  # replicates of the full (``-m slow``) Monte-Carlo checks built on this generator


def binomial_se(p: float, replicates: int) -> float:
    """Monte-Carlo SE of a proportion ``p`` estimated from ``replicates`` replicates."""
    return float(np.sqrt(p * (1 - p) / replicates))


def reduced_and_full(reduced: int):
    """Run a Monte-Carlo check at ``reduced`` replicates by default and ``FULL`` under slow."""
    return pytest.mark.parametrize("replicates", [
        pytest.param(reduced, id="reduced"),
        pytest.param(FULL, id="full", marks=pytest.mark.slow)])


@dataclass(frozen=True)
class GradedFamily:
    pi: np.ndarray        # [T, k, C] reply laws
    quality: np.ndarray   # [T, C]
    rho: float            # probability that a (prompt, seed) uses the shared uniform

    @property
    def k(self) -> int:
        return self.pi.shape[1]


def graded_family(k: int, n_types: int = 12, n_options: int = 5, rho: float = 1.0,
                  spread: float = 1.0, seed: int = 0, tied: bool = False) -> GradedFamily:
    """Random reply laws whose mean quality rises with the model index by ``spread``
    (``tied``: every model has the same law on a cyclic shift of the types, so all models have
    equal average win-rates and equal Bradley–Terry scores — the hardest case for rank-sets)."""
    rng = np.random.default_rng(seed)
    quality = np.sort(rng.integers(0, 4, (n_types, n_options)), axis=1).astype(float)
    base = rng.normal(0, 1, (n_types, n_options))
    if tied:
        if n_types % k:
            raise ValueError("tied families need n_types to be a multiple of k")
        # Model m's law on type t is model 0's on type t - m T/k (one quality scale for all
        # types): the comparison table is invariant under cyclic shifts of the models, so every
        # model has the same average win-rate and Bradley-Terry score.
        quality = np.broadcast_to(quality[:1], quality.shape).copy()
        logits = np.stack([np.roll(base, m * (n_types // k), axis=0) for m in range(k)], axis=1)
    else:
        strength = spread * np.linspace(-1, 1, k)[None, :] + rng.normal(0, 0.3, (n_types, k))
        logits = base[:, None, :] + strength[:, :, None] * (quality[:, None, :] - 1.5) / 1.5
    pi = np.exp(logits - logits.max(axis=-1, keepdims=True))
    pi /= pi.sum(axis=-1, keepdims=True)
    return GradedFamily(pi, quality, rho)


def _pair_indices(k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(k, 1)


def exact_pair_rates(family: GradedFamily) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True P(first wins), P(second wins), P(tie) per unordered pair ``(i < j)``, ``[P]`` each."""
    cdf = np.cumsum(family.pi, axis=-1)
    lower = cdf - family.pi
    ia, ib = _pair_indices(family.k)
    # shared uniform: overlap of [lower_i(x), cdf_i(x)) and [lower_j(y), cdf_j(y))
    overlap = np.clip(np.minimum(cdf[:, ia, :, None], cdf[:, ib, None, :])
                      - np.maximum(lower[:, ia, :, None], lower[:, ib, None, :]), 0, None)
    product = family.pi[:, ia, :, None] * family.pi[:, ib, None, :]
    joint = family.rho * overlap + (1 - family.rho) * product           # [T, P, C, C]
    qa, qb = family.quality[:, None, :, None], family.quality[:, None, None, :]
    win_a = (joint * (qa > qb)).sum(axis=(2, 3)).mean(axis=0)
    win_b = (joint * (qa < qb)).sum(axis=(2, 3)).mean(axis=0)
    return win_a, win_b, 1 - win_a - win_b


def exact_average_win_rates(family: GradedFamily) -> np.ndarray:
    """True mean over opponents of P(model beats opponent), ``[k]``."""
    win_a, win_b, _ = exact_pair_rates(family)
    k = family.k
    ia, ib = _pair_indices(k)
    total = np.zeros(k)
    np.add.at(total, ia, win_a)
    np.add.at(total, ib, win_b)
    return total / (k - 1)


@dataclass(frozen=True)
class GradedCounts:
    wins_a: np.ndarray     # [R, Q, P]
    wins_b: np.ndarray
    n: np.ndarray
    outcome: np.ndarray    # [R, Q, S, P]: 1 first wins, 2 second wins, 0 tie, -1 not compared
    types: np.ndarray      # [R, Q] prompt types


def draw_counts(family: GradedFamily, n_prompts: int, seeds: int | tuple[int, ...],
                replicates: int, rng: int | np.random.Generator, pair_keep: float = 1.0,
                types: np.ndarray | None = None) -> GradedCounts:
    """``replicates`` experiments of ``n_prompts`` prompts in the ``[R, Q, P]`` count layout;
    ``types`` ``[R, Q]`` fixes the prompts (two runs on the same prompts, as two modes are)."""
    rng = np.random.default_rng(rng)
    choices = (seeds,) if np.isscalar(seeds) else tuple(seeds)
    width = max(choices)
    if types is None:
        types = rng.integers(0, family.pi.shape[0], (replicates, n_prompts))
    cdf = np.cumsum(family.pi, axis=-1)[types]                             # [R, Q, k, C]
    shared = rng.random((replicates, n_prompts, width, 1))
    own = rng.random((replicates, n_prompts, width, family.k))
    coupled = rng.random((replicates, n_prompts, width, 1)) < family.rho
    u = np.where(coupled, shared, own)                                     # [R, Q, S, k]
    # inverse CDF: the first option whose CDF exceeds u (the last option guards rounding)
    reply = (u[..., None] >= cdf[:, :, None, :, :]).sum(axis=-1)
    reply = np.minimum(reply, family.pi.shape[-1] - 1)
    quality = family.quality[types]                                        # [R, Q, C]
    q = np.take_along_axis(quality[:, :, None, :], reply, axis=-1)         # [R, Q, S, k]
    ia, ib = _pair_indices(family.k)
    qa, qb = q[..., ia], q[..., ib]
    outcome = np.where(qa > qb, 1, np.where(qa < qb, 2, 0)).astype(np.int8)
    n_seeds = np.asarray(choices)[rng.integers(0, len(choices), (replicates, n_prompts))]
    compared = np.arange(width)[None, None, :, None] < n_seeds[:, :, None, None]
    if pair_keep < 1:
        compared = compared & (rng.random(outcome.shape) < pair_keep)
    outcome = np.where(compared, outcome, -1).astype(np.int8)
    return GradedCounts((outcome == 1).sum(axis=2).astype(float),
                        (outcome == 2).sum(axis=2).astype(float),
                        (outcome >= 0).sum(axis=2).astype(float), outcome, types)


def comparisons_frame(counts: GradedCounts, replicate: int = 0, mode: str = "coupled",
                      models: list[str] | None = None):
    """One replicate as a comparisons table (same draws), for the DataFrame and CLI paths."""
    import pandas as pd

    outcome = counts.outcome[replicate]
    k = int(round((1 + np.sqrt(1 + 8 * outcome.shape[-1])) / 2))
    models = sorted(models or [f"m{i:02d}" for i in range(k)])
    ia, ib = _pair_indices(k)
    q, s, p = np.nonzero(outcome >= 0)
    names = np.array(models, dtype=object)
    return pd.DataFrame({
        "task": "graded", "prompt_id": q.astype(str), "seed": s, "mode": mode,
        "coupling": "inverse_cdf", "model_a": names[ia[p]], "model_b": names[ib[p]],
        "outcome": np.array(["tie", "a", "b"], dtype=object)[outcome[q, s, p]]})


# ---------------------------------------------------------------- the generator's own checks

@pytest.mark.parametrize("rho", [0.0, 0.6, 1.0])
def test_exact_rates_match_a_large_draw(rho):
    """The exact truth agrees with 200 000 draws per pair within 4 binomial SEs."""
    family = graded_family(4, rho=rho, seed=3)
    counts = draw_counts(family, 20_000, 10, 1, 11)
    n = counts.n.sum(axis=(0, 1))
    for observed, exact in ((counts.wins_a.sum(axis=(0, 1)) / n, exact_pair_rates(family)[0]),
                            (counts.wins_b.sum(axis=(0, 1)) / n, exact_pair_rates(family)[1])):
        # prompts cluster the draws: the SE uses the per-prompt variance of the rate
        se = np.sqrt(exact * (1 - exact) / n) * 3.5     # design effect of 10 seeds, bounded
        assert np.all(np.abs(observed - exact) <= 4 * se + 1e-12), (observed, exact)


def test_coupling_makes_ties_and_tied_families_are_tied():
    coupled, independent = (exact_pair_rates(graded_family(5, rho=r, seed=1))[2]
                            for r in (1.0, 0.0))
    assert np.all(coupled > independent)
    tied = exact_average_win_rates(graded_family(4, n_types=8, tied=True, seed=2))
    np.testing.assert_allclose(tied, tied.mean(), atol=1e-12)
    assert tied.mean() > 0.05
