"""The cross-tokenizer noise keys in torch (issue 14), bit-identical to the integer reference.

The keys themselves are specified in :mod:`coupled.tables.noise_keys` (Python ints) with a
numpy version in ``coupled.simulate.crosstok``; this is the torch version the runner samples
with (``tests/test_runner_crosstok.py`` checks it bit for bit against both, on the pinned
values and on random inputs). As in :mod:`coupled.runner.noise_torch`, int64 tensors hold the
uint64 bits, and uniforms and Gumbels are computed in float64 (exact ``u``).

    text   pos = SM(SM(SM(row ^ TEXT_DOMAIN) ^ offset) ^ counter)
    bytes  pos = SM(SM(row ^ BYTES_DOMAIN) ^ offset)
    union  pos = SM(SM(row ^ UNION_DOMAIN) ^ step)
    x = SM(pos ^ candidate)        candidate: a token's bytes hash, END_TOKEN_HASH or a byte
    y = SM(SM(pos ^ pick_hash) ^ token_id)   the pick among ids with the same bytes
"""

from __future__ import annotations

import torch

from coupled.runner.noise_torch import _signed, bits_to_uniform, splitmix64
from coupled.tables import noise_keys

__all__ = ["as_int64", "bytes_position_keys", "candidate_bits", "duplicate_bits",
           "gumbel_of_bits", "text_position_keys", "union_position_keys"]

_TEXT = _signed(noise_keys.TEXT_DOMAIN)
_BYTES = _signed(noise_keys.BYTES_DOMAIN)
_UNION = _signed(noise_keys.UNION_DOMAIN)


def as_int64(values, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint64 values (Python ints, lists of them, or a numpy uint64 array) as int64 bits."""
    import numpy as np

    array = np.asarray(values)
    if array.dtype == np.uint64:
        return torch.from_numpy(array.view(np.int64).copy()).to(device)
    if array.dtype == object or array.dtype.kind in "iu":
        flat = [_signed(int(v)) for v in array.reshape(-1).tolist()]
        return torch.tensor(flat, dtype=torch.int64, device=device).reshape(array.shape)
    raise ValueError(f"need integer values, got dtype {array.dtype}")


def _int64(x: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device=like.device, dtype=torch.int64)
    return torch.tensor(_signed(int(x)), dtype=torch.int64, device=like.device)


def text_position_keys(rows: torch.Tensor, offsets: torch.Tensor | int,
                       counters: torch.Tensor | int) -> torch.Tensor:
    """:func:`coupled.tables.noise_keys.text_position_key` of int64 tensors (broadcast)."""
    inner = splitmix64(splitmix64(rows ^ _TEXT) ^ _int64(offsets, rows))
    return splitmix64(inner ^ _int64(counters, rows))


def bytes_position_keys(rows: torch.Tensor, offsets: torch.Tensor | int) -> torch.Tensor:
    """:func:`coupled.tables.noise_keys.bytes_position_key` of int64 tensors (broadcast)."""
    return splitmix64(splitmix64(rows ^ _BYTES) ^ _int64(offsets, rows))


def union_position_keys(rows: torch.Tensor, steps: torch.Tensor | int) -> torch.Tensor:
    """:func:`coupled.tables.noise_keys.union_position_key` of int64 tensors (broadcast)."""
    return splitmix64(splitmix64(rows ^ _UNION) ^ _int64(steps, rows))


def candidate_bits(positions: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """x = SM(position ^ candidate), broadcast (candidates: bytes hashes as int64 bits)."""
    return splitmix64(positions ^ candidates.to(positions.device))


def duplicate_bits(positions: torch.Tensor, pick_hashes: torch.Tensor,
                   token_ids: torch.Tensor) -> torch.Tensor:
    """y = SM(SM(position ^ pick_hash) ^ token_id), broadcast."""
    inner = splitmix64(positions ^ pick_hashes.to(positions.device))
    return splitmix64(inner ^ token_ids.to(device=positions.device, dtype=torch.int64))


def gumbel_of_bits(bits: torch.Tensor) -> torch.Tensor:
    """g = -log(-log(u)) in float64, u = ((x >> 40) + 0.5) / 2**24 (as the reference)."""
    return bits_to_uniform(bits).log_().neg_().log_().neg_()
