"""Monte-Carlo autoregressive generation of synthetic models, written as paired tables.

Every model of a call generates a sequence for every (prompt, seed): step ``i`` draws the next
token with the noise of key ``(task, prompt_id, seed, stream, step i, token)`` — stream 0 for
every model in coupled mode, H(model) in independent mode — so any batch, chunking or subset of
models gives the same sequences for the same key. A finished model (it emitted the end token)
ignores the later steps' noise; the others keep reading ``g^(i)`` at step ``i``, exactly the
pair chain of :mod:`coupled.simulate.exact`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from coupled.simulate.models import SyntheticModel
from coupled.simulate.paired import (
    comparisons_columns,
    judge_verdicts,
    pair_order,
    scores_columns,
    simulated_seeds,
    table_frame,
)
from coupled.simulate.samplers import MODES, SAMPLERS, check_choice, draw_tokens, mode_row_keys
from coupled.simulate.tasks import SequenceTask


@dataclass(frozen=True)
class Generations:
    """Sequences of ``M`` models on ``N`` prompts x ``S`` seeds for one mode and sampler."""

    tokens: np.ndarray    # (N, S, M, K) token ids, -1 after the end of each sequence
    lengths: np.ndarray   # (N, S, M) number of tokens generated (end token included)
    points: np.ndarray    # (N, S, M) total points of each output
    seeds: np.ndarray     # (S,) noise seeds

    def responses(self) -> np.ndarray:
        """Each output as text: token ids joined by spaces (object array ``(N, S, M)``)."""
        flat = self.tokens.reshape(-1, self.tokens.shape[-1])
        text = [" ".join(str(t) for t in row if t >= 0) for row in flat.tolist()]
        return np.array(text, dtype=object).reshape(self.tokens.shape[:-1])


def _check_models(models: Sequence[SyntheticModel], task: SequenceTask) -> np.ndarray:
    if not models:
        raise ValueError("need at least one model")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be distinct, got {names}")
    for model in models:
        if model.kind != "bigram" or model.logits.shape[0] != task.n_prompts or \
                model.vocab_size != task.vocab_size:
            raise ValueError(f"model {model.name!r} has logits of shape {model.logits.shape}; "
                             f"task {task.name!r} needs bigram tables "
                             f"({task.n_prompts}, {task.vocab_size + 1}, {task.vocab_size})")
    return np.stack([m.probs for m in models], axis=1)            # (N, M, V + 1, V)


def generate_sequences(models: Sequence[SyntheticModel], task: SequenceTask, seeds: np.ndarray,
                       mode: str = "coupled", sampler: str = "gumbel") -> Generations:
    """Generate every model's output on every (prompt, seed) of ``task`` (vectorised numpy)."""
    check_choice("mode", mode, MODES)
    check_choice("sampler", sampler, SAMPLERS)
    probs = _check_models(models, task)
    n, m = task.n_prompts, len(models)
    seeds = np.asarray(seeds, dtype=np.int64)
    rows = mode_row_keys(task.name, task.prompt_ids, seeds, mode,
                         [model.name for model in models])                      # (N, S, 1|M)
    shape = (n, len(seeds), m)
    context = np.full(shape, task.vocab_size)                    # start context
    done = np.zeros(shape, dtype=bool)
    tokens = np.full(shape + (task.max_length,), -1, dtype=np.int64)
    prompt = np.arange(n)[:, None, None]
    model = np.arange(m)[None, None, :]
    for step in range(task.max_length):
        drawn = draw_tokens(probs[prompt, model, context], rows, step, sampler)
        drawn = np.where(done, -1, drawn)
        tokens[..., step] = drawn
        context = np.where(done, context, drawn)
        done |= drawn == task.end_token
    emitted = tokens >= 0
    points = np.where(emitted, task.points[prompt[..., None], np.maximum(tokens, 0)], 0)
    return Generations(tokens=tokens, lengths=emitted.sum(axis=-1), points=points.sum(axis=-1),
                       seeds=seeds)


def sequence_scores(models: Sequence[SyntheticModel], task: SequenceTask, n_seeds: int, *,
                    modes: Sequence[str] = MODES, coupling: str = "gumbel",
                    seed: int = 0) -> pd.DataFrame:
    """A ``scores`` table of the models' outputs on a benchmark ``task`` (score 1 if the output
    contains the answer), with ``response`` (token ids) and ``n_tokens``; seeds as in
    :func:`coupled.simulate.simulated_seeds`. Known truth: :func:`coupled.simulate.family.
    exact_pair_truth` (the exact pair chain)."""
    if task.kind != "benchmark":
        raise ValueError(f"sequence_scores needs a benchmark task, got kind {task.kind!r}")
    seeds = simulated_seeds(seed, n_seeds)
    names = np.array([m.name for m in models], dtype=object)
    subjects = None if task.subjects is None else np.asarray(task.subjects, dtype=object)
    frames = []
    for mode in dict.fromkeys(modes):
        out = generate_sequences(models, task, seeds, mode, coupling)
        frames.append(scores_columns(task.name, task.prompt_ids, seeds, mode, coupling,
                                     subjects, names, task.score_of_points(out.points),
                                     response=out.responses(), n_tokens=out.lengths))
    return table_frame(frames, "scores")


def sequence_comparisons(models: Sequence[SyntheticModel], task: SequenceTask, n_seeds: int, *,
                         modes: Sequence[str] = MODES, coupling: str = "gumbel", seed: int = 0,
                         judge_noise: float = 0.0, tie_margin: float = 0.0,
                         position_bias: float = 0.5) -> pd.DataFrame:
    """A ``comparisons`` table: every canonical pair of models on a pairwise ``task``, the judge
    comparing the outputs' rewards (total points) as in
    :func:`coupled.simulate.simulate_comparisons`."""
    if task.kind != "pairwise":
        raise ValueError(f"sequence_comparisons needs a pairwise task, got kind {task.kind!r}")
    if len(models) < 2:
        raise ValueError("sequence_comparisons needs at least two models")
    seeds = simulated_seeds(seed, n_seeds)
    names = np.array([m.name for m in models], dtype=object)
    ia, ib = pair_order(list(names))
    subjects = None if task.subjects is None else np.asarray(task.subjects, dtype=object)
    frames = []
    for mode in dict.fromkeys(modes):
        out = generate_sequences(models, task, seeds, mode, coupling)
        reward = task.score_of_points(out.points)
        outcome, shown = judge_verdicts(reward[..., ia] - reward[..., ib], task.name,
                                        list(task.prompt_ids), seeds, names[ia], names[ib],
                                        judge_noise, tie_margin, position_bias)
        frames.append(comparisons_columns(task.name, task.prompt_ids, seeds, mode, coupling,
                                          subjects, names[ia], names[ib], outcome, shown))
    return table_frame(frames, "comparisons")
