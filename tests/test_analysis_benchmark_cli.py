"""`coupled analyze` and `coupled plan`: screen tables, JSON, --out, and clean failures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_analysis_benchmark_sim import make_population, simulate_replicates, to_scores

from coupled.analysis.benchmark import compare_models
from coupled.cli.main import main

POP = make_population()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("analysis_cli")
    rng = np.random.default_rng(0)
    a, b, mask = simulate_replicates(POP, 1, 60, 4, "coupled", rng)
    ia, ib, imask = simulate_replicates(POP, 1, 60, 4, "independent", rng)
    scores = pd.concat([to_scores(a[0], b[0], mask[0], "coupled"),
                        to_scores(ia[0], ib[0], imask[0], "independent")], ignore_index=True)
    scores.to_csv(folder / "scores.csv", index=False)
    scores[scores["mode"] == "coupled"].to_parquet(folder / "pilot.parquet")
    scores.drop(columns="score").to_csv(folder / "broken.csv", index=False)
    pd.DataFrame({"p_a": POP.p_right[:300], "p_b": POP.q_right[:300],
                  "p_both": POP.both_right_coupled[:300]}).to_csv(folder / "acc.csv", index=False)
    pd.DataFrame({"x": [0.5]}).to_csv(folder / "bad_acc.csv", index=False)
    pd.DataFrame([[0.7, 0.5, 0.4], [0.4, 0.3, 0.6]]).to_csv(folder / "probs.csv", index=False)
    return folder


def test_analyze_screen_json_and_out(files, capsys):
    out = files / "report.json"
    assert main(["analyze", str(files / "scores.csv"), ]) == 0
    screen = capsys.readouterr().out
    assert "m_a − m_b" in screen and "sample saving" in screen and "95% CI" in screen
    assert main(["analyze", str(files / "scores.csv"), "--json",
                 "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed
    direct = compare_models(files / "scores.csv")
    coupled = [r for r in printed["differences"] if r["mode"] == "coupled"][0]
    expected = direct.differences.query("mode == 'coupled'").iloc[0]
    assert coupled["estimate"] == pytest.approx(expected["estimate"])
    assert coupled["ci_low"] == pytest.approx(expected["ci_low"])
    assert printed["variance_reduction"][0]["independent_source"] == "measured"


def test_analyze_error_curve_saving(files, capsys):
    assert main(["analyze", str(files / "scores.csv"),
                 "--error-curve", "row", "--json"]) == 0
    saving = json.loads(capsys.readouterr().out)["sample_saving"][0]
    assert saving["unit"] == "row" and 0 < saving["saving"] < 1
    assert saving["n_coupled"] < saving["n_independent"]
    assert main(["analyze", str(files / "pilot.parquet"), "--error-curve", "row"]) == 2
    assert "both coupled and independent" in capsys.readouterr().err


def test_analyze_bad_table_fails_cleanly_and_writes_nothing(files, capsys):
    out = files / "never.json"
    assert main(["analyze", str(files / "broken.csv"), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "broken.csv" in error and "'score'" in error
    assert error.startswith("coupled analyze: error:")
    assert not out.exists()
    assert main(["analyze", str(files / "scores.csv"), "--models", "m_a", "zz"]) == 2
    assert "zz" in capsys.readouterr().err


def test_plan_from_accuracies_and_pilot(files, capsys):
    assert main(["plan", "--accuracies", str(files / "acc.csv"), "--budget", "200",
                 "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    by_mode = {(p["mode"], p["n_seeds"]): p for p in plan["plans"]}
    assert by_mode[("coupled", 5)]["n_questions"] < by_mode[("independent", 5)]["n_questions"]
    assert by_mode[("coupled", 1)]["test"] == "mcnemar"
    assert "mde" in by_mode[("coupled", 10)]
    assert main(["plan", "--pilot", str(files / "pilot.parquet"), "--effect", "0.05",
                 "--seeds", "2,10"]) == 0
    screen = capsys.readouterr().out
    assert "variance components" in screen and "design effect" in screen


def test_plan_bad_input(files, capsys):
    assert main(["plan", "--accuracies", str(files / "bad_acc.csv")]) == 2
    assert "p_a" in capsys.readouterr().err
    assert main(["plan", "--accuracies", str(files / "acc.csv"), "--seeds", "0,2"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert main(["plan", "--accuracies", str(files / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err


def test_plan_win_rate_separation_sub_mode(files, capsys):
    from coupled.analysis.pairwise_planning import plan_win_rate_separation

    assert main(["plan", "--win-rate", "--prompt-probs", str(files / "probs.csv"),
                 "--seeds", "1,5", "--budget", "300", "--json"]) == 0
    plans = json.loads(capsys.readouterr().out)["plans"]
    assert [p["n_seeds"] for p in plans] == [1, 5]
    # The budget reaches the planner: its detectable separations are the CLI's.
    probs = pd.read_csv(files / "probs.csv").to_numpy(dtype=float)
    direct = plan_win_rate_separation(prompt_probs=probs, n_seeds=5, budget=300)
    assert plans[1]["budget"] == 300
    assert plans[1]["mde_coupled"] == pytest.approx(direct.mde_coupled)
    assert plans[1]["mde_independent"] == pytest.approx(direct.mde_independent)
    assert main(["plan", "--win-rate", "--prompt-probs", str(files / "probs.csv"),
                 "--budget", "300"]) == 0
    assert "MDE coupled at 300 questions" in capsys.readouterr().out
