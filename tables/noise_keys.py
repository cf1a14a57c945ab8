"""The integer half of the noise key (DESIGN §2): hashing text, streams and rows.

Part of the contract, like the table schemas: rows that share ``(task, prompt_id, seed,
coupling)`` in coupled mode shared their noise *because* their keys are computed here, by both
producers — the numpy reference (``coupled.simulate.noise``) and the runner's torch version
(``coupled.runner.noise_torch``), which may import nothing of ours but ``coupled.tables``. The
runner also uses :func:`text_hash` for other reproducible choices (the judge's A/B order).
Pure Python integers (uint64 arithmetic by masking): the keys are per row, not per token.
"""

from __future__ import annotations

import hashlib

MASK64 = (1 << 64) - 1


def splitmix64_int(x: int) -> int:
    """The splitmix64 finaliser on one Python int (uint64 arithmetic)."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def _blake2b_8(data: bytes, person: bytes = b"") -> int:
    # the one hash every key is built from (text, token bytes, and the personalised streams)
    digest = hashlib.blake2b(data, digest_size=8, person=person).digest()
    return int.from_bytes(digest, "little")


def text_hash(text: str) -> int:
    """H(text): first 8 bytes, little-endian, of blake2b (never Python's salted ``hash()``)."""
    return _blake2b_8(text.encode("utf-8"))


def stream_key(mode: str, model: str) -> int:
    """0 in coupled mode (every model shares the noise); H(model name) in independent mode."""
    if mode == "coupled":
        return 0
    if mode == "independent":
        return text_hash(model)
    raise ValueError(f"mode must be 'coupled' or 'independent', got {mode!r}")


def prompt_hash(task: str, prompt_id: str) -> int:
    """H(task + "\\x1f" + prompt_id): the prompt's part of its row keys."""
    return text_hash(f"{task}\x1f{prompt_id}")


def row_key(task: str, prompt_id: str, seed: int, stream: int = 0) -> int:
    """row = SM(SM(H(task + "\\x1f" + prompt_id) ^ seed) ^ stream), as a Python int (uint64)."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    inner = splitmix64_int(prompt_hash(task, prompt_id) ^ (seed & MASK64))
    return splitmix64_int(inner ^ (stream & MASK64))


# ---------------------------------------------------------------------------------------------
# Cross-tokenizer keys (issue 14). Additions only: nothing above changes behaviour.
#
# Models whose tokenizers differ cannot share noise keyed by token *id*. These keys name a
# candidate token by its canonical *bytes* (what it adds to the reply text) instead, and name
# the draw by a position that two tokenizations of one text can share. Every key is a chain of
# splitmix64 mixes of xor-ed parts (never added: DESIGN §2), each chain opened with a domain
# constant so the three couplings never reuse one another's noise nor the token-id noise.
#
#   union (published baseline)  pos = SM(SM(row ^ UNION_DOMAIN) ^ step)
#   text  (byte offset)         pos = SM(SM(SM(row ^ TEXT_DOMAIN) ^ offset) ^ counter)
#                               offset = bytes of the reply so far; counter = draws already made
#                               at this offset (0 for the first): a token that adds no bytes
#                               moves the counter, so keys within one reply never repeat
#   bytes (byte level)          pos = SM(SM(row ^ BYTES_DOMAIN) ^ offset)
#   candidate token             x = SM(pos ^ token_bytes_hash(canonical bytes)),
#                               end tokens (any model's) x = SM(pos ^ END_TOKEN_HASH)
#   candidate byte              x = SM(pos ^ b), b in 0..255, end = END_BYTE (256)
#   duplicate ids (same bytes)  y = SM(SM(pos ^ duplicate_pick_hash(bytes)) ^ token_id)
#   u = ((x >> 40) + 0.5) / 2**24 and g = -log(-log(u)), exactly as for the token-id key.
#
# Candidates with the same bytes are merged before the race (their probabilities summed, i.e.
# log-sum-exp of the logits), the race picks a byte string, and one id with those bytes is then
# picked with probability p(id) / p(bytes) by a Gumbel race on the ``y`` bits. Those bits hash
# the bytes under a different blake2b personalisation, so they are a separate random-oracle
# stream from the race's ``x`` (deriving them from ``x`` would tie the pick to the race).
# ---------------------------------------------------------------------------------------------

END_BYTE = 256  # the byte-level coupling's end symbol, beside the byte values 0..255


def token_bytes_hash(data: bytes) -> int:
    """H over raw bytes: first 8 bytes, little-endian, of blake2b(data, digest_size=8).

    Equal to :func:`text_hash` of the text when ``data`` is UTF-8, so a token's key is the
    same whether its bytes came from a SentencePiece piece, a byte-level BPE piece or byte
    fallback (see :func:`canonical_token_bytes`).
    """
    return _blake2b_8(bytes(data))


def duplicate_pick_hash(data: bytes) -> int:
    """blake2b(data, digest_size=8, person=b"coupled.dup"), little-endian: the stream that picks
    one id among several ids with the same bytes (independent of the race's stream)."""
    return _blake2b_8(bytes(data), b"coupled.dup")


def _domain(name: str) -> int:
    return _blake2b_8(name.encode("ascii"), b"coupled.domain")


UNION_DOMAIN = _domain("union-step")
TEXT_DOMAIN = _domain("text-offset")
BYTES_DOMAIN = _domain("byte-offset")
# Every model's end token gets this one key (end tokens' strings differ between tokenizers:
# "</s>", "<|endoftext|>", "<eos>"); a personalised hash cannot equal a token's bytes hash
# except by a 2**-64 accident.
END_TOKEN_HASH = _blake2b_8(b"end", b"coupled.end")


def union_position_key(row: int, step: int) -> int:
    """pos = SM(SM(row ^ UNION_DOMAIN) ^ step): the union-vocabulary baseline, keyed by step."""
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    return splitmix64_int(splitmix64_int((row & MASK64) ^ UNION_DOMAIN) ^ step)


def text_position_key(row: int, offset: int, counter: int) -> int:
    """pos = SM(SM(SM(row ^ TEXT_DOMAIN) ^ offset) ^ counter): keyed by the reply's byte
    offset and the number of draws already made at that offset."""
    if offset < 0 or counter < 0:
        raise ValueError(f"offset and counter must be non-negative, got {offset}, {counter}")
    inner = splitmix64_int(splitmix64_int((row & MASK64) ^ TEXT_DOMAIN) ^ offset)
    return splitmix64_int(inner ^ counter)


def bytes_position_key(row: int, offset: int) -> int:
    """pos = SM(SM(row ^ BYTES_DOMAIN) ^ offset): the byte-level coupling's key for one byte."""
    if offset < 0:
        raise ValueError(f"offset must be non-negative, got {offset}")
    return splitmix64_int(splitmix64_int((row & MASK64) ^ BYTES_DOMAIN) ^ offset)


def candidate_bits(position: int, candidate: int) -> int:
    """x = SM(position ^ candidate): ``candidate`` is a token's bytes hash (or END_TOKEN_HASH),
    or a byte value 0..256 under the byte-level key."""
    return splitmix64_int((position & MASK64) ^ (candidate & MASK64))


def duplicate_bits(position: int, pick_hash: int, token_id: int) -> int:
    """y = SM(SM(position ^ duplicate_pick_hash(bytes)) ^ token_id)."""
    if token_id < 0:
        raise ValueError(f"token_id must be non-negative, got {token_id}")
    return splitmix64_int(splitmix64_int((position & MASK64) ^ (pick_hash & MASK64)) ^ token_id)


def _gpt2_byte_decoder() -> dict[str, int]:
    # GPT-2's bytes_to_unicode table, inverted (byte-level BPE writes byte b as this character;
    # "Ġ" is the space). Written out here because the runner may import nothing but tables.
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


_BYTE_LEVEL_DECODER = _gpt2_byte_decoder()
_SPACE_MARKER = "\u2581"  # SentencePiece's "▁"
TOKEN_SCHEMES = ("plain", "sentencepiece", "byte_level")


def canonical_token_bytes(piece: str, scheme: str = "plain", *,
                          end_of_word_suffix: str | None = None) -> bytes:
    """The bytes a vocabulary piece stands for, which is what the text-level keys hash.

    ``scheme``: ``"sentencepiece"`` — ``▁`` (U+2581) means a space and byte-fallback pieces
    ``<0xNN>`` are the byte NN; ``"byte_level"`` — GPT-2 byte-level BPE, every character maps
    back to one byte (``Ġ`` is a space, ``Ċ`` a newline); ``"plain"`` — the piece's UTF-8.
    ``end_of_word_suffix`` (e.g. ``"</w>"``, original BPE): stripped from the end of the piece.
    Dummy-prefix spaces are a property of *decoding* (the first piece's leading space is
    dropped), not of the piece: callers take a token's bytes from decoding the cumulative ids.
    """
    if scheme not in TOKEN_SCHEMES:
        raise ValueError(f"scheme must be one of {list(TOKEN_SCHEMES)}, got {scheme!r}")
    if end_of_word_suffix and piece.endswith(end_of_word_suffix):
        piece = piece[: -len(end_of_word_suffix)]
    if scheme == "byte_level":
        try:
            return bytes(_BYTE_LEVEL_DECODER[c] for c in piece)
        except KeyError as err:
            raise ValueError(f"piece {piece!r} has a character outside the byte-level "
                             f"alphabet: {err.args[0]!r}") from None
    if scheme == "sentencepiece":
        if (len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">")
                and all(c in "0123456789ABCDEFabcdef" for c in piece[3:5])):
            return bytes([int(piece[3:5], 16)])
        return piece.replace(_SPACE_MARKER, " ").encode("utf-8")
    return piece.encode("utf-8")


def vocabulary_key_table(token_bytes: list[bytes | None]) -> tuple[list[int], list[int],
                                                                   list[int]]:
    """Per-vocabulary key table for the text-level couplings: ``(group, group_hash, pick_hash)``.

    ``token_bytes[i]`` is id ``i``'s canonical bytes (:func:`canonical_token_bytes`; ``b""``
    for zero-length special tokens) or ``None`` for an end token. Returns ``group[i]`` (ids
    with the same bytes share a group; all end tokens share one), ``group_hash[g]``
    (:func:`token_bytes_hash` of the group's bytes, or ``END_TOKEN_HASH``) and ``pick_hash[i]``
    (:func:`duplicate_pick_hash` of the id's bytes; 0 for end tokens). A runner computes this
    once per vocabulary (and once more for the first step where a dummy prefix changes what a
    piece adds) and moves it to the device: per draw it then needs only ``pos``,
    ``candidate_bits(pos, group_hash)``, a scatter-add of probabilities over ``group`` and
    ``duplicate_bits(pos, pick_hash[i], i)`` within the winning group.
    """
    index: dict[object, int] = {}
    group, group_hash, pick_hash = [], [], []
    end = object()
    for data in token_bytes:
        key = end if data is None else bytes(data)
        g = index.get(key)
        if g is None:
            g = index[key] = len(group_hash)
            group_hash.append(END_TOKEN_HASH if data is None else token_bytes_hash(key))
        group.append(g)
        pick_hash.append(0 if data is None else duplicate_pick_hash(bytes(data)))
    return group, group_hash, pick_hash
