"""Summarise the Gemma record: per pair and mode, the variance of the score difference.

    python examples/gemma/analyze.py OUT_DIR [OUT_DIR ...]

Reads the scores of one or more output folders (e.g. one per model when models ran in separate
processes), keeps the questions every model finished in both modes, and prints a markdown
table per pair: the raw per-row variance of R_a - R_b in each mode (pandas), and the
variance-reduction ratio / sample saving with its bootstrap CI from
``coupled.analysis.benchmark.variance_reduction``, plus the clustered mean differences.
"""

import sys
from itertools import combinations

import pandas as pd

from coupled.analysis.benchmark import mean_difference, variance_reduction
from coupled.tables import read_scores, validate_scores


def complete_questions(scores: pd.DataFrame) -> pd.DataFrame:
    """Rows of the questions that every model answered with every seed in both modes."""
    expected = scores["model"].nunique() * scores["mode"].nunique() * scores["seed"].nunique()
    counts = scores.groupby("prompt_id").size()
    return scores[scores["prompt_id"].isin(counts[counts == expected].index)]


def main(folders: list[str]) -> None:
    scores = validate_scores(pd.concat([read_scores(f) for f in folders], ignore_index=True))
    scores = complete_questions(scores)
    models = sorted(scores["model"].unique())
    print(f"{scores['prompt_id'].nunique()} questions x {scores['seed'].nunique()} seeds, "
          f"models {models}, {len(scores)} rows; parse failures by model and mode:")
    print(scores.groupby(["model", "mode"])["parse_failed"].mean().unstack().round(3)
          .to_markdown())
    print("\nmean score by model and mode:")
    print(scores.groupby(["model", "mode"])["score"].mean().unstack().round(4).to_markdown())
    wide = scores.pivot_table(index=["mode", "prompt_id", "seed"], columns="model",
                              values="score")
    lines = ["| pair (a − b) | Var coupled | Var independent | ratio [95% CI] | saving "
             "| mean diff coupled [CI] | mean diff independent [CI] |", "|---" * 7 + "|"]
    for a, b in combinations(models, 2):
        raw = {m: (wide.loc[m][a] - wide.loc[m][b]).var(ddof=1) for m in ("coupled",
                                                                          "independent")}
        vr = variance_reduction(scores, a, b, independent="measured", seed=0)
        md = {m: mean_difference(scores, a, b, mode=m) for m in ("coupled", "independent")}
        lines.append(
            f"| {a} − {b} | {raw['coupled']:.4f} | {raw['independent']:.4f} | "
            f"{vr.ratio:.3f} [{vr.ratio_ci_low:.3f}, {vr.ratio_ci_high:.3f}] | "
            f"{vr.saving:.1%} | "
            + " | ".join(f"{md[m].estimate:+.4f} [{md[m].ci_low:+.4f}, {md[m].ci_high:+.4f}]"
                         for m in ("coupled", "independent")) + " |")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
