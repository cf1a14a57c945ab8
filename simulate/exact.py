"""Exact laws for pairs of synthetic autoregressive models (DESIGN §1, "Beyond one step").

Step ``i`` of both models reads the same noise ``g^(i)`` (coupled mode), and noise at
different steps is independent, so the *pair* of generation states is a Markov chain whose
transition at each step is the one-step joint law :func:`coupled.theory.joint` of the two
current next-token distributions (independent mode: their product). A finished model stays
finished (its next-token law is a point mass on the end token, which carries no points), and
after ``max_length`` steps generation stops.

:func:`exact_points_law` runs that chain over states ``(context_a, context_b, points_a,
points_b)``, vectorised over prompts: the exact law of the pair of total points, from which
every score of :class:`coupled.simulate.tasks.SequenceTask` follows (:func:`pair_truth`: exact
P(both correct), win / tie rates, score-difference variances). :func:`exact_output_pair_law`
enumerates the law of the pair of output *sequences* themselves for tiny instances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coupled.simulate.samplers import MODES, SAMPLERS, check_choice
from coupled.theory import joint


def _finished_as_point_mass(probs: np.ndarray, end_token: int) -> np.ndarray:
    # Context "last token = end" means finished: it emits the end token forever (0 points).
    probs = np.array(probs, dtype=np.float64, copy=True)
    probs[:, end_token, :] = 0.0
    probs[:, end_token, end_token] = 1.0
    return probs


def _pair_coupling(mode: str, coupling: str) -> str:
    check_choice("mode", mode, MODES)
    check_choice("coupling", coupling, SAMPLERS)
    return coupling if mode == "coupled" else "independent"


def transition_joints(probs_a: np.ndarray, probs_b: np.ndarray, coupling: str = "gumbel",
                      mode: str = "coupled", end_token: int = 0) -> np.ndarray:
    """One-step pair transitions ``J[n, ca, cb, ta, tb]`` for bigram tables ``(N, V + 1, V)``:
    the joint law of the next tokens of models a, b in contexts ``ca``, ``cb`` of prompt ``n``."""
    a = _finished_as_point_mass(_check_bigram(probs_a, "probs_a"), end_token)
    b = _finished_as_point_mass(_check_bigram(probs_b, "probs_b"), end_token)
    if a.shape != b.shape:
        raise ValueError(f"probs_a and probs_b must have the same shape, got {a.shape}, {b.shape}")
    n, contexts, vocab = a.shape
    # A finished model emits the end token surely, and any coupling of a point mass with q is
    # the product: only pairs of live contexts need coupled.theory.
    law = a[:, :, None, :, None] * b[:, None, :, None, :]
    live = np.array([c for c in range(contexts) if c != end_token])
    pa = np.broadcast_to(a[:, live, None, :], (n, len(live), len(live), vocab))
    pb = np.broadcast_to(b[:, None, live, :], (n, len(live), len(live), vocab))
    coupled = joint(pa.reshape(-1, vocab), pb.reshape(-1, vocab), _pair_coupling(mode, coupling))
    law[:, live[:, None], live[None, :]] = coupled.reshape(n, len(live), len(live), vocab, vocab)
    return law


def _check_bigram(probs: np.ndarray, name: str) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 3 or probs.shape[1] != probs.shape[2] + 1:
        raise ValueError(f"{name} must be a bigram table of shape (N, V + 1, V), got "
                         f"{probs.shape}")
    return probs


def _points_chain(start: np.ndarray, transitions: np.ndarray, offsets: np.ndarray,
                  flat_size: int, steps: int) -> np.ndarray:
    """Run a chain whose state is (last emitted symbol t, flattened points total j).

    ``start[n, t]``: law of the first symbol; ``transitions[n, t, t2]``: law of the next symbol
    given the last; emitting ``t`` adds ``offsets[n, t]`` to the flat total. Returns the law of
    the flat total after ``steps`` symbols, ``(n, flat_size)``. Callers size the flat grid so
    reachable totals never leave it, which makes the addition an exact shift (zeros shift in).
    """
    n, symbols = start.shape
    pad = int(offsets.max())
    law = np.zeros((n, symbols, flat_size))
    np.put_along_axis(law, offsets[..., None], start[..., None], axis=-1)
    # law_next[n, t2, j] = moved[n, t2, j - offsets[n, t2]]: a gather from a zero-padded copy,
    # through precomputed flat indices (much faster than take_along_axis' index grids).
    width = pad + flat_size
    source = (np.arange(n * symbols).reshape(n, symbols, 1) * width
              + np.arange(flat_size)[None, None, :] - offsets[..., None] + pad)
    to_next = np.ascontiguousarray(transitions.transpose(0, 2, 1))
    padded = np.zeros((n, symbols, width))
    for _ in range(steps - 1):
        padded[..., pad:] = np.matmul(to_next, law)
        law = padded.ravel()[source]
    return law.sum(axis=1)


def _check_points(points: np.ndarray, end_token: int, max_length: int) -> np.ndarray:
    points = np.asarray(points)
    if points.ndim != 2 or not np.issubdtype(points.dtype, np.integer):
        raise ValueError(f"points must be an (N, V) integer array, got {points.dtype} "
                         f"{points.shape}")
    if np.any(points < 0) or np.any(points[:, end_token] != 0):
        raise ValueError("points must be non-negative with no points on the end token")
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    return points.astype(np.int64)


def exact_points_marginal(probs: np.ndarray, points: np.ndarray, max_length: int, *,
                          end_token: int = 0) -> np.ndarray:
    """Exact law ``L[n, x] = P(points = x)`` of one model's output total points, ``x`` in
    ``0 .. max_length * max points`` (bigram table ``(N, V + 1, V)``, points ``(N, V)``)."""
    points = _check_points(points, end_token, max_length)
    probs = _finished_as_point_mass(_check_bigram(probs, "probs"), end_token)
    vocab = points.shape[1]
    if probs.shape[0] != points.shape[0] or probs.shape[2] != vocab:
        raise ValueError(f"probs {probs.shape} does not match points {points.shape}")
    size = int(max_length * points.max()) + 1
    return _points_chain(probs[:, vocab], probs[:, :vocab], points, size, max_length)


def exact_points_law(probs_a: np.ndarray, probs_b: np.ndarray, points: np.ndarray,
                     max_length: int, *, coupling: str = "gumbel", mode: str = "coupled",
                     end_token: int = 0) -> np.ndarray:
    """Exact law ``L[n, x, y] = P(points_a = x, points_b = y)`` of the total points of the two
    outputs on each prompt, ``x, y`` in ``0 .. max_length * max points``.

    ``probs_a``, ``probs_b``: bigram tables ``(N, V + 1, V)`` (row ``V`` = start context);
    ``points``: ``(N, V)`` non-negative integers, zero for the end token. Coupled mode runs the
    pair chain; independent mode is the product of the two models' own laws.
    """
    points = _check_points(points, end_token, max_length)
    if _pair_coupling(mode, coupling) == "independent":
        return (exact_points_marginal(probs_a, points, max_length, end_token=end_token)[:, :, None]
                * exact_points_marginal(probs_b, points, max_length, end_token=end_token)[:, None])
    transitions = transition_joints(probs_a, probs_b, coupling, mode, end_token)
    n, vocab = points.shape
    if transitions.shape[:2] != (n, vocab + 1):
        raise ValueError(f"probs {transitions.shape[:2]} do not match points {points.shape}")
    size = int(max_length * points.max()) + 1
    # Symbols are token pairs (ta, tb); a pair adds points_a * size + points_b to the flat total.
    start = transitions[:, vocab, vocab].reshape(n, vocab * vocab)
    pair_transitions = transitions[:, :vocab, :vocab].reshape(n, vocab * vocab, vocab * vocab)
    offsets = (points[:, :, None] * size + points[:, None, :]).reshape(n, vocab * vocab)
    law = _points_chain(start, pair_transitions, offsets, size * size, max_length)
    return law.reshape(n, size, size)


@dataclass(frozen=True)
class PairTruth:
    """Exact per-prompt statistics of the scores ``R_a``, ``R_b`` of two models (arrays ``(N,)``).

    ``win_a`` = P(judge says a), ``win_b``, ``tie`` (a judge with ``tie_margin`` and
    ``judge_noise`` as in :func:`coupled.simulate.simulate_comparisons`); ``both`` =
    E[R_a R_b] (= P(both correct) for 0/1 scores); ``var_diff`` = Var[R_a - R_b] given the prompt.
    """

    mean_a: np.ndarray
    mean_b: np.ndarray
    both: np.ndarray
    cov: np.ndarray
    var_diff: np.ndarray
    win_a: np.ndarray
    win_b: np.ndarray
    tie: np.ndarray


def pair_truth(law: np.ndarray, values_a: np.ndarray, values_b: np.ndarray | None = None, *,
               tie_margin: float = 0.0, judge_noise: float = 0.0) -> PairTruth:
    """Statistics of ``(R_a, R_b)`` when ``law[n, x, y] = P(X = x, Y = y)`` and the scores are
    ``R_a = values_a[x]``, ``R_b = values_b[y]`` (works for any finite joint: a token joint from
    :func:`coupled.theory.joint` with per-token scores, or a points law)."""
    law = np.asarray(law, dtype=np.float64)
    va = np.asarray(values_a, dtype=np.float64)
    vb = va if values_b is None else np.asarray(values_b, dtype=np.float64)
    mean_a = law.sum(axis=2) @ va
    mean_b = law.sum(axis=1) @ vb
    both = np.einsum("nxy,x,y->n", law, va, vb)
    diff = va[:, None] - vb[None, :]
    var_diff = np.einsum("nxy,xy->n", law, diff**2) - (mean_a - mean_b) ** 2
    a_better = np.einsum("nxy,xy->n", law, diff > tie_margin)
    b_better = np.einsum("nxy,xy->n", law, diff < -tie_margin)
    return PairTruth(mean_a=mean_a, mean_b=mean_b, both=both, cov=both - mean_a * mean_b,
                     var_diff=np.maximum(var_diff, 0.0),
                     win_a=(1 - judge_noise) * a_better + judge_noise / 2,
                     win_b=(1 - judge_noise) * b_better + judge_noise / 2,
                     tie=(1 - judge_noise) * (1.0 - a_better - b_better))


def exact_output_pair_law(probs_a: np.ndarray, probs_b: np.ndarray, max_length: int, *,
                          coupling: str = "gumbel", mode: str = "coupled", end_token: int = 0
                          ) -> dict[tuple[tuple[int, ...], tuple[int, ...]], float]:
    """Exact law of the pair of output sequences for one prompt: ``{(seq_a, seq_b): P}``.

    ``probs_a``, ``probs_b``: bigram tables ``(V + 1, V)`` of one prompt. Sequences include the
    end token when it was emitted. The number of pairs grows like ``V ** (2 * max_length)``:
    for tiny instances (checks, examples); use :func:`exact_points_law` for scores.
    """
    transitions = transition_joints(np.asarray(probs_a)[None], np.asarray(probs_b)[None],
                                    coupling, mode, end_token)[0]
    vocab = transitions.shape[-1]
    frontier: dict[tuple[tuple[int, ...], tuple[int, ...]], float] = {((), ()): 1.0}
    finished: dict[tuple[tuple[int, ...], tuple[int, ...]], float] = {}

    def context(seq: tuple[int, ...]) -> int:
        return seq[-1] if seq else vocab

    def done(seq: tuple[int, ...]) -> bool:
        return bool(seq) and seq[-1] == end_token

    for _ in range(max_length):
        step: dict[tuple[tuple[int, ...], tuple[int, ...]], float] = {}
        for (seq_a, seq_b), mass in frontier.items():
            law = transitions[context(seq_a), context(seq_b)]
            for ta, tb in zip(*np.nonzero(law > 0), strict=True):
                key = (seq_a if done(seq_a) else seq_a + (int(ta),),
                       seq_b if done(seq_b) else seq_b + (int(tb),))
                step[key] = step.get(key, 0.0) + mass * float(law[ta, tb])
        frontier = {}
        for key, mass in step.items():
            target = finished if done(key[0]) and done(key[1]) else frontier
            target[key] = target.get(key, 0.0) + mass
    for key, mass in frontier.items():
        finished[key] = finished.get(key, 0.0) + mass
    return finished
