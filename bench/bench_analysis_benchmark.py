"""Speed of the benchmark analysis: error-vs-n curves, the full report, planning.

Run: ``.venv/bin/python bench/bench_analysis_benchmark.py``. Every figure is printed with its
ratio against a baseline measured in the same process; the figures are recorded in
``bench/analysis_benchmark.md``. ``--grid FILE.csv`` instead summarises a coverage-grid run
(``COUPLED_GRID_OUT=FILE.csv pytest -m slow tests/test_coverage_grid.py``) as the markdown
tables that file records (counts per band, size and power, then one row per cell).

Workload (MMLU-sized, like the paper's Fig. 2c): 14 042 questions × 10 seeds = 140 420 paired
rows per mode, two models, binary scores from a Gumbel-max simulation; error curves with 1000
resamples at 20 sample sizes.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from coupled.analysis._clustered import clustered_mean, question_moments
from coupled.analysis.benchmark import compare_models
from coupled.analysis.errorcurve import default_sizes, error_curves, subsample_mean_errors
from coupled.analysis.intervals import paired_score_interval
from coupled.analysis.planning import (
    components_from_accuracies,
    components_from_pilot,
    plan_mean_difference,
)

N_QUESTIONS, N_SEEDS, N_RESAMPLES = 14_042, 10, 1000


def _timed(function, repeat: int = 1):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def _simulated_scores(rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    logits = rng.normal(size=(N_QUESTIONS, 4))
    logits[:, 0] += rng.normal(1.2, 0.9, size=N_QUESTIONS)
    other = logits + rng.normal(0, 0.8, size=logits.shape)
    other[:, 0] -= 0.25
    frames = []
    prompt_ids = np.array([f"q{i:05d}" for i in range(N_QUESTIONS)])
    for mode in ("coupled", "independent"):
        g = rng.gumbel(size=(N_QUESTIONS, N_SEEDS, 4))
        g2 = g if mode == "coupled" else rng.gumbel(size=g.shape)
        for model, lg, noise in (("small", logits, g), ("large", other, g2)):
            right = (np.argmax(lg[:, None, :] + noise, axis=-1) == 0).astype(float)
            frames.append(pd.DataFrame({
                "task": "mmlu", "prompt_id": np.repeat(prompt_ids, N_SEEDS),
                "seed": np.tile(np.arange(N_SEEDS), N_QUESTIONS), "mode": mode,
                "coupling": "gumbel", "model": model, "score": right.ravel()}))
    softmax = [np.exp(x) / np.exp(x).sum(axis=1, keepdims=True) for x in (logits, other)]
    return pd.concat(frames, ignore_index=True), softmax[0][:, 0], softmax[1][:, 0]


def _naive_curve(values: np.ndarray, sizes: np.ndarray, n_resamples: int,
                 rng: np.random.Generator) -> np.ndarray:
    """The straightforward way: a Python loop over resamples, indices drawn per resample."""
    reference = values.mean()
    errors = np.empty((len(sizes), n_resamples))
    for i, n in enumerate(sizes):
        for r in range(n_resamples):
            errors[i, r] = abs(values[rng.integers(0, len(values), size=n)].mean() - reference)
    return errors


def main() -> None:
    rng = np.random.default_rng(0)
    scores, p_small, p_large = _simulated_scores(rng)
    n_rows = len(scores) // 4
    print(f"workload: {N_QUESTIONS} questions × {N_SEEDS} seeds = {n_rows} paired rows per "
          f"mode; {N_RESAMPLES} resamples × 20 sizes")

    # --- error-vs-n curves, both modes, rows and questions, from the DataFrame
    for unit in ("row", "question"):
        seconds, (_, saving) = _timed(lambda unit=unit: error_curves(
            scores, "large", "small", unit=unit, n_resamples=N_RESAMPLES, seed=1))
        print(f"error_curves(unit={unit!r}), both modes, incl. validation + the saving's "
              f"interval: {seconds:.2f} s (saving {100 * saving.saving:.1f} %, theory "
              f"{100 * saving.theoretical_saving:.1f} %)")

    # --- the core on one mode's 140k differences: counting path vs index path vs naive loop
    binary = np.random.default_rng(2).choice([-1.0, 0.0, 1.0], p=[0.1, 0.75, 0.15],
                                             size=n_rows)
    graded = np.random.default_rng(3).normal(size=n_rows)  # many distinct levels
    sizes = default_sizes(n_rows)
    t_count, _ = _timed(lambda: subsample_mean_errors(binary, sizes, N_RESAMPLES, rng=4), 3)
    t_index, _ = _timed(lambda: subsample_mean_errors(graded, sizes, N_RESAMPLES, rng=5))
    t_index_norep, _ = _timed(lambda: subsample_mean_errors(graded, sizes, N_RESAMPLES,
                                                            replace=False, rng=6))
    naive_resamples = 10
    t_naive_part, _ = _timed(lambda: _naive_curve(graded, sizes, naive_resamples,
                                                  np.random.default_rng(7)))
    t_naive = t_naive_part * N_RESAMPLES / naive_resamples
    print(f"baseline (Python loop over resamples, {naive_resamples} resamples timed, "
          f"extrapolated to {N_RESAMPLES}): {t_naive:.1f} s")
    for name, seconds in (("counting path (binary differences)", t_count),
                          ("index path, with replacement (float scores)", t_index),
                          ("index path, without replacement (float scores)", t_index_norep)):
        print(f"subsample_mean_errors {name}: {seconds:.3f} s — {t_naive / seconds:.0f}× "
              f"faster than the baseline")

    # --- whole report
    seconds, _ = _timed(lambda: compare_models(scores))
    print(f"compare_models (2 modes, jackknife variance-ratio CI): {seconds:.2f} s")

    # --- the mean-difference interval on replicates: score interval vs the old clustered t
    a = (np.random.default_rng(8).random((2000, 150, 5)) < 0.9).astype(float)
    b = np.where(np.random.default_rng(9).random(a.shape) < 0.05, 1 - a, a)
    t_old, _ = _timed(lambda: clustered_mean(question_moments(a, b).mean_diff), 3)
    t_new, _ = _timed(lambda: paired_score_interval(a, b), 3)
    print(f"mean-difference interval, 2000 replicates × 150 questions × 5 seeds: old t "
          f"{t_old:.3f} s (baseline), score interval {t_new:.3f} s ({t_new / t_old:.1f}× the "
          "baseline's time)")

    # --- planning
    t_acc, components = _timed(lambda: components_from_accuracies(p_large, p_small), 5)
    t_plan, _ = _timed(lambda: plan_mean_difference(components, 0.03, seeds=(1, 2, 5, 10),
                                                    budget_questions=1000, binary=True), 5)
    pilot = scores[scores["prompt_id"] < "q01000"]
    t_pilot, _ = _timed(lambda: components_from_pilot(pilot, "large", "small"), 3)
    print(f"planning: components from {N_QUESTIONS} accuracies {1000 * t_acc:.1f} ms; "
          f"plan table (2 modes × 4 seed counts, sizes + MDE) {1000 * t_plan:.1f} ms; "
          f"components from a {len(pilot)}-row pilot {1000 * t_pilot:.1f} ms; "
          f"total {t_acc + t_plan + t_pilot:.3f} s (target ≤ 1 s)")


def grid_tables(path: str) -> str:
    """Markdown summary of a coverage-grid CSV: one row per cell, and counts per band."""
    frame = pd.read_csv(path)
    lines = ["| population | coupling | scores | Q | seeds | differing rows | coverage old | "
             "coverage new | median width old | new | power/size old | new | accuracy CI "
             "coverage old | new |", "|" + "---|" * 15]
    for r in frame.itertuples():
        discordant = getattr(r, "discordant_rows", float("nan"))
        lines.append(
            f"| {r.population} | {r.coupling} | {r.scores} | {r.questions} | {r.seeds} | "
            f"{discordant:.1f} | {100 * r.coverage_old:.1f} | {100 * r.coverage_new:.1f} | "
            f"{r.width_old:.3f} | {r.width_new:.3f} | {100 * r.reject_old:.1f} | "
            f"{100 * r.reject_new:.1f} | {100 * r.accuracy_coverage_old:.1f} | "
            f"{100 * r.accuracy_coverage_new:.1f} |")
    return "\n".join(lines)


# The grid's band (tests/test_coverage_grid.py): 93.5-96.5 % widened by 3.9 Monte-Carlo SEs
# of a 95 % coverage on a cell's replicates.
_BAND_Z = 3.9


def _band(reps: pd.Series) -> tuple[pd.Series, pd.Series]:
    se = np.sqrt(0.95 * 0.05 / reps)
    return 0.935 - _BAND_Z * se, 0.965 + _BAND_Z * se


def grid_summary(path: str) -> str:
    """Markdown counts per band of a coverage-grid CSV, for the whole grid and per seed
    design, size and coupling (the table ``bench/analysis_benchmark.md`` records), then
    ``model_scores``' line."""
    frame = pd.read_csv(path)
    low, high = _band(frame["reps"])
    frame = frame.assign(old_below=frame["coverage_old"] < low,
                         old_zero=frame["zero_width_old"] > 0,
                         new_below=frame["coverage_new"] < low,
                         new_above=frame["coverage_new"] > high,
                         informative_above=(frame["coverage_new"] > high)
                         & (frame["discordant_rows"] >= 10),
                         width_ratio=frame["width_new"] / frame["width_old"])
    seed_names = {"1": "seeds 1", "5": "seeds 5", "20": "seeds 20",
                  "mix-random": "seeds 1-or-20 random", "mix-difficulty":
                  "seeds 1-or-20 by difficulty"}
    coupling_names = {"comonotone": "comonotone", "gumbel": "Gumbel-max",
                      "independent": "independent"}
    groups = [("all", frame)]
    groups += [(name, frame[frame["seeds"].astype(str) == key])
               for key, name in seed_names.items()]
    groups += [(f"{q} questions", frame[frame["questions"] == q])
               for q in sorted(frame["questions"].unique())]
    groups += [(name, frame[frame["coupling"] == key]) for key, name in coupling_names.items()]
    lines = ["| cells | n | old min / median coverage % | old below band | old with zero-width "
             "intervals | new min / median % | new below band | new above band (of them "
             "with ≥ 10 differing rows) | median width new/old |", "|" + "---|" * 9]
    for name, part in groups:
        lines.append(
            f"| {name} | {len(part)} | {100 * part['coverage_old'].min():.1f} / "
            f"{100 * part['coverage_old'].median():.1f} | {int(part['old_below'].sum())} | "
            f"{int(part['old_zero'].sum())} | {100 * part['coverage_new'].min():.1f} / "
            f"{100 * part['coverage_new'].median():.1f} | {int(part['new_below'].sum())} | "
            f"{int(part['new_above'].sum())} ({int(part['informative_above'].sum())}) | "
            f"{part['width_ratio'].median():.2f} |")
    null = frame[frame["truth"] == 0]
    # power compared where the old test was calibrated (its interval within the band)
    power = frame[(frame["truth"] != 0) & ~frame["old_below"]
                  & (frame["coverage_old"] <= high)]
    gain = power["reject_new"] - power["reject_old"]
    accuracy_low = frame["accuracy_coverage_new"] < low
    accuracy_high = frame["accuracy_coverage_new"] > high
    lines += [
        "",
        f"Size (null cells, n = {len(null)}): new max {100 * null['reject_new'].max():.2f} %, "
        f"median {100 * null['reject_new'].median():.2f} %; old max "
        f"{100 * null['reject_old'].max():.2f} %. Power where the old interval was within "
        f"the band (non-null cells, n = {len(power)}): median "
        f"{100 * power['reject_old'].median():.1f} % old, "
        f"{100 * power['reject_new'].median():.1f} % new (median difference "
        f"{100 * gain.median():+.1f} points, worst {100 * gain.min():+.1f}). Test = inversion "
        f"of the interval in every replicate: {bool(frame['agree'].all())}.",
        f"model_scores (model a's mean score): new min / median "
        f"{100 * frame['accuracy_coverage_new'].min():.1f} / "
        f"{100 * frame['accuracy_coverage_new'].median():.1f} %, {int(accuracy_low.sum())} "
        f"below the band, {int(accuracy_high.sum())} above; old clustered t: "
        f"{int((frame['accuracy_coverage_old'] < low).sum())} below, min "
        f"{100 * frame['accuracy_coverage_old'].min():.1f} %; median width new/old "
        f"{(frame['accuracy_width_new'] / frame['accuracy_width_old']).median():.2f}."]
    return "\n".join(lines)


# The cells issue 11's audit named (binary scores; near 0.9 unless marked).
NAMED_CELLS = [("near-0.9", "comonotone", 10, "1"), ("near-0.9", "comonotone", 20, "1"),
               ("near-0.9", "comonotone", 50, "1"), ("near-0.9", "comonotone", 500, "1"),
               ("near-0.9", "comonotone", 10, "mix-random"),
               ("near-0.9", "comonotone", 50, "mix-random"),
               ("near-0.9", "comonotone", 150, "mix-random"),
               ("near-0.9", "comonotone", 20, "mix-difficulty"),
               ("near-0.9", "gumbel", 50, "1"), ("near-0.5", "comonotone", 20, "1"),
               ("near-0.9", "independent", 20, "1")]


def grid_named_cells(path: str) -> str:
    """Markdown rows of the cells the issue named: coverage, median width and rejection rate,
    old and new."""
    frame = pd.read_csv(path)
    frame["seeds"] = frame["seeds"].astype(str)
    lines = ["| cell | old coverage | new | width old | new | power old | new |",
             "|" + "---|" * 7]
    seed_text = {"1": "1", "mix-random": "1-or-20 random",
                 "mix-difficulty": "1-or-20 by difficulty"}
    for population, coupling, questions, seeds in NAMED_CELLS:
        row = frame[(frame["population"] == population) & (frame["coupling"] == coupling)
                    & (frame["scores"] == "binary") & (frame["questions"] == questions)
                    & (frame["seeds"] == seeds)].iloc[0]
        zero = (f" ({100 * row['zero_width_old']:.0f} % zero-width)"
                if row["zero_width_old"] >= 0.05 else "")
        mark = "(near 0.5) " if population == "near-0.5" else ""
        name = "Gumbel-max" if coupling == "gumbel" else coupling
        lines.append(
            f"| {mark}{name}, {questions} × {seed_text[seeds]} | "
            f"{100 * row['coverage_old']:.1f} %{zero} | {100 * row['coverage_new']:.1f} % | "
            f"{row['width_old']:.3f} | {row['width_new']:.3f} | {100 * row['reject_old']:.1f} % | "
            f"{100 * row['reject_new']:.1f} % |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--grid":
        print(grid_summary(sys.argv[2]))
        print()
        print(grid_named_cells(sys.argv[2]))
        print()
        print(grid_tables(sys.argv[2]))
    else:
        main()
