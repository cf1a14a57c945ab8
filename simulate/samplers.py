"""Samplers driven by the counter-based noise function (DESIGN §1-2): Gumbel-max and
shared-uniform inverse-CDF, each usable in coupled mode (every model reads the same noise) or
independent mode (each model reads its own stream), plus a fast path that draws token pairs
straight from an exact joint law.

Every draw is a pure function of its noise key ``(task, prompt_id, seed, stream, step,
token)``: the same key gives the same token whatever the batch, the chunking or the other
models of a call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from coupled import tables, theory
from coupled.simulate import noise

SAMPLERS = tables.SAMPLERS  # what a table's ``coupling`` names when noise was shared
# ``sample_tokens``' couplings: the two coupled samplers, and independent generation.
SAMPLE_COUPLINGS = theory.COUPLINGS
MODES = tables.MODES

# Rows per chunk in the Gumbel path: keeps each temporary (rows x V) around a few MiB, which is
# faster than one huge array (cache) and bounds memory for V = 32k vocabularies.
_CHUNK_ELEMENTS = 1 << 16
_PAIR_BLOCK = 1 << 15


def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def check_distributions(probs: np.ndarray, name: str = "dists") -> np.ndarray:
    """``probs`` as float64 with the last axis a distribution (non-negative, sums to 1)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim < 1 or probs.shape[-1] < 1:
        raise ValueError(f"{name} must have a last axis of tokens, got shape {probs.shape}")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise ValueError(f"{name} must hold finite non-negative probabilities")
    totals = probs.sum(axis=-1)
    bad = np.abs(totals - 1.0) > 1e-6
    if np.any(bad):
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} must sum to 1 over the last axis; at index {where} the sum "
                         f"is {totals[where]!r}")
    return probs / totals[..., None]


def gumbel_max_tokens(log_probs: np.ndarray, rows: np.ndarray, step: int = 0) -> np.ndarray:
    """Gumbel-max: ``argmax_t (log d_t + g_t)`` with ``g`` the noise of ``rows`` at ``step``.

    ``log_probs`` has shape ``(..., V)`` (``-inf`` for impossible tokens, which are never
    drawn); ``rows`` (uint64 row keys) must broadcast against ``log_probs.shape[:-1]``. Noise is
    generated once per *distinct* row: in coupled mode pass rows of shape ``(..., 1)`` so all
    models share one noise vector.
    """
    log_probs = np.asarray(log_probs)
    rows = np.asarray(rows, dtype=np.uint64)
    out_shape = np.broadcast_shapes(rows.shape, log_probs.shape[:-1])
    vocab = log_probs.shape[-1]
    rows = rows.reshape((1,) * (len(out_shape) - rows.ndim) + rows.shape)
    log_probs = log_probs.reshape((1,) * (len(out_shape) + 1 - log_probs.ndim) + log_probs.shape)
    if not out_shape:
        return np.asarray(np.argmax(log_probs + noise.gumbel_noise(rows, step, vocab)))
    tokens = np.empty(out_shape, dtype=np.int64)
    # Chunk the leading axis; noise for each chunk is a pure function of its rows.
    lead = out_shape[0]
    per_lead = max(1, int(np.prod(rows.shape[1:])) * vocab)
    chunk = max(1, _CHUNK_ELEMENTS // per_lead)
    for start in range(0, lead, chunk):
        part = slice(start, min(start + chunk, lead))
        r = rows[part] if rows.shape[0] > 1 else rows
        lp = log_probs[part] if log_probs.shape[0] > 1 else log_probs
        g = noise.gumbel_noise(r, step, vocab)
        if np.broadcast_shapes(g.shape, lp.shape) == g.shape:
            g += lp
        else:
            g = g + lp
        tokens[part] = np.argmax(g, axis=-1)
    return tokens


def inverse_cdf_tokens(probs: np.ndarray, rows: np.ndarray, step: int = 0) -> np.ndarray:
    """Shared-uniform inverse-CDF: the token ``t`` with ``cdf[t-1] <= u < cdf[t]``, token order
    fixed (ids ascending), ``u`` the noise's shared uniform of ``rows`` at ``step``.

    ``probs`` ``(..., V)``; ``rows`` broadcast against ``probs.shape[:-1]``. Zero-probability
    tokens are never drawn (their cdf step is exactly empty, and the cdf is pinned to exactly 1
    from the last possible token on, so rounding cannot leak mass onto a trailing zero).
    """
    u = noise.shared_uniform(np.asarray(rows, dtype=np.uint64), step)
    cdf = _pinned_cdf(np.asarray(probs, dtype=np.float64))
    return np.count_nonzero(cdf[..., :-1] <= u[..., None], axis=-1)


def _pinned_cdf(probs: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(probs, axis=-1)
    cdf /= cdf[..., -1:]
    vocab = probs.shape[-1]
    last_possible = vocab - 1 - np.argmax(probs[..., ::-1] > 0, axis=-1)
    cdf[np.arange(vocab) >= last_possible[..., None]] = 1.0
    return cdf


def draw_tokens(probs: np.ndarray, rows: np.ndarray, step: int = 0,
                sampler: str = "gumbel") -> np.ndarray:
    """One token per (row, distribution) with ``sampler`` (``"gumbel"`` or ``"inverse_cdf"``).

    ``probs`` ``(..., V)`` next-token distributions; ``rows`` uint64 row keys broadcasting
    against ``probs.shape[:-1]`` (coupled mode: one key per row shared by the models axis;
    independent mode: one key per model, from each model's stream).
    """
    check_choice("sampler", sampler, SAMPLERS)
    if sampler == "gumbel":
        with np.errstate(divide="ignore"):
            return gumbel_max_tokens(np.log(probs), rows, step)
    return inverse_cdf_tokens(probs, rows, step)


def mode_row_keys(task: str, prompt_ids: Sequence[str], seeds: Sequence[int] | np.ndarray,
                  mode: str, models: Sequence[str]) -> np.ndarray:
    """Row keys (uint64) of every (prompt, seed) for ``models`` in ``mode``: shape ``(N, S, 1)``
    in coupled mode (stream 0, one key shared by all models), ``(N, S, M)`` in independent mode
    (stream H(name), one key per model) -- the shapes :func:`draw_tokens` broadcasts."""
    check_choice("mode", mode, MODES)
    streams = [noise.stream_key(mode, m) for m in (models[:1] if mode == "coupled" else models)]
    return noise.row_keys_grid(task, prompt_ids, seeds, np.array(streams, dtype=np.uint64))


def sample_tokens(dists: np.ndarray, n_samples: int, coupling: str = "gumbel", seed: int = 0,
                  *, models: Sequence[str] | None = None,
                  task: str = "sample_tokens") -> np.ndarray:
    """``n_samples`` draws of one token per model: int array ``(n_samples, n_models)``.

    ``dists`` ``(n_models, V)``. Sample ``i`` uses the noise key of prompt ``str(i)`` (task
    ``task``, noise seed ``seed``) at step 0, so any chunking of the samples gives the same
    draws. ``coupling``: ``"gumbel"`` or ``"inverse_cdf"`` — coupled, one shared draw per sample
    (stream 0); ``"independent"`` — Gumbel-max on each model's own stream ``H(models[m])``
    (``models`` defaults to ``"0", "1", ...``). Known truth: each column has law ``dists[m]``;
    in coupled mode the pair law of columns ``m, m'`` is ``coupled.theory.joint(dists[m],
    dists[m'], coupling)``, in independent mode the product.
    """
    check_choice("coupling", coupling, SAMPLE_COUPLINGS)
    probs = check_distributions(dists)
    if probs.ndim != 2:
        raise ValueError(f"dists must have shape (n_models, V), got {probs.shape}")
    if n_samples < 0:
        raise ValueError(f"n_samples must be non-negative, got {n_samples}")
    names = [str(m) for m in range(len(probs))] if models is None else list(models)
    if len(names) != len(probs):
        raise ValueError(f"models has {len(names)} names for {len(probs)} distributions")
    mode = "independent" if coupling == "independent" else "coupled"
    rows = mode_row_keys(task, [str(i) for i in range(n_samples)], [seed], mode, names)
    return draw_tokens(probs, rows[:, 0, :], 0, "gumbel" if mode == "independent" else coupling)


def alias_table(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table of a distribution over ``K`` cells (Vose's O(K) construction):
    cell ``k`` is kept with probability ``keep[k]``, else replaced by ``alias[k]``.

    Written by hand: numpy's ``Generator.choice`` samples through a CDF and a binary search,
    which costs log2(K) random memory accesses per draw; the alias method costs one.
    """
    probs = check_distributions(probs, "probs")
    size = len(probs)
    scaled = probs * size
    keep = np.ones(size)
    alias = np.arange(size)
    small = [k for k in range(size) if scaled[k] < 1.0]
    large = [k for k in range(size) if scaled[k] >= 1.0]
    while small and large:
        low, high = small.pop(), large.pop()
        keep[low], alias[low] = scaled[low], high
        scaled[high] -= 1.0 - scaled[low]
        (small if scaled[high] < 1.0 else large).append(high)
    # Leftovers are 1 up to rounding: keep them always. Zero-probability cells have keep 0
    # and an alias with positive probability, so they are never returned.
    return keep, alias


def sample_pairs_from_joint(joint: np.ndarray, n: int,
                            rng: np.random.Generator | int | None = None) -> np.ndarray:
    """``n`` i.i.d. token pairs ``(a, b)`` with law ``joint`` (a ``(V, V)`` matrix summing to
    1): int array ``(n, 2)``. The fast path for small ``V`` — it samples the pair straight from
    the exact joint law (e.g. ``coupled.theory.joint``) instead of hashing noise per token,
    with the alias method: one uniform per pair, its integer part picks a cell and its
    fractional part (``53 - log2(V * V)`` bits) decides between the cell and its alias.
    """
    joint = np.asarray(joint, dtype=np.float64)
    if joint.ndim != 2:
        raise ValueError(f"joint must be a (V, V) matrix, got shape {joint.shape}")
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    keep, alias = alias_table(joint.ravel())
    rng = np.random.default_rng(rng)
    cells, width = len(keep), joint.shape[1]
    index_type = np.int32 if cells < 2**31 else np.int64
    alias = alias.astype(index_type)
    pairs = np.empty((n, 2), dtype=index_type)
    # Cache-sized blocks with in-place operations: several times faster than whole-array
    # temporaries at n = 1e7. Generator.random fills blocks from the same stream, so the
    # draws do not depend on the block size.
    block = max(1, min(n, _PAIR_BLOCK))
    scaled, cell = np.empty(block), np.empty(block, dtype=index_type)
    kept, swapped = np.empty(block), np.empty(block, dtype=index_type)
    for start in range(0, n, block):
        m = min(block, n - start)
        u, c, k, a = scaled[:m], cell[:m], kept[:m], swapped[:m]
        rng.random(out=u)
        u *= cells
        np.copyto(c, u, casting="unsafe")            # floor: u >= 0
        u -= c                                       # the fractional part, uniform on [0, 1)
        keep.take(c, out=k)
        alias.take(c, out=a)
        np.copyto(c, a, where=u >= k)
        np.divmod(c, width, out=(pairs[start:start + m, 0], pairs[start:start + m, 1]))
    return pairs
