"""coupled.simulate: synthetic models, samplers driven by the noise function, exact pair-chain
computations and Monte-Carlo paired score tables with known truth (DESIGN §1-2)."""

from coupled.simulate.paired import (
    model_dists,
    pair_order,
    simulate_comparisons,
    simulate_scores,
    simulated_seeds,
)
from coupled.simulate.samplers import (
    draw_tokens,
    gumbel_max_tokens,
    inverse_cdf_tokens,
    sample_pairs_from_joint,
    sample_tokens,
)

__all__ = [
    "draw_tokens",
    "gumbel_max_tokens",
    "inverse_cdf_tokens",
    "model_dists",
    "pair_order",
    "sample_pairs_from_joint",
    "sample_tokens",
    "simulate_comparisons",
    "simulate_scores",
    "simulated_seeds",
]
