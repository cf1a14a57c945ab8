"""Planning pairwise evaluations: how many questions x seeds separate two models' average
win-rates (or one pair's win-rate from an even split), with power 1 - beta at level alpha,
coupled vs independent generation.

The statistic is linear in the directed win-rates, so per question it is the mean over seeds of a
per-(question, seed) contribution ``L``; with ``s`` seeds per question its per-question variance is
``sigma_between^2 + sigma_within^2 / s`` (variance components: the spread of questions' expected
contributions, and the seed-to-seed spread inside a question). The two-sided z-test on ``Q``
questions then needs ``Q`` with ``sqrt(Q) * delta / sd(s)`` at the usual power equation, solved by
statsmodels' ``TTestPower`` (one-sample t: the test refers the clustered z to t with
questions - 1 degrees of freedom).

Targets: ``"average"`` — ``A_i - A_j`` (average win-rates, ties are not wins); ``"pairwise"`` —
``P(i beats j) - P(j beats i)``, i.e. the pair's win-rate with ties split evenly against 1/2.

Sources of the variance components:
* assumptions — the canonical two-outcome family (per prompt type, each model's probability of
  the preferred answer, optionally a noisy judge), computed exactly: the coupled joint law of all
  models is comonotone (``k + 1`` segments of the shared uniform), the independent one a product
  (``2^k`` patterns, so ``k <= 12``);
* a pilot comparisons table — prompt-clustered and (prompt, seed)-clustered variances of the same
  estimator give the two components (needs >= 2 seeds per question in the pilot).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from itertools import product

import numpy as np
import pandas as pd
from statsmodels.stats.power import TTestPower

from coupled.analysis.pairwise import (
    average_win_rate_map,
    average_win_rates_from_counts,
    clustered_variance,
    load_comparisons,
    models_from_pairs,
    pair_counts,
    pair_indices,
    pair_rates_from_counts,
    two_sided_pvalue,
    z_statistic,
)

__all__ = ["SeparationTest", "WinRateSeparationPlan", "WinRateVarianceComponents",
           "plan_win_rate_separation", "separation_coefficients", "separation_test_from_counts",
           "variance_components_from_assumptions", "variance_components_from_pilot"]

_MAX_ENUMERATED_MODELS = 12


@dataclass(frozen=True)
class WinRateVarianceComponents:
    """Per-question variance of the separation statistic: ``between + within / seeds``."""

    delta: float      # expected separation (the effect)
    between: float
    within: float

    def per_question_sd(self, n_seeds: int) -> float:
        return math.sqrt(max(self.between + self.within / n_seeds, 0.0))


@dataclass(frozen=True)
class WinRateSeparationPlan:
    target: str
    model: str | int
    opponent: str | int
    effect_coupled: float          # the separation each mode's plan is for
    effect_independent: float
    alpha: float
    power: float
    n_seeds: int
    sd_coupled: float              # per-question sd with n_seeds seeds
    sd_independent: float
    n_questions_coupled: int | None
    n_questions_independent: int | None
    saving: float                  # 1 - coupled / independent questions needed (NaN if unknown)
    budget: int | None = None      # questions available, when a detectable effect was asked for
    mde_coupled: float = float("nan")       # smallest separation detected with that budget
    mde_independent: float = float("nan")


def separation_coefficients(k: int, i: int, j: int, target: str = "average"
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``(alpha_p, beta_p)`` ``[P]`` so that the separation is
    ``sum_p alpha_p P(model_a of p wins) + beta_p P(model_b of p wins)``."""
    if not (0 <= i < k and 0 <= j < k) or i == j:
        raise ValueError(f"models must be two distinct indices in [0, {k}), got {i}, {j}")
    if target == "average":
        first, second = average_win_rate_map(k)
        return first[i] - first[j], second[i] - second[j]
    if target == "pairwise":
        ia, ib = pair_indices(k)
        coef_a, coef_b = np.zeros(len(ia)), np.zeros(len(ia))
        p = int(np.flatnonzero((ia == min(i, j)) & (ib == max(i, j)))[0])
        sign = 1.0 if i < j else -1.0
        coef_a[p], coef_b[p] = sign, -sign
        return coef_a, coef_b
    raise ValueError(f"target must be 'average' or 'pairwise', got {target!r}")


def _patterns(probs: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Correctness patterns of all models and their probabilities on every prompt type:
    ``[T, n, k]`` and ``[T, n]`` (coupled: ``n = k + 1``), or ``[n, k]`` shared by all types and
    ``[T, n]`` (independent: ``n = 2^k``)."""
    k = probs.shape[1]
    if mode == "coupled":
        # correct_m = U < p_m: constant between consecutive sorted probabilities.
        zeros, ones = np.zeros((len(probs), 1)), np.ones((len(probs), 1))
        cuts = np.concatenate([zeros, np.sort(probs, axis=1), ones], axis=1)
        middle = (cuts[:, :-1] + cuts[:, 1:]) / 2
        return middle[:, :, None] < probs[:, None, :], np.diff(cuts, axis=1)
    if mode == "independent":
        if k > _MAX_ENUMERATED_MODELS:
            raise ValueError(f"independent planning from assumptions enumerates 2^k patterns; "
                             f"k = {k} > {_MAX_ENUMERATED_MODELS}")
        pattern = np.array(list(product((False, True), repeat=k)))
        weight = np.where(pattern[None], probs[:, None, :], 1 - probs[:, None, :]).prod(axis=2)
        return pattern, weight
    raise ValueError(f"mode must be 'coupled' or 'independent', got {mode!r}")


def variance_components_from_assumptions(prompt_probs: np.ndarray, i: int, j: int, mode: str,
                                         target: str = "average", judge_noise: float = 0.0
                                         ) -> WinRateVarianceComponents:
    """Exact variance components of the separation of models ``i, j`` in the canonical
    two-outcome family (prompt types drawn uniformly; see :mod:`pairwise_simulation`)."""
    probs = np.asarray(prompt_probs, dtype=float)
    if probs.ndim != 2 or probs.shape[1] < 2 or np.any((probs < 0) | (probs > 1)):
        raise ValueError("prompt_probs must be a [types, models] array of probabilities")
    if not 0 <= judge_noise <= 1:
        raise ValueError(f"judge_noise must be in [0, 1], got {judge_noise}")
    k = probs.shape[1]
    coef_a, coef_b = separation_coefficients(k, i, j, target)
    ia, ib = pair_indices(k)
    pattern, weight = _patterns(probs, mode)
    ca, cb = pattern[..., ia], pattern[..., ib]
    # Given the pattern, each pair's judged outcome is independent (judge noise per pair), and
    # the outcomes of one pair are mutually exclusive: Var(a X_a + b X_b) per pair, summed.
    pa = (1 - judge_noise) * (ca & ~cb) + judge_noise / 2
    pb = (1 - judge_noise) * (cb & ~ca) + judge_noise / 2
    mean_given = pa @ coef_a + pb @ coef_b                              # [(T,) n]
    var_given = (coef_a ** 2 * pa + coef_b ** 2 * pb - (coef_a * pa + coef_b * pb) ** 2).sum(-1)
    means = (weight * mean_given).sum(axis=1)                           # [T]
    variances = (weight * (var_given + (mean_given - means[:, None]) ** 2)).sum(axis=1)
    return WinRateVarianceComponents(delta=float(means.mean()), between=float(means.var()),
                                     within=float(variances.mean()))


@dataclass(frozen=True)
class SeparationTest:
    """Estimated separation ``[R]``, its prompt-clustered standard error and two-sided p-value."""

    estimate: np.ndarray
    se: np.ndarray
    pvalue: np.ndarray


def separation_test_from_counts(wins_a: np.ndarray, wins_b: np.ndarray, n: np.ndarray,
                                i: int, j: int, target: str = "average") -> SeparationTest:
    """The z-test the plan is for, on counts ``[R, Q, P]`` (clusters along ``Q``)."""
    rates = pair_rates_from_counts(wins_a, wins_b, n)
    coef_a, coef_b = separation_coefficients(models_from_pairs(rates.win_a.shape[-1]), i, j,
                                             target)
    if target == "average":
        average_win_rates_from_counts(wins_a, wins_b, n, rates)   # checks every pair compared
    estimate = rates.win_a @ coef_a + rates.win_b @ coef_b
    influence = (rates.if_a @ coef_a + rates.if_b @ coef_b)[..., None]
    se = np.sqrt(clustered_variance(influence, rates.n_clusters))[:, 0]
    return SeparationTest(estimate, se, two_sided_pvalue(z_statistic(estimate, se), rates.n_clusters - 1))


def variance_components_from_pilot(comparisons: pd.DataFrame | str | os.PathLike, model: str,
                                   opponent: str, mode: str, coupling: str | None = None,
                                   target: str = "average") -> WinRateVarianceComponents:
    """Variance components from a pilot: with ``Q`` questions and ``s`` seeds on average,
    ``Q Var_prompt = between + within / s`` and ``Q s Var_row = between + within`` (the same
    estimator's variance clustered by question and by (question, seed))."""
    data, _ = load_comparisons(comparisons)
    components = _pilot_components(data, model, opponent, mode, coupling, target)
    if components is None:
        raise ValueError(f"pilot: no comparisons with mode {mode!r}"
                         + (f" and coupling {coupling!r}" if coupling else ""))
    return components


def _pilot_components(data: pd.DataFrame, model: str, opponent: str, mode: str,
                      coupling: str | None, target: str) -> WinRateVarianceComponents | None:
    """:func:`variance_components_from_pilot` of a validated table; None when it holds no
    comparisons of ``mode`` (and ``coupling``)."""
    data = data[data["mode"] == mode]
    if coupling is not None:
        data = data[data["coupling"] == coupling]
    if data.empty:
        return None
    if data["coupling"].nunique() > 1:
        raise ValueError(f"pilot: mode {mode!r} has several couplings "
                         f"{sorted(data['coupling'].unique())}; pass coupling=")
    models = sorted(set(data["model_a"]) | set(data["model_b"]))
    for name in (model, opponent):
        if name not in models:
            raise ValueError(f"pilot: model {name!r} not among {models}")
    i, j = models.index(model), models.index(opponent)
    by_prompt = pair_counts(data, models)
    by_row = pair_counts(data, models, cluster_by=("task", "prompt_id", "seed"))
    test_prompt = separation_test_from_counts(by_prompt.wins_a, by_prompt.wins_b, by_prompt.n,
                                              i, j, target)
    test_row = separation_test_from_counts(by_row.wins_a, by_row.wins_b, by_row.n, i, j, target)
    n_questions = len(by_prompt.prompts)
    seeds = len(by_row.prompts) / n_questions
    if seeds < 1.5:
        raise ValueError("pilot: needs at least 2 seeds per question on average to separate "
                         "within- from between-question variance (found "
                         f"{seeds:.2f}); re-run the pilot with more seeds")
    var_prompt = n_questions * float(test_prompt.se[0]) ** 2
    var_row = n_questions * seeds * float(test_row.se[0]) ** 2
    within = max((var_row - var_prompt) / (1 - 1 / seeds), 0.0)
    between = max(var_prompt - within / seeds, 0.0)
    return WinRateVarianceComponents(delta=float(test_prompt.estimate[0]), between=between,
                                     within=within)


def _questions_needed(effect: float, sd: float, alpha: float, power: float) -> int | None:
    if not np.isfinite(sd) or effect == 0:
        return None
    if sd == 0:
        return 2          # a deterministic difference: the smallest clustered design
    n = TTestPower().solve_power(effect_size=abs(effect) / sd, alpha=alpha, power=power,
                                 alternative="two-sided")
    return max(2, math.ceil(n))


def _minimum_detectable(sd: float, n_questions: int, alpha: float, power: float) -> float:
    if not np.isfinite(sd):
        return float("nan")
    effect_size = TTestPower().solve_power(nobs=n_questions, alpha=alpha, power=power,
                                           alternative="two-sided")
    return float(effect_size) * sd


def plan_win_rate_separation(*, model: str | int = 0, opponent: str | int = 1,
                             target: str = "average", effect: float | None = None,
                             n_seeds: int = 1, alpha: float = 0.05, power: float = 0.8,
                             prompt_probs: np.ndarray | None = None, judge_noise: float = 0.0,
                             pilot: pd.DataFrame | str | os.PathLike | None = None,
                             coupling: str | None = None, budget: int | None = None
                             ) -> WinRateSeparationPlan:
    """Questions needed (with ``n_seeds`` seeds each) to separate ``model`` from ``opponent``,
    and with ``budget`` questions the smallest separation detectable in each mode.

    Give either ``prompt_probs`` ([types, models] probabilities of the preferred answer; models
    are then column indices) or a ``pilot`` comparisons table (models by name; a mode absent from
    the pilot gives ``None`` for it). ``effect`` defaults to the separation implied by the source
    in each mode (the modes' win-rates differ, Props. 4-5, so each mode is planned for its own)."""
    if (prompt_probs is None) == (pilot is None):
        raise ValueError("give exactly one of prompt_probs= (assumptions) or pilot= (a table)")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha}, {power}")
    if int(n_seeds) != n_seeds or n_seeds < 1:
        raise ValueError(f"n_seeds must be a positive integer, got {n_seeds}")
    if budget is not None and (int(budget) != budget or budget < 2):
        raise ValueError(f"budget must be an integer number of questions >= 2, got {budget}")
    # The pilot is read and validated once for both modes; a mode it lacks gets None.
    pilot_data = load_comparisons(pilot)[0] if pilot is not None else None
    components: dict[str, WinRateVarianceComponents | None] = {}
    for mode in ("coupled", "independent"):
        if prompt_probs is not None:
            components[mode] = variance_components_from_assumptions(
                prompt_probs, int(model), int(opponent), mode, target, judge_noise)
        else:
            components[mode] = _pilot_components(pilot_data, str(model), str(opponent), mode,
                                                 coupling, target)
    known = [c for c in components.values() if c is not None]
    if not known:
        raise ValueError("pilot: holds neither coupled nor independent comparisons")
    sds, effects, needed = {}, {}, {}
    for mode, comp in components.items():
        sds[mode] = comp.per_question_sd(n_seeds) if comp else float("nan")
        effects[mode] = float(effect) if effect is not None else (comp.delta if comp
                                                                   else float("nan"))
        needed[mode] = _questions_needed(effects[mode], sds[mode], alpha, power) if comp else None
    saving = (1 - needed["coupled"] / needed["independent"]
              if needed["coupled"] and needed["independent"] else float("nan"))
    return WinRateSeparationPlan(target=target, model=model, opponent=opponent,
                                 effect_coupled=effects["coupled"],
                                 effect_independent=effects["independent"],
                                 alpha=alpha, power=power,
                                 n_seeds=int(n_seeds), sd_coupled=sds["coupled"],
                                 sd_independent=sds["independent"],
                                 n_questions_coupled=needed["coupled"],
                                 n_questions_independent=needed["independent"], saving=saving,
                                 budget=None if budget is None else int(budget),
                                 **{f"mde_{mode}": (_minimum_detectable(sds[mode], int(budget),
                                                                        alpha, power)
                                                    if budget is not None else float("nan"))
                                    for mode in ("coupled", "independent")})
