"""Tasks for synthetic autoregressive models: a benchmark and a pairwise-preference task.

Both score an output *sequence* through integer token **points** (``points[n, t] >= 0``, zero for
the end token), summed over the tokens of the output:

* benchmark (``kind="benchmark"``): ``points`` marks the prompt's answer token; the output is
  correct — score 1 — if it contains the answer (the paper's footnote 9: the correct set is all
  sequences that include the correct choice);
* pairwise (``kind="pairwise"``): the reward of an output is its total points; a judge compares
  the rewards of two outputs (:func:`coupled.simulate.paired.judge_verdicts`).

Scores depend on the output only through its total points, which is what lets the exact pair
chain (:mod:`coupled.simulate.exact`) track them in a small state space.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TASK_KINDS = ("benchmark", "pairwise")


@dataclass(frozen=True)
class SequenceTask:
    """Prompts, their token points, the end token and the maximum output length ``K``."""

    name: str
    kind: str
    points: np.ndarray = field(repr=False)      # (N, V) non-negative integers
    max_length: int
    end_token: int = 0
    prompt_ids: tuple[str, ...] = ()
    subjects: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task kind must be one of {list(TASK_KINDS)}, got {self.kind!r}")
        points = np.asarray(self.points)
        if points.ndim != 2 or not np.issubdtype(points.dtype, np.integer) or np.any(points < 0):
            raise ValueError(f"task {self.name!r}: points must be a (N, V) array of non-negative "
                             f"integers, got dtype {points.dtype} shape {points.shape}")
        if not 0 <= self.end_token < points.shape[1]:
            raise ValueError(f"task {self.name!r}: end_token {self.end_token} outside the vocabulary")
        if np.any(points[:, self.end_token] != 0):
            raise ValueError(f"task {self.name!r}: the end token must carry no points")
        if self.max_length < 1:
            raise ValueError(f"task {self.name!r}: max_length must be at least 1")
        object.__setattr__(self, "points", points.astype(np.int64))
        ids = self.prompt_ids or tuple(str(i) for i in range(points.shape[0]))
        if len(ids) != points.shape[0] or len(set(ids)) != len(ids):
            raise ValueError(f"task {self.name!r}: need {points.shape[0]} distinct prompt ids")
        object.__setattr__(self, "prompt_ids", tuple(str(p) for p in ids))
        if self.subjects is not None and len(self.subjects) != points.shape[0]:
            raise ValueError(f"task {self.name!r}: subjects must have one entry per prompt")

    @property
    def n_prompts(self) -> int:
        return self.points.shape[0]

    @property
    def vocab_size(self) -> int:
        return self.points.shape[1]

    def score_of_points(self, total: np.ndarray) -> np.ndarray:
        """Score (benchmark: 0/1) or reward (pairwise) of outputs with these total points."""
        total = np.asarray(total)
        if self.kind == "benchmark":
            return (total > 0).astype(np.float64)
        return total.astype(np.float64)


def benchmark_task(n_prompts: int, vocab_size: int, max_length: int,
                   rng: np.random.Generator | int, *, name: str = "benchmark",
                   n_subjects: int = 0, end_token: int = 0) -> SequenceTask:
    """A benchmark whose prompt ``n`` has one answer token drawn uniformly among the non-end
    tokens; ``n_subjects > 0`` cycles prompts through subjects ``subject_0, ...``."""
    rng = np.random.default_rng(rng)
    if vocab_size < 2:
        raise ValueError("vocab_size must be at least 2 (an end token and an answer)")
    content = np.array([t for t in range(vocab_size) if t != end_token])
    answers = rng.choice(content, size=n_prompts)
    points = np.zeros((n_prompts, vocab_size), dtype=np.int64)
    points[np.arange(n_prompts), answers] = 1
    subjects = (tuple(f"subject_{i % n_subjects}" for i in range(n_prompts)) if n_subjects > 0
                else None)
    return SequenceTask(name, "benchmark", points, max_length, end_token, subjects=subjects)


def pairwise_task(n_prompts: int, vocab_size: int, max_length: int,
                  rng: np.random.Generator | int, *, name: str = "pairwise",
                  max_points: int = 2, end_token: int = 0) -> SequenceTask:
    """A preference task: each non-end token is worth 0..``max_points`` points (uniform) on each
    prompt; small integer rewards make ties frequent, as with a real judge."""
    rng = np.random.default_rng(rng)
    points = rng.integers(0, max_points + 1, size=(n_prompts, vocab_size))
    points[:, end_token] = 0
    return SequenceTask(name, "pairwise", points, max_length, end_token)


def base_bigram_logits(task: SequenceTask, rng: np.random.Generator | int, *,
                       strength: float = 1.5, spread: float = 1.0, end_logit: float = -0.5,
                       end_after_points: float = 1.5) -> np.ndarray:
    """Base ("large") model logits ``(N, V + 1, V)`` for ``task``: ``spread * N(0, 1)`` logits
    plus ``strength`` per point of the next token (a good model prefers good tokens), an end
    token at ``end_logit`` that gets ``end_after_points`` more after a token worth points (a
    model that stops once it has answered). Row ``V`` is the start context."""
    rng = np.random.default_rng(rng)
    n, vocab = task.points.shape
    logits = spread * rng.standard_normal((n, vocab + 1, vocab))
    logits += strength * task.points[:, None, :]
    logits[:, :, task.end_token] = end_logit
    context_points = np.concatenate([task.points, np.zeros((n, 1), dtype=np.int64)], axis=1)
    logits[:, :, task.end_token] += end_after_points * (context_points > 0)
    return logits
