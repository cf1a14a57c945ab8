"""A vectorised Gumbel-max benchmark generator with known truth, for the analysis tests.

Many replicated benchmarks at once (leading replicate axis): a fixed *population* of questions
(two models' next-token distributions over V tokens, correct token 0); each replicate draws
``Q`` questions i.i.d. from it and runs each with ``S`` seeds, coupled (shared Gumbel noise) or
independent. Truth (the estimands) is exact from the population: the mean difference, the
between-question variance, and the within-question variances (coupled: the Gumbel-max joint of
DESIGN §1, ``P(both right) = 1 / Σ_j max(p_j/p_c, q_j/q_c)``).

The file also tests that this generator is the same law as ``coupled.simulate`` (when present)
and as the exact joint, so the coverage tests may run on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest


@dataclass(frozen=True)
class Population:
    p: np.ndarray  # (N, V) model a's next-token distribution per question; token 0 is correct
    q: np.ndarray  # (N, V) model b's

    @property
    def p_right(self) -> np.ndarray:
        return self.p[:, 0]

    @property
    def q_right(self) -> np.ndarray:
        return self.q[:, 0]

    @property
    def both_right_coupled(self) -> np.ndarray:
        return 1.0 / np.maximum(self.p / self.p[:, :1], self.q / self.q[:, :1]).sum(axis=1)

    @property
    def effect(self) -> float:
        return float(np.mean(self.p_right - self.q_right))

    @property
    def between(self) -> float:
        return float(np.var(self.p_right - self.q_right))  # population variance (ddof 0)

    def within(self, mode: str) -> float:
        pa, pb = self.p_right, self.q_right
        if mode == "coupled":
            p_diff = pa + pb - 2.0 * self.both_right_coupled  # P(R_a != R_b)
            return float(np.mean(p_diff - (pa - pb) ** 2))
        return float(np.mean(pa * (1 - pa) + pb * (1 - pb)))

    def ratio(self) -> float:
        return (self.between + self.within("coupled")) / (self.between + self.within("independent"))


def make_population(n: int = 4000, vocab: int = 4, shift: float = 0.25, noise: float = 0.8,
                    seed: int = 7) -> Population:
    """Similar models (b = a's logits plus noise, minus ``shift`` on the correct token).

    Correct-token rates mostly in (0.2, 0.95): away from 0 and 1, as the issue asks.
    """
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, size=(n, vocab))
    logits[:, 0] += rng.normal(1.2, 0.9, size=n)
    other = logits + rng.normal(0.0, noise, size=(n, vocab))
    other[:, 0] -= shift

    def softmax(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return Population(p=softmax(logits), q=softmax(other))


def simulate_replicates(pop: Population, n_reps: int, n_questions: int, n_seeds: int,
                        mode: str, rng: np.random.Generator, unbalanced: bool = False
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binary scores ``a, b`` of shape (R, Q, S) and the paired-row ``mask``.

    Unbalanced: each question keeps a random number of seeds in 1..S, and model b misses 10 %
    of the remaining rows at random (missing completely at random, so the estimand is intact).
    """
    index = rng.integers(0, len(pop.p), size=(n_reps, n_questions))
    log_p = np.log(pop.p[index])[:, :, None, :]
    log_q = np.log(pop.q[index])[:, :, None, :]
    shape = (n_reps, n_questions, n_seeds, pop.p.shape[1])
    g = rng.gumbel(size=shape)
    g_other = g if mode == "coupled" else rng.gumbel(size=shape)
    a = (np.argmax(log_p + g, axis=-1) == 0).astype(float)
    b = (np.argmax(log_q + g_other, axis=-1) == 0).astype(float)
    mask = np.ones(a.shape, dtype=bool)
    if unbalanced:
        keep = rng.integers(1, n_seeds + 1, size=(n_reps, n_questions))
        mask &= np.arange(n_seeds) < keep[..., None]
        missing = rng.random(a.shape) < 0.10
        missing[..., 0] = False  # every question keeps at least one paired row
        mask &= ~missing
    return a, b, mask


def to_scores(a: np.ndarray, b: np.ndarray, mask: np.ndarray, mode: str,
              models: tuple[str, str] = ("m_a", "m_b"), task: str = "sim",
              subjects: np.ndarray | None = None) -> pd.DataFrame:
    """One replicate (Q, S) as a long scores table (only the rows in ``mask``)."""
    q_idx, s_idx = np.nonzero(mask)
    frames = []
    for name, values in zip(models, (a, b), strict=True):
        frame = pd.DataFrame({"task": task, "prompt_id": [f"q{i:04d}" for i in q_idx],
                              "seed": s_idx, "mode": mode, "coupling": "gumbel",
                              "model": name, "score": values[q_idx, s_idx]})
        if subjects is not None:
            frame["subject"] = subjects[q_idx]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- its own tests
def test_generator_matches_exact_coupled_joint():
    # One question, many draws: empirical P(both right) vs the Gumbel-max formula, within
    # 4 binomial SEs (the formula is DESIGN §1's exact joint).
    pop = make_population(n=5, seed=3)
    rng = np.random.default_rng(0)
    for j in range(5):
        single = Population(p=pop.p[j:j + 1], q=pop.q[j:j + 1])
        a, b, _ = simulate_replicates(single, 200, 1, 100, "coupled", rng)
        both = (a * b).mean()
        truth = single.both_right_coupled[0]
        se = np.sqrt(truth * (1 - truth) / a.size)
        assert abs(both - truth) < 4 * se
        assert abs(a.mean() - single.p_right[0]) < 4 * np.sqrt(0.25 / a.size)


def test_generator_independent_mode_is_a_product():
    single = Population(p=np.array([[0.5, 0.3, 0.2]]), q=np.array([[0.4, 0.4, 0.2]]))
    a, b, _ = simulate_replicates(single, 400, 1, 100, "independent", np.random.default_rng(1))
    truth = 0.5 * 0.4
    assert abs((a * b).mean() - truth) < 4 * np.sqrt(truth * (1 - truth) / a.size)


def test_truth_formula_matches_coupled_theory_joint():
    theory = pytest.importorskip("coupled.theory")
    pop = make_population(n=50, seed=4)
    joint = theory.joint(pop.p, pop.q, "gumbel")
    assert np.allclose(joint[:, 0, 0], pop.both_right_coupled, atol=1e-12)


def test_generator_same_law_as_coupled_simulate():
    # coupled.simulate draws through the noise function; this generator through numpy's
    # Gumbels. Same law: per question, P(a right), P(b right) and P(both right) from 3000 seeds of
    # each agree with each other and with the exact values within 4 binomial SEs (coupled), and
    # independent mode gives the product.
    simulate = pytest.importorskip("coupled.simulate")
    pop = make_population(n=6, seed=9)
    n_seeds = 3000
    for mode in ("coupled", "independent"):
        frame = simulate.simulate_scores({"m_a": pop.p, "m_b": pop.q}, np.zeros(6, dtype=int),
                                         n_seeds, models=["m_a", "m_b"], modes=[mode],
                                         coupling="gumbel", seed=5)
        wide = frame.pivot(index=["prompt_id", "seed"], columns="model", values="score")
        both_truth = pop.both_right_coupled if mode == "coupled" else pop.p_right * pop.q_right
        rng = np.random.default_rng(6)
        for prompt_id, group in wide.groupby(level="prompt_id"):
            j = int(prompt_id)  # coupled.simulate numbers prompts "0", "1", ...
            single = Population(p=pop.p[j:j + 1], q=pop.q[j:j + 1])
            ours_a, ours_b, _ = simulate_replicates(single, 1, 1, n_seeds, mode, rng)
            cells = [(group["m_a"].mean(), pop.p_right[j]), (group["m_b"].mean(), pop.q_right[j]),
                     ((group["m_a"] * group["m_b"]).mean(), both_truth[j]),
                     (ours_a.mean(), pop.p_right[j]), (ours_b.mean(), pop.q_right[j]),
                     ((ours_a * ours_b).mean(), both_truth[j])]
            for estimate, truth in cells:
                assert abs(estimate - truth) < 4 * np.sqrt(truth * (1 - truth) / n_seeds)
