"""Rows imported from runs without shared noise (coupling "none") get every analysis that is
valid for them and a clear refusal from those that need shared noise."""

import numpy as np
import pandas as pd
import pytest

from coupled.analysis import (
    compare_modes,
    compare_modes_bradley_terry,
    derive_comparisons,
    mean_difference,
    model_scores,
    rank_sets,
    variance_reduction,
)


@pytest.fixture
def imported() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = [{"task": "t", "prompt_id": f"q{q}", "seed": s, "mode": "independent",
             "coupling": "none", "model": m, "score": float(rng.random() < p)}
            for q in range(30) for s in range(3) for m, p in (("a", 0.7), ("b", 0.5), ("c", 0.4))]
    return pd.DataFrame(rows)


def test_valid_analyses_run_on_rows_without_shared_noise(imported):
    means = model_scores(imported)
    assert set(means["coupling"]) == {"none"} and (means["ci_low"] < means["ci_high"]).all()
    result = mean_difference(imported, "a", "b", mode="independent", coupling="none")
    assert result.ci_low < result.estimate < result.ci_high
    ranks = rank_sets(derive_comparisons(imported))
    assert set(ranks["model"]) == {"a", "b", "c"}


def test_analyses_that_need_shared_noise_refuse_it_by_name(imported):
    with pytest.raises(ValueError, match="needs rows generated with shared noise"):
        variance_reduction(imported, "a", "b")
    comparisons = derive_comparisons(imported)
    with pytest.raises(ValueError, match="needs rows generated with shared noise"):
        compare_modes(comparisons)
    with pytest.raises(ValueError, match="needs rows generated with shared noise"):
        compare_modes_bradley_terry(comparisons)


def test_a_constant_score_outside_zero_one_gets_a_finite_non_degenerate_interval():
    for value in (5.0, -2.0, 1e6):
        table = pd.DataFrame({"task": "t", "prompt_id": [str(i) for i in range(10)], "seed": 0,
                              "mode": "coupled", "coupling": "gumbel", "model": "a",
                              "score": value})
        row = model_scores(table).iloc[0]
        assert row["mean"] == value and np.isfinite([row["ci_low"], row["ci_high"]]).all()
        assert row["ci_low"] <= value <= row["ci_high"] and row["ci_high"] > row["ci_low"]


def test_a_ratio_from_coupled_rows_with_unequal_seed_counts_says_what_it_assumes():
    rng = np.random.default_rng(7)
    rows = []
    for q in range(30):
        for s in range(1 if q % 3 else 20):  # unequal seed counts
            shared = rng.random()
            for model, p in (("a", 0.8), ("b", 0.7)):
                rows.append({"task": "t", "prompt_id": str(q), "seed": s, "mode": "coupled",
                             "coupling": "gumbel", "model": model, "score": float(shared < p)})
    table = pd.DataFrame(rows)
    with pytest.warns(UserWarning, match="assumes the seed count does not depend"):
        variance_reduction(table, "a", "b")
