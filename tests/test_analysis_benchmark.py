"""Benchmark comparisons: estimator properties, tests, degenerate cases, variance reduction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from test_analysis_benchmark_sim import (
    Population,
    make_population,
    simulate_replicates,
    to_scores,
)

from coupled.analysis._clustered import question_moments
from coupled.analysis.benchmark import (
    compare_models,
    mean_difference,
    mean_difference_replicates,
    question_statistics,
    variance_ratio_from_moments,
    variance_reduction,
)
from coupled.tables import TableError

POP = make_population()


def _one_run(mode="coupled", n_questions=60, n_seeds=10, seed=0, unbalanced=False, pop=POP):
    rng = np.random.default_rng(seed)
    a, b, mask = simulate_replicates(pop, 1, n_questions, n_seeds, mode, rng, unbalanced)
    return a[0], b[0], mask[0]


# ----------------------------------------------------------------------------- estimator
@st.composite
def unbalanced_tables(draw):
    n_questions = draw(st.integers(2, 8))
    rows = []
    for q in range(n_questions):
        for s in range(draw(st.integers(1, 4))):
            for model in ("x", "y"):
                rows.append({"task": "t", "prompt_id": f"p{q}", "seed": s, "mode": "coupled",
                             "coupling": "gumbel", "model": model,
                             "score": draw(st.floats(0, 1, allow_nan=False))})
    return pd.DataFrame(rows)


@given(unbalanced_tables(), st.randoms(use_true_random=False))
def test_estimate_is_mean_of_question_means_and_order_free(frame, random):
    wide = frame.pivot(index=["prompt_id", "seed"], columns="model", values="score")
    per_question = (wide["x"] - wide["y"]).groupby(level="prompt_id").mean()
    result = mean_difference(frame, "x", "y")
    assert result.estimate == pytest.approx(per_question.mean(), abs=1e-12)
    assert result.n_questions == len(per_question)
    assert result.ci_low <= result.estimate <= result.ci_high
    shuffled = frame.sample(frac=1.0, random_state=random.randint(0, 2**31))
    again = mean_difference(shuffled, "x", "y")
    assert again.estimate == pytest.approx(result.estimate, abs=1e-12)
    assert again.ci_high == pytest.approx(result.ci_high, abs=1e-12)
    swapped = mean_difference(frame, "y", "x")
    assert swapped.estimate == pytest.approx(-result.estimate, abs=1e-12)
    assert swapped.ci_low == pytest.approx(-result.ci_high, abs=1e-12)
    assert swapped.pvalue == pytest.approx(result.pvalue, abs=1e-12)


def test_se_is_the_question_clustered_se_and_the_interval_is_near_t_where_differences_abound():
    a, b, mask = _one_run(unbalanced=True)
    result = mean_difference(to_scores(a, b, mask, "coupled"), "m_a", "m_b")
    means = question_moments(a, b, mask).mean_diff
    t = stats.ttest_1samp(means, 0.0)
    low, high = t.confidence_interval(0.95)
    assert result.se == pytest.approx(stats.sem(means), rel=1e-10)
    # Differences are common here (60 questions x up to 10 seeds): the score interval on
    # effective counts is the clustered t interval up to its skew correction.
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), abs=0.25 * (high - low))
    assert result.confidence_interval() == (result.ci_low, result.ci_high)
    assert result.test == "clustered score test"
    assert result.n_effective > result.n_questions


def test_dataframe_api_agrees_with_replicate_core():
    rng = np.random.default_rng(4)
    a, b, mask = simulate_replicates(POP, 5, 40, 6, "independent", rng, unbalanced=True)
    core = mean_difference_replicates(a, b, mask)
    for r in range(5):
        one = mean_difference(to_scores(a[r], b[r], mask[r], "independent"), "m_a", "m_b",
                              mode="independent")
        assert one.estimate == pytest.approx(core.estimate[r], abs=1e-12)
        assert one.ci_low == pytest.approx(core.ci_low[r], abs=1e-12)
        assert one.ci_high == pytest.approx(core.ci_high[r], abs=1e-12)
        assert one.pvalue == pytest.approx(core.pvalue[r], abs=1e-12)


def test_missing_rows_of_one_model_are_left_out_of_the_pair():
    a, b, mask = _one_run(n_questions=10, n_seeds=3)
    frame = to_scores(a, b, mask, "coupled")
    dropped = frame.drop(frame[(frame["model"] == "m_b") & (frame["seed"] == 2)].index)
    result = mean_difference(dropped, "m_a", "m_b")
    expected = (a[:, :2] - b[:, :2]).mean()
    assert result.estimate == pytest.approx(expected)
    assert result.n_rows == 20


def test_a_question_one_model_lacks_is_an_error_naming_it_unless_dropped():
    a, b, mask = _one_run(n_questions=10, n_seeds=3)
    frame = to_scores(a, b, mask, "coupled")
    lacking = frame["prompt_id"].unique()[3]
    dropped = frame.drop(frame[(frame["model"] == "m_b") & (frame["prompt_id"] == lacking)].index)
    with pytest.raises(ValueError, match=f"{lacking}.*only 'm_a'|{lacking} \\(only m_a\\)"):
        mean_difference(dropped, "m_a", "m_b")
    with pytest.raises(ValueError, match="missing_questions='drop'"):
        compare_models(dropped)
    result = mean_difference(dropped, "m_a", "m_b", missing_questions="drop")
    assert result.n_questions == 9
    with pytest.raises(ValueError, match="missing_questions must be"):
        mean_difference(frame, "m_a", "m_b", missing_questions="ignore")


# ----------------------------------------------------------------------------- degenerate
def test_models_that_never_differ_get_a_rule_of_three_width_not_zero():
    a, _, mask = _one_run(n_questions=30, n_seeds=4)
    result = mean_difference(to_scores(a, a, mask, "coupled"), "m_a", "m_b")
    assert result.estimate == 0 and result.pvalue == 1
    # worst case, one independent row per question: Tango at b = c = 0 on 30 rows with t(29)
    t = stats.t.isf(0.025, 29)
    assert result.ci_high == pytest.approx(t**2 / (30 + t**2))
    assert result.ci_low == pytest.approx(-t**2 / (30 + t**2))
    assert "no paired row differs in 30 questions" in result.note
    asserted = mean_difference(to_scores(a, a, mask, "coupled"), "m_a", "m_b", identical=True)
    assert (asserted.estimate, asserted.ci_low, asserted.ci_high, asserted.pvalue) == (0, 0, 0, 1)
    assert "asserted" in asserted.note
    reduction = variance_reduction(to_scores(a, a, mask, "coupled"), "m_a", "m_b")
    values = [v for v in reduction.__dict__.values() if isinstance(v, float)]
    assert np.all(np.isfinite(values))
    assert reduction.ratio == 0.0 and reduction.ratio_ci_low == 0.0
    assert 0.0 < reduction.ratio_ci_high  # never zero-width: what 30 questions cannot rule out
    assert reduction.saving == 1.0 and "degenerate" in reduction.note


def test_identical_is_an_assertion_checked_against_the_data():
    a, b, mask = _one_run(n_questions=10, n_seeds=2)
    with pytest.raises(ValueError, match="identical=True"):
        mean_difference(to_scores(a, b, mask, "coupled"), "m_a", "m_b", identical=True)


def test_fifteen_questions_one_seed_never_disagreeing_is_rule_of_three():
    a, _, mask = _one_run(n_questions=15, n_seeds=1)
    result = mean_difference(to_scores(a, a, mask, "coupled"), "m_a", "m_b")
    z2 = stats.norm.isf(0.025) ** 2
    assert (result.ci_low, result.ci_high) == pytest.approx((-z2 / (15 + z2), z2 / (15 + z2)))
    assert 0.15 < result.ci_high < 3.5 / 15  # rule-of-three order (3/15 = 0.2)
    assert result.test == "mcnemar" and result.pvalue == 1


def test_constant_difference_is_not_a_point():
    ones = np.ones((20, 3))
    frame = to_scores(ones, np.zeros((20, 3)), np.ones((20, 3), bool), "coupled")
    result = mean_difference(frame, "m_a", "m_b")
    assert result.estimate == 1 and result.ci_high == 1
    t = stats.t.isf(0.025, 19)
    # Tango at b = n on 20 rows: Z = sqrt(n (1 - d) / (1 + d)), so low = (n - t^2) / (n + t^2)
    assert result.ci_low == pytest.approx((20 - t**2) / (20 + t**2))
    assert result.pvalue < 1e-3


@pytest.mark.parametrize("other", [1.0, 0.0], ids=["identical constant", "right vs wrong"])
def test_a_ratio_neither_mode_varies_is_a_clear_error_and_the_differences_stand(other):
    # 0/0: no zero-width [1, 1]; compare_models says so and keeps the mean difference
    ones, full = np.ones((20, 3)), np.ones((20, 3), bool)
    frame = to_scores(ones, ones * other, full, "coupled")
    with pytest.raises(ValueError, match="varies in neither mode.*cannot be estimated"):
        variance_reduction(frame, "m_a", "m_b")
    with pytest.warns(UserWarning, match="variance ratio not estimated.*varies in neither"):
        report = compare_models(frame)
    assert report.variance_reduction.empty
    assert report.differences["estimate"].tolist() == [1.0 - other]


def test_analyze_prints_the_differences_of_a_pair_whose_ratio_cannot_be_estimated(tmp_path,
                                                                                   capsys):
    from coupled.cli.main import main

    ones, full = np.ones((20, 3)), np.ones((20, 3), bool)
    path = tmp_path / "right_vs_wrong.csv"
    to_scores(ones, 0 * ones, full, "coupled").to_csv(path, index=False)
    assert main(["analyze", str(path)]) == 0
    screen = capsys.readouterr().out
    differences = screen.index("Mean score differences")
    assert "m_a − m_b  coupled  gumbel      1.0000" in screen[differences:]
    assert "Variance of one row's difference" not in screen
    assert "note: subject '(all)', m_a vs m_b: variance ratio not estimated" in screen
    assert "varies in neither mode" in screen


@pytest.mark.parametrize("big", [1e40, 1e200, 1e307])
def test_huge_scores_are_rescaled_before_squaring(big):
    # The table schema refuses |score| > 1e50; the array core must still not overflow.
    a, b, mask = _one_run(n_questions=20, n_seeds=3)
    result = mean_difference_replicates(a * big, b * big, mask)
    unit = mean_difference_replicates(a, b, mask)
    assert np.isfinite([result.estimate, result.ci_low, result.ci_high, result.se]).all()
    assert result.ci_low / big == pytest.approx(unit.ci_low, rel=1e-9, abs=1e-12)
    assert result.pvalue == pytest.approx(unit.pvalue, rel=1e-9)
    if big < 1e50:
        frame = mean_difference(to_scores(a * big, b * big, mask, "coupled"), "m_a", "m_b")
        assert frame.ci_high / big == pytest.approx(unit.ci_high, rel=1e-9)
    with pytest.raises(ValueError, match="overflows"):
        mean_difference_replicates(a * 1e308, -b * 1e308, mask)


# ----------------------------------------------------------------------------- tests
def test_one_seed_binary_test_is_statsmodels_uncorrected_mcnemar():
    for seed, n_questions in ((3, 200), (4, 25), (5, 12)):
        a, b, mask = _one_run(n_questions=n_questions, n_seeds=1, seed=seed)
        result = mean_difference(to_scores(a, b, mask, "coupled"), "m_a", "m_b")
        n10 = int(((a == 1) & (b == 0)).sum())
        n01 = int(((a == 0) & (b == 1)).sum())
        assert result.test == "mcnemar"
        expected = (1.0 if n10 + n01 == 0 else
                    mcnemar([[0, n10], [n01, 0]], exact=False, correction=False).pvalue)
        assert result.pvalue == pytest.approx(expected, rel=1e-9)


@st.composite
def paired_designs(draw):
    n_questions = draw(st.integers(2, 25))
    n_seeds = draw(st.integers(1, 6))
    graded = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p_diff = draw(st.floats(0.0, 0.5))  # how often a row differs: rare to common
    base = rng.random((n_questions, n_seeds)) < draw(st.floats(0.05, 0.95))
    a = base.astype(float)
    b = np.where(rng.random(a.shape) < p_diff, 1.0 - a, a)
    if graded:
        a, b = a * rng.choice([0.5, 1.0], a.shape), b * rng.choice([0.2, 1.0], a.shape)
    mask = rng.random(a.shape) < draw(st.floats(0.3, 1.0))
    mask[:, 0] = True
    return a, b, mask, draw(st.sampled_from([0.01, 0.05, 0.1, 0.2]))


@given(paired_designs())
def test_test_is_the_inversion_of_the_interval(design):
    a, b, mask, alpha = design
    r = mean_difference_replicates(a, b, mask, alpha=alpha)
    outside = r.ci_low > 0 or r.ci_high < 0
    assert (r.pvalue < alpha) == outside
    assert r.ci_low <= r.estimate <= r.ci_high
    assert r.ci_high > r.ci_low  # never zero-width without identical=True
    assert -1 <= r.ci_low and r.ci_high <= 1


@given(st.integers(0, 30), st.integers(0, 30), st.integers(0, 40), st.sampled_from([1.0, 2.5]))
def test_tango_interval_is_the_set_where_the_score_statistic_is_within_the_critical_value(
        b, c, concordant, critical):
    from coupled.analysis.intervals import tango_interval, tango_statistic

    n = b + c + concordant
    if n == 0:
        return
    low, high = tango_interval(np.array(b / n), np.array(c / n), np.array(float(n)), critical)
    grid = np.linspace(-1 + 1e-9, 1 - 1e-9, 4001)
    inside = np.abs(tango_statistic(grid, b / n, c / n, float(n))) <= critical
    assert np.all(inside[(grid > low + 1e-6) & (grid < high - 1e-6)])
    assert not np.any(inside[(grid < low - 1e-6) | (grid > high + 1e-6)])


@given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 40))
def test_tango_statistic_at_zero_is_mcnemars_and_zero_at_the_estimate(b, c, concordant):
    from coupled.analysis.intervals import tango_statistic

    n = b + c + concordant
    if b + c == 0:
        return
    z0 = tango_statistic(np.array(0.0), b / n, c / n, float(n))
    assert z0 == pytest.approx((b - c) / np.sqrt(b + c), rel=1e-9, abs=1e-12)
    assert tango_statistic(np.array((b - c) / n), b / n, c / n, float(n)) == pytest.approx(
        0.0, abs=1e-9)


def test_plain_mcnemar_over_rejects_on_clustered_rows_but_our_test_does_not():
    # Null population: half the questions favour a, the mirror half favour b — the mean
    # difference is exactly 0, but per-question differences are not, so rows of a question are
    # correlated. 400 replicates: Monte-Carlo SE of a 5 % rate is 1.09 points; our test must sit
    # within 3.3 SEs of 5 %, plain McNemar on all rows is expected far above it.
    half = make_population(n=1000, seed=11)
    null = Population(p=np.vstack([half.p, half.q]), q=np.vstack([half.q, half.p]))
    assert abs(null.effect) < 1e-15
    reps = 400
    a, b, mask = simulate_replicates(null, reps, 50, 10, "coupled", np.random.default_rng(5))
    ours = mean_difference_replicates(a, b, mask).pvalue < 0.05
    n10 = ((a == 1) & (b == 0)).sum(axis=(1, 2))
    n01 = ((a == 0) & (b == 1)).sum(axis=(1, 2))
    plain = np.array([mcnemar([[0, x], [y, 0]]).pvalue < 0.05 for x, y in zip(n10, n01,
                                                                             strict=True)])
    band = 3.3 * np.sqrt(0.05 * 0.95 / reps)
    assert abs(ours.mean() - 0.05) < band
    assert plain.mean() > 0.05 + 3 * band  # plain McNemar: wildly anti-conservative


# ----------------------------------------------------------------------------- variances
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # pandas' cov of a single-seed question
def test_question_statistics_match_pandas():
    a, b, mask = _one_run(n_questions=15, n_seeds=5, unbalanced=True)
    frame = to_scores(a, b, mask, "coupled")
    table = question_statistics(frame, "m_a", "m_b")
    wide = frame.pivot(index=["prompt_id", "seed"], columns="model", values="score")
    grouped = wide.groupby(level="prompt_id")
    expected_cov = grouped.apply(lambda g: g["m_a"].cov(g["m_b"])).fillna(0.0)
    table = table.set_index("prompt_id")
    assert np.allclose(table["cov"], expected_cov.loc[table.index])
    assert np.allclose(table["var_a"], grouped["m_a"].var().fillna(0.0).loc[table.index])
    assert np.allclose(table["var_diff"], table["var_a"] + table["var_b"] - 2 * table["cov"])
    assert not table.isna().any().any()


def test_independent_variance_from_coupled_data_matches_real_independent_data():
    # 300 replicated benchmarks: the mean (over replicates) within-question independent variance
    # estimated from coupled rows, the one measured on independent rows, and the population
    # truth must agree within 4 Monte-Carlo SEs of their difference.
    rng = np.random.default_rng(8)
    reps = 300
    ca, cb, cm = simulate_replicates(POP, reps, 60, 8, "coupled", rng)
    ia, ib, im = simulate_replicates(POP, reps, 60, 8, "independent", rng)
    from_coupled = question_moments(ca, cb, cm).var_diff_if_independent.mean(axis=-1)
    measured = question_moments(ia, ib, im).var_diff.mean(axis=-1)
    se = np.sqrt(from_coupled.var() / reps + measured.var() / reps)
    assert abs(from_coupled.mean() - measured.mean()) < 4 * se
    truth = POP.within("independent")
    assert abs(from_coupled.mean() - truth) < 4 * from_coupled.std() / np.sqrt(reps)
    coupled_within = question_moments(ca, cb, cm).var_diff.mean(axis=-1)
    assert abs(coupled_within.mean() - POP.within("coupled")) < 4 * coupled_within.std() / 18


def test_variance_reduction_both_sources_on_one_run():
    a, b, mask = _one_run(n_questions=400, n_seeds=10, seed=2)
    ia, ib, im = _one_run("independent", n_questions=400, n_seeds=10, seed=3)
    frame = pd.concat([to_scores(a, b, mask, "coupled"), to_scores(ia, ib, im, "independent")])
    measured = variance_reduction(frame, "m_a", "m_b")
    alone = variance_reduction(frame, "m_a", "m_b", independent="from_coupled")
    assert measured.independent_source == "measured"
    assert alone.independent_source == "from_coupled"
    for result in (measured, alone):
        # Truth within 4 SEs (SE read off the 95 % interval's half-width); calibration of the
        # interval itself is the job of tests/test_coverage_benchmark.py.
        se = (result.ratio_ci_high - result.ratio_ci_low) / (2 * 1.96)
        assert abs(result.ratio - POP.ratio()) < 4 * se
        assert result.saving == pytest.approx(1 - result.ratio)
        assert result.saving_ci_low == pytest.approx(1 - result.ratio_ci_high)
        assert result.confidence_interval() == (result.ratio_ci_low, result.ratio_ci_high)
    assert measured.var_coupled == alone.var_coupled


def test_variance_ratio_core_agrees_with_dataframe_api():
    a, b, mask = _one_run(n_questions=50, n_seeds=5, unbalanced=True)
    frame = to_scores(a, b, mask, "coupled")
    api = variance_reduction(frame, "m_a", "m_b")
    core = variance_ratio_from_moments(question_moments(a, b, mask))
    assert api.ratio == pytest.approx(core["ratio"])
    assert api.ratio_ci_low == pytest.approx(core["ratio_ci_low"])


@pytest.mark.parametrize("n_questions", [2, 3, 5])
def test_variance_ratio_on_few_questions_is_a_clear_error(n_questions):
    a, b, mask = _one_run(n_questions=n_questions, n_seeds=4)
    with pytest.raises(ValueError, match=f"{n_questions} questions; an interval for the"):
        variance_reduction(to_scores(a, b, mask, "coupled"), "m_a", "m_b")


def test_variance_ratio_with_one_seed_per_question_cannot_be_estimated():
    a, b, mask = _one_run(n_questions=40, n_seeds=1)
    frame = to_scores(a, b, mask, "coupled")
    with pytest.raises(ValueError, match="one seed per question.*cannot be estimated"):
        variance_reduction(frame, "m_a", "m_b")
    with pytest.warns(UserWarning, match="variance ratio not estimated"):
        report = compare_models(frame)
    assert len(report.differences) == 1 and report.variance_reduction.empty


@given(st.integers(6, 12), st.integers(2, 4), st.integers(0, 10**6))
def test_variance_ratio_interval_is_never_zero_width_or_an_internal_error(n_q, n_s, seed):
    rng = np.random.default_rng(seed)
    a = (rng.random((n_q, n_s)) < 0.8).astype(float)
    b = np.where(rng.random((n_q, n_s)) < 0.05, 1 - a, a)
    numbers = variance_ratio_from_moments(question_moments(a, b))
    assert numbers["ratio_ci_low"] <= numbers["ratio"] <= numbers["ratio_ci_high"]
    if numbers["note"] == "":
        assert numbers["ratio_ci_high"] > numbers["ratio_ci_low"]


def _one_difference(n_questions=8, n_seeds=5):
    """A coupled run where one row of question 0 differs, and a fixed random independent run."""
    a, b = np.zeros((n_questions, n_seeds)), np.zeros((n_questions, n_seeds))
    a[0, 0] = 1
    rng = np.random.default_rng(1)
    ia, ib = (rng.integers(0, 2, (n_questions, n_seeds)).astype(float) for _ in range(2))
    return a, b, ia, ib


@pytest.mark.parametrize("branch", ["degenerate", "jackknife"])
@pytest.mark.parametrize("measured", [True, False], ids=["measured", "from_coupled"])
def test_variance_ratio_interval_does_not_depend_on_the_unit_of_the_scores(branch, measured):
    a, b, ia, ib = _one_difference()
    if branch == "jackknife":
        rng = np.random.default_rng(2)
        a, b = (rng.integers(0, 2, a.shape).astype(float) for _ in range(2))
    full = np.ones(a.shape, bool)
    results = []
    for unit in (1.0, 100.0):
        frames = [to_scores(a * unit, b * unit, full, "coupled")]
        if measured:
            frames.append(to_scores(ia * unit, ib * unit, full, "independent"))
        results.append(variance_reduction(pd.concat(frames), "m_a", "m_b"))
    on_one, on_hundred = results
    assert ("degenerate" in on_one.note) == (branch == "degenerate")
    for field in ("ratio", "ratio_ci_low", "ratio_ci_high"):
        assert getattr(on_hundred, field) == pytest.approx(getattr(on_one, field), rel=1e-9)
    # never [0, estimate]: the bound is what the coupled rows cannot rule out (before the fix
    # on 0-100 scores: [0, 0.0438] measured, [0, 1] from coupled; now [0, 0.567], [0, 13.0])
    assert on_hundred.ratio_ci_high > on_hundred.ratio


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.2, -0.1, float("nan")])
def test_variance_ratio_names_a_bad_alpha(alpha):
    a, b, mask = _one_run(n_questions=20, n_seeds=3)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        variance_reduction(to_scores(a, b, mask, "coupled"), "m_a", "m_b", alpha=alpha)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        variance_ratio_from_moments(question_moments(a, b, mask), alpha=alpha)


def test_variance_ratio_at_large_alpha_narrows_or_refuses_where_degenerate():
    a, b, mask = _one_run(n_questions=20, n_seeds=3)
    moments = question_moments(a, b, mask)
    widths = []
    for alpha in (0.05, 0.5, 0.9):
        r = variance_ratio_from_moments(moments, alpha=alpha)
        assert r["ratio_ci_low"] < r["ratio"] < r["ratio_ci_high"] and r["note"] == ""
        widths.append(r["ratio_ci_high"] / r["ratio_ci_low"])
    assert widths[0] > widths[1] > widths[2]
    one, zero, _, _ = _one_difference()
    degenerate = question_moments(one, zero)
    highs = [variance_ratio_from_moments(degenerate, alpha=alpha)["ratio_ci_high"]
             for alpha in (0.05, 0.2, 0.45)]
    assert highs[0] > highs[1] > highs[2] > 1.0  # the ratio is 1 here (b never varies)
    with pytest.raises(ValueError, match="alpha = 0.5: .*one-sided bound.*needs alpha < 0.5"):
        variance_ratio_from_moments(degenerate, alpha=0.5)


def test_degenerate_note_names_the_side_that_caused_it():
    a, b, ia, ib = _one_difference()
    coupled_side = variance_ratio_from_moments(question_moments(a, b), question_moments(ia, ib))
    assert "coupled side" in coupled_side["note"]
    assert "independent side" not in coupled_side["note"]
    # the measured independent run differs on one row only: leaving that question out leaves
    # no independent variance, while the coupled run varies everywhere
    rng = np.random.default_rng(3)
    ca, cb = (rng.integers(0, 2, a.shape).astype(float) for _ in range(2))
    independent_side = variance_ratio_from_moments(question_moments(ca, cb),
                                                   question_moments(a, b))
    assert "independent side" in independent_side["note"]
    assert "coupled side" not in independent_side["note"]
    assert independent_side["ratio_ci_high"] > independent_side["ratio"] > 1.0
    never = variance_ratio_from_moments(question_moments(b, b), question_moments(ia, ib))
    assert "the coupled difference is the same on every row" in never["note"]
    assert never["ratio"] == 0.0 < never["ratio_ci_high"]


# ----------------------------------------------------------------------------- whole table
def test_compare_models_pairs_modes_and_subjects():
    a, b, mask = _one_run(n_questions=40, n_seeds=4)
    c, _, _ = _one_run(n_questions=40, n_seeds=4, seed=9)
    subjects = np.array(["alg", "geo"] * 20)
    coupled = pd.concat([to_scores(a, b, mask, "coupled", subjects=subjects),
                         to_scores(c, b, mask, "coupled", models=("m_c", "m_b"),
                                   subjects=subjects).query("model == 'm_c'")])
    ia, ib, im = _one_run("independent", n_questions=40, n_seeds=4, seed=5)
    independent = to_scores(ia, ib, im, "independent", subjects=subjects)
    frame = pd.concat([coupled, independent], ignore_index=True)
    report = compare_models(frame, by_subject=True)
    diffs = report.differences
    overall = diffs[diffs["subject"] == "(all)"]
    # pairs (m_a, m_b), (m_a, m_c), (m_b, m_c) coupled; only (m_a, m_b) independent
    assert len(overall) == 4
    assert set(diffs["subject"]) == {"(all)", "alg", "geo"}
    row = diffs[(diffs["subject"] == "geo") & (diffs["mode"] == "coupled")
                & (diffs["model_a"] == "m_a") & (diffs["model_b"] == "m_b")].iloc[0]
    direct = mean_difference(frame[frame["subject"] == "geo"], "m_a", "m_b")
    assert row["estimate"] == pytest.approx(direct.estimate)
    assert row["ci_low"] == pytest.approx(direct.ci_low)
    vr = report.variance_reduction
    assert set(vr[vr["subject"] == "(all)"]["independent_source"]) == {"measured",
                                                                       "from_coupled"}
    assert not diffs.drop(columns="note").isna().any().any()


def test_bad_input_names_the_problem():
    a, b, mask = _one_run(n_questions=5, n_seeds=2)
    frame = to_scores(a, b, mask, "coupled")
    with pytest.raises(ValueError, match="model_b: model 'nope'"):
        mean_difference(frame, "m_a", "nope")
    with pytest.raises(ValueError, match="no rows with mode 'independent'"):
        mean_difference(frame, "m_a", "m_b", mode="independent")
    with pytest.raises(TableError, match="score"):
        mean_difference(frame.drop(columns="score"), "m_a", "m_b")
    with pytest.raises(ValueError, match="by_subject"):
        compare_models(frame, by_subject=True)
    with pytest.raises(ValueError, match="must differ"):
        mean_difference(frame, "m_a", "m_a")


def test_bootstrap_by_counts_equals_resampling_questions_and_matches_scipy_bca():
    from scipy import stats as scipy_stats
    from test_variance_ratio_unbalanced import clipped_components_ratio

    from coupled.analysis._clustered import component_features
    from coupled.analysis.benchmark import bca_ratio_interval

    def component_ratio_features(m):
        return np.concatenate([
            component_features(m.mean_diff, m.var_diff, m.var_diff, m.n, m.present,
                               m.has_spread),
            component_features(m.mean_diff, m.var_diff, m.var_diff_if_independent, m.n,
                               m.present, m.has_spread)], axis=1)

    a, b, mask = _one_run(n_questions=40, n_seeds=4, unbalanced=True, seed=6)
    features = component_ratio_features(question_moments(a, b, mask))
    # a resample as counts == the statistic recomputed on the resampled questions (the error
    # curves' question-unit saving bootstraps this statistic; the variance ratio itself has a
    # jackknife interval now, tests/test_variance_ratio_unbalanced.py)
    index = np.random.default_rng(1).integers(0, 40, size=40)
    counts = np.bincount(index, minlength=40)
    resampled = component_ratio_features(question_moments(a[index], b[index], mask[index]))
    assert clipped_components_ratio(counts @ features) == pytest.approx(
        clipped_components_ratio(resampled.sum(axis=0)), rel=1e-12)

    # the interval agrees with scipy's BCa on the same statistic (20 000 resamples each: the
    # interval ends' Monte-Carlo error is ~1 % of the width; allow 5 %)
    def statistic(*columns, axis=-1):
        stacked = np.stack([np.moveaxis(c, axis, -1) for c in columns], axis=-1)
        return clipped_components_ratio(stacked.sum(axis=-2))

    ours = bca_ratio_interval(features, 0.95, 20_000, np.random.default_rng(2),
                              clipped_components_ratio)
    theirs = scipy_stats.bootstrap(tuple(features.T), statistic, paired=True, vectorized=True,
                                   n_resamples=20_000, method="BCa",
                                   rng=np.random.default_rng(3)).confidence_interval
    width = theirs.high - theirs.low
    assert ours[0] == pytest.approx(theirs.low, abs=0.05 * width)
    assert ours[1] == pytest.approx(theirs.high, abs=0.05 * width)
