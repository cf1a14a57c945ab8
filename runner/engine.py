"""The decode-engine interface both backends implement, and the Hugging Face engine.

An engine turns one batch of rows -- each a prompt (token ids from the runner's own formatting)
and a noise key -- into :class:`~coupled.runner.decode.Generation` s (token ids, end token
excluded, and whether the row ended). The sampler is the same function on every engine
(:func:`coupled.runner.decode.sample_next_tokens`), so a row's tokens depend on its prompt, its
key and the model's logits only: not on the engine, the batch or the other rows.

``run.py`` chooses the engine from ``config.backend`` in one place (``_open_engine``);
:class:`HFEngine` is the runner's own Hugging Face loop, ``coupled.runner.vllm_engine.VLLMEngine``
the vLLM one.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from coupled.runner.decode import Generation


@dataclass(frozen=True)
class Sampling:
    """The sampler's settings: ``argmax(mask(logits / T) + g)``; ``temperature == 0`` is greedy.

    ``top_p`` / ``top_k`` / ``min_p`` are the masks of
    :func:`coupled.runner.decode.mask_outside_sampling_set` (``None``: off).
    """

    temperature: float
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or self.top_k < 1):
            raise ValueError(f"top_k must be a positive integer, got {self.top_k}")
        if self.min_p is not None and not 0 <= self.min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")

    @classmethod
    def of(cls, config: Any) -> Sampling:
        """The sampling settings of a run config."""
        return cls(temperature=config.temperature, top_p=config.top_p,
                   top_k=getattr(config, "top_k", None), min_p=getattr(config, "min_p", None))

    def as_kwargs(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
                "min_p": self.min_p}


GREEDY = Sampling(temperature=0.0)


class Engine(Protocol):
    """A model loaded for decoding. One engine per process at a time; ``close`` frees it."""

    backend: str

    def generate_rows(self, prompt_ids: Sequence[Sequence[int]], prompt_of_row: Sequence[int],
                      row_keys: torch.Tensor, *, sampling: Sampling,
                      max_new_tokens: int) -> list[Generation]:
        """Decode rows: ``prompt_ids`` are the distinct prompts, ``prompt_of_row[r]`` row r's
        prompt, ``row_keys[r]`` its int64 noise key (``noise_torch.row_keys``)."""
        ...

    def close(self) -> None:
        ...


class HFEngine:
    """The runner's own batched Hugging Face loop (:func:`coupled.runner.decode.generate_rows`)."""

    backend = "hf"

    def __init__(self, spec, tokenizer) -> None:
        from coupled.runner.models import end_token_ids, load_model

        self.model = load_model(spec)
        self.end_token_ids = end_token_ids(getattr(self.model, "generation_config", None),
                                           tokenizer)
        self.pad_token_id = tokenizer.pad_token_id
        self.vocab_size = len(tokenizer)

    def generate_rows(self, prompt_ids: Sequence[Sequence[int]], prompt_of_row: Sequence[int],
                      row_keys: torch.Tensor, *, sampling: Sampling,
                      max_new_tokens: int) -> list[Generation]:
        # Looked up on the module at call time, so a test can wrap decode.generate_rows.
        from coupled.runner import decode

        return decode.generate_rows(
            self.model, prompt_ids, prompt_of_row, row_keys, max_new_tokens=max_new_tokens,
            end_token_ids=self.end_token_ids, pad_token_id=self.pad_token_id,
            vocab_size=self.vocab_size, **sampling.as_kwargs())

    def close(self) -> None:
        import torch

        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
