"""Values the arithmetic cannot take, the coupling 'none', bad manifests, and design_status
(issue 10: scores that overflow, manifests that are not JSON objects, incomplete designs)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coupled import tables
from coupled.tables import TableError


def _scores(prompts=("1", "2"), models=("A", "B"), seeds=(0, 1), modes=("coupled",),
            coupling="gumbel"):
    return pd.DataFrame([dict(task="t", prompt_id=p, seed=s, mode=m, coupling=coupling, model=x,
                              score=float((i * 7) % 3))
                         for i, (p, s, m, x) in enumerate(
                             (p, s, m, x) for p in prompts for s in seeds for m in modes
                             for x in models)])


# --- scores the arithmetic cannot take --------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e200, 1e308, -1e51, 1.7976931348623157e308])
def test_non_finite_and_overflowing_scores_are_errors_naming_column_and_rows(bad):
    df = _scores()
    df.loc[2, "score"] = bad
    with pytest.raises(TableError) as info:
        tables.validate_scores(df, source="s.parquet")
    message = str(info.value)
    assert "s.parquet, column 'score'" in message and "e.g. (1 row(s)" in message


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_scores_accepted_exactly_when_finite_and_within_the_bound(value):
    df = _scores().assign(score=value)
    ok = math.isfinite(value) and abs(value) <= tables.SCORE_LIMIT
    if ok:
        out = tables.validate_scores(df)
        assert (out["score"] == value).all()
        # the bound's promise: fourth powers of differences, summed, stay finite
        diff = 2 * tables.SCORE_LIMIT
        assert math.isfinite(1e12 * diff**4)
    else:
        with pytest.raises(TableError, match="'score'"):
            tables.validate_scores(df)


def test_overflowing_scores_in_a_csv_are_errors(tmp_path):
    for text in ("1e200", "inf", "-inf", "nan", "abc"):
        path = tmp_path / "s.csv"
        path.write_text("task,prompt_id,seed,mode,coupling,model,score\n"
                        f"t,1,0,coupled,gumbel,A,{text}\n")
        with pytest.raises(TableError, match="'score'"):
            tables.read_scores(path)


@pytest.mark.parametrize("seed", [True, 2**63, -1, 1.5, "x", 1e30])
def test_seeds_are_non_negative_int64(seed):
    df = _scores().astype({"seed": object})
    df.loc[0, "seed"] = seed
    with pytest.raises(TableError, match="'seed'"):
        tables.validate_scores(df)


def test_large_seed_and_integral_float_seed_are_exact():
    df = _scores(seeds=(0,)).assign(seed=[2**63 - 1, 5, 2**63 - 1, 5])
    assert tables.validate_scores(df)["seed"].tolist() == [2**63 - 1, 5, 2**63 - 1, 5]
    assert tables.validate_scores(_scores(seeds=(0,)).assign(seed=3.0))["seed"].iloc[0] == 3


@pytest.mark.parametrize("column, value", [("parse_failed", "maybe"), ("n_tokens", "many"),
                                           ("n_tokens", -1), ("n_tokens", 2.5)])
def test_optional_columns_are_checked_not_coerced(column, value):
    with pytest.raises(TableError, match=repr(column)):
        tables.validate_scores(_scores().assign(**{column: value}))
    ok = tables.validate_scores(_scores().assign(parse_failed=["true", "False", 1, 0] * 2,
                                                 n_tokens=[1, None, 3, 4] * 2))
    assert ok["parse_failed"].tolist() == [True, False, True, False] * 2


# --- coupling "none" --------------------------------------------------------------------------

def test_coupling_none_is_a_table_value_not_a_sampler():
    assert "none" in tables.COUPLINGS and "none" not in tables.SAMPLERS
    from coupled.simulate import samplers

    assert "none" not in samplers.SAMPLERS
    with pytest.raises(ValueError):
        samplers.check_choice("sampler", "none", samplers.SAMPLERS)


def test_coupling_none_rows_must_be_independent():
    ok = tables.validate_scores(_scores(modes=("independent",), coupling="none"))
    assert set(ok["coupling"]) == {"none"}
    with pytest.raises(TableError, match="only valid with mode 'independent'"):
        tables.validate_scores(_scores(modes=("coupled",), coupling="none"))


def test_require_shared_noise_refuses_none_rows_with_a_clear_error():
    shared = tables.validate_scores(_scores(modes=("coupled", "independent")))
    tables.require_shared_noise(shared, "variance reduction")  # nothing to refuse
    unshared = pd.concat([shared, tables.validate_scores(
        _scores(models=("C",), modes=("independent",), coupling="none"))], ignore_index=True)
    with pytest.raises(TableError) as info:
        tables.require_shared_noise(unshared, "variance reduction", source="runs/x")
    message = str(info.value)
    assert "variance reduction needs rows generated with shared noise" in message
    assert "runs/x, column 'coupling'" in message and "['C']" in message and "e.g." in message


# --- manifests --------------------------------------------------------------------------------

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5)
                           | st.floats(allow_nan=False, allow_infinity=False),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                           max_leaves=8)


@settings(max_examples=40)
@given(value=json_values)
def test_manifest_that_is_not_a_json_object_is_an_error_naming_the_file(tmp_path_factory, value):
    out = tmp_path_factory.mktemp("m")
    (out / "manifest.json").write_text(json.dumps(value))
    if isinstance(value, dict):
        assert tables.read_manifest(out) == value
    else:
        with pytest.raises(TableError, match=r"manifest\.json: must hold a JSON object"):
            tables.read_manifest(out)


@pytest.mark.parametrize("write, fragment", [
    (lambda p: p.write_text('{"status": "runn'), "is not valid JSON"),
    (lambda p: p.write_text(""), "is not valid JSON"),
    (lambda p: p.write_bytes(b"\xff\xfe{}"), "is not UTF-8"),
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: p.symlink_to(p.parent / "nowhere.json"), "dangling symlink"),
])
def test_unreadable_manifests_are_errors_naming_the_file(tmp_path, write, fragment):
    write(tmp_path / "manifest.json")
    with pytest.raises(TableError) as info:
        tables.read_manifest(tmp_path)
    assert str(tmp_path / "manifest.json") in str(info.value) and fragment in str(info.value)
    assert tables.read_manifest(tmp_path / "elsewhere") == {}


# --- design_status ----------------------------------------------------------------------------

PROMPTS = tuple(f"{i:03d}" for i in range(41))


def _runner_manifest(status, models=("A", "B", "C")):
    return {"status": status, "config": {"task": {"name": "t"},
                                         "models": [{"name": m} for m in models]}}


def test_model_with_16_of_41_prompts_is_reported():
    df = _scores(prompts=PROMPTS, models=("A", "B"), modes=("coupled", "independent"))
    df = df[(df.model == "A") | df.prompt_id.isin(PROMPTS[:16])]
    status = tables.design_status(tables.validate_scores(df), {"status": "complete"})
    assert not status.complete and not status.running
    (entry,) = status.missing
    assert entry.unit == "B" and entry.task == "t"
    assert entry.missing_prompts == PROMPTS[16:] and entry.missing_seed_modes == ()
    assert (entry.n_present, entry.n_expected, entry.n_missing) == (64, 164, 100)
    assert "'B' (task 't'): rows for 64 of 164 cells; no rows for 25 prompt(s)" in status.summary()
    json.dumps(status.as_dict())  # JSON-ready
    assert status.as_dict()["missing"][0]["n_missing"] == 100


def test_running_manifest_model_in_one_mode_and_absent_model():
    df = _scores(models=("A", "B"), modes=("coupled", "independent"))
    df = df[(df.model == "A") | (df["mode"] == "coupled")]
    status = tables.design_status(tables.validate_scores(df), _runner_manifest("running"))
    assert status.running and not status.complete
    assert status.absent == ("C",)
    (entry,) = status.missing
    assert entry.unit == "B" and entry.missing_prompts == ()
    assert entry.missing_seed_modes == ((0, "independent", "gumbel"), (1, "independent", "gumbel"))
    text = status.summary()
    assert "still running" in text and "'C'" in text and "seed 0 independent/gumbel" in text


def test_balanced_and_equally_unbalanced_designs_are_complete():
    df = _scores(prompts=("1", "2", "3"), seeds=(0, 1, 2))
    df = df[~((df.prompt_id == "3") & (df.seed == 2))]  # every model lacks the same cell
    status = tables.design_status(tables.validate_scores(df), _runner_manifest("complete",
                                                                               ("A", "B")))
    assert status.complete and status.summary() == "" and status.units == ("A", "B")
    assert tables.design_status(df).complete  # no manifest


def test_comparisons_design_is_per_pair():
    rows = [dict(task="t", prompt_id=p, seed=0, mode="coupled", coupling="gumbel", model_a=a,
                 model_b=b, outcome="tie") for p in ("1", "2") for a, b in
            (("A", "B"), ("A", "C"), ("B", "C"))]
    df = tables.validate_comparisons(pd.DataFrame(rows[:-1]))  # B vs C lacks prompt 2
    status = tables.design_status(df)
    assert [(m.unit, m.missing_prompts) for m in status.missing] == [("B vs C", ("2",))]


cells = st.sets(st.tuples(st.sampled_from(("A", "B", "C")), st.sampled_from(PROMPTS[:4]),
                          st.sampled_from((0, 1)), st.sampled_from(("coupled", "independent"))),
                min_size=1)


@given(cells)
def test_design_status_counts_exactly_what_each_model_lacks_versus_the_union(present):
    df = pd.DataFrame([dict(task="t", prompt_id=p, seed=s, mode=m, coupling="gumbel", model=x,
                            score=0.0) for x, p, s, m in sorted(present)])
    status = tables.design_status(tables.validate_scores(df))
    union = {(p, s, m) for _, p, s, m in present}
    models = sorted({x for x, *_ in present})
    expected = {x: union - {(p, s, m) for y, p, s, m in present if y == x} for x in models}
    found = {e.unit: e for e in status.missing}
    assert set(found) == {x for x in models if expected[x]}
    for x, entry in found.items():
        assert entry.n_missing == len(expected[x]) and entry.n_expected == len(union)
        own_prompts = {p for y, p, _, _ in present if y == x}
        assert set(entry.missing_prompts) == {p for p, _, _ in union} - own_prompts
        assert {(p, s, m) for p, s, m, _ in entry.examples} <= expected[x]
    assert status.complete == (not found)


def test_design_status_spells_a_pair_one_way_whatever_the_row_order():
    import pandas as pd

    from coupled.tables.design import design_status

    table = pd.DataFrame({"task": ["t", "t"], "prompt_id": ["1", "2"], "seed": [0, 0],
                          "mode": ["coupled"] * 2, "coupling": ["gumbel"] * 2,
                          "model_a": ["b", "a"], "model_b": ["a", "b"], "outcome": ["a", "b"]})
    status = design_status(table)
    assert status.complete and [u for u in status.units] == ["a vs b"]
