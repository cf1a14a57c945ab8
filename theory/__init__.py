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

M models over N prompts (``coupled.theory.rates``). Setting 1: ``probs`` (N, M), the
probability that each model outputs the correct / preferred token on each prompt. Setting 2:
``dists`` (N, M, V) next-token distributions plus ``scores`` (V,) or (N, V) per token. Optional
``weights`` (N,) give the prompt distribution (uniform by default); ``coupling`` is "gumbel",
"inverse_cdf" (coupled generation) or "independent".
    ``pairwise_rates(probs_or_dists, scores=None, *, coupling, weights) -> PairwiseRates``
        ``win, tie, loss`` (M, M); ``win[i, j] = P(model i's score > model j's)`` (row beats
        column), ``loss = win.T``; diagonal: win = loss = 0, tie = 1.
    ``average_win_rates(win) -> (M,)``     mean over opponents j != i of ``win[i, j]``.
    ``ranking(values) -> (M,)``            model indices, best (largest) first.
    ``score_difference_moments(...) -> ScoreDifferenceMoments``  ``mean`` (M,), ``covariance``,
        ``conditional_covariance`` (E_S of per-prompt covariance), ``mean_difference``,
        ``variance_difference`` (M, M).
    ``variance_decomposition(...) -> VarianceDecomposition``  Prop. 1, corrected:
        ``Var_ind[R_i - R_j] = Var_coupled[R_i - R_j] + 2 E_S[Cov_coupled(R_i, R_j | S)]``
        (the printed ``+ 2 Cov_coupled`` holds only for a fixed prompt).
    ``prompt_weights(weights, n_prompts)`` normalised prompt probabilities.

Models whose tokenizers differ (``coupled.theory.tokenized``, issue 14): an exact test bed.
    ``TextModel`` / ``bigram_text_model``  byte-level Markov text law with an end symbol.
    ``Tokenizer`` / ``standard_tokenizers()``  deterministic tokenizers (BPE, longest match,
        dummy prefix, byte fallback, ``</w>`` duplicate ids, zero-length control tokens).
    ``tokenized_model(text_model, tokenizer) -> TokenizedModel``  the text law pushed through
        the tokenizer; exact next-token conditionals on the trie of token prefixes.
    ``ByteView(model).law(prefix)`` / ``next_byte_law``  next-byte law from the token law,
        marginalising over the tokenizations covering the prefix (Phan et al. 2024).
    ``byte_coupled_moments(a, b, score)``  exact P(same text) and variance ratio of two text
        models under the byte-level coupling (pair dynamic programme, short texts);
        ``token_coupled_moments(m1, m2, coupling, score)`` the same under "token" / "union" /
        "text" (pair DP over trie nodes in position order).

Examples (``coupled.theory.examples``)
    ``three_model_example() -> ThreeModelExample``  appendix B.6 in exact fractions: average
        accuracy 0.70 / 0.69 / 0.695, average win-rates independent 0.1545 / 0.15675 / 0.16225
        and coupled 0.0525 / 0.0225 / 0.03 -- the ranking flips (``coupled theory example``).
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
from coupled.theory.examples import B6_PROBABILITIES, ThreeModelExample, three_model_example
from coupled.theory.rates import (
    PairwiseRates,
    ScoreDifferenceMoments,
    VarianceDecomposition,
    average_win_rates,
    pairwise_rates,
    prompt_weights,
    ranking,
    score_difference_moments,
    variance_decomposition,
)
from coupled.theory.tokenized import (
    ByteLaw,
    ByteView,
    CoupledPairMoments,
    TextModel,
    TokenizedModel,
    Tokenizer,
    bigram_text_model,
    byte_coupled_moments,
    next_byte_law,
    perturbed_text_model,
    standard_text_models,
    standard_tokenizers,
    token_coupled_moments,
    tokenized_model,
)

__all__ = [
    "B6_PROBABILITIES",
    "PairwiseRates",
    "ScoreDifferenceMoments",
    "ThreeModelExample",
    "VarianceDecomposition",
    "average_win_rates",
    "pairwise_rates",
    "prompt_weights",
    "ranking",
    "score_difference_moments",
    "three_model_example",
    "variance_decomposition",
    "COUPLINGS",
    "as_distributions",
    "gumbel_max_joint",
    "gumbel_max_joint_integral",
    "independent_joint",
    "inverse_cdf_joint",
    "is_counterfactually_stable",
    "joint",
    "CoupledPairMoments",
    "ByteLaw",
    "ByteView",
    "TextModel",
    "TokenizedModel",
    "Tokenizer",
    "bigram_text_model",
    "byte_coupled_moments",
    "next_byte_law",
    "perturbed_text_model",
    "standard_text_models",
    "standard_tokenizers",
    "token_coupled_moments",
    "tokenized_model",
]
