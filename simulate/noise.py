"""The counter-based noise function: the numpy *reference* implementation (DESIGN §2).

Noise is a pure function of its key, so a row's noise is the same whatever the batch size, row
order, chunking, device or the other models of a run. The runner's torch version must give
bit-identical ``x`` and ``u``; ``tests/test_noise.py`` pins known values so any implementation
can be checked against this one.

    SM(x)   splitmix64 finaliser (all arithmetic modulo 2**64, logical shifts)
    H(text) first 8 bytes (little-endian) of blake2b(text, digest_size=8)
    stream  0 in coupled mode; H(model name) in independent mode
    row     SM(SM(H(task + "\\x1f" + prompt_id) ^ seed) ^ stream)
    x       SM(SM(row ^ step) ^ token_id)
    u       ((x >> 40) + 0.5) / 2**24        (exact in float64; see below)
    g       -log(-log(u))                    Gumbel noise
    inverse-CDF's shared uniform: u with token_id = 2**32 - 1

Correction to DESIGN §2: ``u`` is *not* exact in float32. ``(top + 0.5) / 2**24`` equals
``(2 top + 1) / 2**25``, an odd numerator of up to 25 bits, while float32 has a 24-bit
significand; for ``top >= 2**23`` float32 rounds the half. The canonical ``u`` (and ``g``) are
therefore computed in float64, where they are exact, and cast to the logits' dtype at the end.
"""


from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from coupled.tables.noise_keys import prompt_hash

# The per-row integer keys are part of the table contract, shared with the runner: re-exported.
from coupled.tables.noise_keys import row_key as row_key
from coupled.tables.noise_keys import stream_key as stream_key
from coupled.tables.noise_keys import text_hash as text_hash

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
UNIFORM_TOKEN = 2**32 - 1  # the token id whose u is inverse-CDF's shared uniform
_S30, _S27, _S31, _S40 = (np.uint64(s) for s in (30, 27, 31, 40))


def splitmix64(x: np.ndarray | int) -> np.ndarray:
    """The splitmix64 finaliser, elementwise on uint64 (wrapping arithmetic)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = x + GOLDEN
        x = (x ^ (x >> _S30)) * MIX1
        x = (x ^ (x >> _S27)) * MIX2
    return x ^ (x >> _S31)


def row_keys(task: str, prompt_ids: Sequence[str], seeds: Sequence[int] | np.ndarray,
             streams: Sequence[int] | np.ndarray | int = 0) -> np.ndarray:
    """Vectorised :func:`row_key` over rows; returns uint64 of shape (n_rows,)."""
    return _combine_keys(_prompt_hashes(task, prompt_ids), _seed_keys(seeds),
                         np.asarray(streams, dtype=np.uint64))


def _prompt_hashes(task: str, prompt_ids: Sequence[str]) -> np.ndarray:
    return np.array([prompt_hash(task, p) for p in prompt_ids], dtype=np.uint64)


def _seed_keys(seeds: Sequence[int] | np.ndarray) -> np.ndarray:
    # Checked before the cast: a negative int64 would silently wrap to a large uint64 seed.
    seeds = np.asarray(seeds)
    if seeds.size and seeds.min() < 0:
        raise ValueError(f"seeds must be non-negative, got {seeds.min()}")
    return seeds.astype(np.uint64)


def _combine_keys(prompt_hashes: np.ndarray, seeds: np.ndarray, streams: np.ndarray
                  ) -> np.ndarray:
    """SM(SM(prompt_hash ^ seed) ^ stream), broadcast: the vectorised tail of ``row_key``."""
    return splitmix64(splitmix64(prompt_hashes ^ seeds) ^ streams)


def noise_bits(rows: np.ndarray | int, step: int | np.ndarray,
               token_ids: np.ndarray | int) -> np.ndarray:
    """x = SM(SM(row ^ step) ^ token_id), broadcast over rows (..., 1) and token ids (V,)."""
    rows = np.asarray(rows, dtype=np.uint64)
    step = np.asarray(step, dtype=np.uint64)
    token_ids = np.asarray(token_ids, dtype=np.uint64)
    return splitmix64(splitmix64(rows ^ step) ^ token_ids)


def bits_to_uniform(x: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """u = ((x >> 40) + 0.5) / 2**24, strictly inside (0, 1); exact in float64 only."""
    top = (np.asarray(x, dtype=np.uint64) >> _S40).astype(dtype)
    return (top + dtype(0.5)) * dtype(1.0 / 2**24)


def uniforms(rows: np.ndarray | int, step: int | np.ndarray, token_ids: np.ndarray | int,
             dtype: type = np.float64) -> np.ndarray:
    """The uniforms u for (row, step, token) keys."""
    return bits_to_uniform(noise_bits(rows, step, token_ids), dtype)


def gumbel_noise(rows: np.ndarray | int, step: int | np.ndarray, vocab_size: int,
                 dtype: type = np.float64) -> np.ndarray:
    """Gumbel noise g = -log(-log(u)) of shape rows.shape + (vocab_size,)."""
    rows = np.asarray(rows, dtype=np.uint64)
    token_ids = np.arange(vocab_size, dtype=np.uint64)
    step = np.asarray(step, dtype=np.uint64)
    u = uniforms(rows[..., None], step[..., None], token_ids, dtype)
    return -np.log(-np.log(u))


def shared_uniform(rows: np.ndarray | int, step: int | np.ndarray,
                   dtype: type = np.float64) -> np.ndarray:
    """Inverse-CDF's one shared uniform per (row, step): u at token id 2**32 - 1."""
    return uniforms(rows, step, UNIFORM_TOKEN, dtype)


def row_keys_grid(task: str, prompt_ids: Sequence[str], seeds: Sequence[int] | np.ndarray,
                  streams: Sequence[int] | np.ndarray | int = 0) -> np.ndarray:
    """:func:`row_keys` on the grid prompts x seeds x streams: uint64 of shape (N, S, K).

    Hashes each prompt once (``row_keys`` hashes once per row), which is what makes whole
    tables of rows cheap; every entry equals ``row_key(task, prompt_ids[n], seeds[s],
    streams[k])``.
    """
    return _combine_keys(_prompt_hashes(task, prompt_ids).reshape(-1, 1, 1),
                         _seed_keys(seeds).reshape(1, -1, 1),
                         np.atleast_1d(np.asarray(streams, dtype=np.uint64)).reshape(1, 1, -1))
