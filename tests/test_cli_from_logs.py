"""`coupled rank` / `coupled analyze` read lm-eval and inspect_ai logs directly (`--from`):
a ranking table with CIs from another tool's results in one command."""

import json
from pathlib import Path

import pytest

from coupled.cli.main import main

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_rank_an_inspect_log_in_one_command(capsys):
    assert main(["rank", str(FIXTURES / "inspect"), "--from", "inspect",
                 "--import-scorer", "includes", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["model"] for r in rows} == {"hf/tiny-A", "hf/tiny-B"}
    assert all(r["ci_low"] < r["ci_high"] for r in rows)  # intervals, never zero-width


def test_rank_and_analyze_an_lm_eval_output_in_one_command(capsys):
    assert main(["rank", str(FIXTURES / "lm_eval"), "--from", "lm-eval", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["model"] for r in rows} == {"tiny-A", "tiny-B"}
    assert main(["analyze", str(FIXTURES / "lm_eval"), "--from", "lm-eval", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {m["model"] for m in report["model_scores"]} == {"tiny-A", "tiny-B"}


@pytest.mark.parametrize("argv, named", [
    (["--import-scorer", "includes"], "--import-scorer goes with --from"),
    (["--from", "lm-eval", "--import-scorer", "bogus"], "--import-scorer 'bogus'"),
])
def test_bad_from_options_are_one_clear_error(argv, named, capsys):
    assert main(["rank", str(FIXTURES / "lm_eval"), *argv]) == 2
    assert named in capsys.readouterr().err
