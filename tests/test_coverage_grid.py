"""Coverage grid for the benchmark mean-difference interval and test (issue 11, part 3).

The data generators here are written from scratch with numpy (they do not use
``coupled.simulate`` or ``coupled.theory``): a fixed population of questions, each with two
models' categorical answer distributions over 4 options (option 0 correct; graded credit
``1, 0.5, 0.2, 0`` for options 0-3), and three ways of generating the two models' answers to a
question with one seed:

* ``comonotone``: one shared uniform, each model answers by the inverse CDF of its
  distribution over the options in credit order (the two scores are comonotone);
* ``gumbel``: one shared Gumbel vector, each model answers ``argmax(log p + g)`` (Gumbel-max
  coupling, as coupled generation does with real categorical distributions);
* ``independent``: separate noise.

Each replicate draws its questions i.i.d. from the population; the truth is the population
mean over questions of ``E[R_a - R_b | question]`` (exact from the distributions), the
estimand of ``mean_difference``. The grid: questions {10, 20, 50, 150, 500} × seeds {1, 5, 20,
1-or-20 at random, 1-or-20 tied to difficulty (20 on the hardest quarter)} × populations
(accuracy ~0.92 vs ~0.88, ~0.52 vs ~0.48, and a null one at ~0.9 with true difference 0) ×
coupling × binary/graded scores: 450 cells.

Tolerance (multiplicity-aware): a cell's coverage must be within 93.5-96.5 % up to 3.9 of its
Monte-Carlo SEs (z for a 5 % family-wise error over ~450 cells) — the upper edge only where at
least 10 rows are expected to differ per benchmark, and at least 10 of them on questions run
once where some are (with fewer, any valid interval over-covers: recorded, not asserted); the
test's size (null cells) at most 5 % + 3.9 SEs. Power (non-null
cells) is reported beside it and checked against the old test where that one was calibrated.
The same cells check ``model_scores``' per-model interval (model a's mean score). The reduced run (default
``pytest``) re-tests the cells where the old t interval failed, with enough replicates to show
it failing (asserted), plus a spread of other cells; ``-m slow`` runs the whole grid and
writes the table ``bench/analysis_benchmark.md`` records (set ``COUPLED_GRID_OUT=path.csv``).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special, stats

from coupled.analysis._clustered import clustered_mean, question_moments
from coupled.analysis.accuracy import score_interval
from coupled.analysis.intervals import paired_score_interval

LEVEL = 0.95
ALPHA = 1 - LEVEL
CREDIT = np.array([1.0, 0.5, 0.2, 0.0])
N_POPULATION = 2000
Z_FAMILY = 3.9
QUESTIONS = (10, 20, 50, 150, 500)
SEEDS = ("1", "5", "20", "mix-random", "mix-difficulty")
POPULATIONS = ("near-0.9", "near-0.5", "null-0.9")
COUPLINGS = ("comonotone", "gumbel", "independent")
SCORES = ("binary", "graded")


# ----------------------------------------------------------------------------- population
@dataclass(frozen=True)
class Population:
    p_a: np.ndarray  # (N, 4) answer distributions, option 0 correct
    p_b: np.ndarray
    difficulty: np.ndarray  # (N,) higher = harder (used to tie seeds to difficulty)

    def truth(self, scores: str) -> float:
        credit = CREDIT if scores == "graded" else (CREDIT == 1.0).astype(float)
        return float(np.mean(self.p_a @ credit - self.p_b @ credit))

    def accuracy(self, scores: str) -> float:
        """Model a's population mean score (the estimand of ``model_scores``)."""
        credit = CREDIT if scores == "graded" else (CREDIT == 1.0).astype(float)
        return float(np.mean(self.p_a @ credit))


def _shift_to(logits: np.ndarray, target: float) -> np.ndarray:
    """Shift logits so the mean of their sigmoids is ``target``."""
    gap = optimize.brentq(lambda s: special.expit(logits + s).mean() - target, -30, 30)
    return logits + gap


def make_population(acc_a: float, acc_b: float, *, null: bool = False, seed: int = 0
                    ) -> Population:
    rng = np.random.default_rng(seed)
    n = N_POPULATION // 2 if null else N_POPULATION
    difficulty = rng.normal(0.0, 1.0, n)
    logit_a = _shift_to(-1.3 * difficulty, acc_a)
    logit_b = _shift_to(-1.3 * difficulty + 0.4 * rng.normal(size=n), acc_b)
    right_a, right_b = special.expit(logit_a), special.expit(logit_b)
    wrong_a = rng.dirichlet(np.ones(3), n)
    # b's wrong answers resemble a's (models err alike), with their own part
    wrong_b = 0.6 * wrong_a + 0.4 * rng.dirichlet(np.ones(3), n)
    p_a = np.column_stack([right_a, (1 - right_a)[:, None] * wrong_a])
    p_b = np.column_stack([right_b, (1 - right_b)[:, None] * wrong_b])
    if null:  # every question also appears with the roles swapped: true difference exactly 0
        p_a, p_b = np.concatenate([p_a, p_b]), np.concatenate([p_b, p_a])
        difficulty = np.concatenate([difficulty, difficulty])
    return Population(p_a=p_a, p_b=p_b, difficulty=difficulty)


POPULATION_ARGS = {"near-0.9": (0.92, 0.88, False), "near-0.5": (0.52, 0.48, False),
                   "null-0.9": (0.90, 0.88, True)}


def population(name: str) -> Population:
    acc_a, acc_b, null = POPULATION_ARGS[name]
    return make_population(acc_a, acc_b, null=null, seed=POPULATIONS.index(name) + 11)


# ----------------------------------------------------------------------------- replicates
def _answers(p: np.ndarray, noise: np.ndarray, coupling: str) -> np.ndarray:
    """Chosen option per (r, q, s) from distributions ``p`` (r, q, V) and noise."""
    if coupling == "comonotone":  # noise: uniforms (r, q, s)
        cdf = np.cumsum(p, axis=-1)[:, :, None, :]
        return np.minimum((noise[..., None] > cdf).sum(axis=-1), p.shape[-1] - 1)
    with np.errstate(divide="ignore"):
        return np.argmax(np.log(p)[:, :, None, :] + noise, axis=-1)


def seed_counts(design: str, difficulty: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Seeds per question (r, q) for a design."""
    if design in ("1", "5", "20"):
        return np.full(difficulty.shape, int(design))
    if design == "mix-random":
        return np.where(rng.random(difficulty.shape) < 0.25, 20, 1)
    # tied to difficulty: the hardest quarter of each replicate's questions gets 20 seeds
    cut = np.quantile(difficulty, 0.75, axis=-1, keepdims=True)
    return np.where(difficulty >= cut, 20, 1)


def simulate(pop: Population, reps: int, n_questions: int, design: str, coupling: str,
             scores: str, rng: np.random.Generator):
    """``(a, b, mask)`` of shape (reps, Q, S_max)."""
    index = rng.integers(0, len(pop.p_a), size=(reps, n_questions))
    counts = seed_counts(design, pop.difficulty[index], rng)
    width = int(counts.max())
    mask = np.arange(width) < counts[..., None]
    p_a, p_b = pop.p_a[index], pop.p_b[index]
    shape = (reps, n_questions, width)
    if coupling == "comonotone":
        u = rng.random(shape)
        choice_a, choice_b = _answers(p_a, u, coupling), _answers(p_b, u, coupling)
    else:
        g = rng.gumbel(size=shape + (4,))
        g_b = g if coupling == "gumbel" else rng.gumbel(size=shape + (4,))
        choice_a, choice_b = _answers(p_a, g, coupling), _answers(p_b, g_b, coupling)
    credit = CREDIT if scores == "graded" else (CREDIT == 1.0).astype(float)
    return credit[choice_a], credit[choice_b], mask


# ----------------------------------------------------------------------------- one cell
def old_interval(a, b, mask):
    """The interval mean_difference reported before issue 11: clustered t on per-question
    means (zero-width when they are all equal)."""
    moments = question_moments(a, b, mask)
    result = clustered_mean(moments.mean_diff, moments.present, alpha=ALPHA)
    return result.ci_low, result.ci_high


def old_pvalue(a, b, mask):
    """The old test: McNemar (exact below 25 discordant pairs, else uncorrected chi-square)
    with one binary seed, else the t-test on per-question means."""
    moments = question_moments(a, b, mask)
    binary = np.isin(a[mask], (0, 1)).all() and np.isin(b[mask], (0, 1)).all()
    if binary and np.all(moments.n[moments.present] == 1):
        n10 = ((a == 1) & (b == 0) & mask).sum(axis=(-1, -2))
        n01 = ((a == 0) & (b == 1) & mask).sum(axis=(-1, -2))
        k = n10 + n01
        exact = np.minimum(1.0, 2 * stats.binom.cdf(np.minimum(n10, n01), k, 0.5))
        with np.errstate(divide="ignore", invalid="ignore"):
            chi = stats.chi2.sf((n10 - n01) ** 2 / k, 1)
        return np.where(k == 0, 1.0, np.where(k < 25, exact, chi))
    return clustered_mean(moments.mean_diff, moments.present, alpha=ALPHA).pvalue


@dataclass(frozen=True)
class CellResult:
    reps: int
    truth: float
    coverage_old: float
    coverage_new: float
    width_old: float
    width_new: float
    zero_width_old: float
    zero_width_new: float
    reject_new: float  # rejection rate of the new test (size in null cells, power otherwise)
    agree: bool        # p < alpha exactly when 0 is outside the new CI, in every replicate
    reject_old: float = float("nan")  # the old test (t on question means; McNemar one seed)
    accuracy_coverage_old: float = float("nan")  # model a's mean score: clustered t interval
    accuracy_coverage_new: float = float("nan")  # model_scores' interval
    accuracy_width_old: float = float("nan")
    accuracy_width_new: float = float("nan")
    discordant_rows: float = float("nan")  # mean number of paired rows that differ


def run_cell(pop_name: str, coupling: str, scores: str, n_questions: int, design: str,
             reps: int, seed: int, chunk_cells: int = 4_000_000) -> CellResult:
    pop = population(pop_name)
    truth = pop.truth(scores)
    rng = np.random.default_rng(seed)
    width = 20 if design != "1" and design != "5" else int(design)
    chunk = max(1, chunk_cells // (n_questions * width * 4))
    accuracy = pop.accuracy(scores)
    cov_old = cov_new = zero_old = zero_new = reject = reject_old = acc_old = acc_new = 0
    widths_old, widths_new, acc_widths_old, acc_widths_new = [], [], [], []
    discordant = 0
    agree = True
    for start in range(0, reps, chunk):
        r = min(chunk, reps - start)
        a, b, mask = simulate(pop, r, n_questions, design, coupling, scores, rng)
        low_o, high_o = old_interval(a, b, mask)
        new = paired_score_interval(a, b, mask, alpha=ALPHA)
        cov_old += int(np.sum((low_o <= truth) & (truth <= high_o)))
        cov_new += int(np.sum((new.ci_low <= truth) & (truth <= new.ci_high)))
        zero_old += int(np.sum(high_o - low_o <= 0))
        zero_new += int(np.sum(new.ci_high - new.ci_low <= 0))
        rejected = new.pvalue < ALPHA
        reject += int(np.sum(rejected))
        outside = (new.ci_low > 0) | (new.ci_high < 0)
        agree &= bool(np.array_equal(rejected, outside))
        widths_old.append(high_o - low_o)
        widths_new.append(new.ci_high - new.ci_low)
        reject_old += int(np.sum(old_pvalue(a, b, mask) < ALPHA))
        discordant += int(np.sum((a != b) & mask))
        # model a's accuracy: old clustered t on its question means, new model_scores core
        mean_a = question_moments(a, a, mask).mean_a
        t_old = clustered_mean(mean_a, mask.any(axis=-1), alpha=ALPHA)
        acc_old += int(np.sum((t_old.ci_low <= accuracy) & (accuracy <= t_old.ci_high)))
        acc_widths_old.append(t_old.ci_high - t_old.ci_low)
        one = score_interval(a, mask, alpha=ALPHA)
        acc_new += int(np.sum((one.ci_low <= accuracy) & (accuracy <= one.ci_high)))
        acc_widths_new.append(one.ci_high - one.ci_low)
    return CellResult(reps=reps, truth=truth, coverage_old=cov_old / reps,
                      coverage_new=cov_new / reps,
                      width_old=float(np.median(np.concatenate(widths_old))),
                      width_new=float(np.median(np.concatenate(widths_new))),
                      zero_width_old=zero_old / reps, zero_width_new=zero_new / reps,
                      reject_new=reject / reps, agree=agree, reject_old=reject_old / reps,
                      accuracy_coverage_old=acc_old / reps, accuracy_coverage_new=acc_new / reps,
                      accuracy_width_old=float(np.median(np.concatenate(acc_widths_old))),
                      accuracy_width_new=float(np.median(np.concatenate(acc_widths_new))),
                      discordant_rows=discordant / reps)


def mc_se(rate: float, reps: int) -> float:
    return float(np.sqrt(rate * (1 - rate) / reps))


# Below this many differing rows per benchmark (expected, from the population) a valid
# interval must over-cover: with ~0-3 discordant rows the data cannot tell a true difference
# of 0.04 from 0, so an interval that covers 0.04 when nothing differs covers in ~every
# replicate. There the upper band is not asserted (coverage and width are recorded); the lower
# band always is. The same rule for model_scores with the rows on the minority side (wrong
# answers of a model near 0.9).
FEW_INFORMATIVE_ROWS = 10

# The same holds for the questions run once in a 1-or-20-seed mix (and a 1-seed design): the
# single-seed questions carry most of the estimate's variance (each is one draw of a rare
# difference), and when fewer than FEW_INFORMATIVE_ROWS of their rows are expected to differ
# the data cannot tell "these never differ" from "they differ rarely" — a valid interval
# must then allow the rarer case and over-covers (the variance-model guard of intervals.py;
# without it those cells under-cover at 82-88 %, with half a pseudo-row 88-92 %). So the upper
# band is asserted where both the differing rows and those on single-seed questions reach
# FEW_INFORMATIVE_ROWS. This rule replaced a hand ledger of 42 cells fitted to the grid's
# seeds (its cells had 0.4-4.2 such rows; on fresh seeds 6 of them flipped in or out).
# model_scores' over-coverage ledger (same rule, on minority rows): seeds tied to difficulty
# at 10-20 questions, 98.5-98.6 % (2 Dec 2026).
KNOWN_ACCURACY_OVERCOVERAGE = {
    ('near-0.9', 'independent', 'graded', 20, 'mix-difficulty'),
    ('null-0.9', 'independent', 'binary', 10, 'mix-difficulty'),
    ('near-0.9', 'comonotone', 'binary', 10, 'mix-difficulty'),
    ('near-0.9', 'gumbel', 'binary', 10, 'mix-difficulty'),
    ('null-0.9', 'comonotone', 'binary', 10, 'mix-difficulty'),
}


def _seed_weights(pop: Population, design: str) -> np.ndarray:
    """Expected seeds of each population question under a design (difficulty-tied: 20 on the
    hardest quarter)."""
    if design in ("1", "5", "20"):
        return np.full(len(pop.p_a), float(design))
    if design == "mix-random":
        return np.full(len(pop.p_a), 0.25 * 20 + 0.75)
    return np.where(pop.difficulty >= np.quantile(pop.difficulty, 0.75), 20.0, 1.0)


def _p_same(pop: Population, coupling: str) -> np.ndarray:
    """P(the two models choose the same option), per population question (exact)."""
    if coupling == "independent":
        return (pop.p_a * pop.p_b).sum(axis=1)
    if coupling == "gumbel":  # P(both choose k) = 1 / sum_j max(p_j / p_k, q_j / q_k)
        return sum(1.0 / np.maximum(pop.p_a / pop.p_a[:, k:k + 1],
                                    pop.p_b / pop.p_b[:, k:k + 1]).sum(axis=1)
                   for k in range(pop.p_a.shape[1]))
    upper_a, upper_b = np.cumsum(pop.p_a, axis=1), np.cumsum(pop.p_b, axis=1)
    lower_a, lower_b = upper_a - pop.p_a, upper_b - pop.p_b
    overlap = np.minimum(upper_a, upper_b) - np.maximum(lower_a, lower_b)
    return np.maximum(overlap, 0.0).sum(axis=1)


def _p_both_right(pop: Population, coupling: str) -> np.ndarray:
    a, b = pop.p_a[:, 0], pop.p_b[:, 0]
    if coupling == "independent":
        return a * b
    if coupling == "gumbel":
        return 1.0 / np.maximum(pop.p_a / pop.p_a[:, :1], pop.p_b / pop.p_b[:, :1]).sum(axis=1)
    return np.minimum(a, b)


def _single_seed_share(pop: Population, design: str) -> np.ndarray:
    """P(a population question is run with one seed) under a design."""
    if design in ("5", "20"):
        return np.zeros(len(pop.p_a))
    if design == "mix-random":
        return np.full(len(pop.p_a), 0.75)
    return (_seed_weights(pop, design) == 1.0).astype(float)  # "1", and the easy 3/4 if tied


def informative_rows(cell) -> tuple[float, float, float]:
    """Expected rows per benchmark that differ between the models; of those, the rows on
    questions run once (``inf`` where no question is); and rows on model a's minority side
    (for its accuracy) — from the population, exact, no simulation."""
    pop_name, coupling, scores, n_questions, design = cell
    pop = population(pop_name)
    seeds = _seed_weights(pop, design)
    single = _single_seed_share(pop, design)
    if scores == "binary":
        differ = pop.p_a[:, 0] + pop.p_b[:, 0] - 2 * _p_both_right(pop, coupling)
        mean_a = pop.p_a[:, 0]
    else:
        differ = 1.0 - _p_same(pop, coupling)  # credits are distinct per option
        mean_a = pop.p_a @ CREDIT
    minority = mean_a if mean_a.mean() < 0.5 else 1 - mean_a
    single_differ = float(n_questions * np.mean(single * differ)) if single.any() else np.inf
    return (float(n_questions * np.mean(seeds * differ)), single_differ,
            float(n_questions * np.mean(seeds * minority)))


def check_cell(cell: CellResult, what: str, z: float = Z_FAMILY, key=None,
               ledger: bool = False) -> None:
    """Assert the bands; ``ledger=True`` (the full grid) also asserts that every cell of the
    model_scores over-coverage ledger still over-covers."""
    se = mc_se(LEVEL, cell.reps)
    low, high = 0.935 - z * se, 0.965 + z * se
    differ, single_differ, minority = (informative_rows(key) if key is not None
                                       else (np.inf, np.inf, np.inf))
    assert cell.agree, f"{what}: test and interval disagree on some replicate"
    assert cell.zero_width_new == 0, f"{what}: {cell.zero_width_new:.1%} zero-width intervals"
    top = high if min(differ, single_differ) >= FEW_INFORMATIVE_ROWS else 1.0
    assert low <= cell.coverage_new <= top, (
        f"{what}: coverage {cell.coverage_new:.4f} outside [{low:.4f}, {top:.4f}] "
        f"({cell.reps} reps, {differ:.1f} differing rows expected per benchmark, "
        f"{single_differ:.1f} of them on questions run once)")
    top = (high if minority >= FEW_INFORMATIVE_ROWS
           and key not in KNOWN_ACCURACY_OVERCOVERAGE else 1.0)
    if ledger and key in KNOWN_ACCURACY_OVERCOVERAGE:
        assert cell.accuracy_coverage_new > high, f"{what}: accuracy within band: update ledger"
    assert low <= cell.accuracy_coverage_new <= top, (
        f"{what}: model_scores coverage {cell.accuracy_coverage_new:.4f} outside "
        f"[{low:.4f}, {top:.4f}] ({cell.reps} reps, {minority:.1f} minority rows)")
    if cell.truth == 0:
        size_bound = ALPHA + z * mc_se(ALPHA, cell.reps)
        assert cell.reject_new <= size_bound, (
            f"{what}: size {cell.reject_new:.4f} above {size_bound:.4f}")


def all_cells():
    return list(itertools.product(POPULATIONS, COUPLINGS, SCORES, QUESTIONS, SEEDS))


def cell_seed(cell) -> int:
    return all_cells().index(cell) * 7919 + 1


# ----------------------------------------------------------------------------- reduced run
# Cells where the old t interval failed (issue 11's audit, reproduced here): comonotone pairs
# near 0.9 with one seed or unbalanced 1-or-20 seeds at few questions. Replicates: enough that
# the old coverage is rejected at > 3.9 SEs below 93.5 % while the new one passes.
OLD_FAILURES = [
    (("near-0.9", "comonotone", "binary", 10, "1"), 1500),
    (("near-0.9", "comonotone", "binary", 20, "1"), 1500),
    (("near-0.9", "comonotone", "binary", 50, "1"), 1500),
    (("near-0.9", "comonotone", "binary", 10, "mix-random"), 1500),
    (("near-0.9", "comonotone", "binary", 20, "mix-difficulty"), 1500),
    (("near-0.9", "gumbel", "binary", 10, "1"), 1500),
    (("near-0.9", "comonotone", "graded", 10, "mix-difficulty"), 1500),
]

# A spread of further cells (every population, coupling, score type, size and seed design
# appears at least once), checked at the multiplicity-aware tolerance of their replicates.
SPREAD = [
    ("near-0.5", "independent", "binary", 10, "1"),
    ("near-0.5", "comonotone", "graded", 20, "5"),
    ("near-0.5", "gumbel", "binary", 50, "mix-random"),
    ("near-0.9", "gumbel", "graded", 150, "mix-difficulty"),
    ("near-0.9", "independent", "binary", 20, "20"),
    ("null-0.9", "comonotone", "binary", 10, "1"),
    ("null-0.9", "gumbel", "binary", 20, "mix-difficulty"),
    ("null-0.9", "independent", "graded", 50, "5"),
    ("null-0.9", "comonotone", "graded", 500, "1"),
]


@pytest.mark.parametrize(("cell", "reps"), OLD_FAILURES,
                         ids=["-".join(map(str, c)) for c, _ in OLD_FAILURES])
def test_new_interval_fixes_the_cells_where_the_old_one_failed(cell, reps):
    result = run_cell(*cell, reps=reps, seed=cell_seed(cell))
    old_bound = 0.935 - Z_FAMILY * mc_se(0.935, reps)
    assert result.coverage_old < old_bound, (
        f"{cell}: the old interval covered {result.coverage_old:.4f}; this cell no longer "
        "shows the failure it is here for")
    check_cell(result, str(cell), key=cell)


@pytest.mark.parametrize("cell", SPREAD, ids=["-".join(map(str, c)) for c in SPREAD])
def test_coverage_grid_reduced(cell):
    check_cell(run_cell(*cell, reps=800, seed=cell_seed(cell)), str(cell), key=cell)


@pytest.mark.parametrize("cell", [("near-0.9", "comonotone", "binary", 150, "1"),
                                  ("near-0.5", "gumbel", "binary", 150, "5"),
                                  ("near-0.9", "gumbel", "graded", 150, "20")],
                         ids=lambda c: "-".join(map(str, c)))
def test_power_beside_size_where_the_old_test_was_calibrated(cell):
    # A test that never rejects passes every size check: where the old test's interval was
    # calibrated, the new test must be about as powerful (within 3.9 MC SEs of a rate
    # difference, 800 replicates), and powerful in absolute terms.
    result = run_cell(*cell, reps=800, seed=cell_seed(cell) + 1)
    se = np.sqrt(2 * 0.25 / result.reps)
    assert result.reject_new >= result.reject_old - Z_FAMILY * se, result
    assert result.reject_new > 0.3, result


# ----------------------------------------------------------------------------- full grid
@pytest.mark.slow
def test_coverage_grid_full():
    rows = []
    for cell in all_cells():
        result = run_cell(*cell, reps=2000, seed=cell_seed(cell))
        rows.append(dict(zip(("population", "coupling", "scores", "questions", "seeds"),
                             cell, strict=True), **result.__dict__))
    frame = pd.DataFrame(rows)
    out = os.environ.get("COUPLED_GRID_OUT")
    if out:
        frame.to_csv(out, index=False)
    failures = []
    for row, cell in zip(frame.itertuples(), all_cells(), strict=True):
        try:
            check_cell(CellResult(**{k: getattr(row, k) for k in CellResult.__dataclass_fields__}),
                       str(cell), key=cell, ledger=True)
        except AssertionError as error:
            failures.append(str(error))
    assert not failures, "\n".join(failures)
