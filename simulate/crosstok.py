"""Sampling tokenized test-bed models under couplings that work across tokenizers (issue 14).

Every sampler here is counter-based: a model's draw is a pure function of its row key and of
its own history, so "coupling" two models is nothing more than sampling each one alone with the
same row keys (coupled mode) — and a model's own law is exact because, along one reply, no key
is ever used twice. The couplings (``CROSSTOK_COUPLINGS``):

``token``   today's key (DESIGN §2): ``SM(SM(row ^ step) ^ token_id)``. Only meaningful when
            the models share a tokenizer; the shared-tokenizer reference.
``union``   the published union-vocabulary baseline: candidates named by their canonical bytes
            and the draw by the generation *step* (``noise_keys.union_position_key``).
``text``    candidates named by their bytes and the draw by the reply's *byte offset* plus a
            counter of draws already made at that offset (``noise_keys.text_position_key``), so
            two models that produced the same text so far share the noise of every byte string
            they both can emit next, whatever their steps.
``bytes``   exact byte-level sampling: each model's next-*byte* law (from its token law, by
            :class:`coupled.theory.tokenized.ByteView`) raced with noise keyed by (row, byte
            offset, byte). Two tokenizations of one text model have the same byte laws, hence
            the same text on every row.

For the two byte-string keys, ids with the same bytes are merged before the race (their
probabilities summed), the race picks a byte string, and an id with those bytes is then picked
in proportion to its probability with a separate stream (``noise_keys.duplicate_bits``); every
model's end token has the one key ``END_TOKEN_HASH``. ``BROKEN_COUPLINGS`` are deliberately
wrong variants the exactness tests must catch: ``text_no_counter`` (no counter within an offset:
a zero-length token is followed by a draw that reuses its noise) and ``text_unmerged`` (ids with
the same bytes race separately on the same noise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from coupled.simulate import noise
from coupled.simulate.noise import splitmix64
from coupled.simulate.samplers import MODES, check_choice
from coupled.tables import noise_keys
from coupled.tables.byte_level import ByteReply
from coupled.tables.byte_level import byte_level_reply as walk_byte_level_reply
from coupled.theory.tokenized import ByteView, TokenizedModel, exact_score_moments

CROSSTOK_COUPLINGS = ("token", "union", "text", "bytes")
BROKEN_COUPLINGS = ("text_no_counter", "text_unmerged")

_UNION = np.uint64(noise_keys.UNION_DOMAIN)
_TEXT = np.uint64(noise_keys.TEXT_DOMAIN)
_BYTES = np.uint64(noise_keys.BYTES_DOMAIN)


# --- numpy versions of the integer reference keys in coupled.tables.noise_keys ------------


def union_position_keys(rows: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Vectorised :func:`coupled.tables.noise_keys.union_position_key`."""
    rows = np.asarray(rows, dtype=np.uint64)
    return splitmix64(splitmix64(rows ^ _UNION) ^ np.asarray(steps, dtype=np.uint64))


def text_position_keys(rows: np.ndarray, offsets: np.ndarray, counters: np.ndarray
                       ) -> np.ndarray:
    """Vectorised :func:`coupled.tables.noise_keys.text_position_key`."""
    rows = np.asarray(rows, dtype=np.uint64)
    inner = splitmix64(splitmix64(rows ^ _TEXT) ^ np.asarray(offsets, dtype=np.uint64))
    return splitmix64(inner ^ np.asarray(counters, dtype=np.uint64))


def bytes_position_keys(rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Vectorised :func:`coupled.tables.noise_keys.bytes_position_key`."""
    rows = np.asarray(rows, dtype=np.uint64)
    return splitmix64(splitmix64(rows ^ _BYTES) ^ np.asarray(offsets, dtype=np.uint64))


def candidate_bits(positions: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Vectorised :func:`coupled.tables.noise_keys.candidate_bits` (broadcast)."""
    return splitmix64(np.asarray(positions, dtype=np.uint64)
                      ^ np.asarray(candidates, dtype=np.uint64))


def duplicate_bits(positions: np.ndarray, pick_hashes: np.ndarray, token_ids: np.ndarray
                   ) -> np.ndarray:
    """Vectorised :func:`coupled.tables.noise_keys.duplicate_bits` (broadcast)."""
    inner = splitmix64(np.asarray(positions, dtype=np.uint64)
                       ^ np.asarray(pick_hashes, dtype=np.uint64))
    return splitmix64(inner ^ np.asarray(token_ids, dtype=np.uint64))


def _gumbel(bits: np.ndarray) -> np.ndarray:
    return -np.log(-np.log(noise.bits_to_uniform(bits)))


def merged_race(log_probs: np.ndarray, groups: np.ndarray, group_bits: np.ndarray,
                pick_bits: np.ndarray) -> np.ndarray:
    """One draw per row from candidates grouped by their bytes; returns the chosen column.

    ``log_probs`` (k, V) (``-inf`` for impossible ids); ``groups`` (k, V) int in ``[0, G)``:
    ids with the same group in a row have the same bytes (end tokens have a group of their
    own); ``group_bits`` (k, G) each group's race bits (``candidate_bits`` of its bytes hash);
    ``pick_bits`` (k, V) each id's duplicate-pick bits. The groups race with their summed
    probability (a scatter-add over ids, O(k (V + G)), as a torch ``scatter_add`` would do it),
    then the winning group's ids race on ``pick_bits`` with their own probabilities — so
    ``P(id) = P(group) * p(id) / p(group)``, the model's law.
    """
    k, n_groups = group_bits.shape
    valid = np.isfinite(log_probs)
    flat = groups + (np.arange(k) * n_groups)[:, None]
    merged = np.zeros(k * n_groups)
    np.add.at(merged, flat[valid], np.exp(log_probs[valid]))
    merged = merged.reshape(k, n_groups)
    with np.errstate(divide="ignore"):
        score = np.where(merged > 0, np.log(merged) + _gumbel(group_bits), -np.inf)
    winner = np.argmax(score, axis=-1)
    in_group = valid & (groups == winner[:, None])
    pick = np.where(in_group, log_probs + _gumbel(pick_bits), -np.inf)
    return np.argmax(pick, axis=-1)


@dataclass(frozen=True)
class _KeyTables:
    string_hash: np.ndarray  # per string index of the model (plus one slot for the end token)
    string_pick: np.ndarray


def _key_tables(model: TokenizedModel) -> _KeyTables:
    # The model's distinct added-byte strings are its groups (plus one for the end token), so
    # the groups of noise_keys.vocabulary_key_table are the string indices themselves.
    group, group_hash, pick_hash = noise_keys.vocabulary_key_table([*model.strings, None])
    if group != list(range(len(model.strings) + 1)):
        raise AssertionError("a model's added-byte strings must be distinct")
    return _KeyTables(np.array(group_hash, dtype=np.uint64), np.array(pick_hash, dtype=np.uint64))


@dataclass(frozen=True)
class TextSample:
    """Replies of one model on ``rows``: ``texts`` (n,) of bytes, ``calls`` (n,) model calls
    each reply needed (tokens drawn, end included, for the token-level couplings; distinct
    token-prefix evaluations for ``bytes``), ``tokens`` (n,) tokens of the reply (end included;
    for ``bytes``, of the canonical tokenization of the sampled text); for ``bytes`` also
    ``max_covers`` (n,), the largest covering set of token prefixes held at one byte."""

    texts: np.ndarray
    calls: np.ndarray
    tokens: np.ndarray
    max_covers: np.ndarray | None = None


def sample_replies(model: TokenizedModel, rows: np.ndarray, coupling: str) -> TextSample:
    """Replies of ``model`` under ``coupling`` for the uint64 row keys ``rows`` (n,)."""
    rows = np.asarray(rows, dtype=np.uint64)
    if coupling == "bytes":
        return _sample_bytes(model, rows)
    check_choice("coupling", coupling, CROSSTOK_COUPLINGS + BROKEN_COUPLINGS)
    tables = _key_tables(model)
    end = model.tokenizer.end_id
    vocab = model.tokenizer.vocab_size
    ids = np.arange(vocab, dtype=np.uint64)
    offsets = model.offset
    node = np.zeros(len(rows), dtype=np.int64)
    while True:
        act = np.flatnonzero(~model.terminal[node])
        if act.size == 0:
            break
        nodes = node[act]
        with np.errstate(divide="ignore"):
            logp = np.log(model.probs[nodes])
        if coupling == "token":
            bits = noise.noise_bits(rows[act, None], model.step[nodes, None], ids[None, :])
            choice = np.argmax(logp + _gumbel(bits), axis=-1)
        else:
            groups = model.added[nodes].copy()
            groups[:, end] = len(model.strings)  # the end token's own group and key
            groups = np.where(groups < 0, 0, groups)
            if coupling == "union":
                pos = union_position_keys(rows[act], model.step[nodes])
            else:
                counters = (np.zeros_like(nodes) if coupling == "text_no_counter"
                            else model.counter[nodes])
                pos = text_position_keys(rows[act], offsets[nodes], counters)
            group_bits = candidate_bits(pos[:, None], tables.string_hash[None, :])
            if coupling == "text_unmerged":
                race = np.take_along_axis(group_bits, groups, axis=1)
                choice = np.argmax(logp + _gumbel(race), axis=-1)
            else:
                pick = duplicate_bits(pos[:, None], tables.string_pick[groups], ids[None, :])
                choice = merged_race(logp, groups, group_bits, pick)
        node[act] = model.child[nodes, choice]
    texts = np.empty(len(rows), dtype=object)
    texts[:] = [model.text[n] for n in node]
    steps = model.step[node]
    return TextSample(texts, steps.copy(), steps.copy())


def _sample_bytes(model: TokenizedModel, rows: np.ndarray) -> TextSample:
    view = ByteView(model)
    alphabet = model.text_model.alphabet
    symbols = np.array(list(alphabet) + [noise_keys.END_BYTE], dtype=np.uint64)
    texts = [b""] * len(rows)
    covers = np.zeros(len(rows), dtype=np.int64)
    active = np.ones(len(rows), dtype=bool)
    offset = 0
    while active.any():
        act = np.flatnonzero(active)
        laws = [view.law(texts[i]) for i in act]
        probs = np.stack([law.probs for law in laws])
        covers[act] = np.maximum(covers[act], [len(law.frontier) for law in laws])
        pos = bytes_position_keys(rows[act], np.full(act.size, offset))
        with np.errstate(divide="ignore"):
            score = np.log(probs) + _gumbel(candidate_bits(pos[:, None], symbols[None, :]))
        choice = np.argmax(score, axis=-1)
        for i, c in zip(act.tolist(), choice.tolist(), strict=True):
            if c == len(alphabet):
                active[i] = False
            else:
                texts[i] = texts[i] + alphabet[c:c + 1]
        offset += 1
    out = np.empty(len(rows), dtype=object)
    out[:] = texts
    calls = np.array([view.law(t).calls for t in texts], dtype=np.int64)
    tokens = np.array([len(model.tokenizer.encode(t)) for t in texts], dtype=np.int64)
    return TextSample(out, calls, tokens, covers)


def byte_level_reply(next_token_law: Callable[[tuple[int, ...]], np.ndarray],
                     decode: Callable[[Sequence[int]], bytes], end_id: int, row: int, *,
                     max_bytes: int = 1 << 16) -> ByteReply:
    """The byte-level coupling for any token-level model, one row, with the numpy reference
    noise of ``bytes_position_key(row, offset)``: the walk of
    :func:`coupled.tables.byte_level.byte_level_reply` (shared with the runner).

    ``next_token_law(ids)`` returns the model's next-token law (V,) after the token prefix
    ``ids`` (the tempered / truncated law the model samples from); ``decode(ids)`` the reply's
    bytes. At each byte offset the next-byte law is summed over the covering token prefixes
    (Phan et al. 2024), and the byte is raced with the row's noise at that offset.
    """
    symbols = np.arange(noise_keys.END_BYTE + 1, dtype=np.uint64)

    def byte_noise(offset: int) -> np.ndarray:
        return _gumbel(candidate_bits(bytes_position_keys(np.uint64(row), offset), symbols))

    return walk_byte_level_reply(next_token_law, decode, frozenset([end_id]), byte_noise,
                                 max_bytes=max_bytes)


def crosstok_rows(n_rows: int, *, seed: int = 0, mode: str = "coupled", model: str = "",
                  task: str = "crosstok") -> np.ndarray:
    """Row keys for ``n_rows`` prompts ``"0" .. "n-1"`` of ``task`` at ``seed`` (DESIGN §2);
    in independent mode each model (by name) gets its own stream."""
    check_choice("mode", mode, MODES)
    stream = noise.stream_key(mode, model)
    prompts = [str(i) for i in range(n_rows)]
    return noise.row_keys(task, prompts, [seed] * n_rows, stream)


def sample_coupled_replies(models: Sequence[TokenizedModel], n_rows: int, coupling: str, *,
                           seed: int = 0, mode: str = "coupled") -> list[TextSample]:
    """Replies of every model on the same ``n_rows`` rows (shared noise in coupled mode)."""
    out = []
    for m in models:
        rows = crosstok_rows(n_rows, seed=seed, mode=mode, model=m.name)
        out.append(sample_replies(m, rows, coupling))
    return out


# --- measurements ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """P(the two models' replies are the same text): Monte-Carlo ``estimate`` and its
    binomial ``standard_error`` over ``n_rows`` rows."""

    estimate: float
    standard_error: float
    n_rows: int


def text_agreement(first: TextSample, second: TextSample) -> Agreement:
    same = first.texts == second.texts
    p = float(np.mean(same))
    return Agreement(p, float(np.sqrt(p * (1 - p) / same.size)), int(same.size))


@dataclass(frozen=True)
class VarianceReduction:
    """``ratio = Var_coupled[S_1 - S_2] / Var_independent[S_1 - S_2]`` (lower is better; the
    repository's convention), ``reduction = 1 - ratio``. The independent variance is exact
    (``Var S_1 + Var S_2`` from the text laws); the coupled one is the sample variance over
    ``n_rows`` rows, ``standard_error`` its delta-method SE carried to the ratio."""

    ratio: float
    standard_error: float
    reduction: float
    var_coupled: float
    var_independent: float
    n_rows: int


def text_variance_reduction(first: TextSample, second: TextSample, laws: Sequence[dict],
                            score) -> VarianceReduction:
    """Coupled-vs-independent variance ratio of a text-level ``score`` difference."""
    d = (np.fromiter((score(t) for t in first.texts), dtype=np.float64)
         - np.fromiter((score(t) for t in second.texts), dtype=np.float64))
    n = d.size
    var_c = float(np.var(d, ddof=1))
    centred = d - d.mean()
    se_var = float(np.sqrt(max(np.mean(centred ** 4) - var_c ** 2, 0.0) / n))
    var_i = sum(exact_score_moments(law, score)[1] for law in laws)
    ratio = var_c / var_i
    return VarianceReduction(ratio, se_var / var_i, 1 - ratio, var_c, var_i, n)


def calls_per_byte(sample: TextSample) -> float:
    """Model calls per generated symbol (reply bytes plus one for the end)."""
    symbols = sum(len(t) for t in sample.texts) + len(sample.texts)
    return float(sample.calls.sum() / symbols)
