"""lm-eval / inspect_ai imports and the lm-eval export (issue 13 §3).

The fixtures are real runs of lm-eval 0.4.13 and inspect-ai 0.3.285 on the tiny models
(tests/fixtures/make_import_fixtures.sh made them); neither tool is needed here. Expected values
come from the raw logs read independently in the tests, and from the tools' own aggregates
(lm-eval's results_*.json, inspect's header.json), not from the importer.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupled.cli.main import main
from coupled.tables import TableError, read_scores
from coupled.tables.imports import (
    exact_match,
    read_inspect_log,
    read_lm_eval_samples,
    regex_match,
)

FIXTURES = Path(__file__).parent / "fixtures"
LM_EVAL = FIXTURES / "lm_eval"
INSPECT = FIXTURES / "inspect"
MODELS = ("tiny-A", "tiny-B")
N_DOCS, REPEATS, EPOCHS = 8, 3, 3
LETTER = r"([A-E])"


def _samples(model: str, task: str) -> Path:
    (path,) = (LM_EVAL / model).glob(f"samples_{task}_*.jsonl")
    return path


def _results(model: str) -> dict:
    (path,) = (LM_EVAL / model).glob("results_*.json")
    return json.loads(path.read_text())


def _raw_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- lm-eval ---------------------------------------------------------------------------------

def test_lm_eval_every_repeat_is_a_seed_rescored():
    table = read_lm_eval_samples(LM_EVAL, scorer=regex_match(LETTER))
    gen = table[table["task"] == "tiny_letters_gen"]
    mc = table[table["task"] == "tiny_letters_mc"]
    assert len(gen) == N_DOCS * REPEATS * len(MODELS)
    assert len(mc) == N_DOCS * 1 * len(MODELS)  # log-likelihood: deterministic, one seed
    assert set(table["mode"]) == {"independent"} and set(table["coupling"]) == {"none"}
    assert sorted(table["model"].unique()) == list(MODELS)  # from results_*.json
    assert sorted(gen["seed"].unique()) == list(range(REPEATS)) and set(mc["seed"]) == {0}
    assert set(table["subject"]) == {"arithmetic"}
    for model in MODELS:
        # Re-score the raw replies here, independently of the importer.
        lines = [r for r in _raw_lines(_samples(model, "tiny_letters_gen"))
                 if r["filter"] == "strict-match"]
        expected = {}
        for r in lines:
            for seed, reply in enumerate(r["resps"][0]):
                found = re.search(LETTER, reply)
                expected[str(r["doc_id"]), seed] = (float(bool(found) and found.group(1)
                                                          == r["target"]), reply)
        got = gen[gen["model"] == model].set_index(["prompt_id", "seed"])
        assert len(got) == len(expected)
        for key, (score, reply) in expected.items():
            assert got.loc[key, "score"] == score and got.loc[key, "response"] == reply
        # lm-eval's own metric scores repeat 0 only (take_first after the same regex).
        first = got.xs(0, level="seed")["score"].mean()
        assert first == pytest.approx(_results(model)["results"]["tiny_letters_gen"]
                                      ["exact_match,strict-match"])


@pytest.mark.parametrize("metric", ["acc", "acc_norm"])
def test_lm_eval_multiple_choice_recomputes_lm_evals_own_metric(metric):
    table = read_lm_eval_samples(LM_EVAL, choice_metric=metric, tasks=["tiny_letters_mc"])
    for model in MODELS:
        logged = {str(r["doc_id"]): r[metric]
                  for r in _raw_lines(_samples(model, "tiny_letters_mc"))}
        got = table[table["model"] == model].set_index("prompt_id")["score"].to_dict()
        assert got == logged
        assert table[table["model"] == model]["score"].mean() == pytest.approx(
            _results(model)["results"]["tiny_letters_mc"][f"{metric},none"])


def test_lm_eval_exact_match_and_model_override(tmp_path):
    path = _samples("tiny-A", "tiny_letters_gen")
    copy = tmp_path / path.name  # no results file beside it: the model must be named
    shutil.copy(path, copy)
    with pytest.raises(TableError, match=re.escape(str(copy)) + ".*results_"):
        read_lm_eval_samples(copy)
    table = read_lm_eval_samples(copy, model="mine", scorer=exact_match())
    replies = [(r["doc_id"], r["target"], reply) for r in _raw_lines(path)
               if r["filter"] == "strict-match" for reply in r["resps"][0]]
    assert list(table["score"]) == [float(reply.strip() == target)
                                    for _, target, reply in replies]
    assert set(table["model"]) == {"mine"} and set(table["scorer"]) == {"exact_match"}


def test_one_run_per_model_and_task_in_both_readers(tmp_path):
    # Two copies of one run would give every key twice: each reader names both files.
    for copy in ("first", "second"):
        shutil.copytree(LM_EVAL / "tiny-A", tmp_path / "lm" / copy)
        (tmp_path / "ins" / copy).mkdir(parents=True)
        shutil.copy(_eval_logs()[0], tmp_path / "ins" / copy)
    for read, folder, unit in ((read_lm_eval_samples, "lm", "run"),
                               (lambda p: read_inspect_log(p, scorer="pattern"), "ins", "log")):
        with pytest.raises(TableError, match=re.escape(str(tmp_path / folder / "second")) +
                           r".*is also in " + re.escape(str(tmp_path / folder / "first")) +
                           f".*one {unit} per model and task"):
            read(tmp_path / folder)


def _synthetic_samples(docs: list[tuple[str, list[str]]], filters: int) -> str:
    lines = []
    for name in [f"f{i}" for i in range(filters)]:
        for doc_id, (target, replies) in enumerate(docs):
            lines.append(json.dumps({
                "doc_id": doc_id, "doc": {"q": doc_id}, "target": target,
                "arguments": {"gen_args_0": {"arg_0": f"Q{doc_id}", "arg_1": {"until": []}}},
                "resps": [replies], "filtered_resps": [replies[0]], "filter": name}))
    return "\n".join(lines) + "\n"


@given(docs=st.lists(st.tuples(st.sampled_from(["A", "B", " C"]),
                               st.lists(st.sampled_from(["A", " B", "C ", "", "AB"]),
                                        min_size=1, max_size=5)),
                     min_size=1, max_size=6),
       filters=st.integers(1, 3))
def test_lm_eval_generated_samples_give_every_repeat(tmp_path_factory, docs, filters):
    folder = tmp_path_factory.mktemp("gen")
    path = folder / "samples_t_2026-01-01T00-00-00.000001.jsonl"
    path.write_text(_synthetic_samples(docs, filters))
    table = read_lm_eval_samples(path, model="m")
    assert len(table) == sum(len(replies) for _, replies in docs)  # filters counted once
    expected = [float(r.strip() == t.strip()) for t, replies in docs for r in replies]
    ordered = table.assign(doc=table["prompt_id"].astype(int)).sort_values(["doc", "seed"])
    assert list(ordered["score"]) == expected
    assert list(ordered["response"]) == [r for _, replies in docs for r in replies]


def test_subject_where_only_some_docs_have_one(tmp_path):
    # Two inputs, one with subjects (the fixtures), one without (synthetic docs): rows without
    # a subject get their task's name, never an empty identifier.
    samples = tmp_path / "samples_plain_2026-01-01T00-00-00.000001.jsonl"
    samples.write_text(_synthetic_samples([("A", ["A", "B"]), ("B", ["B"])], 1))
    (tmp_path / "results_2026-01-01T00-00-00.000001.json").write_text(
        json.dumps({"model_name": "tiny-A"}))
    assert "subject" not in read_lm_eval_samples(samples).columns
    out = tmp_path / "both.parquet"
    assert main(["import", "lm-eval", str(LM_EVAL), str(samples), "--out", str(out)]) == 0
    table = read_scores(out)
    assert set(table.loc[table["task"] == "plain", "subject"]) == {"plain"}
    assert set(table.loc[table["task"] != "plain", "subject"]) == {"arithmetic"}
    assert len(table) == N_DOCS * (REPEATS + 1) * len(MODELS) + 3


@pytest.mark.parametrize("doc_to_choice", ["{{choices}}", "choices", ["x", "y", "z"],
                                           {"a": "x", "b": "y", "c": "z"}])
def test_lm_eval_generation_gold_from_doc_to_choice(tmp_path, doc_to_choice):
    # With doc_to_choice set, lm-eval logs the target as an index and scores against
    # choices[index]; every form of doc_to_choice lm-eval accepts is resolved the same way.
    date = "2026-01-01T00-00-00.000001"
    record = {"doc_id": 0, "doc": {"choices": ["x", "y", "z"]}, "target": "1",
              "arguments": {"gen_args_0": {"arg_0": "Q", "arg_1": {"until": []}}},
              "resps": [["y", " x", "z", "y "]], "filter": "none"}
    (tmp_path / f"samples_t_{date}.jsonl").write_text(json.dumps(record) + "\n")
    (tmp_path / f"results_{date}.json").write_text(json.dumps({
        "model_name": "m", "configs": {"t": {"output_type": "generate_until",
                                             "doc_to_choice": doc_to_choice}}}))
    table = read_lm_eval_samples(tmp_path)
    assert list(table["score"]) == [1.0, 0.0, 0.0, 1.0] and set(table["target"]) == {"y"}


def test_lm_eval_multiple_targets_and_unknown_choices(tmp_path):
    date = "2026-01-01T00-00-00.000001"
    samples = tmp_path / f"samples_t_{date}.jsonl"
    record = {"doc_id": 0, "doc": {}, "target": str(["Paris", "paris, France"]),
              "arguments": {"gen_args_0": {"arg_0": "Q", "arg_1": {"until": []}}},
              "resps": [["paris, France", "Paris", "Lyon"]], "filter": "none"}
    samples.write_text(json.dumps(record) + "\n")
    results = tmp_path / f"results_{date}.json"
    results.write_text(json.dumps({"model_name": "m"}))
    assert list(read_lm_eval_samples(tmp_path)["score"]) == [1.0, 1.0, 0.0]
    results.write_text(json.dumps({"model_name": "m", "configs": {"t": {
        "output_type": "generate_until", "doc_to_choice": "<function utils.choices>"}}}))
    with pytest.raises(TableError, match=re.escape(f"{samples}, line 1") + ".*doc_to_choice"):
        read_lm_eval_samples(tmp_path)


@given(line=st.integers(0, 15), junk=st.sampled_from(["{", "[1, 2", "not json", "{\"a\": }"]))
def test_lm_eval_bad_line_is_named(tmp_path_factory, line, junk):
    folder = tmp_path_factory.mktemp("bad")
    source = _samples("tiny-A", "tiny_letters_gen")
    lines = source.read_text().splitlines()
    lines.insert(line, junk)
    target = folder / source.name
    target.write_text("\n".join(lines) + "\n")
    with pytest.raises(TableError, match=re.escape(f"{target}, line {line + 1}")):
        read_lm_eval_samples(target, model="m")


def test_lm_eval_missing_field_and_changed_replies_are_named(tmp_path):
    source = _samples("tiny-A", "tiny_letters_gen")
    records = _raw_lines(source)
    del records[2]["resps"]
    bad = tmp_path / source.name
    bad.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    with pytest.raises(TableError, match=r"line 3, column 'resps'"):
        read_lm_eval_samples(bad, model="m")
    records = _raw_lines(source)
    records[-1]["resps"] = [["Z", "Z", "Z"]]  # the 'maj' copy of the last doc disagrees
    bad.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    with pytest.raises(TableError, match=rf"line {len(records)}.*different replies"):
        read_lm_eval_samples(bad, model="m")


# --- inspect_ai ------------------------------------------------------------------------------

def _eval_logs() -> list[Path]:
    return sorted(INSPECT.glob("*.eval"))


def _zip_json(path: Path, name: str):
    # Independent reader for the expectations: the zstd member through zstandard directly.
    import zstandard

    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
        with open(path, "rb") as handle:
            handle.seek(info.header_offset + 26)
            skip = int.from_bytes(handle.read(2), "little") + int.from_bytes(handle.read(2),
                                                                             "little")
            handle.seek(skip, 1)
            raw = handle.read(info.compress_size)
    return json.loads(zstandard.ZstdDecompressor().stream_reader(
        raw, read_across_frames=True).read())


def test_inspect_every_epoch_is_a_seed():
    table = read_inspect_log(INSPECT, scorer="pattern")
    assert len(table) == N_DOCS * EPOCHS * len(MODELS)
    assert sorted(table["model"].unique()) == ["hf/tiny-A", "hf/tiny-B"]
    assert set(table["task"]) == {"tiny_letters"} and set(table["coupling"]) == {"none"}
    assert sorted(table["seed"].unique()) == list(range(EPOCHS))
    assert set(table["subject"]) == {"arithmetic"}
    for log in _eval_logs():
        header = _zip_json(log, "header.json")
        model = header["eval"]["model"]
        rows = table[table["model"] == model].set_index(["prompt_id", "seed"])
        for sample_id in header["eval"]["dataset"]["sample_ids"]:
            for epoch in range(1, EPOCHS + 1):
                sample = _zip_json(log, f"samples/{sample_id}_epoch_{epoch}.json")
                value = sample["scores"]["pattern"]["value"]
                assert rows.loc[(sample_id, epoch - 1), "score"] == {"C": 1.0, "I": 0.0}[value]
                assert rows.loc[(sample_id, epoch - 1), "response"] == \
                    sample["output"]["completion"]
        # inspect's own accuracy (epochs reduced by mean, then averaged over samples).
        (pattern,) = [s for s in header["results"]["scores"] if s["name"] == "pattern"]
        assert rows["score"].mean() == pytest.approx(pattern["metrics"]["accuracy"]["value"])


@pytest.mark.parametrize("scorer", ["pattern", "includes"])
def test_inspect_reader_agrees_with_inspects_own(scorer):
    # tests/fixtures/inspect_read_eval_log.json: what inspect_ai.log.read_eval_log read from
    # the same logs (made by make_import_fixtures.sh --inspect-reference).
    reference = json.loads((FIXTURES / "inspect_read_eval_log.json").read_text())
    assert len(reference) == N_DOCS * EPOCHS * len(MODELS)
    table = read_inspect_log(INSPECT, scorer=scorer).set_index(["model", "prompt_id", "seed"])
    assert len(table) == len(reference)
    for ref in reference:
        row = table.loc[(ref["model"], ref["id"], ref["epoch"] - 1)]
        assert row["task"] == ref["task"] and row["subject"] == ref["subject"]
        assert row["response"] == ref["completion"]
        assert row["score"] == {"C": 1.0, "I": 0.0}[ref["scores"][scorer]]


def test_inspect_needs_a_scorer_choice_when_several():
    with pytest.raises(TableError, match=r"several scorers \['includes', 'pattern'\]"):
        read_inspect_log(_eval_logs()[0])


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_inspect_log_recompressed_reads_the_same(tmp_path, method):
    log = _eval_logs()[0]
    expected = read_inspect_log(log, scorer="includes")
    copy = tmp_path / log.name
    with zipfile.ZipFile(log) as source, zipfile.ZipFile(copy, "w", method) as target:
        for info in source.infolist():
            target.writestr(info.filename, json.dumps(_zip_json(log, info.filename)))
    pd.testing.assert_frame_equal(read_inspect_log(copy, scorer="includes"), expected)


def test_inspect_unfinished_log_is_refused_unless_allowed(tmp_path):
    log = _eval_logs()[0]
    copy = tmp_path / log.name
    with zipfile.ZipFile(log) as source, zipfile.ZipFile(copy, "w", zipfile.ZIP_DEFLATED) as t:
        for info in source.infolist():
            if info.filename not in ("header.json", "samples/q003_epoch_2.json"):
                t.writestr(info.filename, json.dumps(_zip_json(log, info.filename)))
    with pytest.raises(TableError, match=re.escape(str(copy)) + r".*status.*'started'"):
        read_inspect_log(copy, scorer="pattern")
    table = read_inspect_log(copy, scorer="pattern", allow_incomplete=True)
    assert len(table) == N_DOCS * EPOCHS - 1


def _rewrite(log: Path, target: Path, change) -> None:
    """Copy ``log`` to ``target`` (deflate), passing each member's JSON through ``change``."""
    with zipfile.ZipFile(log) as source, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as t:
        for info in source.infolist():
            t.writestr(info.filename, json.dumps(change(info.filename,
                                                        _zip_json(log, info.filename))))


def test_inspect_errored_sample_is_refused_unless_allowed(tmp_path):
    log = _eval_logs()[0]
    bad = tmp_path / log.name
    member = "samples/q005_epoch_3.json"
    _rewrite(log, bad, lambda name, data: {**data, "error": {"message": "boom"}}
             if name == member else data)
    with pytest.raises(TableError, match=re.escape(f"{bad}:{member}") + ".*boom"):
        read_inspect_log(bad, scorer="pattern")
    assert len(read_inspect_log(bad, scorer="pattern", allow_incomplete=True)) == \
        N_DOCS * EPOCHS - 1


def test_inspect_json_log_and_folder_manifest(tmp_path):
    log = _eval_logs()[0]
    with zipfile.ZipFile(log) as archive:
        names = sorted(n for n in archive.namelist() if n.startswith("samples/"))
    whole = {**_zip_json(log, "header.json"), "samples": [_zip_json(log, n) for n in names]}
    (tmp_path / "run.json").write_text(json.dumps(whole))
    (tmp_path / "logs.json").write_text(json.dumps({"run.json": {}}))  # inspect's listing
    pd.testing.assert_frame_equal(read_inspect_log(tmp_path, scorer="pattern"),
                                  read_inspect_log(log, scorer="pattern"))


def test_inspect_corrupt_member_is_named(tmp_path):
    log = _eval_logs()[0]
    data = bytearray(log.read_bytes())
    with zipfile.ZipFile(log) as archive:
        info = archive.getinfo("samples/q001_epoch_1.json")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 10, start + 40):
        data[i] ^= 0xFF
    bad = tmp_path / log.name
    bad.write_bytes(bytes(data))
    with pytest.raises(TableError, match=re.escape(f"{bad}:samples/q001_epoch_1.json")):
        read_inspect_log(bad, scorer="pattern")


@given(value=st.one_of(st.sampled_from(["C", "P", "I", "N", "yes", "No", "TRUE", "false"]),
                       st.integers(-5, 5), st.floats(-3, 3, allow_nan=False),
                       st.booleans(), st.sampled_from(["0.25", "7", "maybe", "", None])))
def test_inspect_score_values_map_like_value_to_float(value):
    from coupled.tables.imports import _inspect_value

    letters = {"C": 1.0, "P": 0.5, "I": 0.0, "N": 0.0}  # compared as written, as inspect does
    words = {"yes": 1.0, "no": 0.0, "true": 1.0, "false": 0.0}  # compared lower-cased
    if value in letters:
        assert _inspect_value(value, "w") == (letters[value], value == "N")
    elif isinstance(value, str) and value.lower() in words:
        assert _inspect_value(value, "w") == (words[value.lower()], False)
    elif isinstance(value, bool | int | float) or value in ("0.25", "7"):
        assert _inspect_value(value, "w") == (float(value), False)
    else:  # inspect would warn and score 0; a scores table never guesses
        with pytest.raises(TableError, match="is not a number"):
            _inspect_value(value, "w")


# --- CLI: one command to a ranking, errors, export -------------------------------------------

def test_cli_import_then_rank_gives_rank_sets_with_cis(tmp_path, capsys):
    scores = tmp_path / "scores.parquet"
    assert main(["import", "inspect", str(INSPECT), "--scorer", "pattern", "--rename",
                 "hf/tiny-A=tiny-A", "hf/tiny-B=tiny-B", "--out", str(scores)]) == 0
    assert main(["rank", str(scores), "--json"]) == 0
    ranks = pd.DataFrame(json.loads(capsys.readouterr().out))
    assert set(ranks["model"]) == set(MODELS) and set(ranks["coupling"]) == {"none"}
    assert (ranks["ci_low"] <= ranks["win_rate"]).all()
    assert (ranks["win_rate"] <= ranks["ci_high"]).all()
    assert main(["import", "lm-eval", str(LM_EVAL), "--scorer", "letter",
                 "--out", str(tmp_path / "lm.csv")]) == 0
    table = read_scores(tmp_path / "lm.csv")
    assert len(table) == N_DOCS * (REPEATS + 1) * len(MODELS)
    # --scorer letter is the runner's reply parser applied to every repeat.
    from coupled.runner.tasks import parse_choice

    gen = table[table["task"] == "tiny_letters_gen"]
    n_choices = {str(r["doc_id"]): len(r["doc"]["choices"])
                 for r in _raw_lines(_samples("tiny-A", "tiny_letters_gen"))}
    letters = [parse_choice(reply, n_choices[p]) for reply, p in
               zip(gen["response"], gen["prompt_id"], strict=True)]
    assert list(gen["score"]) == [float(x == t) for x, t in
                                  zip(letters, gen["target"], strict=True)]
    assert list(gen["parse_failed"]) == [x is None for x in letters]
    assert main(["analyze", str(tmp_path / "lm.csv"), "--json"]) == 0


def test_no_shared_noise_is_refused_where_it_is_needed():
    from coupled.analysis import variance_reduction
    from coupled.tables import require_shared_noise

    table = read_inspect_log(INSPECT, scorer="pattern")
    with pytest.raises(TableError, match="coupling.*'none'"):
        require_shared_noise(table, "variance reduction")
    # Refused today for want of coupled rows; with require_shared_noise wired in, for 'none'.
    with pytest.raises(ValueError, match=r"mode 'coupled'|'none'"):
        variance_reduction(table, "hf/tiny-A", "hf/tiny-B")


@pytest.mark.parametrize("argv, message", [
    (["import", "lm-eval", "{bad}", "--model", "m", "--out", "{out}"], "{bad}, line 2"),
    (["import", "inspect", "{bad_zip}", "--out", "{out}"], "{bad_zip}: is not a readable"),
    (["import", "lm-eval", "{missing}", "--out", "{out}"], "{missing}: no such file"),
    (["import", "lm-eval", str(LM_EVAL), "--out", "{exists}"], "file exists"),
    (["import", "lm-eval", str(LM_EVAL), "--scorer", "regex", "--out", "{out}"], "--regex"),
    (["import", "inspect", str(INSPECT), "--out", "{out}"], "several scorers"),
    (["import", "inspect", str(INSPECT), "--scorer", "pattern", "--rename", "nobody=x",
      "--out", "{out}"], "--rename: no model"),
])
def test_cli_bad_input_exit_2_naming_the_file(tmp_path, capsys, argv, message):
    bad = tmp_path / "samples_t_2026-01-01T00-00-00.000001.jsonl"
    bad.write_text(_synthetic_samples([("A", ["A"])], 1) + "{oops\n")
    bad_zip = tmp_path / "log.eval"
    bad_zip.write_bytes(_eval_logs()[0].read_bytes()[:5000])
    exists = tmp_path / "exists.parquet"
    exists.write_text("x")
    names = {"bad": bad, "bad_zip": bad_zip, "missing": tmp_path / "nope", "exists": exists,
             "out": tmp_path / "out.parquet"}
    assert main([a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message.format(**names) in err and "Traceback" not in err
    assert not (tmp_path / "out.parquet").exists()


def test_export_lm_eval_layout_round_trip(tmp_path):
    scores = tmp_path / "scores.parquet"
    assert main(["import", "lm-eval", str(LM_EVAL), "--scorer", "regex", "--regex", LETTER,
                 "--out", str(scores)]) == 0
    out = tmp_path / "exported"
    assert main(["export", "lm-eval", str(scores), "--out", str(out)]) == 0
    files = sorted(out.glob("*/results_*.json"))
    assert [f.parent.name for f in files] == list(MODELS)
    table = read_scores(scores)
    for file in files:
        exported = json.loads(file.read_text())
        real = _results(file.parent.name)
        # lm-eval's layout: the keys its readers use are all there, with the same shapes.
        for key in ("results", "configs", "versions", "n-shot", "higher_is_better",
                    "n-samples", "config", "model_name", "model_name_sanitized", "date"):
            assert key in exported and type(exported[key]) is type(real[key]), key
        assert exported["config"]["model_args"]["pretrained"] == exported["model_name"]
        assert set(exported["results"]) == set(real["results"])
        # One seed per doc: our clustered SE is lm-eval's own stderr formula.
        mc = exported["results"]["tiny_letters_mc"]
        assert mc["acc,independent-none"] == pytest.approx(
            real["results"]["tiny_letters_mc"]["acc,none"])
        assert mc["acc_stderr,independent-none"] == pytest.approx(
            real["results"]["tiny_letters_mc"]["acc_stderr,none"])
        gen = table[(table["model"] == exported["model_name"])
                    & (table["task"] == "tiny_letters_gen")]
        assert exported["results"]["tiny_letters_gen"]["acc,independent-none"] == \
            pytest.approx(gen.groupby("prompt_id")["score"].mean().mean())
        assert exported["configs"]["tiny_letters_gen"]["repeats"] == REPEATS
        for key in exported["results"]["tiny_letters_gen"]:
            assert key in ("alias", "sample_len") or re.fullmatch(r"[a-z_]+,[a-z-]+", key)
    # An earlier export is replaced whole; a foreign folder is refused.
    assert main(["export", "lm-eval", str(scores), "--out", str(out)]) == 0
    assert len(list(out.glob("*/results_*.json"))) == len(MODELS)
    assert main(["export", "lm-eval", str(scores), "--out", str(LM_EVAL)]) == 2


def test_import_and_export_need_neither_torch_nor_the_tools(tmp_path):
    # The importers are core: no torch, no lm-eval, no inspect_ai (blocked here).
    blocker = textwrap.dedent("""
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"torch", "transformers", "lm_eval", "inspect_ai"}:
                    raise ImportError(f"{name} is blocked")
                return None

        sys.meta_path.insert(0, Block())
        from coupled.cli.main import main
        argv = sys.argv[1:]
        assert main(["import", "inspect", argv[0], "--scorer", "pattern", "--out", argv[1]]) == 0
        assert main(["import", "lm-eval", argv[2], "--scorer", "exact_match",
                     "--out", argv[3]]) == 0
        assert main(["export", "lm-eval", argv[3], "--out", argv[4]]) == 0
        import inspect_ai  # last: proves the blocker really blocks
    """)
    out = [tmp_path / "i.parquet", tmp_path / "l.parquet", tmp_path / "exported"]
    result = subprocess.run([sys.executable, "-c", blocker, str(INSPECT), str(out[0]),
                             str(LM_EVAL), str(out[1]), str(out[2])],
                            capture_output=True, text=True, timeout=300)
    assert "inspect_ai is blocked" in result.stderr, result.stderr
    assert all(path.exists() for path in out)
