"""Exact joint laws of two next-token samplers driven by the same noise (DESIGN §1).

Every function takes two next-token distributions ``p`` (the model whose token is ``T``) and
``q`` (the model whose token is ``T'``), each of shape ``(V,)`` -- or stacks of shape
``(N, V)``, one row per prompt -- and returns the joint law ``J[a, b] = P(T = a, T' = b)`` of
shape ``(V, V)`` (or ``(N, V, V)``). Rows of ``J`` sum to ``p`` and columns to ``q``.

Couplings:

* ``"gumbel"`` -- Gumbel-max with shared Gumbels (the paper's sampler, PyTorch's categorical
  sampler). Exact closed form, O(V log V + V^2) per prompt.
* ``"inverse_cdf"`` -- one shared uniform pushed through both CDFs in the fixed token order.
* ``"independent"`` -- independent noise: ``p (x) q``.
"""

from __future__ import annotations

import numpy as np

COUPLINGS = ("gumbel", "inverse_cdf", "independent")
SUM_TOLERANCE = 1e-9


def as_distributions(p: np.ndarray, name: str) -> np.ndarray:
    """``p`` as a float64 array of shape (V,) or (N, V) whose last axis is a distribution.

    Raises ``ValueError`` naming ``name`` if the array is empty, has the wrong number of
    dimensions, or has a negative, NaN or infinite entry, or a row not summing to 1 within 1e-9.
    """
    array = np.asarray(p, dtype=np.float64)
    if array.ndim not in (1, 2) or array.shape[-1] == 0 or array.size == 0:
        raise ValueError(f"{name} must have shape (V,) or (N, V) with V >= 1, got shape "
                         f"{array.shape}")
    if not np.all(np.isfinite(array)):
        where = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(f"{name} has a NaN or infinite entry at index {tuple(where)}")
    if np.any(array < 0):
        where = np.argwhere(array < 0)[0]
        raise ValueError(f"{name} has a negative entry {array[tuple(where)]!r} at index "
                         f"{tuple(where)}")
    sums = array.sum(axis=-1)
    bad = np.abs(sums - 1.0) > SUM_TOLERANCE
    if np.any(bad):
        row = int(np.argmax(np.atleast_1d(bad)))
        total = float(np.atleast_1d(sums)[row])
        where = "" if array.ndim == 1 else f" (row {row})"
        raise ValueError(f"{name} must sum to 1 within {SUM_TOLERANCE:g}; it sums to "
                         f"{total!r}{where}")
    return array


def _pair_of_distributions(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = as_distributions(p, "p")
    q = as_distributions(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    return p, q


def _gumbel_max_joint(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    # (N, V) stacks in, (N, V, V) out; the formula is in gumbel_max_joint's docstring.
    # Written by hand: no library has this law. Derivation: exponential race
    # T = argmin_j E_j / p_j, T' = argmin_j E_j / q_j with shared E_j ~ Exp(1).
    n_rows, size = p.shape
    # A ratio that overflows (q subnormal) becomes inf, i.e. q_j is treated as 0 in F only:
    # the cells it affects are of order q_j <= 1e-308.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.where(p > 0, p / np.where(q > 0, q, 1.0), 0.0)
    ratio = np.where((p > 0) & (q == 0), np.inf, ratio)
    order = np.argsort(ratio, axis=1, kind="stable")
    r = np.take_along_axis(ratio, order, axis=1)
    p_sorted = np.take_along_axis(p, order, axis=1)
    q_sorted = np.take_along_axis(q, order, axis=1)
    # G at the k-th sorted breakpoint: tokens at or after k contribute p, tokens before it q*r_k
    # (for tied ratios both give the same value, so tie order does not matter).
    p_from_k = np.cumsum(p_sorted[:, ::-1], axis=1)[:, ::-1]
    q_before_k = np.cumsum(q_sorted, axis=1) - q_sorted
    finite = np.isfinite(r)
    with np.errstate(invalid="ignore"):
        g_at = np.where(finite, p_from_k + np.where(finite, r, 0.0) * q_before_k, np.inf)
    # F between consecutive breakpoints: int_{t0}^{t1} dv / (A + B v)^2 = (t1 - t0) / (G0 G1),
    # a form with no cancellation and no division by the slope B (which may be 0).
    previous_r = np.concatenate([np.zeros((n_rows, 1)), r[:, :-1]], axis=1)
    previous_g = np.concatenate([p.sum(axis=1, keepdims=True), g_at[:, :-1]], axis=1)
    # Divide twice rather than by G0 * G1, which overflows when ratios reach 1e300.
    with np.errstate(invalid="ignore"):
        pieces = np.where(finite, (np.where(finite, r, 0.0) - previous_r) / previous_g
                          / np.where(finite, g_at, 1.0), 0.0)
    # The first token with r = inf (p > 0, q = 0) closes the integral to infinity, where
    # G(v) = A + B v with B = sum(q): int_{t0}^inf dv / (A + B v)^2 = 1 / (B G(t0)).
    first_infinite = ~finite & np.isfinite(previous_g)
    total_q = q.sum(axis=1, keepdims=True)
    pieces = np.where(first_infinite, 1.0 / (total_q * np.where(first_infinite, previous_g, 1.0)),
                      pieces)
    # F(r_(i)) - F(r_(j)) for sorted positions j < i is the sum of the pieces in (j, i]. Summing
    # those non-negative pieces directly (instead of subtracting two values of F) keeps every
    # cell accurate relative to its own size, even cells of 1e-300 next to cells of order 1.
    lower = np.tril(np.ones((size, size), dtype=bool))  # l <= i
    pieces_up_to_i = np.where(lower[None], pieces[:, None, :], 0.0)
    # sums[n, i, j] = sum of pieces over j <= l <= i (0 when j > i); one zero column appended.
    sums = np.zeros((n_rows, size, size + 1))
    sums[:, :, :-1] = np.cumsum(pieces_up_to_i[:, :, ::-1], axis=2)[:, :, ::-1]
    # Back in token order: F(r_a) - F(r_b) = sums[pos_a, pos_b + 1], which is 0 unless b sorts
    # before a (exactly the counterfactually stable cells).
    position = np.argsort(order, axis=1)
    gap = sums[np.arange(n_rows)[:, None, None], position[:, :, None], position[:, None, :] + 1]
    joint = p[:, :, None] * q[:, None, :] * gap
    # P(T = T' = a) = p_a / G(r_a) = p_a q_a / (q_a sum_{r_j >= r_a} p_j + p_a sum_{r_j < r_a} q_j),
    # the second form free of the rounded ratio r_a (exact 0.9 for p = (1, 0), q = (.9, .1)).
    on_both = (p_sorted > 0) & (q_sorted > 0)
    denominator = q_sorted * p_from_k + p_sorted * q_before_k
    diagonal = np.where(on_both, p_sorted * q_sorted / np.where(on_both, denominator, 1.0), 0.0)
    tokens = np.arange(size)
    joint[:, tokens, tokens] = np.take_along_axis(diagonal, position, axis=1)
    return joint


def _inverse_cdf_joint(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    upper_p = np.cumsum(p, axis=1)
    upper_q = np.cumsum(q, axis=1)
    lower_p = upper_p - p
    lower_q = upper_q - q
    overlap = (np.minimum(upper_p[:, :, None], upper_q[:, None, :])
               - np.maximum(lower_p[:, :, None], lower_q[:, None, :]))
    # Zero-probability tokens have empty intervals: force their cells to exact zeros.
    support = (p[:, :, None] > 0) & (q[:, None, :] > 0)
    return np.where(support, np.maximum(overlap, 0.0), 0.0)


def _independent_joint(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return p[:, :, None] * q[:, None, :]


_KERNELS = {
    "gumbel": _gumbel_max_joint,
    "inverse_cdf": _inverse_cdf_joint,
    "independent": _independent_joint,
}


def check_coupling(coupling: str) -> str:
    """``coupling`` if it names a known coupling, else a ``ValueError`` listing them."""
    if coupling not in _KERNELS:
        raise ValueError(f"coupling must be one of {', '.join(COUPLINGS)}; got {coupling!r}")
    return coupling


def joint(p: np.ndarray, q: np.ndarray, coupling: str = "gumbel") -> np.ndarray:
    """Joint law ``J[..., a, b] = P(T = a, T' = b)`` of the tokens sampled from ``p`` and ``q``.

    ``coupling`` is ``"gumbel"`` (shared Gumbels), ``"inverse_cdf"`` (shared uniform) or
    ``"independent"``. ``p`` and ``q`` have shape ``(V,)`` (returns ``(V, V)``) or ``(N, V)``,
    one row per prompt (returns ``(N, V, V)``).
    """
    kernel = _KERNELS[check_coupling(coupling)]
    p, q = _pair_of_distributions(p, q)
    if p.ndim == 1:
        return kernel(p[None], q[None])[0]
    return kernel(p, q)


def gumbel_max_joint(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact joint law of Gumbel-max sampling from ``p`` and ``q`` with shared Gumbels.

    With ``r_j = p_j / q_j`` and ``G(v) = sum_j max(p_j, q_j v)`` (piecewise linear in ``v``):
    ``P(T = a, T' = b) = p_a q_b (F(r_a) - F(r_b))_+`` for ``a != b``, where
    ``F(u) = int_0^u dv / G(v)^2``, and ``P(T = T' = a) = p_a / G(r_a)``
    (``= 1 / sum_j max(p_j / p_a, q_j / q_a)``). Tokens with ``p_a = 0`` or ``q_b = 0`` give
    exact zero rows / columns; no NaN is ever formed. O(V log V + V^2) per prompt.
    ``(V,)`` inputs give ``(V, V)``; ``(N, V)`` stacks (one row per prompt) give ``(N, V, V)``.
    """
    return joint(p, q, "gumbel")


def inverse_cdf_joint(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Joint law of inverse-CDF sampling from ``p`` and ``q`` with one shared uniform ``U``.

    ``T = a`` iff ``U`` falls in ``[P_{a-1}, P_a)`` (cumulative sums in the fixed token order),
    so ``P(T = a, T' = b)`` is the length of the overlap of the two intervals. Comonotone; not
    counterfactually stable in general for ``V > 2``. ``(V,)`` or ``(N, V)`` stacks.
    """
    return joint(p, q, "inverse_cdf")


def independent_joint(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Joint law of independent sampling, ``p (x) q``. ``(V,)`` or ``(N, V)`` stacks."""
    return joint(p, q, "independent")


def gumbel_max_joint_integral(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Reference O(V^3) form of the Gumbel-max joint, straight from DESIGN §1 (for tests).

    Diagonal ``1 / sum_j max(p_j / p_a, q_j / q_a)``; off-diagonal
    ``int_{p_b/p_a}^{q_b/q_a} dt / h(t)^2`` with
    ``h(t) = 1 + t + sum_{j not in {a, b}} max(p_j / p_a, (q_j / q_b) t)``, integrated exactly
    piece by piece between the breakpoints of ``h``. One pair ``(V,)``, ``(V,)`` only.
    """
    p, q = _pair_of_distributions(p, q)
    if p.ndim != 1:
        raise ValueError(f"p must have shape (V,) here, got {p.shape}")
    size = p.size
    joint_law = np.zeros((size, size))
    for a in range(size):
        if p[a] == 0:
            continue
        if q[a] > 0:
            joint_law[a, a] = 1.0 / np.sum(np.maximum(p / p[a], q / q[a]))
        for b in range(size):
            if b == a or q[b] == 0:
                continue
            start = p[b] / p[a]
            stop = q[b] / q[a] if q[a] > 0 else np.inf
            if stop > start:
                joint_law[a, b] = _integral_of_inverse_square(p, q, a, b, start, stop)
    return joint_law


def _integral_of_inverse_square(p, q, a, b, start, stop) -> float:
    others = np.ones(p.size, dtype=bool)
    others[[a, b]] = False
    level = p[others] / p[a]  # the constant branch of max(...)
    slope = q[others] / q[b]  # the linear branch
    with np.errstate(divide="ignore"):
        kinks = np.where(slope > 0, level / np.where(slope > 0, slope, 1.0), np.inf)
    edges = np.unique(np.concatenate([[start, stop], kinks[(kinks > start) & (kinks < stop)]]))
    total = 0.0
    for t0, t1 in zip(edges[:-1], edges[1:], strict=True):
        middle = 2.0 * t0 + 1.0 if np.isinf(t1) else 0.5 * (t0 + t1)
        linear = slope * middle > level  # which branch each token is on in this piece
        intercept = 1.0 + level[~linear].sum()
        gradient = 1.0 + slope[linear].sum()
        h0 = intercept + gradient * t0
        total += 1.0 / (gradient * h0) if np.isinf(t1) else (t1 - t0) / (
            h0 * (intercept + gradient * t1))
    return total


def is_counterfactually_stable(joint_law: np.ndarray, p: np.ndarray, q: np.ndarray,
                               atol: float = 1e-12) -> bool:
    """Whether a coupling of ``p`` (token ``T``) and ``q`` (token ``T'``) is counterfactually
    stable in the sense of the paper's Definition 1 (appendix A).

    The definition: for tokens ``a != b``, ``q_a / p_a >= q_b / p_b`` implies
    ``P(T' = b | T = a) = 0``. Odds are compared by cross-multiplication
    (``q_a p_b >= q_b p_a``) so exact odds ties and zero probabilities need no division; a
    forbidden cell counts as zero when it is at most ``atol``. ``joint_law`` must be a
    ``(V, V)`` coupling of ``p`` and ``q`` (its marginals are checked to 1e-9).
    """
    p, q = _pair_of_distributions(p, q)
    if p.ndim != 1:
        raise ValueError(f"p must have shape (V,), got {p.shape}")
    joint_law = np.asarray(joint_law, dtype=np.float64)
    if joint_law.shape != (p.size, p.size):
        raise ValueError(f"joint_law must have shape {(p.size, p.size)}, got "
                         f"{joint_law.shape}")
    if not np.all(np.isfinite(joint_law)) or np.any(joint_law < -atol):
        raise ValueError("joint_law must be finite and non-negative")
    if (np.max(np.abs(joint_law.sum(axis=1) - p)) > SUM_TOLERANCE
            or np.max(np.abs(joint_law.sum(axis=0) - q)) > SUM_TOLERANCE):
        raise ValueError("joint_law is not a coupling of p and q: its row sums must equal p "
                         "and its column sums q (within 1e-9)")
    forbidden = q[:, None] * p[None, :] >= q[None, :] * p[:, None]
    np.fill_diagonal(forbidden, False)
    return bool(np.all(joint_law[forbidden] <= atol))
