"""The numbers users look for first (issue 13 §4): `coupled analyze` opens with each model's
mean score ± CI and the coupling check (a single-model table is valid), tie rates beside the
win-rates of Fig. 3 and Table 1, negative savings and mode-dependent orders explained where
they are printed, per-subject error curves and subsampling without replacement."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_analysis_benchmark_sim import make_population, simulate_replicates, to_scores

from coupled.analysis import coupling_check, model_scores
from coupled.analysis.errorcurve import error_curves, subsample_mean_errors
from coupled.cli.main import main

POP = make_population()
SUBJECTS = np.array(["algebra"] * 30 + ["biology"] * 27 + ["tiny"] * 3)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two models, 60 questions x 4 seeds per mode (subjects of 30, 27 and 3 questions),
    replies that are equal exactly when the scores are (so coupled replies agree more)."""
    folder = tmp_path_factory.mktemp("first_numbers")
    rng = np.random.default_rng(0)
    a, b, mask = simulate_replicates(POP, 1, 60, 4, "coupled", rng)
    ia, ib, imask = simulate_replicates(POP, 1, 60, 4, "independent", rng)
    scores = pd.concat([to_scores(a[0], b[0], mask[0], "coupled", subjects=SUBJECTS),
                        to_scores(ia[0], ib[0], imask[0], "independent", subjects=SUBJECTS)],
                       ignore_index=True)
    scores.drop(columns="subject").to_parquet(folder / "plain.parquet")
    scores["response"] = np.where(scores["score"] > 0, "The answer is A", "The answer is B")
    scores.to_parquet(folder / "scores.parquet")
    scores[scores["model"] == "m_a"].to_parquet(folder / "one.parquet")
    return folder


def _analyze_json(capsys, *argv) -> dict:
    assert main(["analyze", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ----------------------------------------------------------------------------- analyze opens
def test_analyze_opens_with_model_scores_then_coupling_check_then_differences(files, capsys):
    assert main(["analyze", str(files / "scores.parquet")]) == 0
    screen = capsys.readouterr().out
    first = screen.index("Mean score per model")
    check = screen.index("Coupling check")
    paired = screen.index("Mean score differences")
    assert first == 0 and first < check < paired
    table = pd.read_parquet(files / "scores.parquet")
    for row in model_scores(table).itertuples():
        assert f"{row.mean:.4f}" in screen[:check] and f"{row.ci_low:.4f}" in screen[:check]
    assert "m_a vs m_b:" in screen[check:paired]
    assert "negative saving" not in screen  # this pair saves: no explanation printed

    printed = _analyze_json(capsys, files / "scores.parquet")
    assert list(printed)[:3] == ["design", "model_scores", "coupling_check"]
    expected = model_scores(table)
    got = pd.DataFrame(printed["model_scores"])
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False,
                                  rtol=1e-12)
    rates = {r["mode"]: r["identical_rate"] for r in printed["coupling_check"]}
    direct = coupling_check(table).set_index("mode")["identical_rate"]
    assert rates == pytest.approx(direct.to_dict())
    assert rates["coupled"] > rates["independent"]  # coupling is on and doing its work
    assert printed["differences"]


def test_analyze_without_replies_has_no_coupling_check(files, capsys):
    assert main(["analyze", str(files / "plain.parquet")]) == 0
    screen = capsys.readouterr().out
    assert screen.startswith("Mean score per model") and "Coupling check" not in screen
    assert "coupling_check" not in _analyze_json(capsys, files / "plain.parquet")


def test_analyze_single_model_table(files, capsys):
    assert main(["analyze", str(files / "one.parquet")]) == 0
    screen = capsys.readouterr().out
    assert screen.startswith("Mean score per model")
    assert "One model (m_a): no pair to compare" in screen
    assert "Mean score differences" not in screen
    printed = _analyze_json(capsys, files / "one.parquet")
    assert printed["differences"] == [] and printed["variance_reduction"] == []
    assert {r["mode"] for r in printed["model_scores"]} == {"coupled", "independent"}
    # one model of a two-model table, by --models, is the same single-model report
    assert main(["analyze", str(files / "scores.parquet"), "--models", "m_b"]) == 0
    assert "One model (m_b): no pair to compare" in capsys.readouterr().out
    # an error curve needs two models: one clear error, exit 2
    assert main(["analyze", str(files / "one.parquet"), "--error-curve", "row"]) == 2
    assert "--error-curve" in capsys.readouterr().err


@settings(max_examples=15)
@given(n_questions=st.integers(1, 12), max_seeds=st.integers(1, 4),
       modes=st.sampled_from([("coupled",), ("independent",), ("coupled", "independent")]),
       data=st.data())
def test_analyze_single_model_matches_model_scores(tmp_path_factory, n_questions, max_seeds,
                                                   modes, data):
    """Any single-model table (unbalanced seeds, one or both modes, scores in [0, 1] or
    not): analyze runs and prints exactly model_scores' numbers."""
    rows = []
    for mode in modes:
        for q in range(n_questions):
            seeds = data.draw(st.integers(1, max_seeds))
            for seed in range(seeds):
                rows.append({"task": "t", "prompt_id": f"q{q}", "seed": seed, "mode": mode,
                             "coupling": "gumbel", "model": "solo",
                             "score": data.draw(st.sampled_from([0.0, 1.0, 0.5, 3.0]))})
    table = pd.DataFrame(rows)
    # (a mode whose scores are all one value outside [0, 1] is included: model_scores then
    # rescales by the smallest range holding that value and [0, 1], never by zero)
    path = tmp_path_factory.mktemp("solo") / "solo.csv"
    table.to_csv(path, index=False)
    capsys_free = _run_json(["analyze", str(path), "--json"])
    expected = model_scores(table)
    got = pd.DataFrame(capsys_free["model_scores"])
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False,
                                  rtol=1e-12)
    assert np.isfinite(got[["mean", "ci_low", "ci_high"]].to_numpy(dtype=float)).all()
    assert capsys_free["differences"] == []


def _run_json(argv: list[str]) -> dict:
    """``main(argv)``'s JSON on stdout (hypothesis tests cannot take the capsys fixture)."""
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(argv) == 0
    return json.loads(buffer.getvalue())


# ----------------------------------------------------------------------------- error curves
def test_error_curves_per_subject(files, capsys):
    printed = _analyze_json(capsys, files / "scores.parquet", "--by-subject", "--error-curve",
                            "question")
    savings = {r["subject"]: r for r in printed["sample_saving"]}
    assert set(savings) == {"(all)", "algebra", "biology", "tiny"}
    table = pd.read_parquet(files / "scores.parquet")
    for subject in ("algebra", "biology"):
        _, direct = error_curves(table[table["subject"] == subject], "m_a", "m_b",
                                 unit="question", coupling="gumbel", seed=0)
        assert savings[subject]["saving"] == pytest.approx(direct.saving, rel=1e-12)
        assert savings[subject]["note"] == ""
    _, whole = error_curves(table, "m_a", "m_b", unit="question", coupling="gumbel", seed=0)
    assert savings["(all)"]["saving"] == pytest.approx(whole.saving, rel=1e-12)
    # 3 questions are too few for a fit: that subject says why, the others are reported
    assert savings["tiny"]["saving"] is None and "no fit" in savings["tiny"]["note"]
    curves = pd.DataFrame(printed["error_curves"])
    assert set(curves["subject"]) == {"(all)", "algebra", "biology"}
    # per-subject accuracy too
    assert {r["subject"] for r in printed["model_scores"]} == {"(all)", "algebra", "biology",
                                                              "tiny"}
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["analyze", str(files / "scores.parquet"), "--by-subject",
                     "--error-curve", "question"]) == 0
    screen = capsys.readouterr().out
    assert "biology" in screen.split("Samples needed")[1]
    # the subject too small for a variance ratio is said in the output, not as a warning
    assert "note: subject 'tiny', m_a vs m_b: variance ratio not estimated" in screen
    assert not [w for w in caught if issubclass(w.category, UserWarning)]
    assert any("tiny" in note for note in printed["notes"])


def test_error_curves_without_replacement(files, capsys):
    printed = _analyze_json(capsys, files / "scores.parquet", "--error-curve", "question",
                            "--without-replacement")
    curves = pd.DataFrame(printed["error_curves"])
    assert not curves["replace"].any()
    table = pd.read_parquet(files / "scores.parquet")
    direct, saving = error_curves(table, "m_a", "m_b", unit="question", coupling="gumbel",
                                  seed=0, replace=False)
    np.testing.assert_allclose(curves["mean_abs_error"], direct["mean_abs_error"], rtol=1e-12)
    assert printed["sample_saving"][0]["saving"] == pytest.approx(saving.saving, rel=1e-12)
    # Sanity: at n = all 60 questions a subsample without replacement is the whole pool, so
    # its error (and the spread of that error) is exactly 0; with replacement it is not.
    full = curves[curves["n"] == 60]
    assert len(full) == 2 and (full[["mean_abs_error", "ci_low", "ci_high"]] == 0).all().all()
    with_replacement = pd.DataFrame(_analyze_json(capsys, files / "scores.parquet",
                                                  "--error-curve", "question")["error_curves"])
    assert (with_replacement.loc[with_replacement["n"] == 60, "mean_abs_error"] > 0).all()
    assert main(["analyze", str(files / "scores.parquet"), "--error-curve", "row",
                 "--without-replacement"]) == 0
    assert "without replacement" in capsys.readouterr().out
    # the option belongs to --error-curve: alone it is an error naming both
    assert main(["analyze", str(files / "scores.parquet"), "--without-replacement"]) == 2
    error = capsys.readouterr().err
    assert "--without-replacement" in error and "--error-curve" in error


@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=40),
       st.integers(0, 2**32 - 1))
def test_without_replacement_at_the_pool_size_has_no_error(values, seed):
    """Whatever the values (few levels: counts path; many: index path), a subsample of all N
    without replacement has error 0 (up to float summation), and every size errs less than
    the worst subsample mean could."""
    values = np.asarray(values)
    sizes = np.unique(np.array([1, len(values) // 2 or 1, len(values)]))
    errors = subsample_mean_errors(values, sizes, 50, replace=False, rng=seed)
    scale = max(1.0, float(np.abs(values).max()))
    assert np.all(errors[-1] <= 1e-12 * scale * len(values))
    assert np.all(errors <= np.ptp(values) + 1e-12 * scale)


# ----------------------------------------------------------------------------- tie rates
def test_tie_rates_in_table1_and_fig3(files, tmp_path):
    from coupled.analysis.pairwise import win_rate_matrix
    from coupled.analysis.ranksets import rank_sets
    from coupled.paper_figures import table1
    from coupled.paper_figures.figures import fig3_frames
    from coupled.paper_figures.inputs import load_run

    comparisons = load_run(files / "plain.parquet").comparisons  # derived from the scores
    ranking = table1.ranking_table(comparisons)
    paths = table1.write_ranking_table(ranking, tmp_path)
    written = pd.read_csv(next(p for p in paths if p.suffix == ".csv"))
    expected = rank_sets(comparisons)
    np.testing.assert_allclose(written["tie_rate"], expected["tie_rate"], rtol=1e-12)
    ties = expected.groupby("mode")["tie_rate"].mean()
    assert ties["coupled"] > ties["independent"]  # what the reason line explains
    markdown = next(p for p in paths if p.suffix == ".md").read_text()
    latex = next(p for p in paths if p.suffix == ".tex").read_text()
    for text in (markdown, latex):
        assert "Tie rate" in text and "identical replies tie" in text
        for tie in expected["tie_rate"]:
            assert f"{tie:.4f}" in text
    win_rates, _, _ = fig3_frames(comparisons, "m_a")
    matrix = win_rate_matrix(comparisons)
    mine = matrix[matrix["model"] == "m_a"].reset_index(drop=True)
    np.testing.assert_array_equal(win_rates["tie_rate"], mine["tie_rate"])


def test_fig3_draws_tie_rates_and_says_why():
    from coupled.paper_figures import fig3
    from coupled.paper_figures.style import use_paper_style

    use_paper_style()
    frame = pd.DataFrame({"opponent": ["b", "b"], "mode": ["coupled", "independent"],
                          "win_rate": [0.2, 0.4], "ci_low": [0.1, 0.3], "ci_high": [0.3, 0.5],
                          "tie_rate": [0.59, 0.25]})
    figure = fig3.plot_win_rates("a", frame, pd.DataFrame({"opponent": [], "stars": []}))
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert "ties\n59%" in texts and "ties\n25%" in texts
    assert "identical replies tie" in " ".join(figure.axes[0].get_title().split())
    without = fig3.plot_win_rates("a", frame.drop(columns="tie_rate"),
                                  pd.DataFrame({"opponent": [], "stars": []}))
    assert not without.axes[0].texts and "tie" not in without.axes[0].get_title()


# ----------------------------------------------------------------------------- explanations
def test_negative_win_rate_saving_is_explained(tmp_path, capsys):
    # coupled separates models 0 and 1 by -0.05, independent by -0.0775: coupled needs more
    negative = tmp_path / "negative.csv"
    pd.DataFrame([[0.9, 0.6, 0.5], [0.5, 0.9, 0.1]]).to_csv(negative, index=False)
    assert main(["plan", "--win-rate", "--prompt-probs", str(negative), "--seeds", "1"]) == 0
    screen = capsys.readouterr().out
    line = next(line for line in screen.splitlines() if line.startswith("negative saving"))
    assert "-134%" in line and "coupled separation is smaller" in line
    assert "identical replies" in line and "-0.0500 vs -0.0775" in line
    assert main(["plan", "--win-rate", "--prompt-probs", str(negative), "--seeds", "1",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["saving_note"] == line
    positive = tmp_path / "positive.csv"
    pd.DataFrame([[0.7, 0.5, 0.4], [0.4, 0.3, 0.6]]).to_csv(positive, index=False)
    assert main(["plan", "--win-rate", "--prompt-probs", str(positive), "--seeds", "1"]) == 0
    screen = capsys.readouterr().out
    assert "negative saving" not in screen and "%" in screen


def _ranks(rows: list[tuple[str, str, float, int, int]]) -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "mode": mode, "coupling": "gumbel", "win_rate": w,
                          "rank_low": lo, "rank_high": hi} for m, mode, w, lo, hi in rows])


def test_order_change_line_only_when_orders_differ():
    from coupled.paper_figures.report import order_change_line

    same = _ranks([("a", "coupled", 0.6, 1, 2), ("b", "coupled", 0.5, 1, 2),
                   ("a", "independent", 0.7, 1, 2), ("b", "independent", 0.6, 1, 2)])
    assert order_change_line(same) == ""
    inside = _ranks([("a", "coupled", 0.6, 1, 2), ("b", "coupled", 0.5, 1, 2),
                     ("a", "independent", 0.5, 1, 2), ("b", "independent", 0.6, 1, 2)])
    line = order_change_line(inside)
    assert "coupled a > b; independent b > a" in line and "not significant" in line
    assert "\n" not in line
    apart = _ranks([("a", "coupled", 0.8, 1, 1), ("b", "coupled", 0.2, 2, 2),
                    ("a", "independent", 0.5, 1, 2), ("b", "independent", 0.6, 1, 2)])
    line = order_change_line(apart)
    assert "a/b swap with disjoint rank-sets" in line and "not significant" not in line
    assert order_change_line(inside[inside["mode"] == "coupled"]) == ""  # one mode only


def _comparisons(order_swaps: bool) -> pd.DataFrame:
    """Three models, 8 prompts x 2 seeds per mode: c always loses; a and b win against each
    other 9 : 7 in coupled mode, and 7 : 9 (or 9 : 7) in independent mode."""
    rows = []
    for mode in ("coupled", "independent"):
        a_wins = 9 if mode == "coupled" or not order_swaps else 7
        outcomes = ["a"] * a_wins + ["b"] * (16 - a_wins)
        for k, outcome in enumerate(outcomes):
            prompt, seed = f"p{k // 2}", k % 2
            base = {"task": "t", "prompt_id": prompt, "seed": seed, "mode": mode,
                    "coupling": "gumbel"}
            rows.append({**base, "model_a": "a", "model_b": "b", "outcome": outcome})
            rows.append({**base, "model_a": "a", "model_b": "c", "outcome": "a"})
            rows.append({**base, "model_a": "b", "model_b": "c", "outcome": "a"})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("order_swaps", [True, False])
def test_rank_explains_an_order_that_differs_between_modes(tmp_path, capsys, order_swaps):
    path = tmp_path / "comparisons.csv"
    _comparisons(order_swaps).to_csv(path, index=False)
    assert main(["rank", str(path)]) == 0
    screen = capsys.readouterr().out
    explained = "The point-estimate order differs between modes" in screen
    assert explained == order_swaps
    if order_swaps:
        assert "only inside overlapping rank-sets" in screen


def test_demo_report_sentence_explains_the_order():
    from coupled.paper_figures import table1
    from coupled.paper_figures.report import ranking_change, ranking_sentence

    change = ranking_change(table1.ranking_table(_comparisons(True)))
    sentence = ranking_sentence(change)
    assert change.order_differs and "only inside overlapping rank-sets" in sentence
    same = ranking_sentence(ranking_change(table1.ranking_table(_comparisons(False))))
    assert "Both modes order the models the same way" in same


def test_analyze_explains_a_negative_variance_saving(tmp_path, capsys):
    """A pair whose coupled differences vary more than its independent ones (anti-correlated
    coupled scores) prints one line saying what a negative saving means."""
    rng = np.random.default_rng(3)
    rows = []
    for q in range(40):
        for seed in range(4):
            right = rng.random() < 0.5
            coupled = {"m_a": float(right), "m_b": float(not right)}  # one right, other wrong
            independent = {"m_a": float(rng.random() < 0.5), "m_b": float(rng.random() < 0.5)}
            for mode, values in (("coupled", coupled), ("independent", independent)):
                for model, score in values.items():
                    rows.append({"task": "t", "prompt_id": f"q{q}", "seed": seed,
                                 "mode": mode, "coupling": "gumbel", "model": model,
                                 "score": score})
    path = tmp_path / "anti.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    assert main(["analyze", str(path)]) == 0
    screen = capsys.readouterr().out
    line = next(line for line in screen.splitlines() if line.startswith("negative saving"))
    assert "anti-correlated" in line
