"""coupled.analysis: paired estimates, tests, power planning and rank-sets from ``scores`` and
``comparisons`` tables (DESIGN §2-3), each interval's calibration proven by simulation in tests.

Benchmarks, from ``scores`` (``coupled.analysis.benchmark``)
    ``mean_difference(scores, model_a, model_b, mode)``  mean score difference, CI clustered by
        question, and the paired test the design allows (McNemar with one seed per question, a
        test on per-question means otherwise). -> ``MeanDifference``
    ``question_statistics(...)``     per-question covariance and variance of the difference
                                     (the data of Fig. 2a/2b).
    ``variance_reduction(...)``      Var_coupled / Var_independent with a jackknife CI over
                                     questions; the independent variance can come from coupled
                                     data alone. -> ``VarianceReduction``
    ``compare_models(scores)``       every pair, every mode, per subject. -> ``BenchmarkComparison``
    ``model_scores(scores)``         each model's mean score ± question-clustered score CI, per
                                     mode (``coupled.analysis.accuracy``; single-model tables too).

Error against number of samples (``coupled.analysis.errorcurve``)
    ``error_curve``, ``error_curves`` -> ``SampleSaving`` (Fig. 2c; by question and by row).

Planning (``coupled.analysis.planning``, ``coupled.analysis.pairwise_planning``)
    ``plan_mean_difference``, ``questions_needed``, ``minimum_detectable_effect``,
    ``power_mean_difference`` -> ``PowerPlan`` (power of the test actually run: exact McNemar,
    simulated, or approximated); ``plan_from_accuracies`` -> ``AccuracyPlanRange`` (no p_both:
    independence / Gumbel single-token bound / comonotone); ``mcnemar_power_exact``,
    ``mcnemar_power``, ``mcnemar_sample_size`` (Connor 1987); variance components ``components_from_accuracies``,
    ``components_from_distributions``, ``components_from_pilot``;
    ``plan_win_rate_separation`` -> ``WinRateSeparationPlan`` for two average win-rates.

Pairwise comparisons, from ``comparisons`` (``coupled.analysis.pairwise``)
    ``derive_comparisons(scores)``   comparisons implied by benchmark scores (a run with no judge).
    ``win_rate_matrix(comparisons)`` win / tie / loss per ordered pair with score-type CIs.
    ``average_win_rates(comparisons)``  each model's mean over opponents of P(beats opponent),
        CI clustered by prompt. -> ``AverageWinRates``
    ``compare_modes(comparisons)``   coupled vs independent win-rate per pair, z-test, Holm.

Bradley-Terry (``coupled.analysis.bradley_terry``)
    ``bradley_terry(comparisons)``  columns ``model, mode, bt_score, ci_low, ci_high, rank_low,
        rank_high`` (+ ``win_rate, tie_rate``): half-win Bradley-Terry scores (statsmodels
        binomial GLM), prompt-clustered CIs, rank-sets. -> ``BradleyTerryFit`` (array core);
        ``compare_modes_bradley_terry`` coupled vs independent; separation raises
        ``BradleyTerrySeparationError`` naming the models.

Rank-sets (``coupled.analysis.ranksets``)
    ``rank_sets(comparisons, alpha=0.05)``  columns ``model, mode, win_rate, ci_low, ci_high,
        rank_low, rank_high``: simultaneous (max-|t|) rank intervals, rank 1 the best;
        ``rank_set_label``, ``win_rate_label`` format them as the paper's Table 1 does.
"""

from coupled.analysis.accuracy import model_scores
from coupled.analysis.benchmark import (
    BenchmarkComparison,
    MeanDifference,
    VarianceReduction,
    compare_models,
    mean_difference,
    question_statistics,
    variance_reduction,
)
from coupled.analysis.bradley_terry import (
    BradleyTerryFit,
    BradleyTerrySeparationError,
    bradley_terry,
    compare_modes_bradley_terry,
)
from coupled.analysis.coupling_check import coupling_check, coupling_check_lines
from coupled.analysis.errorcurve import SampleSaving, error_curve, error_curves
from coupled.analysis.pairwise import (
    AverageWinRates,
    PairRates,
    adjust_pvalues,
    average_win_rates,
    compare_modes,
    derive_comparisons,
    load_comparisons,
    significance_stars,
    wilson_effective_ci,
    win_rate_matrix,
)
from coupled.analysis.pairwise_planning import (
    WinRateSeparationPlan,
    WinRateVarianceComponents,
    plan_win_rate_separation,
)
from coupled.analysis.planning import (
    PowerPlan,
    components_from_accuracies,
    components_from_distributions,
    components_from_pilot,
    mcnemar_power,
    mcnemar_power_exact,
    mcnemar_sample_size,
    minimum_detectable_effect,
    plan_from_accuracies,
    plan_mean_difference,
    power_mean_difference,
    questions_needed,
)
from coupled.analysis.ranksets import (
    RankSets,
    rank_set_label,
    rank_sets,
    rank_sets_from_estimates,
    win_rate_label,
)

__all__ = [
    "AverageWinRates",
    "BenchmarkComparison",
    "BradleyTerryFit",
    "BradleyTerrySeparationError",
    "MeanDifference",
    "PairRates",
    "PowerPlan",
    "RankSets",
    "SampleSaving",
    "VarianceReduction",
    "WinRateSeparationPlan",
    "WinRateVarianceComponents",
    "adjust_pvalues",
    "average_win_rates",
    "bradley_terry",
    "compare_models",
    "compare_modes",
    "compare_modes_bradley_terry",
    "components_from_accuracies",
    "components_from_distributions",
    "components_from_pilot",
    "derive_comparisons",
    "error_curve",
    "error_curves",
    "load_comparisons",
    "mcnemar_power",
    "mcnemar_power_exact",
    "mcnemar_sample_size",
    "model_scores",
    "coupling_check",
    "coupling_check_lines",
    "mean_difference",
    "minimum_detectable_effect",
    "plan_from_accuracies",
    "plan_mean_difference",
    "plan_win_rate_separation",
    "power_mean_difference",
    "question_statistics",
    "questions_needed",
    "rank_set_label",
    "rank_sets",
    "rank_sets_from_estimates",
    "significance_stars",
    "variance_reduction",
    "wilson_effective_ci",
    "win_rate_label",
    "win_rate_matrix",
]
