"""Summarise the Gemma record as the markdown tables of examples/gemma/README.md.

    python examples/gemma/analyze.py OUT_DIR [OUT_DIR ...]

Reads the scores of one or more output folders (e.g. one per model when models ran in separate
processes with run_one_model.py), keeps the questions every model finished in both modes, and
prints: accuracy per model and mode (95% t-interval over per-question means, i.e. clustered by
question) with the parse-failure rate, and per pair the variance of one row's score difference
in each mode, the coupled/independent ratio and sample saving with their bootstrap CIs and the
mean differences -- the numbers of ``coupled analyze`` (coupled.analysis.benchmark), laid out
for the README.
"""

import sys
from itertools import combinations

import pandas as pd
from statsmodels.stats.weightstats import DescrStatsW

from coupled.analysis.benchmark import mean_difference, variance_reduction
from coupled.tables import MODES, read_scores, validate_scores


def complete_questions(scores: pd.DataFrame) -> pd.DataFrame:
    """Rows of the questions that every model answered with every seed in both modes."""
    expected = scores["model"].nunique() * scores["mode"].nunique() * scores["seed"].nunique()
    counts = scores.groupby("prompt_id").size()
    return scores[scores["prompt_id"].isin(counts[counts == expected].index)]


def accuracy_table(scores: pd.DataFrame) -> str:
    lines = ["| model | mode | accuracy [95% CI] | parse failures |", "|---|---|---|---|"]
    for (model, mode), rows in scores.groupby(["model", "mode"]):
        # every question has the same number of rows, so the mean of the per-question means is
        # the row mean, and their t-interval is the question-clustered interval
        per_question = rows.groupby("prompt_id")["score"].mean()
        low, high = DescrStatsW(per_question.to_numpy()).tconfint_mean(alpha=0.05)
        lines.append(f"| {model} | {mode} | {per_question.mean():.3f} [{low:.3f}, {high:.3f}] "
                     f"| {rows['parse_failed'].mean():.1%} |")
    return "\n".join(lines)


def pair_table(scores: pd.DataFrame) -> str:
    lines = ["| pair (a − b) | Var coupled | Var independent | ratio [95% CI] "
             "| sample saving [95% CI] | within-question ratio "
             "| mean diff coupled [95% CI] | mean diff independent [95% CI] |",
             "|---" * 8 + "|"]
    for a, b in combinations(sorted(scores["model"].unique()), 2):
        vr = variance_reduction(scores, a, b, independent="measured")
        md = [mean_difference(scores, a, b, mode=m) for m in MODES]
        lines.append(
            f"| {a} − {b} | {vr.var_coupled:.4f} | {vr.var_independent:.4f} | "
            f"{vr.ratio:.3f} [{vr.ratio_ci_low:.3f}, {vr.ratio_ci_high:.3f}] | "
            f"{vr.saving:.1%} [{vr.saving_ci_low:.1%}, {vr.saving_ci_high:.1%}] | "
            f"{vr.within_ratio:.3f} | "
            + " | ".join(f"{d.estimate:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}]" for d in md)
            + " |")
    return "\n".join(lines)


def main(folders: list[str]) -> None:
    scores = validate_scores(pd.concat([read_scores(f) for f in folders], ignore_index=True))
    scores = complete_questions(scores)
    print(f"{scores['prompt_id'].nunique()} questions x {scores['seed'].nunique()} seeds x "
          f"{scores['model'].nunique()} models x {scores['mode'].nunique()} modes = "
          f"{len(scores)} rows\n")
    print(accuracy_table(scores) + "\n")
    print(pair_table(scores))


if __name__ == "__main__":
    main(sys.argv[1:])
