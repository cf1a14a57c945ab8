"""Planning a benchmark comparison: questions × seeds for a target power, and detectable effects.

The test planned for is the one :func:`coupled.analysis.benchmark.mean_difference` runs:

* several seeds per question (or non-binary scores): the one-sample t-test on per-question mean
  differences. A question's mean over ``S`` seeds has variance ``between + within_mode / S``
  (variance components: the between-question variance of the true per-question difference,
  the same in both modes, and the within-question variance of one row's difference, smaller
  under coupling); statsmodels' ``TTestPower`` solves for the number of questions with effect
  size ``delta / sqrt(between + within_mode / S)``. This *is* the design-effect route: the
  design effect ``S (between + within/S) / (between + within)`` is reported with each plan.
* one seed per question and binary scores: McNemar's test, planned with Connor's (1987)
  formula from the discordance rate ``psi = P(R_a != R_b)`` (coupling lowers ``psi``).

Variance components come from assumptions (per-question correct-answer probabilities of the
two models and, for coupled mode, the probability both are right — or the models' next-token
distributions, through ``coupled.theory``'s exact joint laws; the default ``min(p_a, p_b)`` is the comonotone joint of any
counterfactually stable sampler with two outcomes, DESIGN §1) or from a pilot ``scores`` table
(method of moments, :func:`coupled.analysis._clustered.variance_components`; the independent
within variance from a coupled pilot is ``Var(R_a) + Var(R_b)``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats
from statsmodels.stats.power import TTestPower

from coupled.analysis._clustered import VarianceComponents, question_moments, variance_components
from coupled.analysis.benchmark import paired_arrays
from coupled.tables import MODES, read_scores

_T_POWER = TTestPower()
_MAX_QUESTIONS = 10**8


def components_from_accuracies(p_a: np.ndarray, p_b: np.ndarray,
                               p_both_coupled: np.ndarray | None = None) -> VarianceComponents:
    """Variance components of binary scores from per-question probabilities of being right.

    ``p_a, p_b``: each model's probability of answering each question correctly (the questions
    stand for the population the benchmark samples from). ``p_both_coupled``: probability both
    are right under coupled generation (default ``min(p_a, p_b)``, the two-outcome
    counterfactually stable joint).
    """
    p_a = np.asarray(p_a, dtype=float)
    p_b = np.asarray(p_b, dtype=float)
    if p_a.shape != p_b.shape or p_a.ndim != 1 or len(p_a) == 0:
        raise ValueError("p_a and p_b must be non-empty 1-D arrays of the same length")
    for name, p in (("p_a", p_a), ("p_b", p_b)):
        if np.any((p < 0) | (p > 1)) or not np.all(np.isfinite(p)):
            raise ValueError(f"{name}: probabilities must lie in [0, 1]")
    both = np.minimum(p_a, p_b) if p_both_coupled is None else np.asarray(p_both_coupled, float)
    lower, upper = np.maximum(p_a + p_b - 1, 0), np.minimum(p_a, p_b)
    if both.shape != p_a.shape or np.any(both < lower - 1e-12) or np.any(both > upper + 1e-12):
        raise ValueError("p_both_coupled: must have p_a's shape and lie within the Fréchet "
                         "bounds [max(p_a + p_b - 1, 0), min(p_a, p_b)]")
    diff = p_a - p_b
    within_coupled = np.mean(p_a + p_b - 2 * both - diff**2)
    within_independent = np.mean(p_a * (1 - p_a) + p_b * (1 - p_b))
    return VarianceComponents(effect=float(diff.mean()), between=float(diff.var()),
                              within_coupled=float(within_coupled),
                              within_independent=float(within_independent))


def components_from_distributions(dists_a: np.ndarray, dists_b: np.ndarray,
                                  correct: np.ndarray, coupling: str = "gumbel"
                                  ) -> VarianceComponents:
    """Variance components of binary scores from two models' next-token distributions.

    ``dists_a, dists_b``: ``(N, V)`` per question; ``correct``: ``(N,)`` index of the correct
    token or boolean ``(N, V)`` set of correct tokens. The coupled joint law is
    ``coupled.theory.joint`` for ``coupling`` (``"gumbel"`` or ``"inverse_cdf"``).
    """
    from coupled.theory import joint

    dists_a = np.asarray(dists_a, dtype=float)
    dists_b = np.asarray(dists_b, dtype=float)
    if dists_a.ndim != 2 or dists_a.shape != dists_b.shape:
        raise ValueError("dists_a and dists_b must both have shape (N, V), got "
                         f"{dists_a.shape} and {dists_b.shape}")
    correct = np.asarray(correct)
    if correct.shape == dists_a.shape[:1]:
        mask = np.zeros(dists_a.shape, dtype=bool)
        mask[np.arange(len(correct)), correct.astype(int)] = True
    elif correct.shape == dists_a.shape and correct.dtype == bool:
        mask = correct
    else:
        raise ValueError("correct: give (N,) token indices or an (N, V) boolean mask")
    pair_law = joint(dists_a, dists_b, coupling)
    p_both = np.einsum("nab,na,nb->n", pair_law, mask, mask)
    p_a, p_b = (dists_a * mask).sum(axis=1), (dists_b * mask).sum(axis=1)
    return components_from_accuracies(np.clip(p_a, 0, 1), np.clip(p_b, 0, 1),
                                      np.clip(p_both, 0, np.minimum(p_a, p_b)))


def components_from_pilot(scores, model_a: str, model_b: str, *, coupling: str | None = None
                          ) -> VarianceComponents:
    """Variance components estimated from a pilot ``scores`` table (needs ≥ 2 seeds on some
    questions). Coupled rows give both within variances; independent rows, when present, give
    the independent one directly. Without coupled rows, the coupled within variance is unknown
    and set to the independent one (no assumed gain)."""
    scores = read_scores(scores)
    modes = set(scores["mode"])
    results = {}
    for mode in MODES:
        if mode not in modes:
            continue
        a, b, mask, _ = paired_arrays(scores, model_a, model_b, mode, coupling)
        m = question_moments(a, b, mask)
        if not np.any(m.has_spread):
            raise ValueError(f"scores: the {mode} pilot has one seed per question; within-"
                             "question variances need at least 2 seeds on some questions")
        between, within = variance_components(m.mean_diff, m.var_diff, m.n, m.present,
                                              m.has_spread)
        _, within_if_ind = variance_components(m.mean_diff, m.var_diff_if_independent, m.n,
                                               m.present, m.has_spread)
        results[mode] = (float(m.mean_diff.mean()), float(between), float(within),
                         float(within_if_ind))
    source = results.get("coupled", results.get("independent"))
    if source is None:
        raise ValueError("scores: the pilot has no rows in either mode")
    effect, between, within, within_if_ind = source
    within_coupled = within if "coupled" in results else results["independent"][2]
    within_independent = results["independent"][2] if "independent" in results \
        else within_if_ind
    return VarianceComponents(effect=effect, between=between, within_coupled=within_coupled,
                              within_independent=within_independent)


# ----------------------------------------------------------------------------- McNemar
# Connor (1987), "Sample size for testing differences in proportions for the paired-sample
# design", Biometrics 43:207-211. No library implements McNemar power, so it is written here
# (and tested against simulated McNemar tests in tests/test_planning.py).
def mcnemar_power(p_discordant: float, effect: float, n_pairs: float,
                  alpha: float = 0.05) -> float:
    """Power of the two-sided McNemar test with ``n_pairs`` pairs (Connor 1987).

    ``p_discordant``: P(the two models disagree) per pair; ``effect``: P(a right, b wrong) -
    P(a wrong, b right) (the difference in accuracy).
    """
    _check_mcnemar(p_discordant, effect)
    if effect == 0:
        return alpha
    z = stats.norm.ppf(1 - alpha / 2)
    spread = np.sqrt(p_discordant - effect**2)
    if spread == 0:
        return 1.0
    return float(stats.norm.cdf((np.sqrt(n_pairs) * abs(effect) - z * np.sqrt(p_discordant))
                                / spread))


def mcnemar_sample_size(p_discordant: float, effect: float, power: float = 0.8,
                        alpha: float = 0.05) -> float:
    """Pairs needed for McNemar's test to reach ``power`` (Connor 1987), not rounded."""
    _check_mcnemar(p_discordant, effect)
    if effect == 0:
        raise ValueError("effect must be non-zero to plan for power")
    z_alpha, z_beta = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    return float((z_alpha * np.sqrt(p_discordant)
                  + z_beta * np.sqrt(p_discordant - effect**2)) ** 2 / effect**2)


def _check_mcnemar(p_discordant: float, effect: float) -> None:
    if not 0 < p_discordant <= 1:
        raise ValueError(f"p_discordant must be in (0, 1], got {p_discordant}")
    if abs(effect) > p_discordant:
        raise ValueError(f"|effect| = {abs(effect)} cannot exceed p_discordant = {p_discordant}")


# ----------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class PowerPlan:
    """A design (questions × seeds) and the power of the planned test at ``effect``.

    ``sd_question``: SD of one question's mean difference over its seeds (t-test) or of one
    row's difference (McNemar); ``design_effect``: variance of the mean of the ``n_rows``
    clustered rows over that of as many independent rows.
    """

    mode: str
    test: str
    effect: float
    alpha: float
    power: float
    n_questions: int
    n_seeds: int
    n_rows: int
    sd_question: float
    design_effect: float


def _uses_mcnemar(n_seeds: int, binary: bool) -> bool:
    return binary and n_seeds == 1


def _p_discordant(components: VarianceComponents, mode: str) -> float:
    # For differences in {-1, 0, 1}: E[D^2] = P(D != 0) = Var(D) + E[D]^2.
    return components.total(mode) + components.effect**2


def _check(mode: str, n_seeds: int, alpha: float, power: float | None = None) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if int(n_seeds) != n_seeds or n_seeds < 1:
        raise ValueError(f"n_seeds must be a positive integer, got {n_seeds}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if power is not None and not alpha < power < 1:
        raise ValueError(f"power must be in (alpha, 1), got {power}")


def power_mean_difference(components: VarianceComponents, effect: float, n_questions: int,
                          n_seeds: int = 1, *, mode: str = "coupled", alpha: float = 0.05,
                          binary: bool = False) -> float:
    """Power to detect a mean difference ``effect`` with ``n_questions`` × ``n_seeds``."""
    _check(mode, n_seeds, alpha)
    if n_questions < 2:
        raise ValueError(f"n_questions must be at least 2, got {n_questions}")
    if _uses_mcnemar(n_seeds, binary):
        return mcnemar_power(_p_discordant(components, mode), effect, n_questions, alpha)
    sd = np.sqrt(components.per_question_variance(mode, n_seeds))
    if sd == 0:
        return 1.0 if effect != 0 else alpha
    return float(_T_POWER.power(effect_size=abs(effect) / sd, nobs=n_questions, alpha=alpha,
                                alternative="two-sided"))


def questions_needed(components: VarianceComponents, effect: float, *, n_seeds: int = 1,
                     mode: str = "coupled", power: float = 0.8, alpha: float = 0.05,
                     binary: bool = False) -> PowerPlan:
    """Smallest number of questions (with ``n_seeds`` seeds each) reaching ``power``."""
    _check(mode, n_seeds, alpha, power)
    if effect == 0:
        raise ValueError("effect must be non-zero to plan for power")
    mcnemar_test = _uses_mcnemar(n_seeds, binary)
    sd = np.sqrt(components.per_question_variance(mode, n_seeds))
    if mcnemar_test:
        n = mcnemar_sample_size(_p_discordant(components, mode), effect, power, alpha)
    elif sd == 0:
        n = 2.0
    else:
        n = _T_POWER.solve_power(effect_size=abs(effect) / sd, nobs=None, alpha=alpha,
                                 power=power, alternative="two-sided")
    n_questions = int(max(2, np.ceil(float(np.squeeze(n)) - 1e-9)))
    if n_questions > _MAX_QUESTIONS:
        raise ValueError(f"effect {effect} needs over {_MAX_QUESTIONS} questions: too small to "
                         "detect at this variance")
    achieved = power_mean_difference(components, effect, n_questions, n_seeds, mode=mode,
                                     alpha=alpha, binary=binary)
    return PowerPlan(mode=mode, test="mcnemar" if mcnemar_test else "t-test", effect=effect,
                     alpha=alpha, power=achieved, n_questions=n_questions, n_seeds=n_seeds,
                     n_rows=n_questions * n_seeds, sd_question=float(sd),
                     design_effect=components.design_effect(mode, n_seeds))


def minimum_detectable_effect(components: VarianceComponents, n_questions: int,
                              n_seeds: int = 1, *, mode: str = "coupled", power: float = 0.8,
                              alpha: float = 0.05, binary: bool = False) -> float:
    """Smallest |mean difference| detected with ``power`` by ``n_questions`` × ``n_seeds``."""
    _check(mode, n_seeds, alpha, power)
    if n_questions < 2:
        raise ValueError(f"n_questions must be at least 2, got {n_questions}")
    if _uses_mcnemar(n_seeds, binary):
        psi = _p_discordant(components, mode)
        # Connor's power rises monotonically in |effect| on (0, psi): a root-finder suffices.
        if mcnemar_power(psi, psi, n_questions, alpha) < power:
            return float(psi)
        return float(optimize.brentq(
            lambda d: mcnemar_power(psi, d, n_questions, alpha) - power, 1e-12, psi))
    sd = np.sqrt(components.per_question_variance(mode, n_seeds))
    d = _T_POWER.solve_power(effect_size=None, nobs=n_questions, alpha=alpha, power=power,
                             alternative="two-sided")
    return float(np.squeeze(d)) * float(sd)


def plan_mean_difference(components: VarianceComponents, effect: float | None = None, *,
                         seeds: tuple[int, ...] = (1, 2, 5, 10), power: float = 0.8,
                         alpha: float = 0.05, budget_questions: int | None = None,
                         binary: bool = False) -> pd.DataFrame:
    """Coupled vs independent plans, one row per (mode, seeds per question).

    With ``effect``: the :class:`PowerPlan` columns (questions needed). With
    ``budget_questions``: ``mde``, the minimum detectable effect at that many questions.
    """
    if effect is None and budget_questions is None:
        raise ValueError("give effect (to size a design) or budget_questions (for the MDE)")
    rows = []
    for mode in MODES:
        for n_seeds in seeds:
            row: dict = {"mode": mode, "n_seeds": n_seeds}
            if effect is not None:
                row.update(asdict(questions_needed(components, effect, n_seeds=n_seeds,
                                                   mode=mode, power=power, alpha=alpha,
                                                   binary=binary)))
            if budget_questions is not None:
                row["budget_questions"] = budget_questions
                row["mde"] = minimum_detectable_effect(components, budget_questions, n_seeds,
                                                       mode=mode, power=power, alpha=alpha,
                                                       binary=binary)
            rows.append(row)
    return pd.DataFrame(rows)
