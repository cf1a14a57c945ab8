"""Batched coupled decoding: prefill each prompt once, then decode its seeds with shared noise.

The sampler is Gumbel-max on the tempered logits: ``token = argmax(logits / T + g)`` where
``g`` is the counter-based noise of :mod:`coupled.runner.noise_torch` keyed by the row and the
generation step. Top-k, top-p and min-p (optional; :func:`mask_outside_sampling_set`, the one
rule both backends use) mask tokens before the argmax; the noise stays attached to token ids, so
masking keeps the coupling exact. ``temperature == 0`` is greedy decoding (no noise), used by
the judge.

Our own loop rather than ``generate()``: it prefills each distinct prompt of a batch once and
copies its KV cache to all the prompt's seeds (``generate`` would prefill every row), and it
drops finished rows from the batch so the noise is only computed for live rows.
:class:`GumbelNoiseLogitsProcessor` gives the same sampler to ``generate()`` for people who
prefer it (a test checks both give the same tokens).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from coupled.runner.noise_torch import GUMBEL_MAX, gumbel_noise, gumbel_noise_at


@dataclass(frozen=True)
class Generation:
    """One decoded row: the generated token ids (end token excluded) and whether it ended."""

    token_ids: tuple[int, ...]
    finished: bool


def sample_next_tokens(logits: torch.Tensor, rows: torch.Tensor, step: int,
                       temperature: float, top_p: float | None = None,
                       vocab_size: int | None = None, *, top_k: int | None = None,
                       min_p: float | None = None) -> torch.Tensor:
    """Gumbel-max on ``logits / temperature`` with the rows' noise at ``step``: (B, V) -> (B,).

    ``vocab_size`` (the tokenizer's) masks padded logit columns beyond the real vocabulary, so
    models that pad their output layer differently still sample the same token ids. This is
    the whole sampler of both backends (the vLLM logits processor calls it as it is).
    """
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    if vocab_size is not None and logits.shape[-1] > vocab_size:
        logits = logits[:, :vocab_size]
    if temperature == 0:
        return logits.argmax(dim=-1)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    rows = rows.to(logits.device)
    scaled = mask_outside_sampling_set(logits / temperature, top_p=top_p, top_k=top_k,
                                       min_p=min_p)
    return gumbel_argmax(scaled, rows, step)


def mask_outside_sampling_set(scaled: torch.Tensor, *, top_p: float | None = None,
                              top_k: int | None = None, min_p: float | None = None
                              ) -> torch.Tensor:
    """Tempered logits with the tokens outside top-k, then top-p, then min-p set to -inf.

    transformers' order and rules (TopK-, TopP-, MinPLogitsWarper, one token always kept): top-k
    keeps every token tied with the k-th largest; top-p the smallest most-likely set whose mass,
    renormalised after top-k, reaches p; min-p the tokens with probability >= min_p times the
    top one's. Masks only remove tokens, so the noisy argmax over the rest stays coupled.
    ``None`` (or top_p = 1, top_k = 0, min_p = 0) leaves a rule off.
    """
    if top_k is not None and 0 < top_k < scaled.shape[-1]:
        kth = scaled.topk(top_k, dim=-1).values[..., -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        scaled = _mask_outside_nucleus(scaled, top_p)
    if min_p is not None and min_p > 0.0:
        probabilities = scaled.softmax(dim=-1)
        threshold = min_p * probabilities.amax(dim=-1, keepdim=True)
        # the top token always stays (probability >= min_p * itself for min_p <= 1)
        scaled = scaled.masked_fill(probabilities < threshold, float("-inf"))
    return scaled


def gumbel_argmax(scaled: torch.Tensor, rows: torch.Tensor, step: int,
                  dense_fraction: float = 0.25) -> torch.Tensor:
    """argmax(scaled + g) per row, computing g only where it can change the answer (exact).

    Every g is at most GUMBEL_MAX, and the top token already reaches ``scaled[top] + g[top]``;
    a token with ``scaled + GUMBEL_MAX`` below that can never win, so its noise is not needed.
    The comparison is made in the logits' dtype, where rounding is monotone, so the pruned
    argmax equals the dense one bit for bit (a test checks it). Peaked LM distributions keep a
    few hundred candidates out of V; flat ones fall back to the dense computation.
    """
    g_max = _gumbel_max_in(scaled.dtype)
    top = scaled.argmax(dim=-1)
    all_rows = torch.arange(scaled.shape[0], device=scaled.device)
    reached = scaled[all_rows, top] + gumbel_noise_at(rows, step, all_rows, top, scaled.dtype)
    candidates = (scaled + g_max) >= reached[:, None]
    if candidates.sum() > dense_fraction * candidates.numel():
        return (scaled + gumbel_noise(rows, step, scaled.shape[-1], scaled.dtype)).argmax(dim=-1)
    row_index, token_ids = candidates.nonzero(as_tuple=True)
    noisy = torch.full_like(scaled, float("-inf"))
    noisy[row_index, token_ids] = scaled[row_index, token_ids] + gumbel_noise_at(
        rows, step, row_index, token_ids, scaled.dtype)
    return noisy.argmax(dim=-1)


@functools.cache
def _gumbel_max_in(dtype: torch.dtype) -> float:
    # GUMBEL_MAX rounded to ``dtype`` once, not a fresh tensor every step: adding the exactly
    # representable Python float gives the same sums as adding a 0-dim ``dtype`` tensor.
    return torch.tensor(GUMBEL_MAX, dtype=torch.float64).to(dtype).item()


def _mask_outside_nucleus(scaled: torch.Tensor, top_p: float) -> torch.Tensor:
    # The smallest set of most likely tokens whose mass reaches top_p (the top token always
    # stays): transformers' TopPLogitsWarper rule, computed the same way (ascending order,
    # drop while the cumulative mass is <= 1 - top_p), so even exact ties and boundary cases
    # round alike. stable: tied logits keep their token order (the later id counts as the more
    # likely, as in transformers), so a row's nucleus never depends on the rest of the batch.
    sorted_logits, order = scaled.sort(dim=-1, descending=False, stable=True)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = cumulative <= (1 - top_p)
    drop_sorted[..., -1] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return scaled.masked_fill(drop, float("-inf"))


@dataclass(frozen=True)
class Prefilled:
    """Prompts prefilled once and gathered to the rows: the KV ``cache`` (``cached`` is the
    keyword to pass it to the model's forward under), each row's last-position ``logits``, its
    ``attention`` mask so far and the ``next_position`` id of its next token."""

    cache: Any
    cached: dict[str, Any]
    logits: torch.Tensor
    attention: torch.Tensor
    next_position: torch.Tensor


def prefill_rows(model, prompt_ids: Sequence[Sequence[int]], prompt_of_row: Sequence[int],
                 pad_token_id: int) -> Prefilled:
    """Left-pad the distinct prompts, prefill them in one forward and gather the KV cache,
    logits, mask and positions to the rows (``prompt_of_row[r]`` is row ``r``'s prompt)."""
    from transformers import DynamicCache

    device = model.device
    width = max(len(p) for p in prompt_ids)
    input_ids = torch.full((len(prompt_ids), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for i, ids in enumerate(prompt_ids):
        input_ids[i, width - len(ids):] = torch.as_tensor(list(ids), dtype=torch.long)
        attention[i, width - len(ids):] = 1
    input_ids, attention = input_ids.to(device), attention.to(device)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)

    cache = DynamicCache()
    cached = {_cache_argument(model): cache}  # the cache is filled in place by each forward
    # logits_to_keep=1: only the last position's logits are needed (V x width saved).
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                use_cache=True, logits_to_keep=1, **cached)
    gather = torch.as_tensor(list(prompt_of_row), dtype=torch.long, device=device)
    cache.batch_select_indices(gather)
    return Prefilled(cache, cached, out.logits[:, -1, :].index_select(0, gather),
                     attention.index_select(0, gather),
                     positions[:, -1].index_select(0, gather) + 1)


@torch.inference_mode()
def generate_rows(model, prompt_ids: Sequence[Sequence[int]], prompt_of_row: Sequence[int],
                  row_keys: torch.Tensor, *, temperature: float, max_new_tokens: int,
                  end_token_ids: Sequence[int], pad_token_id: int, top_p: float | None = None,
                  vocab_size: int | None = None, top_k: int | None = None,
                  min_p: float | None = None) -> list[Generation]:
    """Decode one batch of rows; each row is (prompt, noise key).

    ``prompt_ids`` are the distinct prompts' token ids; ``prompt_of_row[r]`` says which prompt
    row ``r`` continues, ``row_keys[r]`` its noise key (int64, see ``noise_torch.row_keys``).
    Prompts are left-padded and prefilled once; the KV cache is then gathered to the rows.
    """
    device = model.device
    n_rows = len(prompt_of_row)
    if row_keys.shape != (n_rows,):
        raise ValueError(f"row_keys must have shape ({n_rows},), got {tuple(row_keys.shape)}")
    prefilled = prefill_rows(model, prompt_ids, prompt_of_row, pad_token_id)
    cached, logits = prefilled.cached, prefilled.logits
    attention, next_position = prefilled.attention, prefilled.next_position
    keys = row_keys.to(device)

    end_ids = torch.as_tensor(sorted(set(end_token_ids)), dtype=torch.long, device=device)
    generated: list[list[int]] = [[] for _ in range(n_rows)]
    finished = [False] * n_rows
    live = list(range(n_rows))  # batch position -> row index
    for step in range(max_new_tokens):
        tokens = sample_next_tokens(logits, keys, step, temperature, top_p, vocab_size,
                                    top_k=top_k, min_p=min_p)
        ended = torch.isin(tokens, end_ids)
        tokens_list, ended_list = tokens.tolist(), ended.tolist()
        for position, row in enumerate(live):
            if ended_list[position]:
                finished[row] = True
            else:
                generated[row].append(tokens_list[position])
        if step == max_new_tokens - 1:
            break
        if any(ended_list):
            keep = (~ended).nonzero().flatten()
            if keep.numel() == 0:
                break
            live = [live[i] for i in keep.tolist()]
            prefilled.cache.batch_select_indices(keep)
            tokens, keys = tokens[keep], keys[keep]
            attention, next_position = attention[keep], next_position[keep]
        attention = torch.cat([attention, attention.new_ones((len(live), 1))], dim=1)
        out = model(input_ids=tokens[:, None], attention_mask=attention,
                    position_ids=next_position[:, None], use_cache=True, **cached)
        logits = out.logits[:, -1, :]
        next_position = next_position + 1
    return [Generation(tuple(ids), done) for ids, done in zip(generated, finished, strict=True)]


@functools.cache
def _forward_parameters(model_class: type) -> frozenset[str]:
    return frozenset(inspect.signature(model_class.forward).parameters)


def _cache_argument(model) -> str:
    """The forward argument that takes the KV cache: ``cache`` in transformers >= 5.2x (where
    ``past_key_values`` is deprecated, removed in 5.40), ``past_key_values`` before (the vLLM
    environment caps transformers below 5.20)."""
    return "cache" if "cache" in _forward_parameters(type(model)) else "past_key_values"


def gumbel_logits_processor(row_keys: torch.Tensor, prompt_length: int, temperature: float,
                            top_p: float | None = None, top_k: int | None = None,
                            min_p: float | None = None):
    """The same sampler as a transformers ``LogitsProcessor`` for ``generate(do_sample=False)``.

    It returns ``logits / T + g`` (top-k/p, min-p masked), so greedy search takes the Gumbel
    argmax. The
    step is the number of tokens generated so far (``input_ids`` width minus the prompt's).
    """
    from transformers import LogitsProcessor

    class GumbelNoiseLogitsProcessor(LogitsProcessor):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            step = input_ids.shape[1] - prompt_length
            scaled = mask_outside_sampling_set(scores / temperature, top_p=top_p, top_k=top_k,
                                               min_p=min_p)
            keys = row_keys.to(scores.device)
            return scaled + gumbel_noise(keys, step, scaled.shape[-1], scaled.dtype)

    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 for the noise processor, got {temperature}")
    return GumbelNoiseLogitsProcessor()
