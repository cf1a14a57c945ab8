"""The runner's guarantees (issue: reliability and security), each tested as a class.

* the config schema is strict: every value has its declared type, every table rejects unknown
  keys (generated inputs for both);
* remote code runs only when asked for, and only then;
* nothing the user owns is deleted or overwritten (the tiny build, failed starts);
* ``--resume`` checks what it resumes (weights, settings, prompts), allows additive changes
  exactly, and one writer holds a run folder at a time.
"""

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupled.runner.config import (
    JudgeSpec,
    ModelSpec,
    RunConfig,
    TaskSpec,
    config_reference,
    load_config,
)

QUESTIONS = Path(__file__).resolve().parents[1] / "examples" / "tiny" / "questions.jsonl"
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _base(**over) -> dict:
    config = {"output_dir": "/tmp/never-written", "task": {"name": "t", "type":
              "multiple_choice", "path": str(QUESTIONS)},
              "models": [{"name": "a", "path": "/tmp/a"}]}
    config.update(over)
    return config


# --- the schema ------------------------------------------------------------------------------

# Every scalar setting with the kinds of TOML value it accepts; anything else must be refused.
_SCALARS = {  # table, key -> accepted python types
    ("", "temperature"): (int, float), ("", "top_p"): (int, float), ("", "top_k"): (int,),
    ("", "min_p"): (float,), ("", "max_new_tokens"): (int,), ("", "batch_size"): (int,),
    ("", "prompts_per_chunk"): (int,), ("", "trust_remote_code"): (bool,),
    ("", "device"): (str,), ("", "backend"): (str,), ("", "output_dir"): (str,),
    ("task", "limit"): (int,), ("task", "name"): (str,), ("task", "system_prompt"): (str,),
    ("models", "trust_remote_code"): (bool,), ("models", "name"): (str,),
    ("models", "quantization"): (str,), ("models", "tensor_parallel_size"): (int,),
}
_VALUES = st.one_of(st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, width=32),
                    st.sampled_from(["false", "no", "true", "1", "0", "", "cpu"]),
                    st.lists(st.integers(0, 3), max_size=2),
                    st.dictionaries(st.just("x"), st.integers(), max_size=1))


def _with(table: str, key: str, value) -> dict:
    config = _base()
    if table == "":
        config[key] = value
    elif table == "models":
        config["models"] = [{**config["models"][0], key: value}]
    else:
        config[table] = {**config[table], key: value}
    return config


@given(setting=st.sampled_from(sorted(_SCALARS)), value=_VALUES)
def test_a_value_of_another_type_is_refused_naming_the_setting(setting, value):
    table, key = setting
    accepted = _SCALARS[setting]
    # bool is an int subclass in Python; in the schema it is never a number.
    if isinstance(value, accepted) and not (isinstance(value, bool) and bool not in accepted):
        return  # a value of the right type (maybe out of range): not this property
    with pytest.raises(ValueError, match=rf"'(models\[0\]\.|task\.)?{key}'"):
        load_config(_with(table, key, value))


@pytest.mark.parametrize("text", ["false", "no", "0", "off", ""])
def test_trust_remote_code_as_a_string_is_an_error_never_truthy(text):
    for config in (_base(trust_remote_code=text), _with("models", "trust_remote_code", text)):
        with pytest.raises(ValueError, match="must be true or false"):
            load_config(config)


@pytest.mark.parametrize("key, value", [(k, v) for k in ("seeds", "max_new_tokens")
                                        for v in (True, "3", 2.0, [True])]
                         + [("max_new_tokens", [3])])
def test_counts_are_integers_only(key, value):
    with pytest.raises(ValueError, match=key):
        load_config(_base(**{key: value}))


_TABLE_MODELS = {"": RunConfig, "task": TaskSpec, "models": ModelSpec}


@given(table=st.sampled_from(sorted(_TABLE_MODELS)),
       key=st.text(st.characters(categories=["Ll", "Nd"], include_characters="_"),
                   min_size=1, max_size=12))
def test_every_table_rejects_unknown_keys_naming_key_and_table(table, key):
    if key in _TABLE_MODELS[table].model_fields:
        return
    with pytest.raises(ValueError, match="is not a known setting of") as error:
        load_config(_with(table, key, 1))
    assert repr(key) in str(error.value) or key in str(error.value)


def test_a_typo_names_the_nearest_key():
    with pytest.raises(ValueError, match=r"'task\.limt' .*\[task\].*did you mean 'limit'"):
        load_config(_with("task", "limt", 1))
    with pytest.raises(ValueError, match=r"\[\[models\]\] #1.*did you mean 'quantization'"):
        load_config(_with("models", "quantisation", "8bit"))
    with pytest.raises(ValueError, match=r"\[judge\].*did you mean 'max_new_tokens'"):
        load_config(_base(task={"name": "t", "type": "open", "path": "p.jsonl"},
                          judge={"path": "/j", "max_new_token": 4}))


def test_a_judge_on_a_multiple_choice_task_is_refused():
    with pytest.raises(ValueError, match="applies to open prompts only"):
        load_config(_base(judge={"path": "/j"}))


def test_out_replaces_a_missing_output_dir():
    config = _base()
    del config["output_dir"]
    with pytest.raises(ValueError, match=r"'output_dir' is missing \(or pass --out DIR\)"):
        load_config(config)
    assert load_config(config, out="/tmp/elsewhere").output_dir == "/tmp/elsewhere"


def test_the_schema_reference_lists_every_key_and_is_in_the_readme():
    reference = config_reference()
    for model in (RunConfig, TaskSpec, ModelSpec, JudgeSpec):
        for name, field in model.model_fields.items():
            if name != "source":  # a key spelled otherwise in TOML is listed by that spelling
                assert f"`{field.alias or name}`" in reference
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert reference in readme, "README's config table is stale: paste `coupled run " \
                                "--show-config` into it"


# --- runs on real (tiny) models ----------------------------------------------------------------

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from coupled.runner import run  # noqa: E402
from coupled.runner.tiny import build_model, build_tiny_models, build_tokenizer  # noqa: E402
from coupled.tables import read_scores  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_models(tmp_path_factory.mktemp("tiny") / "models", QUESTIONS)


def _config(tiny: Path, out: Path, names=("tiny-A", "tiny-B"), **over) -> dict:
    config = {"output_dir": str(out), "seeds": 2, "max_new_tokens": 3, "batch_size": 8,
              "prompts_per_chunk": 3, "modes": ["coupled", "independent"],
              "task": {"name": "t", "type": "multiple_choice", "path": str(QUESTIONS),
                       "limit": 5},
              "models": [{"name": n, "path": str(tiny / n)} for n in names]}
    config.update(over)
    return config


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    key = ["mode", "model", "prompt_id", "seed"]
    return table.sort_values(key).reset_index(drop=True)


def test_remote_code_is_refused_unless_trusted_and_never_runs(tiny, tmp_path):
    model = tmp_path / "custom"
    shutil.copytree(tiny / "tiny-A", model)
    marker = tmp_path / "code-ran"
    (model / "custom_model.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "from transformers import LlamaConfig as CustomConfig\n")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "custom_model.CustomConfig"}
    (model / "config.json").write_text(json.dumps(config))
    for trust in ("false", False):
        settings = _config(tiny, tmp_path / "out", names=())
        settings["models"] = [{"name": "c", "path": str(model), "trust_remote_code": trust}]
        with pytest.raises(ValueError, match="must be true or false|names custom code"):
            run(settings, progress=False)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_tiny_build_never_touches_what_it_did_not_create(tmp_path):
    folder = tmp_path / "mine"
    (folder / "notes").mkdir(parents=True)
    (folder / "notes" / "keep.txt").write_text("mine")
    (folder / "questions.jsonl").write_text("{}\n")
    (folder / "tiny-B").mkdir()  # the user's own folder with a build name: left as it is
    (folder / "tiny-B" / "weights.bin").write_bytes(b"user data")
    before = _snapshot(folder)
    config = _config(tmp_path, tmp_path / "out", names=("tiny-A",), modes=["coupled"], seeds=1,
                     task={"name": "t", "type": "multiple_choice", "path": str(QUESTIONS),
                           "limit": 1})
    config["models"] = [{"name": "tiny-A", "path": str(folder / "tiny-A"), "build": "tiny"}]
    run(config, progress=False)
    after = _snapshot(folder)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing changed
    assert (folder / "tiny-A" / "model.safetensors").is_file()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["notes", "questions.jsonl", "tiny-A", "tiny-A-copy", "tiny-B", "tokenizer"])
    # a build name that is not one of the tiny models: refused, nothing created
    config["models"] = [{"name": "x", "path": str(tmp_path / "other" / "x"), "build": "tiny"}]
    config["output_dir"] = str(tmp_path / "out2")
    with pytest.raises(ValueError, match="build = 'tiny' makes the folders"):
        run(config, progress=False)
    assert not (tmp_path / "other").exists() and not (tmp_path / "out2").exists()


@pytest.mark.parametrize("problem", ["missing", "file", "empty", "not-json", "hub-offline",
                                     "cuda", "cuda:3"])
def test_a_model_that_cannot_load_is_refused_before_any_write(tiny, tmp_path, problem):
    path = tmp_path / "model"
    device = "auto"
    if problem == "file":
        path.write_text("x")
    elif problem == "empty":
        path.mkdir()
    elif problem == "not-json":
        path.mkdir()
        (path / "config.json").write_text("{")
    elif problem == "hub-offline":
        path = "nobody/no-such-model-here"
    elif problem.startswith("cuda"):
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
        path, device = tiny / "tiny-A", problem
    config = _config(tiny, tmp_path / "out", names=())
    config["models"] = [{"name": "m", "path": str(path), "device": device}]
    with pytest.raises(ValueError, match="model 'm'|device 'cuda"):
        run(config, progress=False)
    assert not (tmp_path / "out").exists()


def test_a_failed_start_leaves_a_folder_the_corrected_run_takes_over(tiny, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny / "tiny-A", broken)
    (broken / "model.safetensors").write_bytes(b"not a checkpoint")
    config = _config(tiny, tmp_path / "out", names=())
    config["models"] = [{"name": "m", "path": str(broken)}]
    with pytest.raises(Exception):  # noqa: B017 - whatever safetensors raises on garbage
        run(config, progress=False)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"]
    config["models"] = [{"name": "m", "path": str(tiny / "tiny-A")}]
    run(config, progress=False)  # no --resume needed: the folder holds no rows
    assert len(read_scores(tmp_path / "out")) == 5 * 2 * 2


def test_resume_refuses_swapped_weights_naming_the_model_and_file(tiny, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny / "tiny-A", model)
    config = _config(tiny, tmp_path / "out", names=())
    config["models"] = [{"name": "m", "path": str(model)}]
    run(config, progress=False)
    shutil.copy(tiny / "tiny-B" / "model.safetensors", model / "model.safetensors")
    with pytest.raises(ValueError, match=r"model 'm' changed: hashes\.model\.safetensors"):
        run(config, resume=True, progress=False)


@pytest.mark.parametrize("change", [{"temperature": 0.7}, {"max_new_tokens": 2},
                                    {"prompts_per_chunk": 2}, {"top_p": 0.9},
                                    {"task": {"name": "t", "type": "multiple_choice",
                                              "path": "PROMPTS", "limit": 5}}])
def test_resume_refuses_every_row_deciding_change(tiny, tmp_path, change):
    config = _config(tiny, tmp_path / "out", names=("tiny-A",))
    run(config, progress=False)
    if "task" in change:  # same ids, other question texts
        questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines()]
        questions[1]["question"] += " (edited)"
        path = tmp_path / "edited.jsonl"
        path.write_text("".join(json.dumps(q) + "\n" for q in questions))
        change = {"task": {**change["task"], "path": str(path)}}
    with pytest.raises(ValueError, match="cannot resume into"):
        run({**config, **change}, resume=True, progress=False)


def test_additive_changes_extend_the_run_with_exactly_the_fresh_rows(tiny, tmp_path):
    small = _config(tiny, tmp_path / "grown", names=("tiny-A",), modes=["coupled"], seeds=1)
    run(small, progress=False)
    grown = _config(tiny, tmp_path / "grown", names=("tiny-A", "tiny-B"), seeds=[0, 1],
                    batch_size=5,  # decides no row: allowed
                    task={"name": "t", "type": "multiple_choice", "path": str(QUESTIONS),
                          "limit": 7})
    run(grown, resume=True, progress=False)
    fresh = _config(tiny, tmp_path / "fresh", names=("tiny-A", "tiny-B"), seeds=[0, 1],
                    task=grown["task"])
    run(fresh, progress=False)
    extended, reference = read_scores(tmp_path / "grown"), read_scores(tmp_path / "fresh")
    assert len(extended) == 2 * 7 * 2 * 2
    pd.testing.assert_frame_equal(_sorted(extended), _sorted(reference))
    manifest = json.loads((tmp_path / "grown" / "manifest.json").read_text())
    assert len(manifest["blocks"]) > 1 and manifest["extensions"][0]["models"] == ["tiny-B"]


def test_a_second_writer_is_refused_while_the_folder_is_locked(tiny, tmp_path):
    from filelock import FileLock

    from coupled.runner.run import LOCK_NAME

    out = tmp_path / "out"
    out.mkdir()
    with FileLock(out / LOCK_NAME):
        with pytest.raises(ValueError, match="being written by another coupled run"):
            run(_config(tiny, out, names=("tiny-A",)), resume=True, progress=False)
    run(_config(tiny, out, names=("tiny-A",)), resume=True, progress=False)  # free again


def test_a_pickled_checkpoint_is_hashed_too(tiny, tmp_path):
    tokenizer = build_tokenizer(tmp_path / "tok", ["a b c d A B C D " * 10], 280)
    model = build_model(tmp_path / "pickled", tokenizer, seed=4)
    for file in (tmp_path / "pickled").glob("*.safetensors"):
        file.unlink()
    torch.save(model.state_dict(), tmp_path / "pickled" / "pytorch_model.bin")
    from coupled.runner.models import model_file_hashes

    assert "pytorch_model.bin" in model_file_hashes(str(tmp_path / "pickled"))


def test_cli_run_takes_out_when_the_config_has_no_output_dir(tiny, tmp_path, capsys):
    from coupled.cli.main import main

    config = _config(tiny, tmp_path / "unused", names=("tiny-A",), modes=["coupled"], seeds=1,
                     task={"name": "t", "type": "multiple_choice", "path": str(QUESTIONS),
                           "limit": 1})
    del config["output_dir"]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config))
    import tomllib  # noqa: F401 - the CLI reads TOML; write one

    toml = "\n".join([
        "seeds = 1", 'modes = ["coupled"]', "max_new_tokens = 2",
        "[task]", 'name = "t"', 'type = "multiple_choice"', f'path = "{QUESTIONS}"', "limit = 1",
        "[[models]]", 'name = "tiny-A"', f'path = "{tiny / "tiny-A"}"'])
    (tmp_path / "run.toml").write_text(toml + "\n")
    assert main(["run", str(tmp_path / "run.toml"), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 0
    assert len(read_scores(tmp_path / "o")) == 1
    assert main(["run", str(tmp_path / "run.toml"), "--no-progress"]) == 2
    assert "'output_dir' is missing (or pass --out DIR)" in capsys.readouterr().err


def test_a_cached_hub_model_records_its_resolved_revision(tmp_path, monkeypatch):
    from coupled.runner.models import hub_revision

    snapshot = tmp_path / "hub" / "models--org--name" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--org--name" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--name" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert hub_revision("org/name") == "0123abcd"
    assert hub_revision(str(tmp_path)) is None and hub_revision("org/absent") is None


def test_cli_run_ends_with_mean_scores_and_the_coupling_check(tiny, tmp_path, capsys):
    from coupled.cli.main import main

    shutil.copytree(tiny / "tiny-A", tmp_path / "copy")
    toml = "\n".join([
        f'output_dir = "{tmp_path / "o"}"', "seeds = 2", "max_new_tokens = 3",
        "[task]", 'name = "t"', 'type = "multiple_choice"', f'path = "{QUESTIONS}"', "limit = 4",
        "[[models]]", 'name = "tiny-A"', f'path = "{tiny / "tiny-A"}"',
        "[[models]]", 'name = "copy"', f'path = "{tmp_path / "copy"}"'])
    (tmp_path / "run.toml").write_text(toml + "\n")
    assert main(["run", str(tmp_path / "run.toml"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "mean score ± 95 % CI (question-clustered), task 't'" in out and "tiny-A" in out
    assert "copy vs tiny-A: 100.0 % identical replies coupled" in out
    scores = read_scores(tmp_path / "o")
    assert all(len(ids) == n for ids, n in zip(scores["token_ids"], scores["n_tokens"],
                                               strict=True))
