"""Error-vs-n curves (Fig. 2c): the subsampling law, the two code paths, the saving rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_analysis_benchmark_sim import make_population, simulate_replicates, to_scores

import coupled.analysis.errorcurve as errorcurve
from coupled.analysis.errorcurve import (
    default_sizes,
    error_curve,
    error_curves,
    fit_error_scale,
    samples_for_error,
    subsample_mean_errors,
)

POP = make_population()


def _mc_close(a: np.ndarray, b: np.ndarray, n_se: float = 4.0) -> None:
    """Means of two independent Monte-Carlo samples (last axis) agree within n_se SEs."""
    se = np.sqrt(a.var(axis=-1) / a.shape[-1] + b.var(axis=-1) / b.shape[-1])
    assert np.all(np.abs(a.mean(axis=-1) - b.mean(axis=-1)) < n_se * se)


@pytest.mark.parametrize("replace", [True, False])
def test_counting_path_and_index_path_have_the_same_law(monkeypatch, replace):
    values = np.random.default_rng(0).choice([-1.0, 0.0, 1.0], p=[0.2, 0.5, 0.3], size=500)
    sizes = np.array([5, 40, 200, 450])
    counted = subsample_mean_errors(values, sizes, 3000, replace=replace, rng=1)
    monkeypatch.setattr(errorcurve, "_MAX_LEVELS", 0)  # force drawing indices
    indexed = subsample_mean_errors(values, sizes, 3000, replace=replace, rng=2)
    _mc_close(counted, indexed)
    _mc_close(counted**2, indexed**2)


def test_with_replacement_error_follows_the_iid_law():
    # The mean of n draws with replacement has variance sigma^2 / n (sigma^2: pool variance,
    # ddof 0) exactly; the mean squared error must match within 4 Monte-Carlo SEs.
    values = np.random.default_rng(3).exponential(size=1000)  # skewed, many levels
    sizes = np.array([10, 100, 1000])
    errors = subsample_mean_errors(values, sizes, 4000, rng=4)
    squared = errors**2
    expected = values.var() / sizes
    se = squared.std(axis=1) / np.sqrt(squared.shape[1])
    assert np.all(np.abs(squared.mean(axis=1) - expected) < 4 * se)


def test_without_replacement_has_the_finite_population_correction():
    values = np.random.default_rng(5).normal(size=300)
    sizes = np.array([30, 150, 300])
    errors = subsample_mean_errors(values, sizes, 4000, replace=False, rng=6)
    assert np.all(errors[-1] < 1e-12)  # the whole pool: no error at all
    n_total = len(values)
    expected = values.var(ddof=1) / sizes * (n_total - sizes) / n_total
    squared = errors[:-1] ** 2
    se = squared.std(axis=1) / np.sqrt(squared.shape[1])
    assert np.all(np.abs(squared.mean(axis=1) - expected[:-1]) < 4 * se)


@given(st.floats(0.01, 10.0), st.integers(50, 5000), st.booleans())
def test_fit_recovers_the_scale_of_an_exact_law(scale, n_total, replace):
    sizes = default_sizes(n_total)
    x = 1 / np.sqrt(sizes) if replace else np.sqrt(1 / sizes - 1 / n_total)
    curve = pd.DataFrame({"n": sizes, "mean_abs_error": scale * x})
    fitted = fit_error_scale(curve, n_total, replace)
    assert fitted == pytest.approx(scale, rel=1e-9)
    error = scale * x[len(x) // 3]
    n = samples_for_error(fitted, error, n_total, replace)
    assert n == pytest.approx(sizes[len(x) // 3], rel=1e-6)


def _two_modes(n_questions=300, n_seeds=10, seed=0):
    rng = np.random.default_rng(seed)
    a, b, mask = simulate_replicates(POP, 1, n_questions, n_seeds, "coupled", rng)
    ia, ib, imask = simulate_replicates(POP, 1, n_questions, n_seeds, "independent", rng)
    return pd.concat([to_scores(a[0], b[0], mask[0], "coupled"),
                      to_scores(ia[0], ib[0], imask[0], "independent")], ignore_index=True)


def test_row_saving_matches_the_variance_ratio():
    frame = _two_modes()
    curves, saving = error_curves(frame, "m_a", "m_b", unit="row", n_resamples=2000)
    assert set(curves["mode"]) == {"coupled", "independent"}
    assert (curves["ci_low"] <= curves["mean_abs_error"]).all()
    # The fitted c/sqrt(n) saving estimates 1 - (row variance ratio) on the same data, so it
    # must sit inside that ratio's bootstrap interval.
    assert saving.theoretical_ci_low < saving.saving < saving.theoretical_ci_high
    assert 0 < saving.saving < 1 and saving.n_coupled < saving.n_independent
    truth = 1 - POP.ratio()
    se = (saving.theoretical_ci_high - saving.theoretical_ci_low) / (2 * 1.96)
    assert abs(saving.saving - truth) < 4 * se


def test_question_saving_is_smaller_than_row_saving_and_matches_its_theory():
    frame = _two_modes()
    _, by_row = error_curves(frame, "m_a", "m_b", unit="row", n_resamples=1000)
    _, by_question = error_curves(frame, "m_a", "m_b", unit="question", n_resamples=4000)
    # Averaging seeds shrinks the within part that coupling reduces, so per question the
    # saving is smaller; the curve's saving equals 1 - ratio of per-question-mean variances up
    # to subsampling noise (4000 resamples: relative error of c about 1 %, so 0.05 is ample).
    assert by_question.saving < by_row.saving
    assert by_question.saving == pytest.approx(by_question.theoretical_saving, abs=0.05)
    # the question-unit theory has a bootstrap interval now, never a point posing as one
    assert by_question.theoretical_ci_low < by_question.theoretical_saving \
        < by_question.theoretical_ci_high


@pytest.mark.parametrize("n_questions", [2, 5])
def test_question_saving_on_few_questions_is_a_clear_error(n_questions):
    frame = _two_modes(n_questions=n_questions, n_seeds=3)
    with pytest.raises(ValueError, match="at least 6"):
        error_curves(frame, "m_a", "m_b", unit="question", n_resamples=50,
                     sizes=np.array([1, 2]))


def test_error_curve_one_mode_and_bad_input():
    frame = _two_modes(n_questions=50, n_seeds=2)
    curve = error_curve(frame, "m_a", "m_b", mode="independent", unit="row", n_resamples=200,
                        reference=POP.effect)
    assert list(curve.columns) == ["mode", "unit", "n", "mean_abs_error", "ci_low", "ci_high"]
    assert curve["n"].max() == 100 and (curve["mode"] == "independent").all()
    with pytest.raises(ValueError, match="unit"):
        error_curve(frame, "m_a", "m_b", unit="seed")
    with pytest.raises(ValueError, match="cannot exceed"):
        error_curve(frame, "m_a", "m_b", sizes=[500], replace=False)
    with pytest.raises(ValueError, match="positive"):
        samples_for_error(1.0, 0.0)
