"""The byte-level coupling's walk (the ``bytes`` noise key, DESIGN §2 and docs/cross-tokenizer.md).

Part of the contract for the same reason as the noise keys: two producers — the numpy
reference (``coupled.simulate.crosstok``) and the runner (``coupled.runner.crosstok_engine``,
which may import nothing of ours but ``coupled.tables``) — must sample the *same* byte from the
same laws and noise, so the walk that turns a token-level model into next-byte laws is written
once, here, and each producer passes its own noise (numpy reference or torch; bit-identical,
tested). No library computes next-byte laws of a tokenized model (Phan et al. 2024 and Hayase
et al. 2025 publish research code only), so it is written by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from coupled.tables.noise_keys import END_BYTE

Prefix = tuple[int, ...]


@dataclass(frozen=True)
class ByteReply:
    """One reply sampled byte by byte from a token-level model: ``text``; ``calls`` (distinct
    token prefixes whose next-token law was evaluated); ``max_covers`` (largest covering set
    held at one byte); ``token_ids`` the covering tokenization that ends the reply with the
    largest probability (end token excluded; what the runner's tables record)."""

    text: bytes
    calls: int
    max_covers: int
    token_ids: Prefix = ()


def byte_level_reply(next_token_law: Callable[[Prefix], np.ndarray],
                     decode: Callable[[Sequence[int]], bytes], end_ids: frozenset[int],
                     byte_noise: Callable[[int], np.ndarray], *,
                     max_bytes: int = 1 << 16) -> ByteReply:
    """Sample one reply byte by byte: at each byte offset the next-byte law is summed over the
    covering token prefixes (those whose text is a prefix of the reply so far and that can
    still reach past it; Phan et al. 2024), and the byte (or ``END_BYTE``) is the arg max of
    ``log law + byte_noise(offset)`` over the 257 symbols.

    ``next_token_law(ids)`` is the model's next-token law (V,) after token prefix ``ids`` (the
    tempered / truncated law it samples from); ``decode(ids)`` the reply's bytes, so what a
    candidate token adds comes from decoding the cumulative ids (dummy-prefix spaces, byte
    fallback); ``end_ids`` the model's end tokens (one canonical end symbol); ``byte_noise``
    the Gumbel noise (257,) of the row at a byte offset. Exact for the model's law over the
    token sequences it gives positive probability; a runner may restrict the covers to valid
    tokenizations (Hayase et al. 2025) — where cost and exactness are traded.
    """
    laws: dict[Prefix, np.ndarray] = {}
    texts: dict[Prefix, bytes] = {(): decode(())}

    def children(ids: Prefix) -> list[tuple[int, float, Prefix, bytes]]:
        law = laws.get(ids)
        if law is None:
            law = laws[ids] = np.asarray(next_token_law(ids), dtype=np.float64)
        out = []
        for v in np.flatnonzero(law > 0).tolist():
            nxt = (*ids, v)
            if v not in end_ids and nxt not in texts:
                texts[nxt] = decode(nxt)
            out.append((v, float(law[v]), nxt, texts.get(nxt, b"")))
        return out

    def close(seeds: list[tuple[Prefix, float]]) -> list[tuple[Prefix, float]]:
        # add the prefixes reached by zero-length tokens (same text)
        out, stack = [], list(seeds)
        while stack:
            ids, mass = stack.pop()
            out.append((ids, mass))
            base = texts[ids]
            stack.extend((nxt, mass * p) for v, p, nxt, t in children(ids)
                         if v not in end_ids and t == base)
        return out

    reply = b""
    covers = close([((), 1.0)])
    max_covers = len(covers)
    for offset in range(max_bytes + 1):
        probs = np.zeros(END_BYTE + 1)
        for ids, mass in covers:
            base = texts[ids]
            for v, p, _, t in children(ids):
                if v in end_ids:
                    if base == reply:
                        probs[END_BYTE] += mass * p
                elif len(t) > len(reply) and t.startswith(reply):
                    probs[t[len(reply)]] += mass * p
        if offset == max_bytes:
            probs[:END_BYTE] = 0.0  # the reply must end here
        if probs.sum() <= 0:
            raise ValueError(f"the model gives the reply prefix {reply!r} probability 0")
        with np.errstate(divide="ignore"):
            score = np.log(probs) + byte_noise(offset)
        c = int(np.argmax(score))
        if c == END_BYTE:
            break
        reply += bytes([c])
        new = [(nxt, mass * p) for ids, mass in covers for v, p, nxt, t in children(ids)
               if v not in end_ids and t == reply and len(texts[ids]) < len(reply)]
        keep = [(ids, mass) for ids, mass in covers
                if any(v not in end_ids and len(t) > len(reply) and t.startswith(reply)
                       for v, _, _, t in children(ids))]
        covers = keep + close(new)
        max_covers = max(max_covers, len(covers))
    ending = [(mass * p, ids) for ids, mass in covers if texts[ids] == reply
              for v, p, _, _ in children(ids) if v in end_ids]
    token_ids = max(ending, key=lambda e: e[0])[1] if ending else ()
    return ByteReply(reply, len(laws), max_covers, tuple(token_ids))
