"""Closed forms for coupled vs independent generation: couplings, joint laws, win/tie rates, variances.

Couplings of two next-token distributions (``coupled.theory.couplings``)
    ``joint(p, q, coupling="gumbel")``   joint law ``J[a, b] = P(T = a, T' = b)``, shape (V, V);
                                          ``(N, V)`` stacks (one row per prompt) give (N, V, V).
                                          ``coupling``: "gumbel" | "inverse_cdf" | "independent".
    ``gumbel_max_joint(p, q)``            exact Gumbel-max law (O(V log V + V^2); zeros exact).
    ``inverse_cdf_joint(p, q)``           shared uniform through both CDFs, fixed token order.
    ``independent_joint(p, q)``           ``p (x) q``.
    ``gumbel_max_joint_integral(p, q)``   slow O(V^3) reference straight from DESIGN §1.
    ``is_counterfactually_stable(J, p, q)``  appendix A's Definition 1, odds cross-multiplied.
"""

from coupled.theory.couplings import (
    COUPLINGS,
    as_distributions,
    gumbel_max_joint,
    gumbel_max_joint_integral,
    independent_joint,
    inverse_cdf_joint,
    is_counterfactually_stable,
    joint,
)

__all__ = [
    "COUPLINGS",
    "as_distributions",
    "gumbel_max_joint",
    "gumbel_max_joint_integral",
    "independent_joint",
    "inverse_cdf_joint",
    "is_counterfactually_stable",
    "joint",
]
