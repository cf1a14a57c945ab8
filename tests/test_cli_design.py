"""Incomplete designs: `coupled analyze` / `coupled rank` refuse an unfinished run or a table
where a model lacks rows (questions, seeds, a mode) unless --allow-incomplete, and then say
what is missing, for which model, at the top of the output and in the JSON; rank never drops
a model without a note."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupled.analysis.pairwise import derive_comparisons
from coupled.cli.design import check_design, design_of
from coupled.cli.main import main

MODELS = ["m0", "m1", "m2"]
N_Q, N_SEEDS = 12, 2


def _scores() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    return pd.DataFrame([{"task": "t", "prompt_id": f"q{q}", "seed": s, "mode": mode,
                          "coupling": "gumbel", "model": m, "score": float(rng.random() < p)}
                         for q in range(N_Q) for s in range(N_SEEDS)
                         for mode in ("coupled", "independent")
                         for m, p in zip(MODELS, (0.8, 0.5, 0.3), strict=True)])


FULL = _scores()


@given(model=st.sampled_from(MODELS), mode=st.sampled_from(["coupled", "independent"]),
       dropped=st.sets(st.integers(0, N_Q - 1), min_size=1, max_size=N_Q),
       one_seed=st.booleans(), swap=st.booleans())
def test_every_gap_is_refused_naming_the_model_that_has_it(tmp_path_factory, model, mode,
                                                            dropped, one_seed, swap):
    """Drop questions (or one seed of them) of one model in one mode: the refusal names that
    model, and only it; the complete table passes. For comparisons (derived from the same
    scores, pairs written either way round) the pairs with that model are named."""
    hit = ((FULL["model"] == model) & (FULL["mode"] == mode)
           & FULL["prompt_id"].isin([f"q{q}" for q in dropped]))
    if one_seed:
        hit &= FULL["seed"] == 0
    table = FULL[~hit]
    path = tmp_path_factory.mktemp("design") / "scores.csv"
    status = design_of(table, path)
    assert [m.unit for m in status.missing] == [model]
    assert status.missing[0].n_expected - status.missing[0].n_present == int(hit.sum())
    with pytest.raises(ValueError, match="--allow-incomplete") as refused:
        check_design(status, allow_incomplete=False, source=str(path))
    assert repr(model) in str(refused.value)
    assert not any(repr(other) in str(refused.value) for other in MODELS if other != model)
    check_design(status, allow_incomplete=True, source=str(path))  # allowed: no error

    comparisons = derive_comparisons(table)
    if swap:  # the same comparisons, each pair named the other way round
        comparisons = comparisons.assign(
            model_a=comparisons["model_b"], model_b=comparisons["model_a"],
            outcome=comparisons["outcome"].map({"a": "b", "b": "a", "tie": "tie"}))
    pairs = {m.unit for m in design_of(comparisons, path).missing}
    assert pairs == {" vs ".join(sorted((model, other))) for other in MODELS if other != model}
    assert design_of(FULL, path).complete
    assert design_of(derive_comparisons(FULL), path).complete


def test_manifest_status_and_listed_models(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"status": "running"}))
    assert not design_of(FULL, run).complete
    (run / "manifest.json").write_text(json.dumps({"status": "complete", "config": {
        "task": {"name": "t"}, "models": [{"name": m} for m in [*MODELS, "m3"]]}}))
    status = design_of(FULL, run)
    assert status.absent == ("m3",)  # named by the run, no rows at all
    assert design_of(FULL, run, models=["m0", "m1"]).complete  # only the models asked for


@pytest.fixture()
def tables(tmp_path):
    incomplete = FULL[~((FULL["model"] == "m2") & (FULL["prompt_id"].isin(["q1", "q2"])))]
    incomplete.to_csv(tmp_path / "incomplete.csv", index=False)
    running = tmp_path / "running"
    (running / "scores").mkdir(parents=True)
    FULL.to_parquet(running / "scores" / "chunk-0.parquet")
    (running / "manifest.json").write_text(json.dumps({"status": "running"}))
    one_mode = FULL[~((FULL["model"] == "m2") & (FULL["mode"] == "independent"))]
    one_mode.to_csv(tmp_path / "one_mode.csv", index=False)
    FULL.to_csv(tmp_path / "full.csv", index=False)
    return tmp_path


@pytest.mark.parametrize("command", [["analyze"], ["rank"]])
@pytest.mark.parametrize("name, says", [("incomplete.csv", "m2"), ("running", "running"),
                                        ("one_mode.csv", "m2")])
def test_refused_unless_allowed_then_said_first(tables, capsys, command, name, says):
    path = str(tables / name)
    assert main([command[0], path, *command[1:]]) == 2
    err = capsys.readouterr().err
    assert says in err and "--allow-incomplete" in err
    assert main([command[0], path, *command[1:], "--allow-incomplete"]) == 0
    screen = capsys.readouterr().out
    assert screen.startswith("INCOMPLETE DESIGN") and says in screen.split("\n\n")[0]
    assert main([command[0], path, *command[1:], "--allow-incomplete", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    if command[0] == "analyze":
        assert printed["design"]["complete"] is False
        assert any(says in note for note in printed["design"]["notes"])
    else:  # rank: one record per model and mode, each with its note
        assert any(says in r["note"] for r in printed)


def test_rank_keeps_a_model_left_out_of_a_mode_with_a_note(tables, capsys):
    assert main(["rank", str(tables / "one_mode.csv"), "--allow-incomplete", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    left_out = [r for r in records if r["model"] == "m2" and r["mode"] == "independent"]
    assert len(left_out) == 1 and left_out[0]["rank_low"] is None
    assert "left out" in left_out[0]["note"]
    assert {(r["model"], r["mode"]) for r in records} == {
        (m, mode) for m in MODELS for mode in ("coupled", "independent")}


def test_complete_design_has_no_banner(tables, capsys):
    assert main(["analyze", str(tables / "full.csv"), "--json"]) == 0
    design = json.loads(capsys.readouterr().out)["design"]
    assert design["complete"] is True and design["missing"] == [] and design["notes"] == []
    assert main(["rank", str(tables / "full.csv")]) == 0
    assert "INCOMPLETE" not in capsys.readouterr().out
