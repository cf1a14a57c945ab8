"""Planning a benchmark comparison: questions × seeds for a target power, and detectable effects.

The test planned for is the one :func:`coupled.analysis.benchmark.mean_difference` runs, and
power is computed for *that* test, not a textbook approximation of it:

* one seed per question, binary scores: the uncorrected McNemar test (the inversion of Tango's
  interval). Rows are i.i.d. trinomial, so its power is computed **exactly** by summing over
  the discordant count (:func:`mcnemar_power_exact`); Connor's (1987) normal formula
  (:func:`mcnemar_power`) only seeds the search, and stands in above 20 000 pairs where the two
  agree.
* several seeds (or graded scores): the clustered score test on effective counts
  (``coupled.analysis.intervals.score_test``). When the components carry a per-question law
  of a binary row (from accuracies or next-token distributions) its power is **simulated**
  through the same ``score_test`` function (seeded, 2000 replicates, Monte-Carlo SE <= 1.1
  points); the noncentral-t approximation (a question's mean over ``S`` seeds has variance
  ``between + within_mode / S``; critical value raised by the score test's factor
  ``1 / sqrt(1 - delta^2 / E[D^2])``) is used otherwise and reported as such
  (``power_method``). The noncentral t alone over-promised by 14 points on sparse coupled
  differences (issue 11: planned 80 %, achieved 93.6 % — the sample SD of mostly-zero
  question means is skewed low), which is why the law is simulated when it is known.

Variance components come from assumptions (per-question correct-answer probabilities of the
two models and, for coupled mode, the probability both are right — or the models' next-token
distributions, through ``coupled.theory``'s exact joint laws; the default ``min(p_a, p_b)`` is
the comonotone joint of any counterfactually stable sampler with two outcomes, DESIGN §1;
:func:`plan_from_accuracies` reports the honest range when ``p_both`` is unknown) or from a
pilot ``scores`` table (method of moments, :func:`coupled.analysis._clustered.variance_components`;
the independent within variance from a coupled pilot is ``Var(R_a) + Var(R_b)``). A pilot's
coupled variance is raised to what the one-sided upper confidence bound of its discordance
``E[(R_a - R_b)^2]`` allows, so a pilot that saw few or no disagreements plans conservatively
instead of from a zero variance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

from coupled.analysis._clustered import VarianceComponents, question_moments, variance_components
from coupled.analysis.accuracy import score_interval
from coupled.analysis.benchmark import paired_arrays
from coupled.analysis.intervals import QuestionSummaries, score_test
from coupled.tables import MODES, read_scores

_MAX_QUESTIONS = 10**8
# Below this many differing paired rows a pilot's variance estimate is itself a rare-event
# count (its relative SE is over ~18 %): plan from its upper confidence bound instead.
FEW_DISCORDANT = 30
_EXACT_LIMIT = 20_000       # pairs up to which McNemar power is summed exactly
_SIMULATION_REPS = 2000     # replicates per simulated power (MC SE <= 1.1 points)
_SIMULATION_CELLS = 4_000_000
_SIMULATION_LIMIT = 20_000  # questions above which the normal approximation is used


def _finite(name: str, value) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: must be finite, got {value!r}")
    return array


# ----------------------------------------------------------------------------- components
@dataclass(frozen=True, eq=False)
class BinaryLaw:
    """Per-question law of one binary row's difference ``D = R_a - R_b`` in each mode:
    ``P(D = +1)`` and ``P(D = -1)`` for each question of the population (arrays ``(N,)``)."""

    plus_coupled: np.ndarray
    minus_coupled: np.ndarray
    plus_independent: np.ndarray
    minus_independent: np.ndarray

    def rates(self, mode: str) -> tuple[np.ndarray, np.ndarray]:
        if mode == "coupled":
            return self.plus_coupled, self.minus_coupled
        return self.plus_independent, self.minus_independent


def components_from_accuracies(p_a: np.ndarray, p_b: np.ndarray,
                               p_both_coupled: np.ndarray | None = None) -> VarianceComponents:
    """Variance components of binary scores from per-question probabilities of being right.

    ``p_a, p_b``: each model's probability of answering each question correctly (the questions
    stand for the population the benchmark samples from). ``p_both_coupled``: probability both
    are right under coupled generation (default ``min(p_a, p_b)``, the two-outcome
    counterfactually stable joint — the *best case*; :func:`plan_from_accuracies` gives the
    range when it is unknown). The components carry the per-question law, so plans from them
    simulate the power of the test actually run.
    """
    p_a = np.asarray(p_a, dtype=float)
    p_b = np.asarray(p_b, dtype=float)
    if p_a.shape != p_b.shape or p_a.ndim != 1 or len(p_a) == 0:
        raise ValueError("p_a and p_b must be non-empty 1-D arrays of the same length")
    for name, p in (("p_a", p_a), ("p_b", p_b)):
        if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
            raise ValueError(f"{name}: probabilities must be finite and lie in [0, 1]")
    both = np.minimum(p_a, p_b) if p_both_coupled is None else np.asarray(p_both_coupled, float)
    lower, upper = np.maximum(p_a + p_b - 1, 0), np.minimum(p_a, p_b)
    if (both.shape != p_a.shape or not np.all(np.isfinite(both))
            or np.any(both < lower - 1e-12) or np.any(both > upper + 1e-12)):
        raise ValueError("p_both_coupled: must have p_a's shape and lie within the Fréchet "
                         "bounds [max(p_a + p_b - 1, 0), min(p_a, p_b)]")
    both = np.clip(both, lower, upper)
    diff = p_a - p_b
    within_coupled = np.mean(p_a + p_b - 2 * both - diff**2)
    within_independent = np.mean(p_a * (1 - p_a) + p_b * (1 - p_b))
    law = BinaryLaw(plus_coupled=p_a - both, minus_coupled=p_b - both,
                    plus_independent=p_a * (1 - p_b), minus_independent=p_b * (1 - p_a))
    return VarianceComponents(effect=float(diff.mean()), between=float(diff.var()),
                              within_coupled=float(within_coupled),
                              within_independent=float(within_independent), law=law)


def components_from_distributions(dists_a: np.ndarray, dists_b: np.ndarray,
                                  correct: np.ndarray, coupling: str = "gumbel"
                                  ) -> VarianceComponents:
    """Variance components of binary scores from two models' next-token distributions.

    ``dists_a, dists_b``: ``(N, V)`` per question; ``correct``: ``(N,)`` index of the correct
    token or boolean ``(N, V)`` set of correct tokens. The coupled joint law is
    ``coupled.theory.joint`` for ``coupling`` (``"gumbel"`` or ``"inverse_cdf"``).
    """
    from coupled.theory import joint

    dists_a = _finite("dists_a", dists_a)
    dists_b = _finite("dists_b", dists_b)
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


def components_from_pilot(scores, model_a: str, model_b: str, *, coupling: str | None = None,
                          confidence: float | None = 0.95) -> VarianceComponents:
    """Variance components estimated from a pilot ``scores`` table (needs ≥ 2 seeds on some
    questions). Coupled rows give both within variances; independent rows, when present, give
    the independent one directly. Without coupled rows, the coupled within variance is unknown
    and set to the independent one (no assumed gain).

    ``confidence``: when fewer than ``FEW_DISCORDANT`` (30) paired coupled rows differ, the
    pilot's coupled row variance is raised, where it falls short, to
    ``u - effect^2`` with ``u`` the one-sided ``confidence`` upper bound of a row's
    ``E[(R_a - R_b)^2]`` — the discordance, for binary scores — (question-clustered score
    bound: ``model_scores``' interval on ``D^2``): a pilot that saw no or few disagreements
    plans from what it cannot rule out, never from a zero variance (``note`` says when).
    ``None`` uses the point estimates.
    """
    if confidence is not None and not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1) or None, got {confidence}")
    scores = read_scores(scores)
    modes = set(scores["mode"])
    results, upper = {}, {}
    for mode in MODES:
        if mode not in modes:
            continue
        a, b, mask, _ = paired_arrays(scores, model_a, model_b, mode, coupling)
        m = question_moments(a, b, mask)
        if not np.any(m.has_spread):
            raise ValueError(f"scores: the {mode} pilot has one seed per question; within-"
                             "question variances need at least 2 seeds on some questions")
        if int(m.present.sum()) < 5:
            raise ValueError(f"scores: the {mode} pilot has {int(m.present.sum())} questions "
                             f"with paired rows of {model_a!r} and {model_b!r}; a plan needs "
                             "a pilot of at least 5 questions")
        between, within = variance_components(m.mean_diff, m.var_diff, m.n, m.present,
                                              m.has_spread)
        _, within_if_ind = variance_components(m.mean_diff, m.var_diff_if_independent, m.n,
                                               m.present, m.has_spread)
        results[mode] = (float(m.mean_diff.mean()), float(between), float(within),
                         float(within_if_ind))
        if confidence is not None:
            # one-sided upper bound of a row's E[D^2] (= the discordance for binary scores),
            # D^2 rescaled into [0, 1] before the score interval
            squared = np.where(mask, (a - b) ** 2, 0.0)
            scale = max(1.0, float(squared.max()))
            bound = score_interval(squared / scale, mask, alpha=2 * (1 - confidence))
            upper[mode] = (float(bound.ci_high) * scale, int(((a != b) & mask).sum()),
                           int(mask.sum()))
    source = results.get("coupled", results.get("independent"))
    if source is None:
        raise ValueError("scores: the pilot has no rows in either mode")
    effect, between, within, within_if_ind = source
    within_coupled = within if "coupled" in results else results["independent"][2]
    within_independent = results["independent"][2] if "independent" in results \
        else within_if_ind
    note = ""
    if "coupled" in upper:
        bound, discordant, rows = upper["coupled"]
        allowed = bound - effect**2  # the row variance the bound on E[D^2] allows
        if discordant < FEW_DISCORDANT and between + within_coupled < allowed:
            within_coupled = allowed - between
            note = (f"coupled pilot: {discordant} of {rows} paired rows differ; planned from "
                    f"the {confidence:.0%} upper bound of the discordance, not the point "
                    "estimate")
    return VarianceComponents(effect=effect, between=between, within_coupled=within_coupled,
                              within_independent=within_independent, note=note)


# ----------------------------------------------------------------------------- McNemar
# Connor (1987), "Sample size for testing differences in proportions for the paired-sample
# design", Biometrics 43:207-211. No library implements McNemar power, so it is written here
# (and tested against simulated McNemar tests in tests/test_planning.py).
def mcnemar_power(p_discordant: float, effect: float, n_pairs: float,
                  alpha: float = 0.05) -> float:
    """Power of the two-sided McNemar test with ``n_pairs`` pairs (Connor 1987's normal
    approximation; :func:`mcnemar_power_exact` is what the planners use).

    ``p_discordant``: P(the two models disagree) per pair; ``effect``: P(a right, b wrong) -
    P(a wrong, b right) (the difference in accuracy).
    """
    p_discordant, effect = _check_mcnemar(p_discordant, effect)
    if effect == 0:
        return alpha
    z = stats.norm.ppf(1 - alpha / 2)
    spread = np.sqrt(max(p_discordant - effect**2, 0.0))
    if spread == 0:
        return 1.0
    return float(stats.norm.cdf((np.sqrt(n_pairs) * abs(effect) - z * np.sqrt(p_discordant))
                                / spread))


def mcnemar_power_exact(p_discordant: float, effect: float, n_pairs: int,
                        alpha: float = 0.05) -> float:
    """Exact power of the uncorrected two-sided McNemar z test (the test
    :func:`~coupled.analysis.benchmark.mean_difference` runs with one binary seed) on
    ``n_pairs`` i.i.d. pairs: the sum over the discordant count ``k ~ Bin(n, psi)`` of
    ``P(|2 b - k| > z sqrt(k))`` with ``b ~ Bin(k, p10 / psi)``. O(n); written here because no
    library has McNemar power."""
    p_discordant, effect = _check_mcnemar(p_discordant, effect)
    n = int(n_pairs)
    if n < 1:
        raise ValueError(f"n_pairs must be at least 1, got {n_pairs}")
    z = stats.norm.isf(alpha / 2)
    k = np.arange(1, n + 1)
    share = (p_discordant + effect) / (2 * p_discordant)  # P(b | discordant)
    upper = np.floor((k + z * np.sqrt(k)) / 2)
    lower = np.ceil((k - z * np.sqrt(k)) / 2) - 1
    reject = stats.binom.sf(upper, k, share) + stats.binom.cdf(lower, k, share)
    return float(np.sum(stats.binom.pmf(k, n, p_discordant) * reject))


def mcnemar_sample_size(p_discordant: float, effect: float, power: float = 0.8,
                        alpha: float = 0.05) -> float:
    """Pairs needed for McNemar's test to reach ``power`` (Connor 1987), not rounded."""
    p_discordant, effect = _check_mcnemar(p_discordant, effect)
    if effect == 0:
        raise ValueError("effect must be non-zero to plan for power")
    z_alpha, z_beta = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    return float((z_alpha * np.sqrt(p_discordant)
                  + z_beta * np.sqrt(max(p_discordant - effect**2, 0.0))) ** 2 / effect**2)


def _check_mcnemar(p_discordant: float, effect: float) -> tuple[float, float]:
    p_discordant = float(_finite("p_discordant", p_discordant))
    effect = float(_finite("effect", effect))
    if not 0 < p_discordant <= 1:
        raise ValueError(f"p_discordant must be in (0, 1], got {p_discordant}")
    # |effect| = p_discordant exactly is valid (one model never wins); components computed
    # through sums of squares land a few ulps either side, so equality is judged with slack.
    if abs(effect) > p_discordant * (1 + 1e-9) + 1e-15:
        raise ValueError(f"|effect| = {abs(effect)} cannot exceed p_discordant = {p_discordant}")
    return p_discordant, float(np.clip(effect, -p_discordant, p_discordant))


# ----------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class PowerPlan:
    """A design (questions × seeds) and the power of the planned test at ``effect``.

    ``sd_question``: SD of one question's mean difference over its seeds (t-test) or of one
    row's difference (McNemar); ``design_effect``: variance of the mean of the ``n_rows``
    clustered rows over that of as many independent rows; ``power_method``: ``"exact"``
    (McNemar, summed), ``"simulated"`` (the score test on the components' per-question law,
    2000 seeded replicates) or ``"normal approximation"``.
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
    power_method: str = ""


def _uses_mcnemar(n_seeds: int, binary: bool) -> bool:
    return binary and n_seeds == 1


def _p_discordant(components: VarianceComponents, mode: str) -> float:
    # For differences in {-1, 0, 1}: E[D^2] = P(D != 0) = Var(D) + E[D]^2.
    return components.total(mode) + components.effect**2


def _check(mode: str, n_seeds: int, alpha: float, power: float | None = None,
           components: VarianceComponents | None = None, effect: float | None = None) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not np.isfinite(n_seeds) or int(n_seeds) != n_seeds or n_seeds < 1:
        raise ValueError(f"n_seeds must be a positive integer, got {n_seeds}")
    if not (np.isfinite(alpha) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if power is not None and not (np.isfinite(power) and alpha < power < 1):
        raise ValueError(f"power must be in (alpha, 1), got {power}")
    if effect is not None:
        _finite("effect", effect)
        if abs(effect) > 2:
            raise ValueError(f"effect: {effect} is outside the possible range of a mean "
                             "difference of scores in [0, 1]")
    if components is not None:
        values = [components.effect, components.between, components.within_coupled,
                  components.within_independent]
        if not np.all(np.isfinite(values)) or min(values[1:]) < 0:
            raise ValueError(f"components: effect and variances must be finite and the "
                             f"variances non-negative, got {components.summary()}")


def _uses_law(components: VarianceComponents, effect: float, binary: bool) -> bool:
    return (components.law is not None and binary
            and abs(effect - components.effect) <= 1e-9 * max(1.0, abs(effect)))


def _simulated_power(law: BinaryLaw, mode: str, n_questions: int, n_seeds: int,
                     alpha: float, seed: int = 0) -> float:
    """Rejection rate of ``mean_difference``'s test on designs drawn from the law (seeded:
    common random numbers across sizes keep the search for a size monotone)."""
    rng = np.random.default_rng(seed)
    plus_rate, minus_rate = law.rates(mode)
    chunk = max(1, _SIMULATION_CELLS // n_questions)
    rejected = 0
    for start in range(0, _SIMULATION_REPS, chunk):
        reps = min(chunk, _SIMULATION_REPS - start)
        index = rng.integers(0, len(plus_rate), size=(reps, n_questions))
        p, m = plus_rate[index], minus_rate[index]
        n_plus = rng.binomial(n_seeds, np.clip(p, 0, 1))
        left = np.clip(np.where(p < 1, m / np.maximum(1 - p, 1e-300), 0.0), 0, 1)
        n_minus = rng.binomial(n_seeds - n_plus, left)
        n = np.full(index.shape, float(n_seeds))
        summaries = QuestionSummaries(n=n, mean=(n_plus - n_minus) / n_seeds,
                                      plus=n_plus / n_seeds, minus=n_minus / n_seeds,
                                      second=(n_plus + n_minus) / n_seeds)
        rejected += int(np.sum(score_test(summaries, alpha, binary=True).pvalue < alpha))
    return rejected / _SIMULATION_REPS


def _approximate_power(components: VarianceComponents, effect: float, n_questions: int,
                       n_seeds: int, mode: str, alpha: float) -> float:
    """Noncentral-t power of the clustered score test: the statistic is the t statistic times
    ``sqrt(1 - d^2 / m)`` (``m = E[D^2]``), so its critical value is raised by that factor."""
    sd = np.sqrt(components.per_question_variance(mode, n_seeds))
    if sd == 0:
        raise ValueError("components: zero variance in mode "
                         f"{mode!r}; a plan needs a variance (from a pilot, its upper bound)")
    second = components.total(mode) + effect**2
    shrink = np.sqrt(max(1.0 - effect**2 / second, 1e-12)) if second > 0 else 1.0
    df = n_questions - 1
    critical = stats.t.isf(alpha / 2, df) / shrink
    centre = np.sqrt(n_questions) * abs(effect) / sd
    power = stats.nct.sf(critical, df, centre) + stats.nct.cdf(-critical, df, centre)
    if not np.isfinite(power):  # scipy's nct fails far in the tail: the normal limit there
        power = stats.norm.sf(critical - centre) + stats.norm.cdf(-critical - centre)
    return float(power)


def _power(components, effect, n_questions, n_seeds, mode, alpha, binary) -> tuple[float, str]:
    if effect == 0:
        return alpha, "exact"
    if _uses_mcnemar(n_seeds, binary):
        psi = _p_discordant(components, mode)
        if n_questions <= _EXACT_LIMIT:
            return mcnemar_power_exact(psi, effect, n_questions, alpha), "exact"
        return mcnemar_power(psi, effect, n_questions, alpha), "normal approximation"
    if _uses_law(components, effect, binary) and n_questions <= _SIMULATION_LIMIT:
        return (_simulated_power(components.law, mode, n_questions, n_seeds, alpha),
                "simulated")
    return (_approximate_power(components, effect, n_questions, n_seeds, mode, alpha),
            "normal approximation")


def power_mean_difference(components: VarianceComponents, effect: float, n_questions: int,
                          n_seeds: int = 1, *, mode: str = "coupled", alpha: float = 0.05,
                          binary: bool = False) -> float:
    """Power of ``mean_difference``'s test to detect ``effect`` with ``n_questions`` ×
    ``n_seeds`` (exact, simulated or approximated: see the module docstring)."""
    _check(mode, n_seeds, alpha, components=components, effect=effect)
    if int(n_questions) != n_questions or n_questions < 2:
        raise ValueError(f"n_questions must be an integer of at least 2, got {n_questions}")
    return _power(components, effect, int(n_questions), int(n_seeds), mode, alpha, binary)[0]


def _smallest_n(power_at, target: float, start: int) -> int:
    """Smallest n >= 2 with power_at(n) >= target, searching from ``start`` (power rises
    with n up to the sawtooth of discrete tests; the smallest size found is then checked
    against its neighbours below)."""
    low, high = 1, max(2, int(start))
    while power_at(high) < target:
        low, high = high, high * 2
        if high > _MAX_QUESTIONS:
            raise ValueError(f"needs over {_MAX_QUESTIONS} questions: effect too small to "
                             "detect at this variance")
    while high - low > 1:
        middle = (low + high) // 2
        if middle >= 2 and power_at(middle) >= target:
            high = middle
        else:
            low = middle
    return high


def questions_needed(components: VarianceComponents, effect: float, *, n_seeds: int = 1,
                     mode: str = "coupled", power: float = 0.8, alpha: float = 0.05,
                     binary: bool = False) -> PowerPlan:
    """Smallest number of questions (with ``n_seeds`` seeds each) reaching ``power`` for the
    test ``mean_difference`` runs; the reported power is that test's at the reported size."""
    _check(mode, n_seeds, alpha, power, components=components, effect=effect)
    if effect == 0:
        raise ValueError("effect must be non-zero to plan for power")
    n_seeds = int(n_seeds)
    mcnemar_test = _uses_mcnemar(n_seeds, binary)
    sd = np.sqrt(components.per_question_variance(mode, n_seeds))
    if mcnemar_test:
        start = mcnemar_sample_size(_p_discordant(components, mode), effect, power, alpha)
    else:
        if sd == 0:
            raise ValueError("components: zero variance in mode "
                             f"{mode!r}: no design can be planned from it (a pilot that saw no "
                             "disagreement plans from its upper bound; see components_from_pilot)")
        start = (stats.norm.isf(alpha / 2) + stats.norm.ppf(power)) ** 2 * sd**2 / effect**2
    start = int(min(max(2, np.ceil(start)), _MAX_QUESTIONS))
    cache: dict[int, tuple[float, str]] = {}

    def power_at(n: int) -> float:
        if n not in cache:
            cache[n] = _power(components, effect, n, n_seeds, mode, alpha, binary)
        return cache[n][0]

    n_questions = _smallest_n(power_at, power, start)
    achieved, method = cache[n_questions]
    return PowerPlan(mode=mode, test="mcnemar" if mcnemar_test else "clustered score test",
                     effect=effect, alpha=alpha, power=achieved, n_questions=n_questions,
                     n_seeds=n_seeds, n_rows=n_questions * n_seeds, sd_question=float(sd),
                     design_effect=components.design_effect(mode, n_seeds),
                     power_method=method)


def minimum_detectable_effect(components: VarianceComponents, n_questions: int,
                              n_seeds: int = 1, *, mode: str = "coupled", power: float = 0.8,
                              alpha: float = 0.05, binary: bool = False) -> float:
    """Smallest |mean difference| detected with ``power`` by ``n_questions`` × ``n_seeds``,
    holding the components' variance fixed. With one binary seed the discordance is held fixed
    and power is exact; an error (naming ``n_questions``) when no possible effect reaches
    ``power``, rather than a bound presented as an answer."""
    _check(mode, n_seeds, alpha, power, components=components)
    if int(n_questions) != n_questions or n_questions < 2:
        raise ValueError(f"n_questions must be an integer of at least 2, got {n_questions}")
    n_questions = int(n_questions)
    if _uses_mcnemar(n_seeds, binary):
        psi = _p_discordant(components, mode)
        if psi <= 0:
            raise ValueError("components: no discordance in mode "
                             f"{mode!r}; a plan needs a variance")

        def gap(d):
            return mcnemar_power_exact(psi, d, n_questions, alpha) - power
        largest = psi
    else:
        total = components.total(mode)
        if components.per_question_variance(mode, n_seeds) <= 0:
            raise ValueError(f"components: zero variance in mode {mode!r}; a plan needs one")

        def gap(d):
            return _approximate_power(components, d, n_questions, n_seeds, mode, alpha) - power
        # binary rows: E[D^2] = total + d^2 <= 1; graded the same bound
        largest = float(np.sqrt(max(1.0 - total, 0.0)))
    if largest <= 0 or gap(largest) < 0:
        raise ValueError(f"n_questions: {n_questions} questions × {n_seeds} seeds cannot reach "
                         f"power {power} in mode {mode!r} for any effect up to {largest:.3g}; "
                         "plan more questions")
    # Exact McNemar power is a sawtooth in d only through k's lattice; take the smallest d
    # at which the target is reached by bisection (tolerance 1e-7).
    return float(optimize.brentq(gap, 1e-9, largest, xtol=1e-9)) if gap(1e-9) < 0 else 1e-9


def plan_mean_difference(components: VarianceComponents, effect: float | None = None, *,
                         seeds: tuple[int, ...] = (1, 2, 5, 10), power: float = 0.8,
                         alpha: float = 0.05, budget_questions: int | None = None,
                         binary: bool = False) -> pd.DataFrame:
    """Coupled vs independent plans, one row per (mode, seeds per question).

    With ``effect``: the :class:`PowerPlan` columns (questions needed). With
    ``budget_questions``: ``mde``, the minimum detectable effect at that many questions
    (NaN where that budget reaches ``power`` for no effect, with ``mde_note`` saying so).
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
                try:
                    row["mde"] = minimum_detectable_effect(
                        components, budget_questions, n_seeds, mode=mode, power=power,
                        alpha=alpha, binary=binary)
                    row["mde_note"] = ""
                except ValueError as error:
                    if "cannot reach" not in str(error):
                        raise
                    row["mde"], row["mde_note"] = float("nan"), str(error)
            rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- no p_both
@dataclass(frozen=True)
class AccuracyPlanRange:
    """Plans from accuracies alone, at the three joints that bound what coupling can give.

    ``plans``: :func:`plan_mean_difference` rows with an ``assumption`` column:

    * ``"independence"`` — ``P(both right) = p q``: no saving; the worst case in general (any
      coupling may do no better).
    * ``"gumbel-single-token"`` — ``p q / (p + q - p q)``: the guaranteed lower bound on
      ``P(both right)`` under Gumbel-max when the answer is one token with a single correct
      token id (DESIGN §1; tight when the models' wrong-answer mass is disjoint). Not valid
      with several correct tokens (``" A"``, ``"A"``, ``"A."``: only ``p q`` is guaranteed)
      nor for multi-token replies — use a pilot (``--pilot``) there.
    * ``"comonotone"`` — ``min(p, q)``: the best case (perfectly coupled answers).

    ``labels``: one line per assumption, to print beside its rows.
    """

    plans: pd.DataFrame
    labels: dict


RANGE_LABELS = {
    "independence": "P(both) = pq: independence, no saving — the worst case in general",
    "gumbel-single-token": ("P(both) >= pq/(p+q-pq): guaranteed under Gumbel-max for a "
                            "one-token answer with a single correct token id (not with several "
                            "correct tokens or multi-token replies: use --pilot)"),
    "comonotone": "P(both) = min(p, q): comonotone, the best case",
}


def plan_from_accuracies(p_a: np.ndarray, p_b: np.ndarray, effect: float | None = None, *,
                         seeds: tuple[int, ...] = (1, 2, 5, 10), power: float = 0.8,
                         alpha: float = 0.05, budget_questions: int | None = None
                         ) -> AccuracyPlanRange:
    """Plans when only the two models' per-question accuracies are known (no ``p_both``).

    The coupled joint is unknown, so the coupled plan is given at three joints (see
    :class:`AccuracyPlanRange`): its honest range, from no saving to the best case. The
    independent rows do not depend on the joint and are the same in all three.
    """
    p_a = _finite("p_a", p_a)
    p_b = _finite("p_b", p_b)
    product = p_a * p_b
    with np.errstate(divide="ignore", invalid="ignore"):
        gumbel = np.where(p_a + p_b - product > 0, product / (p_a + p_b - product), 0.0)
    joints = {"independence": product, "gumbel-single-token": gumbel,
              "comonotone": np.minimum(p_a, p_b)}
    frames = []
    for name, both in joints.items():
        components = components_from_accuracies(p_a, p_b, both)
        frame = plan_mean_difference(components, effect if effect is not None
                                     else components.effect, seeds=seeds, power=power,
                                     alpha=alpha, budget_questions=budget_questions,
                                     binary=True)
        frames.append(frame.assign(assumption=name))
    plans = pd.concat(frames, ignore_index=True)
    return AccuracyPlanRange(plans=plans, labels=dict(RANGE_LABELS))
