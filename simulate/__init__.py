"""coupled.simulate: synthetic models, samplers driven by the noise function, exact pair-chain
computations and Monte-Carlo paired score tables with known truth (DESIGN §1-2).

Single step: :func:`sample_tokens`, :func:`simulate_scores`, :func:`simulate_comparisons`,
:func:`sample_pairs_from_joint`. Autoregressive: :class:`SyntheticModel`, :func:`model_family`,
:func:`benchmark_task`, :func:`pairwise_task`, :func:`generate_sequences`,
:func:`exact_points_law`, :func:`exact_output_pair_law`, :func:`pair_truth`. Whole family:
:func:`simulate_family` (what ``coupled simulate`` runs). Across tokenizers (issue 14):
:func:`sample_replies` / :func:`sample_coupled_replies` under ``CROSSTOK_COUPLINGS``,
:func:`text_agreement`, :func:`text_variance_reduction`, :func:`calls_per_byte`, and
:func:`byte_level_reply` (the byte-level coupling for any ``next_token_law(ids)`` model).
"""

from coupled.simulate.crosstok import (
    BROKEN_COUPLINGS,
    CROSSTOK_COUPLINGS,
    Agreement,
    ByteReply,
    TextSample,
    VarianceReduction,
    byte_level_reply,
    calls_per_byte,
    crosstok_rows,
    exact_score_moments,
    sample_coupled_replies,
    sample_replies,
    text_agreement,
    text_variance_reduction,
)
from coupled.simulate.exact import (
    PairTruth,
    exact_output_pair_law,
    exact_points_law,
    exact_points_marginal,
    pair_truth,
    transition_joints,
)
from coupled.simulate.family import (
    SimulationConfig,
    SimulationResult,
    exact_pair_truth,
    load_config,
    simulate_family,
    write_simulation,
)
from coupled.simulate.generate import (
    Generations,
    generate_sequences,
    sequence_comparisons,
    sequence_scores,
)
from coupled.simulate.models import (
    DEFAULT_FAMILY,
    SyntheticModel,
    model_family,
    perturbed_logits,
    quantized_logits,
    variant_logits,
    weaker_logits,
)
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
from coupled.simulate.tasks import (
    SequenceTask,
    base_bigram_logits,
    benchmark_task,
    pairwise_task,
)

__all__ = [
    "DEFAULT_FAMILY",
    "Generations",
    "PairTruth",
    "SequenceTask",
    "SimulationConfig",
    "SimulationResult",
    "SyntheticModel",
    "base_bigram_logits",
    "benchmark_task",
    "draw_tokens",
    "exact_output_pair_law",
    "exact_pair_truth",
    "exact_points_law",
    "exact_points_marginal",
    "generate_sequences",
    "gumbel_max_tokens",
    "inverse_cdf_tokens",
    "load_config",
    "model_dists",
    "model_family",
    "pair_order",
    "pair_truth",
    "pairwise_task",
    "perturbed_logits",
    "quantized_logits",
    "sample_pairs_from_joint",
    "sample_tokens",
    "sequence_comparisons",
    "sequence_scores",
    "simulate_comparisons",
    "simulate_family",
    "simulate_scores",
    "simulated_seeds",
    "transition_joints",
    "variant_logits",
    "weaker_logits",
    "write_simulation",
    "Agreement",
    "BROKEN_COUPLINGS",
    "ByteReply",
    "CROSSTOK_COUPLINGS",
    "TextSample",
    "VarianceReduction",
    "byte_level_reply",
    "calls_per_byte",
    "crosstok_rows",
    "exact_score_moments",
    "sample_coupled_replies",
    "sample_replies",
    "text_agreement",
    "text_variance_reduction",
]
