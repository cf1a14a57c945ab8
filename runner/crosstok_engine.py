"""Engines that couple models whose tokenizers differ: ``noise_key = "text"`` and ``"bytes"``.

Under the token-id key (``noise_key = "token"``, :mod:`coupled.runner.decode`) two models share
noise only when their ids mean the same thing. The two keys here name a candidate by its
*bytes* instead (docs/cross-tokenizer.md; keys in :mod:`coupled.tables.noise_keys`, torch
version in :mod:`coupled.runner.noise_text_torch`), and each keeps every model's own sampling
law exact:

``text``  (:class:`TextKeyEngine`) one Gumbel race per generated token, as today, but the draw
          is named by (row, byte offset of the reply so far, counter of draws already made at
          that offset) and each candidate by the bytes it adds to the reply. Ids that add the
          same bytes are merged (their probabilities summed, i.e. log-sum-exp of the logits)
          before the race, the race picks a byte string, and one of its ids is then picked in
          proportion to its probability on a separate stream; every end token has the one
          key ``END_TOKEN_HASH``. The counter keeps keys fresh within a reply (a token that
          adds no bytes is followed by a draw at the same offset), so no key is used twice and
          the law is the model's (Gumbel-max on distinct keys). Cost: one forward pass per
          token, as the token path, plus a scatter-add over the vocabulary per draw.
``bytes`` (:class:`ByteKeyEngine`) exact byte-level sampling: the next-byte law is the model's
          token law summed over every token prefix that covers the reply so far (Phan et al.
          2024), raced with noise keyed by (row, byte offset, byte); two tokenizations of one
          text model give the same text on every row. The walk is
          ``coupled.tables.byte_level`` (shared with the numpy reference
          ``coupled.simulate.crosstok.byte_level_reply``, which passes its own noise), tested
          equal to it row by row. Cost: one prefill per prompt,
          then one forward pass of the reply prefix on a copy of its KV cache per distinct
          covering token prefix (shared by the rows of one prompt), which is why the config requires a truncating mask (top-k / top-p / min-p):
          under the full softmax every tokenization of the reply has positive probability.

What a token adds to the reply comes from decoding the cumulative ids (:class:`TokenBytes`):
the canonical bytes of each piece (``▁`` and ``Ġ`` are spaces, ``<0xNN>`` byte fallback is the
byte), with SentencePiece's dummy-prefix space dropped from the first piece; opening an engine
checks that this decoding equals the tokenizer's own ``decode`` on probe texts and random id
sequences, and refuses the tokenizer otherwise (a wrong byte table would not break a model's
law, but it would stop equal texts from sharing noise).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from coupled.runner import noise_text_torch as keys
from coupled.runner.decode import Generation, mask_outside_sampling_set, prefill_rows
from coupled.runner.engine import HFEngine, Sampling
from coupled.tables import noise_keys
from coupled.tables.byte_level import ByteReply
from coupled.tables.byte_level import byte_level_reply as walk_byte_level_reply

__all__ = ["ByteKeyEngine", "ByteReply", "TextKeyEngine", "TextKeyTables", "TokenBytes",
           "TokenBytesError", "byte_level_reply", "check_token_bytes", "generate_byte_rows", "generate_text_rows",
           "open_crosstok_engine", "sampling_log_probs", "token_bytes_of"]


class TokenBytesError(ValueError):
    """A tokenizer whose tokens' bytes cannot be read reliably for the text / bytes keys."""


# --- what each token adds to the reply ------------------------------------------------------


@dataclass(frozen=True)
class TokenBytes:
    """Each id's canonical bytes (``None`` for end tokens, ``b""`` for zero-length specials)
    and whether the decoder drops the first byte of the reply when it is a space
    (SentencePiece's dummy prefix)."""

    token_bytes: tuple[bytes | None, ...]
    dummy_prefix: bool = False

    @property
    def vocab_size(self) -> int:
        return len(self.token_bytes)

    @cached_property
    def end_ids(self) -> frozenset[int]:
        return frozenset(i for i, b in enumerate(self.token_bytes) if b is None)

    @cached_property
    def first_bytes(self) -> tuple[bytes | None, ...]:
        """What each id adds when nothing with bytes came before it (the dummy prefix)."""
        if not self.dummy_prefix:
            return self.token_bytes
        return tuple(b[1:] if b is not None and b.startswith(b" ") else b
                     for b in self.token_bytes)

    def decode(self, ids: Sequence[int]) -> bytes:
        """The reply's bytes after the cumulative ids (end tokens add nothing)."""
        raw = b"".join(self.token_bytes[i] or b"" for i in ids)
        if self.dummy_prefix and raw.startswith(b" "):
            raw = raw[1:]
        return raw

    @cached_property
    def longest(self) -> int:
        return max((len(b) for b in self.token_bytes if b), default=1)


def _decoder_scheme(decoder: dict | None) -> tuple[str, bool]:
    """(canonical_token_bytes scheme, dummy prefix) of a tokenizers decoder (its JSON)."""
    if not decoder:
        return "plain", False
    kind = decoder.get("type")
    if kind == "ByteLevel":
        return "byte_level", False
    if kind == "Metaspace":
        prefix = decoder.get("prepend_scheme", "always" if decoder.get("add_prefix_space",
                                                                     True) else "never")
        return "sentencepiece", prefix in ("always", "first")
    if kind == "Sequence":
        scheme, dummy = "plain", False
        for part in decoder.get("decoders", []):
            sub, sub_dummy = _decoder_scheme(part)
            if sub != "plain":
                scheme = sub
            dummy = dummy or sub_dummy
            pattern = part.get("pattern", {})
            if part.get("type") == "Replace" and "\u2581" in json.dumps(pattern,
                                                                        ensure_ascii=False):
                scheme = "sentencepiece"
            if part.get("type") == "Strip" and part.get("content") == " " and part.get(
                    "start", 0) >= 1:
                dummy = True
        return scheme, dummy
    return "plain", False


def token_bytes_of(tokenizer, end_token_ids: Sequence[int]) -> TokenBytes:
    """The :class:`TokenBytes` of a Hugging Face (fast) tokenizer, checked against its decode.

    Special tokens add no bytes; the ``end_token_ids`` are the end tokens; non-special added
    tokens add their content's UTF-8; every other piece is read with the scheme of the
    tokenizer's decoder (byte-level BPE, SentencePiece / Metaspace, or plain). The table is
    built and checked once per tokenizer object (``check_token_bytes``; the run does it before
    writing anything, the engine reuses it).
    """
    base = check_token_bytes(tokenizer)
    ends = {int(i) for i in end_token_ids}
    return TokenBytes(tuple(None if i in ends else b for i, b in enumerate(base.token_bytes)),
                      base.dummy_prefix)


def check_token_bytes(tokenizer, model_name: str | None = None) -> TokenBytes:
    """Read every id's bytes (end tokens as zero-length specials) and check them against the
    tokenizer's own decode; :class:`TokenBytesError` names the model if they disagree."""
    cached = getattr(tokenizer, "_coupled_token_bytes", None)
    if cached is not None:
        return cached
    name = model_name or getattr(tokenizer, "name_or_path", "?")
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TokenBytesError(f"model {name!r}: the text and bytes noise keys need a fast "
                              "(tokenizers-backed) tokenizer to read each token's bytes")
    scheme, dummy = _decoder_scheme(json.loads(backend.to_str()).get("decoder"))
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    added = dict(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    special = set(tokenizer.all_special_ids) | {i for i, t in added.items()
                                                 if getattr(t, "special", False)}
    out: list[bytes] = []
    for i, piece in enumerate(pieces):
        if i in special or piece is None:
            out.append(b"")
        elif i in added:
            out.append(str(added[i].content).encode("utf-8"))
        else:
            try:
                out.append(noise_keys.canonical_token_bytes(piece, scheme))
            except ValueError as error:
                raise TokenBytesError(f"model {name!r}: token id {i}: {error}") from None
    table = TokenBytes(tuple(out), dummy)
    _check_against_decode(tokenizer, table, name)
    tokenizer._coupled_token_bytes = table
    return table


_PROBES = ("Answer: A", " leading space", "two  spaces and\ttab", "A B C D E", "0 1 2 10 42",
           "x", "The quick brown fox.", "caf\u00e9 na\u00efve", "\u65e5\u672c", "end\n")


def _check_against_decode(tokenizer, table: TokenBytes, name: str, n_random: int = 64) -> None:
    # The byte table must reproduce the tokenizer's own decoding, or equal texts of two models
    # would not get equal keys; probes are texts and random (seeded) id sequences.
    rng = np.random.default_rng(0)
    plain = [i for i, b in enumerate(table.token_bytes) if b]
    sequences = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in _PROBES]
    if plain:
        sequences += [rng.choice(plain, size=int(rng.integers(1, 7))).tolist()
                      for _ in range(n_random)]
    for ids in sequences:
        mine = table.decode(ids)
        try:
            text = mine.decode("utf-8")
        except UnicodeDecodeError:
            continue  # partial UTF-8: decoders differ only in how they replace it
        theirs = tokenizer.decode(ids, skip_special_tokens=True,
                                  clean_up_tokenization_spaces=False)
        if text != theirs:
            raise TokenBytesError(
                f"model {name!r}: its tokens' bytes cannot be read for the text / bytes "
                f"noise keys: ids {list(ids)[:12]} decode to {theirs!r}, the pieces' canonical "
                f"bytes give {text!r}")


# --- the text key: one merged Gumbel race per token -----------------------------------------


@dataclass(frozen=True)
class TextKeyTables:
    """Device tables of one vocabulary for the text key (``noise_keys.vocabulary_key_table``).

    Row 0 of ``group`` / ``pick_hash`` / ``added_len`` is what each id adds after bytes were
    already produced, row 1 what it adds first (dummy prefix): (2, V). ``group_hash`` (G,) is
    each group's bytes hash (or ``END_TOKEN_HASH``); ``raw_len`` (V,) the id's own bytes
    length (decides when a reply has started); ``is_end`` (V,).
    """

    group: torch.Tensor
    pick_hash: torch.Tensor
    added_len: torch.Tensor
    raw_len: torch.Tensor
    group_hash: torch.Tensor
    is_end: torch.Tensor

    @classmethod
    def of(cls, table: TokenBytes, device: torch.device | str = "cpu") -> TextKeyTables:
        v = table.vocab_size
        if table.dummy_prefix:
            entries = list(table.token_bytes) + list(table.first_bytes)
            group, group_hash, pick_hash = noise_keys.vocabulary_key_table(entries)
        else:  # both rows are the same table: hash the vocabulary once
            entries = list(table.token_bytes) * 2
            group, group_hash, pick_hash = noise_keys.vocabulary_key_table(entries[:v])
            group, pick_hash = group * 2, pick_hash * 2

        def signed(values: Sequence[int]) -> torch.Tensor:
            return keys.as_int64(np.array(values, dtype=np.uint64), device)

        lengths = [len(b) if b else 0 for b in entries]
        return cls(torch.tensor(group, dtype=torch.int64, device=device).reshape(2, v),
                   signed(pick_hash).reshape(2, v),
                   torch.tensor(lengths, dtype=torch.int64, device=device).reshape(2, v),
                   torch.tensor(lengths[:v], dtype=torch.int64, device=device),
                   signed(group_hash),
                   torch.tensor([b is None for b in table.token_bytes], device=device))


def sampling_log_probs(logits: torch.Tensor, sampling: Sampling,
                       vocab_size: int | None = None) -> torch.Tensor:
    """log of the law a row samples from: log_softmax(mask(logits / T)) in float64, (B, V).

    The masks are the HF path's (:func:`coupled.runner.decode.mask_outside_sampling_set`);
    masked ids get ``-inf``. Both cross-tokenizer keys sample exactly from this law.
    """
    if vocab_size is not None and logits.shape[-1] > vocab_size:
        logits = logits[:, :vocab_size]
    scaled = mask_outside_sampling_set(logits.double() / sampling.temperature,
                                       top_p=sampling.top_p, top_k=sampling.top_k,
                                       min_p=sampling.min_p)
    return scaled.log_softmax(dim=-1)


# The draw's name; looked up at call time so a test can swap in a deliberately broken key.
position_keys = keys.text_position_keys


def merged_race(log_probs: torch.Tensor, positions: torch.Tensor, first: torch.Tensor,
                tables: TextKeyTables) -> torch.Tensor:
    """One id per row: ids grouped by the bytes they add race with their summed probability on
    ``candidate_bits(pos, group_hash)``, then the winning group's ids race with their own
    probabilities on ``duplicate_bits`` — P(id) = P(bytes) p(id) / p(bytes), the model's law.
    (Torch version of ``coupled.simulate.crosstok.merged_race``.)"""
    which = first.long()
    groups = tables.group.index_select(0, which)  # (B, V)
    valid = torch.isfinite(log_probs)
    probs = torch.where(valid, log_probs.exp(), torch.zeros((), dtype=log_probs.dtype,
                                                            device=log_probs.device))
    n_rows, n_groups = log_probs.shape[0], tables.group_hash.shape[0]
    merged = torch.zeros((n_rows, n_groups), dtype=probs.dtype, device=probs.device)
    merged.scatter_add_(1, groups, probs)
    race = keys.gumbel_of_bits(keys.candidate_bits(positions[:, None],
                                                   tables.group_hash[None, :]))
    score = torch.where(merged > 0, merged.log() + race, float("-inf"))
    winner = score.argmax(dim=-1)
    in_group = valid & (groups == winner[:, None])
    r, c = in_group.nonzero(as_tuple=True)
    pick_bits = keys.duplicate_bits(positions[r], tables.pick_hash[which[r], c], c)
    pick = torch.full_like(log_probs, float("-inf"))
    pick[r, c] = log_probs[r, c] + keys.gumbel_of_bits(pick_bits)
    return pick.argmax(dim=-1)


class Stepper:
    """What :func:`generate_text_rows` needs of a model: logits after the prompts
    (``prefill``) and after one more token per live row (``advance``; ``keep`` the positions
    of the rows still live, ``None`` for all)."""

    def prefill(self, prompt_ids: Sequence[Sequence[int]], prompt_of_row: Sequence[int]
                ) -> torch.Tensor: ...

    def advance(self, tokens: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor: ...


@torch.inference_mode()
def generate_text_rows(stepper: Stepper, tables: TextKeyTables,
                       prompt_ids: Sequence[Sequence[int]], prompt_of_row: Sequence[int],
                       row_keys: torch.Tensor, *, sampling: Sampling, max_new_tokens: int,
                       vocab_size: int | None = None) -> list[Generation]:
    """Decode rows under the text key; each row's ids depend on its prompt, key and logits."""
    n_rows = len(prompt_of_row)
    if row_keys.shape != (n_rows,):
        raise ValueError(f"row_keys must have shape ({n_rows},), got {tuple(row_keys.shape)}")
    logits = stepper.prefill(prompt_ids, prompt_of_row)
    device = logits.device
    rows = row_keys.to(device)
    offset = torch.zeros(n_rows, dtype=torch.int64, device=device)
    counter = torch.zeros_like(offset)
    first = torch.ones(n_rows, dtype=torch.bool, device=device)  # no bytes produced yet
    generated: list[list[int]] = [[] for _ in range(n_rows)]
    finished = [False] * n_rows
    live = list(range(n_rows))
    for step in range(max_new_tokens):
        log_probs = sampling_log_probs(logits, sampling, vocab_size or tables.raw_len.numel())
        tokens = merged_race(log_probs, position_keys(rows, offset, counter), first, tables)
        ended = tables.is_end[tokens]
        for row, token, end in zip(live, tokens.tolist(), ended.tolist(), strict=True):
            if end:
                finished[row] = True
            else:
                generated[row].append(token)
        added = tables.added_len[first.long(), tokens]
        counter = torch.where(added > 0, torch.zeros_like(counter), counter + 1)
        offset = offset + added
        first = first & (tables.raw_len[tokens] == 0)
        if step == max_new_tokens - 1:
            break
        keep = None
        if bool(ended.any()):
            keep = (~ended).nonzero().flatten()
            if keep.numel() == 0:
                break
            live = [live[i] for i in keep.tolist()]
            tokens, rows = tokens[keep], rows[keep]
            offset, counter, first = offset[keep], counter[keep], first[keep]
        logits = stepper.advance(tokens, keep)
    return [Generation(tuple(ids), done) for ids, done in zip(generated, finished, strict=True)]


class HFStepper(Stepper):
    """A Hugging Face causal LM with a KV cache: each prompt prefilled once
    (:func:`coupled.runner.decode.prefill_rows`, as ``generate_rows`` does), then one token
    per live row."""

    def __init__(self, model, pad_token_id: int) -> None:
        self.model, self.pad_token_id = model, pad_token_id

    def prefill(self, prompt_ids, prompt_of_row):
        prefilled = prefill_rows(self.model, prompt_ids, prompt_of_row, self.pad_token_id)
        self.cache, self.cached = prefilled.cache, prefilled.cached
        self.attention, self.next_position = prefilled.attention, prefilled.next_position
        return prefilled.logits

    def advance(self, tokens, keep):
        if keep is not None:
            self.cache.batch_select_indices(keep)
            self.attention, self.next_position = self.attention[keep], self.next_position[keep]
        self.attention = torch.cat([self.attention, self.attention.new_ones(
            (len(tokens), 1))], dim=1)
        out = self.model(input_ids=tokens[:, None], attention_mask=self.attention,
                         position_ids=self.next_position[:, None], use_cache=True,
                         **self.cached)
        self.next_position = self.next_position + 1
        return out.logits[:, -1, :]


# --- the bytes key: exact byte-level sampling -----------------------------------------------


def byte_level_reply(next_token_law: Callable[[tuple[int, ...]], np.ndarray],
                     decode: Callable[[Sequence[int]], bytes], end_ids: frozenset[int],
                     row: torch.Tensor | int, *, max_bytes: int = 1 << 16) -> ByteReply:
    """The byte-level coupling, one row, with the torch noise of the row's byte offsets: the
    walk of :func:`coupled.tables.byte_level.byte_level_reply`, shared with the numpy
    reference (tested equal row by row). ``row`` is the row key (int64 bits, or a uint64 int)."""
    row_key = row.reshape(1) if isinstance(row, torch.Tensor) else keys.as_int64([row])
    symbols = torch.arange(noise_keys.END_BYTE + 1, dtype=torch.int64)

    def byte_noise(offset: int) -> np.ndarray:
        position = keys.bytes_position_keys(row_key, offset)
        return keys.gumbel_of_bits(keys.candidate_bits(position, symbols)).numpy()

    return walk_byte_level_reply(next_token_law, decode, end_ids, byte_noise,
                                 max_bytes=max_bytes)


def generate_byte_rows(next_token_law: Callable[[int, tuple[int, ...]], np.ndarray],
                       table: TokenBytes, prompt_of_row: Sequence[int], row_keys: torch.Tensor,
                       *, max_new_tokens: int) -> list[Generation]:
    """Decode rows under the bytes key. ``next_token_law(prompt, ids)`` is the law (V,) the
    model samples from after prompt ``prompt`` and reply ids ``ids``; a reply is cut at
    ``max_new_tokens`` tokens as on the token path (the law after that many ids is the end),
    so the text law is the same as under the token and text keys."""
    end = min(table.end_ids)

    def law_of(prompt: int) -> Callable[[tuple[int, ...]], np.ndarray]:
        def law(ids: tuple[int, ...]) -> np.ndarray:
            if len(ids) >= max_new_tokens:
                forced = np.zeros(table.vocab_size)
                forced[end] = 1.0
                return forced
            return next_token_law(prompt, ids)
        return law

    out = []
    max_bytes = max_new_tokens * table.longest  # never binding: T tokens carry no more bytes
    for r, prompt in enumerate(prompt_of_row):
        reply = byte_level_reply(law_of(prompt), table.decode, table.end_ids, row_keys[r],
                                 max_bytes=max_bytes)
        out.append(Generation(reply.token_ids, len(reply.token_ids) < max_new_tokens))
    return out


class _HFLaw:
    """``next_token_law(prompt, ids)`` of a Hugging Face model, cached per (prompt, ids);
    ``calls`` counts the forward passes. Each prompt is prefilled once (its KV cache kept);
    the law after reply ids ``ids`` is one forward pass of ``ids`` on a copy of that cache."""

    def __init__(self, model, prompt_ids: Sequence[Sequence[int]], sampling: Sampling,
                 vocab_size: int, cache: dict | None = None) -> None:
        self.model, self.prompts, self.sampling = model, [list(p) for p in prompt_ids], sampling
        self.vocab_size, self.calls = vocab_size, 0
        # (prompt ids, reply ids) -> law, and (prompt ids, None) -> the prompt's KV cache; an
        # engine passes its own so that the rows of one prompt share them across batches
        self.cache = {} if cache is None else cache

    def _law(self, logits: torch.Tensor) -> np.ndarray:
        self.calls += 1
        return sampling_log_probs(logits, self.sampling, self.vocab_size).exp()[0].cpu().numpy()

    @torch.inference_mode()
    def __call__(self, prompt: int, ids: tuple[int, ...]) -> np.ndarray:
        import copy

        from transformers import DynamicCache

        from coupled.runner.decode import _cache_argument

        text = tuple(self.prompts[prompt])
        law = self.cache.get((text, ids))
        if law is not None:
            return law
        device, argument = self.model.device, _cache_argument(self.model)
        prefill = self.cache.get((text, None))
        if prefill is None:
            kv = DynamicCache()
            out = self.model(input_ids=torch.as_tensor([text], dtype=torch.long, device=device),
                             use_cache=True, logits_to_keep=1, **{argument: kv})
            prefill = self.cache[(text, None)] = kv
            self.cache[(text, ())] = self._law(out.logits[:, -1, :])
            if not ids:
                return self.cache[(text, ())]
        positions = torch.arange(len(text), len(text) + len(ids), device=device)[None, :]
        out = self.model(input_ids=torch.as_tensor([ids], dtype=torch.long, device=device),
                         position_ids=positions, use_cache=True, logits_to_keep=1,
                         **{argument: copy.deepcopy(prefill)})
        law = self.cache[(text, ids)] = self._law(out.logits[:, -1, :])
        return law


# --- the engines ----------------------------------------------------------------------------


class _CrossTokenizerEngine(HFEngine):
    """The HF engine's model loading, greedy loop (a judge at temperature 0 uses no noise) and
    clean-up, plus each token's canonical bytes for the text- and byte-keyed samplers."""

    def __init__(self, spec, tokenizer) -> None:
        super().__init__(spec, tokenizer)
        self.table = token_bytes_of(tokenizer, self.end_token_ids)
        self.model_calls = 0  # forward passes (the cost the docs quote)

    def _greedy(self, prompt_ids, prompt_of_row, row_keys, sampling, max_new_tokens):
        return HFEngine.generate_rows(self, prompt_ids, prompt_of_row, row_keys,
                                      sampling=sampling, max_new_tokens=max_new_tokens)


class TextKeyEngine(_CrossTokenizerEngine):
    """``noise_key = "text"`` on a Hugging Face model (KV-cached, batched like the HF path)."""

    def __init__(self, spec, tokenizer) -> None:
        super().__init__(spec, tokenizer)
        self.tables = TextKeyTables.of(self.table, self.model.device)

    def generate_rows(self, prompt_ids, prompt_of_row, row_keys, *, sampling: Sampling,
                      max_new_tokens: int) -> list[Generation]:
        if sampling.temperature == 0:
            return self._greedy(prompt_ids, prompt_of_row, row_keys, sampling, max_new_tokens)
        out = generate_text_rows(HFStepper(self.model, self.pad_token_id), self.tables,
                                 prompt_ids, prompt_of_row, row_keys, sampling=sampling,
                                 max_new_tokens=max_new_tokens, vocab_size=self.vocab_size)
        self.model_calls += 1 + sum(len(g.token_ids) - (not g.finished) for g in out)
        return out


class ByteKeyEngine(_CrossTokenizerEngine):
    """``noise_key = "bytes"`` on a Hugging Face model (one forward pass per covering prefix)."""

    def __init__(self, spec, tokenizer) -> None:
        super().__init__(spec, tokenizer)
        self._laws: dict = {}  # _HFLaw's cache, kept across calls
        self._last_prompts: set[tuple[int, ...]] = set()

    def generate_rows(self, prompt_ids, prompt_of_row, row_keys, *, sampling: Sampling,
                      max_new_tokens: int) -> list[Generation]:
        if sampling.temperature == 0:
            return self._greedy(prompt_ids, prompt_of_row, row_keys, sampling, max_new_tokens)
        # laws are kept for the prompts of this call and the previous one (a prompt's seeds may
        # straddle two batches); the sampling settings are the run's, the same every call
        prompts = {tuple(p) for p in prompt_ids}
        self._laws = {k: v for k, v in self._laws.items()
                      if k[0] in prompts or k[0] in self._last_prompts}
        self._last_prompts = prompts
        law = _HFLaw(self.model, prompt_ids, sampling, self.vocab_size, self._laws)
        out = generate_byte_rows(law, self.table, prompt_of_row, row_keys,
                                 max_new_tokens=max_new_tokens)
        self.model_calls += law.calls
        return out


def open_crosstok_engine(config: Any, spec, tokenizer):
    """The engine of ``config.noise_key`` ("text" or "bytes") for one model."""
    if config.noise_key == "text":
        return TextKeyEngine(spec, tokenizer)
    if config.noise_key == "bytes":
        return ByteKeyEngine(spec, tokenizer)
    raise ValueError(f"noise_key must be 'text' or 'bytes' here, got {config.noise_key!r}")
