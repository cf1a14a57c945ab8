"""Worked examples of the paper, computed exactly (``fractions.Fraction``).

``three_model_example()`` is appendix B.6: three models, two equally likely prompts, each with a
preferred token; average accuracy ranks m1 > m3 > m2, average win-rate under coupled generation
agrees, under independent generation it is reversed (m3 > m2 > m1).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal
from fractions import Fraction

# P(model outputs the preferred token): rows are prompts q and q', columns m1, m2, m3.
B6_PROBABILITIES: tuple[tuple[Fraction, ...], ...] = (
    (Fraction("0.4"), Fraction("0.48"), Fraction("0.5")),
    (Fraction("1"), Fraction("0.9"), Fraction("0.89")),
)
B6_MODELS = ("m1", "m2", "m3")


@dataclass(frozen=True)
class ThreeModelExample:
    """Appendix B.6, exactly. Tuples are indexed by model (m1, m2, m3); rankings list model
    names from best to worst."""

    models: tuple[str, ...]
    probabilities: tuple[tuple[Fraction, ...], ...]
    average_accuracy: tuple[Fraction, ...]
    average_win_rate_independent: tuple[Fraction, ...]
    average_win_rate_coupled: tuple[Fraction, ...]
    ranking_accuracy: tuple[str, ...]
    ranking_independent: tuple[str, ...]
    ranking_coupled: tuple[str, ...]

    def as_dict(self) -> dict:
        """JSON-ready: probabilities as floats, exact values also as ``"num/den"`` strings."""

        def exact(values: tuple[Fraction, ...]) -> dict:
            return {"float": [float(v) for v in values], "exact": [str(v) for v in values]}

        return {
            "models": list(self.models),
            "probabilities": [[float(v) for v in row] for row in self.probabilities],
            "average_accuracy": exact(self.average_accuracy),
            "average_win_rate_independent": exact(self.average_win_rate_independent),
            "average_win_rate_coupled": exact(self.average_win_rate_coupled),
            "ranking_accuracy": list(self.ranking_accuracy),
            "ranking_independent": list(self.ranking_independent),
            "ranking_coupled": list(self.ranking_coupled),
        }


def decimal_string(value: Fraction, digits: int = 15) -> str:
    """``value`` rounded to ``digits`` significant digits, trailing zeros dropped (exact for
    terminating decimals such as 0.15675)."""
    context = Context(prec=digits)
    quotient = context.divide(Decimal(value.numerator), Decimal(value.denominator))
    text = format(quotient.normalize(context), "f")
    return text


def _order(models: tuple[str, ...], values: tuple[Fraction, ...]) -> tuple[str, ...]:
    return tuple(name for _, name in sorted(zip(values, models, strict=True),
                                            key=lambda pair: -pair[0]))


def three_model_example(
        probabilities: tuple[tuple[Fraction, ...], ...] = B6_PROBABILITIES,
        models: tuple[str, ...] = B6_MODELS) -> ThreeModelExample:
    """Average accuracy and average win-rates (Prop. 4 closed forms, equally likely prompts).

    Win-rate of m over m' on a prompt: independent ``p_m (1 - p_m')``, coupled
    ``(p_m - p_m')_+`` (any counterfactually stable sampler). Average win-rate = mean over
    prompts and over the other models. Exact rational arithmetic.
    """
    n_models = len(models)
    n_prompts = len(probabilities)

    def average_win_rate(win_on_prompt) -> tuple[Fraction, ...]:
        return tuple(
            sum((win_on_prompt(row[k], row[j]) for row in probabilities for j in range(n_models)
                 if j != k), Fraction(0)) / (n_prompts * (n_models - 1))
            for k in range(n_models))

    accuracy = tuple(sum((row[k] for row in probabilities), Fraction(0)) / n_prompts
                     for k in range(n_models))
    independent = average_win_rate(lambda p, p_other: p * (1 - p_other))
    coupled = average_win_rate(lambda p, p_other: max(p - p_other, Fraction(0)))
    return ThreeModelExample(
        models=tuple(models),
        probabilities=tuple(tuple(row) for row in probabilities),
        average_accuracy=accuracy,
        average_win_rate_independent=independent,
        average_win_rate_coupled=coupled,
        ranking_accuracy=_order(models, accuracy),
        ranking_independent=_order(models, independent),
        ranking_coupled=_order(models, coupled),
    )
