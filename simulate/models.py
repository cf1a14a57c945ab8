"""Synthetic models and model families (issue 3, item 1).

A :class:`SyntheticModel` is a table of next-token logits, one distribution per *context*:

* single-step categorical model: ``logits`` of shape ``(N prompts, V)``;
* autoregressive bigram model conditioned on the prompt: ``logits`` of shape
  ``(N prompts, V + 1, V)`` — row ``c < V`` is the next-token law after token ``c``, row ``V``
  the law of the first token (the start context). Generation stops at the end token or after
  ``max_length`` tokens (the task's), so outputs are real token sequences.

Families start from a base logit table and derive variants by recipes (:data:`VARIANT_KINDS`):
``perturbed`` (base + eps * N(0, 1) logits: a stand-in for fine-tuning), ``quantized`` (logits
rounded to a ``2**bits``-level grid per row or per table: stand-ins for 8-bit / 4-bit weights),
``weaker`` (logits shrunk towards uniform by ``scale`` plus noise ``eps``: a smaller model) and
``unrelated`` (fresh random logits). :data:`DEFAULT_FAMILY` mirrors the paper's six models
(section 5.2): a large, a medium and a small model and three quantized variants of the large.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import softmax

VARIANT_KINDS = ("base", "perturbed", "quantized", "weaker", "unrelated")

# The paper's six models (Llama-3.1-8B and its bnb-8bit, bnb-4bit, AWQ-INT4 variants,
# Llama-3.2-3B, Llama-3.2-1B), as recipes applied to the base ("large") logits. The AWQ stand-in
# rounds on one grid for the whole table (coarser than per-row bnb-4bit) after a small
# calibration perturbation, so the three quantized variants differ from each other.
DEFAULT_FAMILY: dict[str, dict[str, Any]] = {
    "large": {"kind": "base"},
    "large-8bit": {"kind": "quantized", "bits": 8, "per": "row"},
    "large-4bit": {"kind": "quantized", "bits": 4, "per": "row"},
    "large-awq-int4": {"kind": "quantized", "bits": 4, "per": "table", "eps": 0.05},
    "medium": {"kind": "weaker", "scale": 0.75, "eps": 0.5},
    "small": {"kind": "weaker", "scale": 0.45, "eps": 0.9},
}


@dataclass(frozen=True)
class SyntheticModel:
    """A named next-token logit table: ``(N, V)`` single-step or ``(N, V + 1, V)`` bigram."""

    name: str
    logits: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        logits = np.asarray(self.logits, dtype=np.float64)
        if logits.ndim not in (2, 3):
            raise ValueError(f"model {self.name!r}: logits must have shape (N, V) or "
                             f"(N, V + 1, V), got {logits.shape}")
        if logits.ndim == 3 and logits.shape[1] != logits.shape[2] + 1:
            raise ValueError(f"model {self.name!r}: bigram logits need V + 1 context rows, got "
                             f"shape {logits.shape}")
        if np.any(np.isnan(logits)) or np.any(logits == np.inf):
            raise ValueError(f"model {self.name!r}: logits must not be NaN or +inf")
        if np.any(np.all(logits == -np.inf, axis=-1)):
            raise ValueError(f"model {self.name!r}: every context needs a possible token")
        object.__setattr__(self, "logits", logits)

    @property
    def kind(self) -> str:
        return "categorical" if self.logits.ndim == 2 else "bigram"

    @property
    def n_prompts(self) -> int:
        return self.logits.shape[0]

    @property
    def vocab_size(self) -> int:
        return self.logits.shape[-1]

    @property
    def probs(self) -> np.ndarray:
        """Next-token distributions, same shape as ``logits`` (``-inf`` logits give exact 0)."""
        return softmax(self.logits, axis=-1)


def perturbed_logits(logits: np.ndarray, eps: float, rng: np.random.Generator) -> np.ndarray:
    """``logits + eps * N(0, 1)``: a fine-tuned relative at logit distance ~``eps``."""
    return np.asarray(logits, dtype=np.float64) + eps * rng.standard_normal(np.shape(logits))


def quantized_logits(logits: np.ndarray, bits: int, per: str = "row") -> np.ndarray:
    """Logits rounded to a grid of ``2**bits`` levels spanning each row's (``per="row"``) or the
    whole table's (``per="table"``) range: coarser grids move the model further from the base.
    ``-inf`` logits stay ``-inf``.
    """
    if bits < 1:
        raise ValueError(f"bits must be at least 1, got {bits}")
    if per not in ("row", "table"):
        raise ValueError(f"per must be 'row' or 'table', got {per!r}")
    logits = np.asarray(logits, dtype=np.float64)
    finite = np.isfinite(logits)
    safe = np.where(finite, logits, np.nan)
    axis = -1 if per == "row" else None
    low = np.nanmin(safe, axis=axis, keepdims=True)
    high = np.nanmax(safe, axis=axis, keepdims=True)
    step = np.where(high > low, (high - low) / (2**bits - 1), 1.0)
    rounded = low + np.round((safe - low) / step) * step
    return np.where(finite, rounded, logits)


def weaker_logits(logits: np.ndarray, scale: float, eps: float,
                  rng: np.random.Generator) -> np.ndarray:
    """``scale * logits + eps * N(0, 1)``: less confident (``scale < 1``) and noisier."""
    return scale * np.asarray(logits, dtype=np.float64) + eps * rng.standard_normal(
        np.shape(logits))


def unrelated_logits(shape: tuple[int, ...], scale: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Fresh ``scale * N(0, 1)`` logits: a model unrelated to the base."""
    return scale * rng.standard_normal(shape)


def variant_logits(base: np.ndarray, spec: Mapping[str, Any], rng: np.random.Generator
                   ) -> np.ndarray:
    """Apply one recipe (a mapping with ``kind`` and its parameters) to the base logits.

    Recipes: ``{"kind": "base"}``; ``{"kind": "perturbed", "eps": e}``;
    ``{"kind": "quantized", "bits": b, "per": "row"|"table", "eps": e (default 0)}``;
    ``{"kind": "weaker", "scale": s, "eps": e}``; ``{"kind": "unrelated", "scale": s}``.
    ``-inf`` logits of the base (impossible tokens) stay ``-inf`` in every variant.
    """
    known = {"kind", "eps", "bits", "per", "scale"}
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"model recipe {dict(spec)}: unknown key(s) {sorted(unknown)}; "
                         f"known: {sorted(known)}")
    kind = spec.get("kind")
    if kind not in VARIANT_KINDS:
        raise ValueError(f"model recipe {dict(spec)}: kind must be one of {list(VARIANT_KINDS)}")
    base = np.asarray(base, dtype=np.float64)
    impossible = base == -np.inf
    finite_base = np.where(impossible, 0.0, base)
    eps = float(spec.get("eps", 0.0))
    if kind == "base":
        out = finite_base
    elif kind == "perturbed":
        out = perturbed_logits(finite_base, eps, rng)
    elif kind == "quantized":
        out = quantized_logits(perturbed_logits(finite_base, eps, rng),
                               int(spec.get("bits", 8)), str(spec.get("per", "row")))
    elif kind == "weaker":
        out = weaker_logits(finite_base, float(spec.get("scale", 0.5)), eps, rng)
    else:
        out = unrelated_logits(base.shape, float(spec.get("scale", 1.0)), rng)
    return np.where(impossible, -np.inf, out)


def model_family(base_logits: np.ndarray, recipes: Mapping[str, Mapping[str, Any]] | None = None,
                 rng: np.random.Generator | int = 0) -> list[SyntheticModel]:
    """Models named by ``recipes`` (default :data:`DEFAULT_FAMILY`) derived from ``base_logits``.

    Each recipe draws its randomness from its own child generator (spawned in recipe order), so
    adding a model at the end does not change the others.
    """
    recipes = DEFAULT_FAMILY if recipes is None else recipes
    if not recipes:
        raise ValueError("a model family needs at least one model")
    children = np.random.default_rng(rng).spawn(len(recipes))
    return [SyntheticModel(str(name), variant_logits(base_logits, spec, child))
            for (name, spec), child in zip(recipes.items(), children, strict=True)]
