"""Win / tie / loss rates, average win-rates, rankings and score moments for M models.

Two canonical settings (paper §§3-4, DESIGN §1), both over N prompts with optional weights:

* **Setting 1** -- ``probs`` of shape ``(N, M)``: ``probs[n, m]`` is the probability that
  model ``m`` outputs the correct / preferred token on prompt ``n`` (else the other token).
  The score is 1 for the correct token and 0 otherwise.
* **Setting 2** -- ``dists`` of shape ``(N, M, V)`` (full next-token distributions) with
  ``scores`` of shape ``(V,)`` or ``(N, V)``: the score of token ``a`` on prompt ``n``.

Setting 1 is setting 2 with ``V = 2`` (token 0 correct, score 1; token 1 wrong, score 0), and is
computed that way, so both settings share one code path; Prop. 4's closed forms are tested
against it. Prompts are drawn with probability ``weights / weights.sum()`` (uniform if
``weights`` is None). ``coupling`` is ``"gumbel"``, ``"inverse_cdf"`` (both: coupled
generation, the same noise for every model) or ``"independent"`` (independent generation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coupled.theory.couplings import as_distributions, check_coupling, joint

# Cells per chunk of (prompts x V x V) joints: bounds memory (~32 MB of float64 per array).
_CHUNK_CELLS = 1 << 22


@dataclass(frozen=True)
class PairwiseRates:
    """Win / tie / loss probabilities between every pair of M models, each of shape (M, M).

    ``win[i, j] = P(score of model i > score of model j)`` (row model beats column model),
    ``loss[i, j] = win[j, i]``, ``tie[i, j] = P(scores equal)``; ``win + tie + loss = 1``.
    Probabilities are over prompts (with their weights) and sampling noise. The diagonal is
    not a comparison: ``win = loss = 0`` and ``tie = 1`` there.
    """

    win: np.ndarray
    tie: np.ndarray
    loss: np.ndarray
    coupling: str


@dataclass(frozen=True)
class ScoreDifferenceMoments:
    """Means, covariances and the moments of score differences of M models under one coupling.

    ``mean[m] = E[R_m]`` (M,), the same under every coupling (linearity).
    ``covariance[i, j] = Cov[R_i, R_j]`` (M, M) over prompts and noise; ``covariance[m, m]``
    is ``Var[R_m]``.
    ``conditional_covariance[i, j] = E_S[Cov(R_i, R_j | S)]`` (M, M), the per-prompt covariance
    averaged over prompts (0 off the diagonal for independent generation; the diagonal is
    ``E_S[Var(R_m | S)]``).
    ``mean_difference[i, j] = E[R_i - R_j]`` and ``variance_difference[i, j] = Var[R_i - R_j]``
    (M, M); 0 on the diagonal.
    """

    mean: np.ndarray
    covariance: np.ndarray
    conditional_covariance: np.ndarray
    mean_difference: np.ndarray
    variance_difference: np.ndarray
    coupling: str


@dataclass(frozen=True)
class VarianceDecomposition:
    """Prop. 1 in its corrected form, for every pair of models (each field (M, M), 0 diagonal).

    ``variance_independent = variance_coupled + 2 * expected_conditional_covariance``, where
    ``expected_conditional_covariance = E_S[Cov_coupled(R_i, R_j | S)]
    = covariance_coupled - covariance_independent``. The paper prints
    ``variance_coupled + 2 * covariance_coupled`` (``printed_identity``), which equals
    ``variance_independent`` only when the prompt is fixed (DESIGN §1, "Two corrections").
    """

    variance_independent: np.ndarray
    variance_coupled: np.ndarray
    expected_conditional_covariance: np.ndarray
    covariance_coupled: np.ndarray
    covariance_independent: np.ndarray
    printed_identity: np.ndarray
    coupling: str


def _as_setting(probs_or_dists: np.ndarray, scores: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Both settings as (dists (N, M, V), scores (N, V))."""
    array = np.asarray(probs_or_dists, dtype=np.float64)
    if array.ndim == 2:
        if scores is not None:
            raise ValueError("scores are only for setting 2: give dists of shape (N, M, V); "
                             f"got probs of shape {array.shape} and scores")
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise ValueError(f"probs must have shape (N, M) with N, M >= 1, got {array.shape}")
        if not np.all(np.isfinite(array)) or np.any((array < 0) | (array > 1)):
            where = tuple(np.argwhere(~((array >= 0) & (array <= 1)))[0])
            raise ValueError(f"probs must be probabilities in [0, 1]; probs{list(where)} = "
                             f"{array[where]!r}")
        dists = np.stack([array, 1.0 - array], axis=-1)
        return dists, np.broadcast_to(np.array([1.0, 0.0]), (array.shape[0], 2))
    if array.ndim != 3:
        raise ValueError("expected probs of shape (N, M) (setting 1) or dists of shape "
                         f"(N, M, V) (setting 2), got shape {array.shape}")
    n_prompts, n_models, size = array.shape
    if n_prompts == 0 or n_models == 0:
        raise ValueError(f"dists must have shape (N, M, V) with N, M >= 1, got {array.shape}")
    as_distributions(array.reshape(-1, size), "dists")
    if scores is None:
        raise ValueError("setting 2 (dists of shape (N, M, V)) needs scores of shape (V,) or "
                         "(N, V)")
    score_array = np.asarray(scores, dtype=np.float64)
    if score_array.shape not in ((size,), (n_prompts, size)):
        raise ValueError(f"scores must have shape ({size},) or ({n_prompts}, {size}), got "
                         f"{score_array.shape}")
    if not np.all(np.isfinite(score_array)):
        raise ValueError("scores must be finite (no NaN or infinity)")
    return array, np.broadcast_to(score_array, (n_prompts, size))


def prompt_weights(weights: np.ndarray | None, n_prompts: int) -> np.ndarray:
    """Normalised prompt probabilities (N,): uniform for None, else ``weights / sum``."""
    if weights is None:
        return np.full(n_prompts, 1.0 / n_prompts)
    array = np.asarray(weights, dtype=np.float64)
    if array.shape != (n_prompts,):
        raise ValueError(f"weights must have shape ({n_prompts},), one per prompt, got "
                         f"{array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0) or array.sum() <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    return array / array.sum()


def _joint_chunks(first: np.ndarray, second: np.ndarray, coupling: str):
    """``(prompts, J)`` over chunks of prompts: ``J`` (n, V, V) is the joint law of tokens from
    ``first`` and ``second`` (N, V) on those prompts under ``coupling``; chunks bound memory."""
    n_prompts, size = first.shape
    chunk = max(1, _CHUNK_CELLS // (size * size))
    for start in range(0, n_prompts, chunk):
        part = slice(start, start + chunk)
        yield part, joint(first[part], second[part], coupling)


def _win_tie_loss(first: np.ndarray, second: np.ndarray, scores: np.ndarray,
                  coupling: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per prompt (N,): P(R > R'), P(R = R'), P(R < R') for tokens from ``first`` and
    ``second`` (N, V) scored by ``scores`` (N, V) under ``coupling``."""
    win, tie, loss = (np.empty(first.shape[0]) for _ in range(3))
    for part, law in _joint_chunks(first, second, coupling):
        s = scores[part]
        win[part] = np.sum(law * (s[:, :, None] > s[:, None, :]), axis=(1, 2))
        tie[part] = np.sum(law * (s[:, :, None] == s[:, None, :]), axis=(1, 2))
        loss[part] = np.sum(law * (s[:, :, None] < s[:, None, :]), axis=(1, 2))
    return win, tie, loss


def _cross_moments(first: np.ndarray, second: np.ndarray, scores: np.ndarray,
                   coupling: str) -> np.ndarray:
    """Per prompt (N,): E[R R'] for tokens from ``first`` and ``second`` under ``coupling``."""
    if coupling == "independent":  # the joint is the product: E[R R'] = E[R] E[R']
        return np.einsum("nv,nv->n", first, scores) * np.einsum("nv,nv->n", second, scores)
    cross = np.empty(first.shape[0])
    for part, law in _joint_chunks(first, second, coupling):
        cross[part] = np.einsum("nab,na,nb->n", law, scores[part], scores[part])
    return cross


def pairwise_rates(probs_or_dists: np.ndarray, scores: np.ndarray | None = None, *,
                   coupling: str = "gumbel", weights: np.ndarray | None = None
                   ) -> PairwiseRates:
    """Win / tie / loss matrices (M, M) of M models; ``win[i, j] = P(model i beats model j)``.

    ``probs_or_dists``: setting 1 probabilities (N, M), or setting 2 distributions (N, M, V)
    with ``scores`` (V,) or (N, V). ``coupling``: "gumbel", "inverse_cdf" or "independent".
    """
    check_coupling(coupling)
    dists, score_table = _as_setting(probs_or_dists, scores)
    w = prompt_weights(weights, dists.shape[0])
    n_models = dists.shape[1]
    win = np.zeros((n_models, n_models))
    tie = np.eye(n_models)
    for i in range(n_models):
        for j in range(i + 1, n_models):
            beats, ties, beaten = _win_tie_loss(dists[:, i], dists[:, j], score_table, coupling)
            win[i, j], win[j, i] = w @ beats, w @ beaten
            tie[i, j] = tie[j, i] = w @ ties
    return PairwiseRates(win=win, tie=tie, loss=win.T.copy(), coupling=coupling)


def average_win_rates(win: np.ndarray | PairwiseRates) -> np.ndarray:
    """The paper's average win-rate (M,): the mean over opponents ``j != i`` of ``win[i, j]``."""
    matrix = np.asarray(win.win if isinstance(win, PairwiseRates) else win, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2:
        raise ValueError(f"win must be a square (M, M) matrix with M >= 2, got {matrix.shape}")
    off_diagonal = ~np.eye(matrix.shape[0], dtype=bool)
    return np.where(off_diagonal, matrix, 0.0).sum(axis=1) / (matrix.shape[0] - 1)


def ranking(values: np.ndarray) -> np.ndarray:
    """Model indices from best (largest value) to worst; exact ties keep index order."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or not np.all(np.isfinite(array)):
        raise ValueError(f"values must be a finite 1-d array, got shape {array.shape}")
    return np.argsort(-array, kind="stable")


def score_difference_moments(probs_or_dists: np.ndarray, scores: np.ndarray | None = None, *,
                             coupling: str = "gumbel", weights: np.ndarray | None = None
                             ) -> ScoreDifferenceMoments:
    """Mean, covariance and score-difference moments of M models (benchmark evaluation).

    Same inputs as :func:`pairwise_rates`. Under ``coupling="independent"`` each model has its
    own noise; otherwise all models share it.
    """
    check_coupling(coupling)
    dists, score_table = _as_setting(probs_or_dists, scores)
    return _moments(dists, score_table, prompt_weights(weights, dists.shape[0]), coupling)


def _moments(dists: np.ndarray, score_table: np.ndarray, w: np.ndarray, coupling: str
             ) -> ScoreDifferenceMoments:
    """:func:`score_difference_moments` of validated dists (N, M, V), scores (N, V) and
    normalised prompt weights (N,)."""
    n_models = dists.shape[1]
    # Per-prompt means (N, M) and second moments; cross moments per pair below.
    prompt_means = np.einsum("nmv,nv->nm", dists, score_table)
    prompt_squares = np.einsum("nmv,nv->nm", dists, score_table**2)
    mean = w @ prompt_means
    cross = np.diag(w @ prompt_squares)
    conditional = np.diag(w @ (prompt_squares - prompt_means**2))
    for i in range(n_models):
        for j in range(i + 1, n_models):
            products = _cross_moments(dists[:, i], dists[:, j], score_table, coupling)
            cross[i, j] = cross[j, i] = w @ products
            conditional[i, j] = conditional[j, i] = w @ (
                products - prompt_means[:, i] * prompt_means[:, j])
    covariance = cross - np.outer(mean, mean)
    variances = np.diag(covariance)
    return ScoreDifferenceMoments(
        mean=mean,
        covariance=covariance,
        conditional_covariance=conditional,
        mean_difference=mean[:, None] - mean[None, :],
        variance_difference=variances[:, None] + variances[None, :] - 2 * covariance,
        coupling=coupling,
    )


def variance_decomposition(probs_or_dists: np.ndarray, scores: np.ndarray | None = None, *,
                           coupling: str = "gumbel", weights: np.ndarray | None = None
                           ) -> VarianceDecomposition:
    """Prop. 1, corrected: ``Var_ind[R_i - R_j] = Var_coupled[R_i - R_j] + 2 E_S[Cov(R_i, R_j | S)]``
    for every pair, with the coupled terms under ``coupling`` ("gumbel" or "inverse_cdf").
    """
    if check_coupling(coupling) == "independent":
        raise ValueError("coupling must be a coupled sampler (gumbel or inverse_cdf) here")
    dists, score_table = _as_setting(probs_or_dists, scores)
    w = prompt_weights(weights, dists.shape[0])
    coupled = _moments(dists, score_table, w, coupling)
    independent = _moments(dists, score_table, w, "independent")
    off_diagonal = ~np.eye(coupled.mean.size, dtype=bool)

    def pairs_only(matrix: np.ndarray) -> np.ndarray:
        return np.where(off_diagonal, matrix, 0.0)

    return VarianceDecomposition(
        variance_independent=independent.variance_difference,
        variance_coupled=coupled.variance_difference,
        expected_conditional_covariance=pairs_only(coupled.conditional_covariance),
        covariance_coupled=pairs_only(coupled.covariance),
        covariance_independent=pairs_only(independent.covariance),
        printed_identity=pairs_only(coupled.variance_difference + 2 * coupled.covariance),
        coupling=coupling,
    )
