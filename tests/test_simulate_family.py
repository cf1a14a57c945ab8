"""Whole-family simulation and the `coupled simulate` command: tables on disk, manifest,
exact truth agreeing with the simulated tables, atomic and refusing output directories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coupled.cli.main import main
from coupled.simulate import SimulationConfig, load_config, simulate_family
from coupled.tables import read_comparisons, read_manifest, read_scores

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "simulate"
K_SE = 5.0

MEDIUM = {
    "seed": 2, "n_seeds": 150, "vocab_size": 4, "max_length": 3, "benchmark_prompts": 16,
    "pairwise_prompts": 16, "n_subjects": 0, "judge_noise": 0.1, "tie_margin": 0.5,
    "couplings": ["gumbel", "inverse_cdf"],
    "models": {"big": {"kind": "base"}, "big-4bit": {"kind": "quantized", "bits": 4},
               "little": {"kind": "weaker", "scale": 0.5, "eps": 0.6}},
}


def assert_mean_matches(observed_rows: np.ndarray, probabilities: np.ndarray) -> None:
    # Rows are independent Bernoulli draws (distinct noise keys) with known per-row
    # probabilities: the mean's standard error is sqrt(sum p (1 - p)) / n.
    n = len(observed_rows)
    se = np.sqrt(np.sum(probabilities * (1 - probabilities))) / n
    assert abs(observed_rows.mean() - probabilities.mean()) <= K_SE * max(se, 1.0 / n)


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "out"
    return simulate_family(out, MEDIUM, progress=False), out


def test_tables_on_disk_are_valid_and_equal_the_returned_frames(medium):
    result, out = medium
    key = ["task", "prompt_id", "seed", "mode", "coupling", "model"]
    on_disk = read_scores(out).sort_values(key).reset_index(drop=True)
    returned = result.scores.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(on_disk, returned, check_dtype=False)
    comparisons = read_comparisons(out, models=["big", "big-4bit", "little"])
    assert len(comparisons) == len(result.comparisons) == 16 * 150 * 3 * 2 * 2
    assert set(result.scores["coupling"]) == {"gumbel", "inverse_cdf"}
    assert (result.scores["n_tokens"] <= 3).all()
    manifest = read_manifest(out)
    assert manifest["producer"] == "coupled.simulate"
    assert manifest["simulation"]["models"]["big-4bit"] == {"kind": "quantized", "bits": 4}
    assert manifest["simulation"]["n_seeds"] == 150
    assert SimulationConfig.from_mapping(manifest["simulation"]) == result.config
    truth = pd.read_parquet(out / "truth" / "pairwise.parquet")
    pd.testing.assert_frame_equal(truth, result.pairwise_truth, check_dtype=False)


def test_simulation_is_reproducible(medium):
    result, _ = medium
    again = simulate_family(None, MEDIUM, progress=False, truth=False)
    pd.testing.assert_frame_equal(again.scores, result.scores)
    pd.testing.assert_frame_equal(again.comparisons, result.comparisons)


def test_exact_truth_agrees_with_the_simulated_tables(medium):
    result, _ = medium
    truth = result.benchmark_truth
    scores = result.scores
    for (mode, coupling, model), rows in scores.groupby(["mode", "coupling", "model"]):
        as_a = truth[(truth["mode"] == mode) & (truth["coupling"] == coupling)
                     & (truth["model_a"] == model)]
        per_prompt = (as_a.groupby("prompt_id")["mean_a"].first() if len(as_a) else
                      truth[(truth["mode"] == mode) & (truth["coupling"] == coupling)
                            & (truth["model_b"] == model)].groupby("prompt_id")["mean_b"].first())
        assert_mean_matches(rows["score"].to_numpy(),
                            per_prompt.loc[rows["prompt_id"]].to_numpy())
    wins = result.pairwise_truth.set_index(["mode", "coupling", "model_a", "model_b",
                                           "prompt_id"]).sort_index()
    for key, rows in result.comparisons.groupby(["mode", "coupling", "model_a", "model_b"]):
        per_row = wins.loc[key].loc[rows["prompt_id"]]
        for outcome, column in (("a", "win_a"), ("b", "win_b"), ("tie", "tie")):
            assert_mean_matches((rows["outcome"] == outcome).to_numpy(),
                                per_row[column].to_numpy())


def test_coupled_ties_exceed_independent_ties_for_the_quantized_twin(medium):
    # The paper's Prop. 5 direction, here checked on the exact truth of the sequence task.
    truth = medium[0].pairwise_truth
    pair = truth[(truth["model_a"] == "big") & (truth["model_b"] == "big-4bit")
                 & (truth["coupling"] == "gumbel")]
    tie = pair.groupby("mode")["tie"].mean()
    assert tie["coupled"] > tie["independent"]


def test_examples_load():
    for path in EXAMPLES.glob("*.toml"):
        load_config(path)
    assert load_config(EXAMPLES / "paper_six.toml") == SimulationConfig()


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown key"):
        SimulationConfig.from_mapping({"n_seed": 3})
    with pytest.raises(ValueError, match="couplings"):
        SimulationConfig.from_mapping({"couplings": ["gumbel", "softmax"]})
    with pytest.raises(ValueError, match="at least two models"):
        SimulationConfig.from_mapping({"models": {"solo": {"kind": "base"}}})
    bad = tmp_path / "bad.toml"
    bad.write_text("n_seeds = [\n")
    with pytest.raises(ValueError, match="bad.toml"):
        load_config(bad)


def test_cli_with_a_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["simulate", "--out", str(out), "--config", str(EXAMPLES / "tiny.toml"),
                 "--quiet"]) == 0
    scores = read_scores(out)
    assert set(scores["model"]) == {"a", "a-4bit", "b"} and set(scores["seed"]) == {
        12, 13, 14, 15}
    assert (out / "truth" / "benchmark.parquet").is_file()
    # An existing output is never overwritten without --force, and stays intact.
    before = sorted(p.name for p in out.rglob("*"))
    assert main(["simulate", "--out", str(out), "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == before
    assert main(["simulate", "--out", str(out), "--config", str(EXAMPLES / "tiny.toml"),
                 "--quiet", "--force", "--n-seeds", "2", "--no-truth"]) == 0
    assert set(read_scores(out)["seed"]) == {6, 7}
    assert not (out / "truth").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no staging left


def test_cli_refuses_bad_input_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("n_seeds = 3\nmodes = ['both']\n")
    assert main(["simulate", "--out", str(tmp_path / "x"), "--config", str(bad)]) == 2
    assert "modes" in capsys.readouterr().err
    assert main(["simulate", "--out", str(tmp_path / "y"), "--config",
                 str(tmp_path / "missing.toml")]) == 2
    stranger = tmp_path / "mine"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("keep me")
    assert main(["simulate", "--out", str(stranger), "--force", "--quiet"]) == 2
    assert (stranger / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml", "mine"]


def test_cli_default_family(tmp_path, capsys):
    # `coupled simulate --out DIR` with no config: the paper's six models, both tasks and modes.
    out = tmp_path / "default"
    assert main(["simulate", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "large-awq-int4" in printed and "comparisons" in printed
    scores, comparisons = read_scores(out), read_comparisons(out)
    assert scores["model"].nunique() == 6 and set(scores["mode"]) == {"coupled", "independent"}
    assert len(comparisons) == 200 * 10 * 15 * 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["benchmark"][0] == "large"
