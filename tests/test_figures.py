"""paper_figures: every figure file exists and decodes at its size, tables equal the analysis
outputs, benchmark-only runs get derived comparisons, and a failing command writes nothing.

Small simulated runs (3 models, 40 questions, 4 seeds, V = 4) keep the file fast.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from coupled.analysis.pairwise import compare_modes, win_rate_matrix
from coupled.analysis.ranksets import rank_sets
from coupled.cli.main import main
from coupled.paper_figures import fig2, fig3, table1
from coupled.paper_figures.figures import fig3_frames, make_figures
from coupled.paper_figures.inputs import load_run, tables_from_frames
from coupled.paper_figures.style import DPI, use_paper_style
from coupled.simulate import simulate_comparisons, simulate_scores
from coupled.tables import write_shard

MODELS = ["large", "medium", "small"]


def _family(n_prompts: int = 40, vocab: int = 4, seed: int = 1) -> tuple[np.ndarray, ...]:
    """Three related categorical models: a shared logit base plus shrinking skill."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_prompts, 1, vocab))
    skill = np.array([2.0, 1.2, 0.4])[None, :, None] * np.eye(vocab)[0][None, None, :]
    logits = base + skill + 0.3 * rng.normal(size=(n_prompts, len(MODELS), vocab))
    dists = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    rewards = rng.normal(size=(n_prompts, vocab))
    rewards[:, 0] += 1.0
    return dists, np.zeros(n_prompts, dtype=int), rewards


@pytest.fixture(scope="module")
def run_tables():
    dists, correct, rewards = _family()
    scores = simulate_scores(dists, correct, 4, models=MODELS)
    comparisons = simulate_comparisons(dists, rewards, 4, models=MODELS)
    return scores, comparisons


@pytest.fixture(scope="module")
def figure_set(run_tables, tmp_path_factory):
    scores, comparisons = run_tables
    out = tmp_path_factory.mktemp("figures")
    tables = tables_from_frames(scores, comparisons)
    return make_figures(tables, out, pairs=[("large", "small")], n_resamples=200)


def _png_size(path: Path) -> tuple[int, int]:
    height, width = matplotlib.image.imread(path).shape[:2]
    return width, height


def test_every_artifact_exists_and_decodes(figure_set):
    names = {a.path.name for a in figure_set.artifacts}
    expected = {"table1_ranking.md", "table1_ranking.tex", "table1_ranking.csv",
                "fig3_win_rates_large.png", "fig3_win_rates_large.pdf",
                "fig2_large_vs_small.png", "fig2_large_vs_small.pdf"}
    assert expected <= names
    for artifact in figure_set.artifacts:
        assert artifact.path.is_file() and artifact.path.stat().st_size > 0
        assert artifact.caption
        if artifact.path.suffix == ".pdf":
            assert artifact.path.read_bytes()[:5] == b"%PDF-"
    # Fig. 2 is 12 x 3.8 inches at DPI; the PNG must decode at exactly that size.
    assert _png_size(figure_set.out_dir / "fig2_large_vs_small.png") == (12 * DPI,
                                                                         round(3.8 * DPI))
    width, height = _png_size(figure_set.out_dir / "fig3_win_rates_large.png")
    assert (width, height) == (round(6.0 * DPI), round(4.2 * DPI))


def test_table_csv_is_rank_sets_output(figure_set, run_tables):
    _, comparisons = run_tables
    written = pd.read_csv(figure_set.out_dir / "table1_ranking.csv")
    expected = rank_sets(comparisons, alpha=0.05)
    pd.testing.assert_frame_equal(written[table1.RANK_COLUMNS].reset_index(drop=True),
                                  expected[list(table1.RANK_COLUMNS)].reset_index(drop=True),
                                  check_dtype=False, rtol=1e-12, atol=0)
    # the tie rate beside the win-rate, as rank_sets computed it
    np.testing.assert_allclose(written["tie_rate"], expected["tie_rate"], rtol=1e-12)


def test_markdown_and_latex_show_the_rank_sets(figure_set, run_tables):
    _, comparisons = run_tables
    ranks = rank_sets(comparisons, alpha=0.05)
    markdown = (figure_set.out_dir / "table1_ranking.md").read_text()
    latex = (figure_set.out_dir / "table1_ranking.tex").read_text()
    for row in ranks.itertuples():
        assert f"{row.win_rate:.4f}" in markdown and f"{row.win_rate:.4f}" in latex
        assert f"{row.tie_rate:.4f}" in markdown and f"{row.tie_rate:.4f}" in latex
    assert "Tie rate" in markdown and "Tie rate" in latex
    assert "identical replies tie" in markdown and "identical replies tie" in latex
    # The best coupled model gets rank-set label from rank_low/rank_high, not recomputed.
    best = ranks[ranks["mode"] == "coupled"].iloc[0]
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {best.model} "))
    assert table1.rank_set_label(int(best.rank_low), int(best.rank_high)) in line
    assert "\\begin{table}" in latex and "\\caption{" in latex


def test_fig3_model_defaults_to_best_coupled_and_uses_pairwise_analysis(figure_set, run_tables):
    _, comparisons = run_tables
    ranks = rank_sets(comparisons)
    assert figure_set.fig3_model == ranks[ranks["mode"] == "coupled"]["model"].iloc[0]
    win_rates, stars, tests = fig3_frames(comparisons, "large")
    matrix = win_rate_matrix(comparisons)
    mine = matrix[matrix["model"] == "large"].reset_index(drop=True)
    np.testing.assert_array_equal(win_rates["win_rate"].to_numpy(), mine["win_rate"].to_numpy())
    np.testing.assert_array_equal(win_rates["ci_high"].to_numpy(),
                                  mine["win_ci_high"].to_numpy())
    np.testing.assert_array_equal(win_rates["tie_rate"].to_numpy(), mine["tie_rate"].to_numpy())
    expected = compare_modes(comparisons, model="large", correction="holm")
    assert list(stars["stars"]) == list(expected["stars"])
    assert len(tests) == len(MODELS) - 1


def test_fig2_uses_question_statistics(figure_set, run_tables):
    from coupled.analysis.benchmark import question_statistics

    scores, _ = run_tables
    analysis = figure_set.pairs[("large", "small")]
    stats = question_statistics(scores, "large", "small", mode="coupled")
    np.testing.assert_allclose(np.sort(analysis.questions["cov"]), np.sort(stats["cov"]))
    assert analysis.independent_source == "measured"
    assert set(analysis.curves["mode"]) == {"coupled", "independent"}


def test_rank_and_win_rate_labels():
    assert table1.rank_set_label(2, 2) == "2"
    assert table1.rank_set_label(1, 3) == "1\u20133"
    assert table1.win_rate_label(0.367, 0.365, 0.369) == "0.3670 \u00b1 0.0020"
    assert table1.win_rate_label(0.01, 0.0, 0.05) == "0.0100 [0.0000, 0.0500]"


def test_degenerate_inputs_still_draw():
    """Identical models: zero covariance spread, zero variances — no KDE, no crash, no NaN."""
    use_paper_style()
    zeros = np.zeros(20)
    curves = pd.DataFrame({"mode": ["coupled"] * 3, "n": [10, 20, 40], "error": [0.0] * 3,
                           "error_low": [0.0] * 3, "error_high": [0.0] * 3})
    figure = fig2.plot_pair(fig2.PairPanels("a", "b", zeros, zeros, zeros, curves))
    figure.canvas.draw()
    figure = fig3.plot_win_rates("a", pd.DataFrame({
        "opponent": ["b"], "mode": ["coupled"], "win_rate": [0.0], "ci_low": [0.0],
        "ci_high": [0.1]}), pd.DataFrame({"opponent": [], "stars": []}))
    figure.canvas.draw()


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="curves: missing column"):
        fig2.plot_pair(fig2.PairPanels("a", "b", np.zeros(3), np.zeros(3), np.zeros(3),
                                       pd.DataFrame({"n": [1]})))


@pytest.fixture(scope="module")
def scores_only_dir(run_tables, tmp_path_factory):
    scores, _ = run_tables
    folder = tmp_path_factory.mktemp("benchmark-only")
    write_shard(scores, folder, "scores", "chunk-000000")
    return folder


def test_figures_from_benchmark_only_folder(scores_only_dir, tmp_path, capsys):
    out = tmp_path / "figs"
    code = main(["figures", "--from", str(scores_only_dir), "--out", str(out),
                 "--pairs", "medium:small", "--no-progress"])
    assert code == 0
    assert load_run(scores_only_dir).comparisons_derived
    markdown = (out / "table1_ranking.md").read_text()
    assert "derived from the scores" in markdown
    written = pd.read_csv(out / "table1_ranking.csv")
    assert written["derived"].all()
    assert (out / "fig2_medium_vs_small.png").is_file()
    printed = capsys.readouterr().out
    assert "fig3_win_rates_" in printed
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".figs.staging")]


def test_failing_command_writes_nothing(scores_only_dir, tmp_path, capsys):
    out = tmp_path / "figs"
    code = main(["figures", "--from", str(scores_only_dir), "--out", str(out),
                 "--pairs", "large:nobody", "--no-progress"])
    assert code == 2
    assert "nobody" in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder left behind either


def test_bad_source_is_one_clear_error(tmp_path, capsys):
    code = main(["figures", "--from", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
                 "--no-progress"])
    assert code == 2
    assert "missing" in capsys.readouterr().err


def test_b6_table_is_the_theory_example(tmp_path):
    from coupled.paper_figures.example_b6 import example_table, write_example
    from coupled.theory.examples import three_model_example

    example = three_model_example()
    table = example_table()
    for k, model in enumerate(example.models):
        row = table[table["model"] == model].iloc[0]
        assert float(row["avg win-rate coupled"]) == float(example.average_win_rate_coupled[k])
        assert float(row["avg win-rate independent"]) == float(
            example.average_win_rate_independent[k])
    # The paper's numbers, exactly as printed in appendix B.6.
    assert list(table["avg win-rate independent"]) == ["0.1545", "0.15675", "0.16225"]
    assert list(table["avg win-rate coupled"]) == ["0.0525", "0.0225", "0.03"]
    assert list(table["coupled rank"]) == [1, 3, 2]
    assert list(table["independent rank"]) == [3, 2, 1]
    paths = write_example(tmp_path)
    assert pd.read_csv(paths[-1], dtype=str)["avg win-rate independent"].tolist() == [
        "0.1545", "0.15675", "0.16225"]


def test_calibration_points_match_theory_and_analysis(run_tables, tmp_path):
    """Theory values are coupled.theory's; estimates are the analysis'; and they agree within
    5 standard errors (SE = CI half-width / 1.96) on this seeded run."""
    from coupled.analysis.benchmark import compare_models
    from coupled.paper_figures.calibration import KnownTruth, calibration_points, plot_calibration
    from coupled.theory import pairwise_rates, score_difference_moments

    scores, comparisons = run_tables
    dists, correct, rewards = _family()
    indicator = np.eye(dists.shape[-1])[correct]
    coupling = {"coupled": "gumbel", "independent": "independent"}
    truth = KnownTruth(
        models=MODELS,
        win={m: pairwise_rates(dists, rewards, coupling=c).win for m, c in coupling.items()},
        mean_difference={m: score_difference_moments(dists, indicator, coupling=c)
                         .mean_difference for m, c in coupling.items()},
        variance_difference={m: score_difference_moments(dists, indicator, coupling=c)
                             .variance_difference for m, c in coupling.items()})
    tables = tables_from_frames(scores, comparisons)
    points = calibration_points(truth, tables)
    assert len(points.win_rates) == 2 * 2 * 3  # modes x ordered pairs
    assert len(points.mean_differences) == 2 * 3 and len(points.variances) == 2 * 3
    row = points.win_rates.query("mode == 'coupled' and model == 'large' and "
                                 "opponent == 'small'").iloc[0]
    assert row["truth"] == truth.win["coupled"][0, 2]
    reductions = compare_models(scores).variance_reduction
    assert sorted(points.variances.query("mode == 'coupled'")["estimate"]) == sorted(
        reductions["var_coupled"])
    for frame in (points.win_rates, points.mean_differences):
        se = (frame["ci_high"] - frame["ci_low"]).to_numpy(dtype=float) / (2 * 1.96)
        gap = np.abs(frame["estimate"] - frame["truth"]).to_numpy(dtype=float)
        assert np.all(gap <= 5 * se + 1e-12), frame.assign(gap=gap, se=se)
    use_paper_style()
    figure, caption = plot_calibration(truth, tables)
    assert "CIs cover the theory value" in caption
    figure.canvas.draw()


SMALL_FAMILY = """
seed = 3
n_seeds = 3
vocab_size = 4
max_length = 3
benchmark_prompts = 30
pairwise_prompts = 30
[models.big]
kind = "base"
[models.big-4bit]
kind = "quantized"
bits = 4
[models.little]
kind = "weaker"
scale = 0.5
eps = 0.5
"""


def test_figures_simulated_cli_draws_calibration(tmp_path):
    config = tmp_path / "family.toml"
    config.write_text(SMALL_FAMILY)
    out = tmp_path / "figs"
    code = main(["figures", "--simulated", "--config", str(config), "--out", str(out),
                 "--pairs", "big:little", "--model", "little", "--no-progress"])
    assert code == 0
    names = {p.name for p in out.iterdir()}
    assert {"calibration_theory_vs_simulation.png", "calibration_theory_vs_simulation.pdf",
            "fig3_win_rates_little.png", "fig2_big_vs_little.png"} <= names
    assert _png_size(out / "calibration_theory_vs_simulation.png") == (13 * DPI,
                                                                       round(4.2 * DPI))


def test_config_needs_simulated(tmp_path, capsys):
    assert main(["figures", "--from", str(tmp_path), "--config", "x.toml", "--out",
                 str(tmp_path / "o"), "--no-progress"]) == 2
    assert "--config goes with --simulated" in capsys.readouterr().err


def test_reused_variance_reduction_equals_a_fresh_one(run_tables):
    """The demo hands compare_models' rows to Fig. 2 instead of bootstrapping twice: same
    numbers as variance_reduction called afresh."""
    from coupled.analysis.benchmark import compare_models
    from coupled.paper_figures.figures import _known_reduction, scores_view

    scores, _ = run_tables
    reductions = compare_models(scores_view(scores)).variance_reduction
    reused = _known_reduction(reductions, "large", "small", "gumbel", "measured")
    from coupled.analysis.benchmark import variance_reduction

    assert reused == variance_reduction(scores, "large", "small", independent="measured")
    assert _known_reduction(reductions, "large", "small", "gumbel", "from_coupled") is None


def test_unknown_model_fails_before_drawing(scores_only_dir, tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["figures", "--from", str(scores_only_dir), "--out", str(out), "--model",
                 "nobody", "--no-progress"]) == 2
    assert "--model 'nobody'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_single_table_files_are_recognised(run_tables, tmp_path):
    scores, comparisons = run_tables
    scores.to_csv(tmp_path / "my-scores.csv", index=False)
    comparisons.to_parquet(tmp_path / "judged.parquet", index=False)
    from_scores = load_run(tmp_path / "my-scores.csv")
    assert from_scores.comparisons_derived and from_scores.comparisons["derived"].all()
    assert len(from_scores.scores) == len(scores)
    from_comparisons = load_run(tmp_path / "judged.parquet")
    assert from_comparisons.scores is None and not from_comparisons.comparisons_derived
    assert len(from_comparisons.comparisons) == len(comparisons)
    with pytest.raises(ValueError, match="unsupported file type"):
        (tmp_path / "notes.txt").write_text("x")
        load_run(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="holds no scores"):
        (tmp_path / "empty").mkdir()
        load_run(tmp_path / "empty")


def test_coupled_only_run_draws_from_coupled_data(run_tables, tmp_path):
    """Half the GPU cost: a coupled-only run still gets Fig. 2 (independent variance estimated
    from the coupled run, said in the caption), a one-mode Fig. 3 without stars and Table 1."""
    scores, _ = run_tables
    coupled = scores[scores["mode"] == "coupled"]
    result = make_figures(tables_from_frames(coupled, None), tmp_path,
                          pairs=[("large", "small")], n_resamples=100)
    analysis = result.pairs[("large", "small")]
    assert analysis.independent_source == "from_coupled" and analysis.saving is None
    assert set(analysis.curves["mode"]) == {"coupled"}
    assert result.mode_tests is None
    assert set(result.ranking.ranks["mode"]) == {"coupled"}
    caption = next(a.caption for a in result.artifacts if a.path.name.startswith("fig2_"))
    assert "estimated from the coupled run" in caption
    assert (tmp_path / "fig2_large_vs_small.png").is_file()


def test_model_in_one_mode_only_is_drawn_with_a_note(run_tables, tmp_path, capsys):
    """A model with no independent rows (it crashed `coupled figures` before): Table 1 shows
    a dash for it under independent generation and says so in the caption; Fig. 2 of a pair
    with it uses the coupled run only."""
    scores, _ = run_tables
    one_mode = scores[~((scores["model"] == "small") & (scores["mode"] == "independent"))]
    path = tmp_path / "scores.parquet"
    one_mode.to_parquet(path)
    out = tmp_path / "figs"
    assert main(["figures", "--from", str(path), "--out", str(out), "--pairs", "large:small",
                 "--no-progress"]) == 0, capsys.readouterr().err
    markdown = (out / "table1_ranking.md").read_text()
    small = next(line for line in markdown.splitlines() if line.startswith("| small"))
    assert small.count("\u2014") == 3  # rank, win-rate and tie rate under independent
    assert "small not compared under independent generation" in markdown
    assert "---" in (out / "table1_ranking.tex").read_text()
    assert (out / "fig2_large_vs_small.png").is_file()
