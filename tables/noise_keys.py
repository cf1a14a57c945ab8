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


def text_hash(text: str) -> int:
    """H(text): first 8 bytes, little-endian, of blake2b (never Python's salted ``hash()``)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


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
