"""Monte-Carlo paired tables for single-step models, with known truth (DESIGN §1-2).

:func:`simulate_scores` (benchmark task) and :func:`simulate_comparisons` (pairwise task) draw
one token per (prompt, seed, model) with the noise function — coupled rows share noise, so the
same key always gives the same token — and return tables in the ``scores`` / ``comparisons``
schema of :mod:`coupled.tables`. They are vectorised over prompts x seeds x models so that
coverage tests can call them thousands of times.

Seeds: a call with ``seed=r`` and ``n_seeds=S`` uses the noise seeds ``r*S, ..., r*S + S - 1``
(the table's ``seed`` column holds them), so calls with different ``seed`` and the same
``n_seeds`` are independent replicates, and ``seed=0`` gives the natural ``0 .. S-1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from coupled.simulate import noise
from coupled.simulate.samplers import (
    MODES,
    SAMPLERS,
    check_choice,
    check_distributions,
    draw_tokens,
    mode_row_keys,
)
from coupled.tables import REQUIRED_COLUMNS

__all__ = ["model_dists", "simulate_scores", "simulate_comparisons", "pair_order",
           "simulated_seeds", "judge_stream"]


def model_dists(dists: np.ndarray | Mapping[str, np.ndarray],
                models: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Model names and the ``(N prompts, M models, V)`` array of next-token distributions.

    ``dists`` is either that array (``models`` names its middle axis, default ``model_0`` ...)
    or a mapping ``name -> (N, V)`` (``models`` then picks and orders the names).
    """
    if isinstance(dists, Mapping):
        names = list(dists) if models is None else [str(m) for m in models]
        missing = [m for m in names if m not in dists]
        if missing:
            raise ValueError(f"models {missing} are not keys of dists ({list(dists)})")
        arrays = [np.atleast_2d(np.asarray(dists[m], dtype=np.float64)) for m in names]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"dists: every model needs the same (N, V) shape, got {shapes}")
        probs = np.stack(arrays, axis=1)
    else:
        probs = np.asarray(dists, dtype=np.float64)
        if probs.ndim != 3:
            raise ValueError(f"dists must have shape (N prompts, M models, V), got {probs.shape}")
        names = ([f"model_{i}" for i in range(probs.shape[1])] if models is None
                 else [str(m) for m in models])
        if len(names) != probs.shape[1]:
            raise ValueError(f"models has {len(names)} names for {probs.shape[1]} models in dists")
    if len(set(names)) != len(names):
        raise ValueError(f"models must be distinct, got {names}")
    if not names:
        raise ValueError("dists holds no model")
    return names, check_distributions(probs)


def simulated_seeds(seed: int, n_seeds: int) -> np.ndarray:
    """The noise seeds of a call: ``seed*n_seeds + arange(n_seeds)`` (disjoint across ``seed``)."""
    if n_seeds < 1:
        raise ValueError(f"n_seeds must be at least 1, got {n_seeds}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return seed * n_seeds + np.arange(n_seeds, dtype=np.int64)


def _prompt_ids(prompt_ids: Sequence[str] | None, n: int) -> list[str]:
    ids = [str(i) for i in range(n)] if prompt_ids is None else [str(p) for p in prompt_ids]
    if len(ids) != n:
        raise ValueError(f"prompt_ids has {len(ids)} ids for {n} prompts")
    if len(set(ids)) != n:
        raise ValueError("prompt_ids must be distinct")
    return ids


def _subjects(subjects: Sequence[str] | None, n: int) -> np.ndarray | None:
    if subjects is None:
        return None
    out = np.asarray([str(s) for s in subjects], dtype=object)
    if len(out) != n:
        raise ValueError(f"subjects has {len(out)} entries for {n} prompts")
    return out


def _tokens(probs: np.ndarray, names: list[str], mode: str, sampler: str, task: str,
            prompt_ids: list[str], seeds: np.ndarray) -> np.ndarray:
    """Tokens ``(N, S, M)`` at step 0; coupled rows share one key per (prompt, seed)."""
    rows = mode_row_keys(task, prompt_ids, seeds, mode, names)
    return draw_tokens(probs[:, None, :, :], rows, 0, sampler)


def simulate_scores(dists: np.ndarray | Mapping[str, np.ndarray], correct: np.ndarray,
                    n_seeds: int, *, models: Sequence[str] | None = None,
                    modes: Sequence[str] = MODES, coupling: str = "gumbel", seed: int = 0,
                    task: str = "benchmark", prompt_ids: Sequence[str] | None = None,
                    subjects: Sequence[str] | None = None) -> pd.DataFrame:
    """A benchmark ``scores`` table: each model answers each prompt once per seed and mode.

    ``dists``: ``(N, M, V)`` array or mapping ``name -> (N, V)`` (see :func:`model_dists`);
    ``correct``: ``(N,)`` index of the correct token, or boolean ``(N, V)`` set of correct
    tokens; score 1.0 if the drawn token is correct, else 0.0. ``coupling`` is the sampler
    (``"gumbel"`` or ``"inverse_cdf"``); ``modes`` any of ``"coupled"``, ``"independent"``.
    Noise key: ``(task, prompt_id, seed, stream, step 0, token)`` with stream 0 (coupled) or
    H(model) (independent); seeds as in :func:`simulated_seeds`. The ``response`` column holds
    the drawn token id.

    Known truth per prompt ``n``: ``P(score_m = 1) = dists[n, m][correct_n].sum()`` in both
    modes; in coupled mode ``P(score_m = score_m' = 1) = sum of coupled.theory.joint(dists[n, m],
    dists[n, m'], coupling)`` over correct x correct (independent: the product of marginals).
    """
    names, probs = model_dists(dists, models)
    n_prompts, n_models, vocab = probs.shape
    correct_set = _correct_set(correct, n_prompts, vocab)
    check_choice("coupling", coupling, SAMPLERS)
    ids, subj = _prompt_ids(prompt_ids, n_prompts), _subjects(subjects, n_prompts)
    seeds = simulated_seeds(seed, n_seeds)
    frames = []
    for mode in dict.fromkeys(modes):
        check_choice("modes", mode, MODES)
        tokens = _tokens(probs, names, mode, coupling, task, ids, seeds)        # (N, S, M)
        score = correct_set[np.arange(n_prompts)[:, None, None], tokens]       # (N, S, M)
        frames.append(scores_columns(task, ids, seeds, mode, coupling, subj, names, score,
                                     response=tokens.astype(str)))
    return table_frame(frames, "scores")


def _correct_set(correct: np.ndarray, n_prompts: int, vocab: int) -> np.ndarray:
    correct = np.asarray(correct)
    if correct.dtype == bool:
        if correct.shape != (n_prompts, vocab):
            raise ValueError(f"correct as a boolean set must have shape (N, V) = "
                             f"{(n_prompts, vocab)}, got {correct.shape}")
        return correct
    correct = correct.reshape(-1)
    if correct.shape != (n_prompts,) or not np.issubdtype(correct.dtype, np.integer):
        raise ValueError(f"correct must be {n_prompts} integer token ids (one per prompt) or a "
                         f"boolean (N, V) array, got dtype {correct.dtype} shape {correct.shape}")
    if np.any((correct < 0) | (correct >= vocab)):
        raise ValueError(f"correct token ids must lie in [0, {vocab}), got {correct.min()}.."
                         f"{correct.max()}")
    out = np.zeros((n_prompts, vocab), dtype=bool)
    out[np.arange(n_prompts), correct] = True
    return out


def pair_order(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays ``(ia, ib)`` of every unordered pair in canonical order
    ``names[ia] < names[ib]`` (the comparisons table's ``model_a < model_b``)."""
    pairs = [(i, j) if names[i] < names[j] else (j, i)
             for i, j in combinations(range(len(names)), 2)]
    pairs.sort(key=lambda ij: (names[ij[0]], names[ij[1]]))
    ia = np.array([i for i, _ in pairs], dtype=np.int64)
    ib = np.array([j for _, j in pairs], dtype=np.int64)
    return ia, ib


def judge_stream(model_a: str, model_b: str) -> int:
    """Stream of the judge's noise for a canonical pair: H("judge" 0x1f model_a 0x1f model_b)."""
    return noise.text_hash(f"judge\x1f{model_a}\x1f{model_b}")


def judge_verdicts(diff: np.ndarray, task: str, ids: list[str], seeds: np.ndarray,
                   names_a: Sequence[str], names_b: Sequence[str], judge_noise: float,
                   tie_margin: float, position_bias: float) -> tuple[np.ndarray, np.ndarray]:
    """Outcome codes (0 tie, 1 a, 2 b) and shown_first codes (1 a, 2 b), shape ``(N, S, P)``.

    ``diff`` = reward(a) - reward(b). The judge's uniforms are the noise function's at step 0,
    tokens 0, 1, 2 of the row ``(task, prompt_id, seed, judge_stream(a, b))`` — the same in
    both modes, so coupled and independent rows of a key share the judge's luck.
    """
    if not 0.0 <= judge_noise <= 1.0:
        raise ValueError(f"judge_noise must lie in [0, 1], got {judge_noise}")
    if tie_margin < 0:
        raise ValueError(f"tie_margin must be non-negative, got {tie_margin}")
    if not 0.0 <= position_bias <= 1.0:
        raise ValueError(f"position_bias must lie in [0, 1], got {position_bias}")
    streams = np.array([judge_stream(a, b) for a, b in zip(names_a, names_b, strict=True)],
                       dtype=np.uint64)
    u = noise.uniforms(noise.row_keys_grid(task, ids, seeds, streams)[..., None], 0,
                       np.arange(3, dtype=np.uint64))                       # (N, S, P, 3)
    outcome = np.where(diff > tie_margin, 1, np.where(diff < -tie_margin, 2, 0))
    shown_first = np.where(u[..., 1] < 0.5, 1, 2)
    picks_first = u[..., 2] < position_bias
    noisy_verdict = np.where(picks_first, shown_first, 3 - shown_first)
    outcome = np.where(u[..., 0] < judge_noise, noisy_verdict, outcome)
    return outcome, shown_first


def simulate_comparisons(dists: np.ndarray | Mapping[str, np.ndarray], rewards: np.ndarray,
                         n_seeds: int, *, models: Sequence[str] | None = None,
                         modes: Sequence[str] = MODES, coupling: str = "gumbel", seed: int = 0,
                         task: str = "pairwise", judge_noise: float = 0.0,
                         tie_margin: float = 0.0, position_bias: float = 0.5,
                         prompt_ids: Sequence[str] | None = None,
                         subjects: Sequence[str] | None = None) -> pd.DataFrame:
    """A pairwise ``comparisons`` table: every unordered pair of models, per prompt, seed, mode.

    Each model draws one token per (prompt, seed, mode) exactly as :func:`simulate_scores`
    does (same keys: with the same ``task`` the two functions draw the same tokens), and all
    its comparisons use that token. ``rewards`` ``(N, V)``: the reward of each token. The judge
    says ``"a"`` if ``r_a - r_b > tie_margin``, ``"b"`` if ``r_a - r_b < -tie_margin``, else
    ``"tie"``; with probability ``judge_noise`` it instead picks a response by position, the
    one shown first with probability ``position_bias``; ``shown_first`` is a fair coin.
    Judge uniforms are keyed by the noise function (:func:`judge_verdicts`).

    Known truth per prompt and canonical pair ``(a, b)``, with ``J`` = ``coupled.theory.joint(
    dists[n, a], dists[n, b], coupling)`` (coupled) or the product of marginals (independent):
    ``P(outcome = "a") = (1 - judge_noise) * sum_ij J_ij 1{r_i - r_j > tie_margin} +
    judge_noise / 2`` (and symmetrically for ``"b"``; ``position_bias`` leaves it unchanged
    because ``shown_first`` is fair), ``P(tie) = (1 - judge_noise) * sum_ij J_ij
    1{|r_i - r_j| <= tie_margin}``.
    """
    names, probs = model_dists(dists, models)
    n_prompts, n_models, vocab = probs.shape
    if n_models < 2:
        raise ValueError("simulate_comparisons needs at least two models")
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.shape != (n_prompts, vocab) or not np.all(np.isfinite(rewards)):
        raise ValueError(f"rewards must be a finite (N, V) = {(n_prompts, vocab)} array, "
                         f"got shape {rewards.shape}")
    check_choice("coupling", coupling, SAMPLERS)
    ids, subj = _prompt_ids(prompt_ids, n_prompts), _subjects(subjects, n_prompts)
    seeds = simulated_seeds(seed, n_seeds)
    ia, ib = pair_order(names)
    names_arr = np.asarray(names, dtype=object)
    frames = []
    for mode in dict.fromkeys(modes):
        check_choice("modes", mode, MODES)
        tokens = _tokens(probs, names, mode, coupling, task, ids, seeds)        # (N, S, M)
        reward = rewards[np.arange(n_prompts)[:, None, None], tokens]
        outcome, shown = judge_verdicts(reward[..., ia] - reward[..., ib], task, ids, seeds,
                                        names_arr[ia], names_arr[ib], judge_noise, tie_margin,
                                        position_bias)
        frames.append(comparisons_columns(task, ids, seeds, mode, coupling, subj,
                                          names_arr[ia], names_arr[ib], outcome, shown))
    return table_frame(frames, "comparisons")


def key_columns(task: str, ids: Sequence[str], seeds: np.ndarray, n_inner: int, mode: str,
                sampler: str, subjects: np.ndarray | None) -> dict[str, object]:
    """Key columns of rows ordered (prompt, seed, inner) with ``n_inner`` rows per seed."""
    n, s = len(ids), len(seeds)
    columns: dict[str, object] = {
        "task": _constant(task, n * s * n_inner),
        "prompt_id": np.repeat(np.asarray(ids, dtype=object), s * n_inner),
        "seed": np.tile(np.repeat(np.asarray(seeds, dtype=np.int64), n_inner), n),
        "mode": _constant(mode, n * s * n_inner),
        "coupling": _constant(sampler, n * s * n_inner),
    }
    if subjects is not None:
        columns["subject"] = np.repeat(np.asarray(subjects, dtype=object), s * n_inner)
    return columns


def _constant(value: str, n: int) -> np.ndarray:
    # np.full with dtype=object is ~10x slower than repeating a one-element object array.
    return np.array([value], dtype=object).repeat(n)


def scores_columns(task: str, ids: Sequence[str], seeds: np.ndarray, mode: str, sampler: str,
                   subjects: np.ndarray | None, names: Sequence[str], score: np.ndarray,
                   **extra: np.ndarray) -> dict[str, object]:
    """Scores-table columns from ``score`` ``(N, S, M)`` (and extra columns of that shape)."""
    columns = key_columns(task, ids, seeds, len(names), mode, sampler, subjects)
    columns["model"] = np.tile(np.asarray(names, dtype=object), len(ids) * len(seeds))
    columns["score"] = np.asarray(score, dtype=np.float64).reshape(-1)
    for name, values in extra.items():
        values = np.asarray(values).reshape(-1)
        columns[name] = values.astype(object) if values.dtype.kind in "US" else values
    return columns


def comparisons_columns(task: str, ids: Sequence[str], seeds: np.ndarray, mode: str,
                        sampler: str, subjects: np.ndarray | None, names_a: np.ndarray,
                        names_b: np.ndarray, outcome: np.ndarray, shown_first: np.ndarray
                        ) -> dict[str, object]:
    """Comparisons-table columns from outcome and shown_first codes ``(N, S, P)``."""
    columns = key_columns(task, ids, seeds, len(names_a), mode, sampler, subjects)
    columns["model_a"] = np.tile(np.asarray(names_a, dtype=object), len(ids) * len(seeds))
    columns["model_b"] = np.tile(np.asarray(names_b, dtype=object), len(ids) * len(seeds))
    columns["outcome"] = np.array(["tie", "a", "b"], dtype=object)[outcome.reshape(-1)]
    columns["shown_first"] = np.array(["", "a", "b"], dtype=object)[shown_first.reshape(-1)]
    return columns


def table_frame(blocks: list[dict[str, object]], kind: str) -> pd.DataFrame:
    """One DataFrame from blocks of columns (e.g. one per mode), in the column order and
    dtypes that :func:`coupled.tables.validate` returns (text columns ``object``)."""
    if not blocks:
        raise ValueError("modes must name at least one of ['coupled', 'independent']")
    required = list(REQUIRED_COLUMNS[kind])
    order = required + [c for c in blocks[0] if c not in required]
    data = {}
    for name in order:
        values = np.concatenate([block[name] for block in blocks]) if len(blocks) > 1 \
            else blocks[0][name]
        # pandas >= 3 would infer its string dtype for object arrays of text.
        data[name] = pd.Series(values, dtype=object, copy=False) if values.dtype.kind == "O" \
            else values
    return pd.DataFrame(data, copy=False)
