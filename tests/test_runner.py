"""coupled.runner on tiny local models (CPU, offline): control, calibration, resume, safety."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from coupled.runner import decode, load_config, noise_torch, run, tasks  # noqa: E402
from coupled.runner.config import ModelSpec  # noqa: E402
from coupled.runner.models import load_model, load_tokenizer  # noqa: E402
from coupled.runner.tiny import build_model, build_tiny_models, build_tokenizer  # noqa: E402
from coupled.tables import read_comparisons, read_generations, read_scores  # noqa: E402

pytestmark = pytest.mark.runner
os.environ.setdefault("HF_HUB_OFFLINE", "1")
QUESTIONS = Path(__file__).resolve().parents[1] / "examples" / "tiny" / "questions.jsonl"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """tokenizer + tiny-A, tiny-B, tiny-A-copy, built once per session."""
    return build_tiny_models(tmp_path_factory.mktemp("tiny") / "models", QUESTIONS)


def _config(models_dir: Path, out: Path, names=("tiny-A", "tiny-B", "tiny-A-copy"), **over):
    config = {"output_dir": str(out), "seeds": 3, "max_new_tokens": 4, "batch_size": 16,
              "prompts_per_chunk": 4,
              "task": {"name": "tiny-mc", "type": "multiple_choice", "path": str(QUESTIONS),
                       "limit": 12},
              "models": [{"name": n, "path": str(models_dir / n)} for n in names]}
    config.update(over)
    return config


@pytest.fixture(scope="session")
def tiny_run(tiny, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("run") / "out"
    run(_config(tiny, out), progress=False)
    return read_scores(out)


# --- the control and the tables ------------------------------------------------------------

def test_control_copy_agrees_in_coupled_mode_and_not_in_independent(tiny_run):
    wide = tiny_run.pivot_table(index=["mode", "prompt_id", "seed"], columns="model",
                                values="response", aggfunc="first")
    coupled, independent = wide.loc["coupled"], wide.loc["independent"]
    assert (coupled["tiny-A"] == coupled["tiny-A-copy"]).all()
    assert (independent["tiny-A"] != independent["tiny-A-copy"]).any()
    # the same model in coupled and independent mode: identical noise only by accident
    assert (coupled["tiny-A"] != independent["tiny-A"]).any()


def test_no_row_is_dropped_and_parse_failures_are_counted(tiny_run):
    assert len(tiny_run) == 3 * 12 * 3 * 2  # models x prompts x seeds x modes
    assert tiny_run["parse_failed"].any(), "the tiny models should produce some unparseable answers"
    failed = tiny_run[tiny_run["parse_failed"]]
    assert (failed["score"] == 0).all()
    assert set(tiny_run["score"]) <= {0.0, 1.0} and tiny_run["score"].between(0, 1).all()
    assert 0 < tiny_run["score"].mean() < 1
    assert (tiny_run["coupling"] == "gumbel").all() and set(tiny_run["subject"]) >= {"arithmetic"}


def test_manifest_records_config_versions_and_hashes(tiny, tmp_path):
    out = tmp_path / "out"
    run(_config(tiny, out, names=("tiny-A", "tiny-A-copy"), modes=["coupled"],
                task={"name": "t", "type": "multiple_choice", "path": str(QUESTIONS), "limit": 2}),
        progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["versions"]["torch"] == torch.__version__.split("+")[0] or \
        manifest["versions"]["torch"].startswith(torch.__version__.split("+")[0])
    hashes = {name: record["hashes"] for name, record in manifest["models"].items()}
    # every file of the folder is hashed (weights, config, tokenizer), not only safetensors
    assert hashes["tiny-A"] == hashes["tiny-A-copy"]
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(hashes["tiny-A"])
    assert manifest["config"]["models"][0]["trust_remote_code"] is False


# --- the sampler: marginals and the coupling -------------------------------------------------

def _first_token_logits(model_dir: Path, prompt: int = 1) -> tuple[torch.Tensor, list[int]]:
    spec = ModelSpec(name="m", path=str(model_dir))
    tokenizer, model = load_tokenizer(spec), load_model(spec)
    questions = tasks.load_multiple_choice(QUESTIONS)
    text = tasks.render_prompt(tokenizer, tasks.multiple_choice_system_prompt(4),
                               tasks.multiple_choice_user_turn(questions["question"][prompt],
                                                               questions["choices"][prompt]),
                               "Answer:")
    ids = tokenizer(text)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids], device=model.device)).logits[0, -1]
    return logits.double().cpu(), ids


def _chi_square_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    # Pool the tokens whose expected count is < 5 into one cell (the chi^2 approximation).
    expected = probs * counts.sum()
    small = expected < 5
    observed = np.append(counts[~small], counts[small].sum())
    expected = np.append(expected[~small], expected[small].sum())
    return stats.chisquare(observed, expected).pvalue


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_coupled_marginals_equal_softmax_of_tempered_logits(tiny, temperature):
    logits, _ = _first_token_logits(tiny / "tiny-A")
    n = 20000
    rows = noise_torch.row_keys("marginal", ["q"] * n, list(range(n)))
    tokens = decode.sample_next_tokens(logits.float().expand(n, -1), rows, 0, temperature)
    probs = torch.softmax(logits / temperature, -1).numpy()
    counts = np.bincount(tokens.numpy(), minlength=len(probs))
    # A calibrated test: under the null its p-value is uniform; 1e-3 fails 1 run in 1000.
    assert _chi_square_pvalue(counts, probs) > 1e-3
    # and it has power: the untempered distribution is rejected when T != 1
    if temperature != 1.0:
        assert _chi_square_pvalue(counts, torch.softmax(logits, -1).numpy()) < 1e-6


def test_shared_noise_agreement_matches_the_exact_gumbel_max_joint(tiny):
    # DESIGN §1: P(T = T' = a) = 1 / sum_j max(p_j / p_a, q_j / q_a) under shared Gumbel noise.
    p = torch.softmax(_first_token_logits(tiny / "tiny-A")[0], -1).numpy()
    q = torch.softmax(_first_token_logits(tiny / "tiny-B")[0], -1).numpy()
    exact = sum(1.0 / np.maximum(p / p[a], q / q[a]).sum() for a in range(len(p)))
    n = 20000
    rows = noise_torch.row_keys("joint", ["q"] * n, list(range(n)))
    logits_p = torch.log(torch.from_numpy(p)).float().expand(n, -1)
    logits_q = torch.log(torch.from_numpy(q)).float().expand(n, -1)
    agree = (decode.sample_next_tokens(logits_p, rows, 0, 1.0)
             == decode.sample_next_tokens(logits_q, rows, 0, 1.0)).double().mean().item()
    se = np.sqrt(exact * (1 - exact) / n)
    assert abs(agree - exact) < 4 * se  # 4 standard errors
    independent = float(p @ q)
    assert exact > independent + 8 * se  # coupling raises agreement well beyond chance


def test_batch_size_and_row_order_do_not_change_generations(tiny):
    spec = ModelSpec(name="tiny-A", path=str(tiny / "tiny-A"))
    tokenizer, model = load_tokenizer(spec), load_model(spec)
    questions = tasks.load_multiple_choice(QUESTIONS).head(6)
    prompts = [tokenizer(tasks.render_prompt(tokenizer, "Answer with a letter.",
                                             tasks.multiple_choice_user_turn(q, c), "Answer:"))
               ["input_ids"] for q, c in zip(questions["question"], questions["choices"],
                                             strict=True)]
    rows = [(p, s) for p in range(6) for s in range(4)]
    keys = noise_torch.row_keys("t", [str(p) for p, _ in rows], [s for _, s in rows])
    common = {"temperature": 1.0, "max_new_tokens": 5, "end_token_ids": [tokenizer.eos_token_id],
              "pad_token_id": tokenizer.pad_token_id}
    together = decode.generate_rows(model, prompts, [p for p, _ in rows], keys, **common)
    alone = [decode.generate_rows(model, [prompts[p]], [0], keys[i:i + 1], **common)[0]
             for i, (p, _) in enumerate(rows)]
    order = list(reversed(range(len(rows))))
    reversed_rows = decode.generate_rows(model, prompts, [rows[i][0] for i in order],
                                         keys[order], **common)
    assert together == alone
    assert [reversed_rows[order.index(i)] for i in range(len(rows))] == together


def test_own_loop_matches_generate_with_the_logits_processor(tiny):
    spec = ModelSpec(name="tiny-B", path=str(tiny / "tiny-B"))
    tokenizer, model = load_tokenizer(spec), load_model(spec)
    ids = tokenizer("What is 2 + 2?\n\nAnswer:")["input_ids"]
    keys = noise_torch.row_keys("t", ["p"] * 8, list(range(8)))
    ours = decode.generate_rows(model, [ids], [0] * 8, keys, temperature=0.8, max_new_tokens=6,
                                end_token_ids=[tokenizer.eos_token_id],
                                pad_token_id=tokenizer.pad_token_id)
    processor = decode.gumbel_logits_processor(keys, len(ids), temperature=0.8)
    batch = torch.tensor([ids] * 8, device=model.device)
    output = model.generate(batch, attention_mask=torch.ones_like(batch), do_sample=False, max_new_tokens=6,
                            logits_processor=[processor], pad_token_id=tokenizer.pad_token_id,
                            eos_token_id=tokenizer.eos_token_id)
    for generation, row in zip(ours, output[:, len(ids):].tolist(), strict=True):
        expected = row[:row.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in row \
            else row
        assert list(generation.token_ids) == expected


# --- resumption ------------------------------------------------------------------------------

# The run in a child process, which stops at a chosen point (announced through a marker file)
# and waits there to be SIGKILLed by the test: a real kill, at a reproducible place.
# "mid_batch": inside the n-th generate_rows call (a chunk's earlier batches are decoded but not
# written); "before_rename": at the n-th shard's os.replace (its temporary file is complete).
_KILLABLE_RUN = """
import json, os, sys, time
from pathlib import Path
import coupled.runner.decode as decode
from coupled.runner import run

config_file, where, n, marker, resume = sys.argv[1:]
calls = 0

def stop_here_if_nth():
    global calls
    calls += 1
    if calls == int(n):
        Path(marker).write_text(where)
        time.sleep(600)

if where == "mid_batch":
    generate_rows = decode.generate_rows
    def stopping_generate_rows(*args, **kwargs):
        stop_here_if_nth()
        return generate_rows(*args, **kwargs)
    decode.generate_rows = stopping_generate_rows
else:
    replace = os.replace
    def stopping_replace(source, target):
        if str(target).endswith(".parquet"):
            stop_here_if_nth()
        return replace(source, target)
    os.replace = stopping_replace
run(json.load(open(config_file)), resume=resume == "1", progress=False)
"""


def _run_and_sigkill(config_file: Path, where: str, n: int, resume: bool, tmp_path: Path) -> None:
    marker, log = tmp_path / f"{where}.reached", tmp_path / f"{where}.stderr"
    with log.open("w") as stderr:
        child = subprocess.Popen([sys.executable, "-c", _KILLABLE_RUN, str(config_file), where,
                                  str(n), str(marker), "1" if resume else "0"],
                                 env={**os.environ, "HF_HUB_OFFLINE": "1"}, stderr=stderr)
        try:
            deadline = time.monotonic() + 300
            while not marker.exists():
                assert child.poll() is None, f"the run ended before {where} #{n}: " \
                                             f"{log.read_text()[-2000:]}"
                assert time.monotonic() < deadline, f"{where} #{n} not reached in 300 s"
                time.sleep(0.02)
        finally:
            child.kill()  # SIGKILL: no cleanup, no flush, no exception handlers
            child.wait()
    assert child.returncode == -signal.SIGKILL


def test_resume_after_kills_loses_and_duplicates_nothing(tiny, tmp_path, tiny_run):
    config = _config(tiny, tmp_path / "killed")  # 3 models x 3 chunks; 2 batches per chunk
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    scores = tmp_path / "killed" / "scores"
    rng = np.random.default_rng(5)  # where to kill: reproducible, yet not hand-picked

    # 1. killed in the second batch of chunk k: its first batch is decoded, nothing written
    k = int(rng.integers(2, 8))
    _run_and_sigkill(config_file, "mid_batch", 2 * k, resume=False, tmp_path=tmp_path)
    assert len(list(scores.glob("*.parquet"))) == k - 1
    with pytest.raises(ValueError, match="not empty"):
        run(config, progress=False)

    # 2. resumed, then killed between writing the n-th new shard and renaming it into place
    n = int(rng.integers(1, 9 - (k - 1)))
    _run_and_sigkill(config_file, "before_rename", n, resume=True, tmp_path=tmp_path)
    assert len(list(scores.glob("*.parquet"))) == k - 1 + n - 1
    assert list(scores.glob(".*.tmp")), "the killed write should leave its temporary file"
    assert json.loads((tmp_path / "killed" / "manifest.json").read_text())["status"] == "running"

    # 3. resumed to the end: exactly the rows and values of the uninterrupted run
    run(config, resume=True, progress=False)
    resumed = read_scores(tmp_path / "killed")
    key = ["mode", "model", "prompt_id", "seed"]
    assert not resumed.duplicated(key).any()
    pd.testing.assert_frame_equal(resumed.sort_values(key).reset_index(drop=True),
                                  tiny_run.sort_values(key).reset_index(drop=True))
    manifest = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["resumed"] == 2


def test_resume_with_another_config_is_refused(tiny, tmp_path):
    config = _config(tiny, tmp_path / "out", names=("tiny-A",), modes=["coupled"],
                     task={"name": "t", "type": "multiple_choice", "path": str(QUESTIONS),
                           "limit": 2})
    run(config, progress=False)
    with pytest.raises(ValueError, match="decides the rows' values changed: temperature"):
        run({**config, "temperature": 0.5}, resume=True, progress=False)
    with pytest.raises(ValueError, match="holds rows for seed 2, which this config drops"):
        run({**config, "seeds": 2}, resume=True, progress=False)


# --- safety and inputs -----------------------------------------------------------------------

def test_models_with_different_tokenizers_are_refused(tiny, tmp_path):
    other = build_tokenizer(tmp_path / "tok", ["a completely different corpus " * 20], 300)
    build_model(tmp_path / "other", other, seed=3)
    config = _config(tiny, tmp_path / "out", names=("tiny-A",))
    config["models"].append({"name": "other", "path": str(tmp_path / "other")})
    with pytest.raises(ValueError, match="different tokenizer vocabularies"):
        run(config, progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything is written


@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
def test_bitsandbytes_variants_load_and_run(tiny, tmp_path, quantization):
    pytest.importorskip("bitsandbytes")
    out = tmp_path / quantization
    config = _config(tiny, out, names=("tiny-A",), modes=["coupled"], seeds=2,
                     task={"name": "t", "type": "multiple_choice", "path": str(QUESTIONS),
                           "limit": 4})
    config["models"].append({"name": f"tiny-A-{quantization}", "path": str(tiny / "tiny-A"),
                             "quantization": quantization})
    run(config, progress=False)
    scores = read_scores(out)
    assert len(scores) == 2 * 4 * 2
    model = load_model(ModelSpec(name="q", path=str(tiny / "tiny-A"), quantization=quantization))
    assert "bitsandbytes" in type(model.model.layers[0].mlp.down_proj).__module__


def test_config_errors_name_the_setting(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"'modes\[1\]' input should be 'coupled' or"):
        load_config(_config(tiny, tmp_path, modes=["coupled", "bogus"]))
    with pytest.raises(ValueError, match="'models'"):
        load_config({**_config(tiny, tmp_path), "models": []})
    with pytest.raises(ValueError, match="'temprature' is not a known setting"):
        load_config({**_config(tiny, tmp_path), "temprature": 1.0})
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")


def test_cli_run_reports_bad_input_in_one_line(tmp_path, capsys):
    from coupled.cli.main import main

    bad = tmp_path / "bad.toml"
    bad.write_text('output_dir = "x"\n[task]\nname = "t"\n')
    assert main(["run", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("coupled run: error:") and "task.type" in err


def test_cli_run_tiny_example_end_to_end(tiny, tmp_path, capsys):
    from coupled.cli.main import main

    config = tmp_path / "run.toml"
    config.write_text(
        f'output_dir = "{tmp_path / "cli-out"}"\nseeds = 2\nmodes = ["coupled"]\n'
        f'[task]\nname = "t"\ntype = "multiple_choice"\npath = "{QUESTIONS}"\nlimit = 3\n'
        f'[[models]]\nname = "a"\npath = "{tiny / "tiny-A"}"\n')
    assert main(["run", str(config), "--no-progress"]) == 0
    assert len(read_scores(tmp_path / "cli-out")) == 6


# --- tasks -----------------------------------------------------------------------------------

@pytest.mark.parametrize("reply, letter", [
    ("B", "B"), (" C", "C"), ("(D)", "D"), ("**A**", "A"), ("B) Paris", "B"),
    ("The answer is C.", "C"), ("Answer: (B)", "B"), ("I think B is right", "B"),
    ("AB", None), ("", None), ("E", None), ("Option E", None), ("Paris", None)])
def test_parse_choice(reply, letter):
    assert tasks.parse_choice(reply, 4) == letter


def test_multiple_choice_files_in_every_format(tmp_path):
    rows = [{"question": "2+2?", "A": "three", "B": "four", "C": "five", "answer": 1},
            {"question": "Sky?", "A": "blue", "B": "red", "C": "green", "answer": "blue"},
            {"question": "1+1?", "A": "1", "B": "2", "C": "3", "answer": "2"}]
    pd.DataFrame(rows).to_csv(tmp_path / "q.csv", index=False)
    loaded = tasks.load_multiple_choice(tmp_path / "q.csv")
    # numeric options: "2" is the option "2", never an index (issue 10)
    assert list(loaded["answer"]) == ["B", "A", "B"] and list(loaded["prompt_id"]) == ["0", "1", "2"]
    assert loaded["choices"][2] == ["1", "2", "3"]
    parquet = pd.DataFrame({"prompt_id": ["007"], "question": ["q"], "choices": [["x", "y"]],
                            "answer": ["B"]})
    parquet.to_parquet(tmp_path / "q.parquet")
    assert tasks.load_multiple_choice(tmp_path / "q.parquet")["prompt_id"][0] == "007"
    pd.DataFrame([{"question": "q", "choices": '["x", "y"]', "answer": "Z"}]).to_csv(
        tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="bad.csv, column 'answer'"):
        tasks.load_multiple_choice(tmp_path / "bad.csv")


def test_system_prompt_adapts_to_the_options_and_folds_without_system_role(tiny):
    assert "'A', 'B', 'C', 'D', or 'E' only" in tasks.multiple_choice_system_prompt(5)
    assert "'A' or 'B' only" in tasks.multiple_choice_system_prompt(2)
    tokenizer = load_tokenizer(ModelSpec(name="m", path=str(tiny / "tiny-A")))
    assert tasks.render_prompt(tokenizer, "SYS", "USER", "Answer:") == "SYS\n\nUSER\n\nAnswer:"
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "<turn>{{ m['content'] }}</turn>{% endfor %}<turn>")
    assert tasks.render_prompt(tokenizer, "SYS", "USER", "Answer:") == \
        "<turn>SYS\n\nUSER</turn><turn>"


def test_judge_order_is_reproducible_balanced_and_mapped_back():
    firsts = [tasks.shown_first("t", str(p), s, "a", "b") for p in range(200) for s in range(5)]
    assert firsts == [tasks.shown_first("t", str(p), s, "a", "b")
                      for p in range(200) for s in range(5)]
    # 1000 fair coins: |#a - 500| < 4 standard errors (sqrt(250) ~ 15.8)
    assert abs(firsts.count("a") - 500) < 4 * 15.9
    assert tasks.outcome_from_verdict("A", "a") == ("a", False)
    assert tasks.outcome_from_verdict("A", "b") == ("b", False)
    assert tasks.outcome_from_verdict("B", "b") == ("a", False)
    assert tasks.outcome_from_verdict("tie", "b") == ("tie", False)
    assert tasks.outcome_from_verdict(None, "a") == ("tie", True)
    assert [tasks.parse_verdict(t) for t in ("[[B]]", "Tie.", "It's a tie", "'A'", "??")] == \
        ["B", "tie", "tie", "A", None]


PAPER_JUDGE_PROMPT_START = ("Please act as an impartial judge and evaluate the quality of the "
                            "responses provided by two AI assistants to the user prompt")
PAPER_JUDGE_PROMPT_END = ("'A' if the response of assistant A is better 'B' if the response of "
                          "assistant B is better 'Tie' if the responses are tied")


def _judge_model(tiny: Path, folder: Path, parseable: bool) -> Path:
    """A random tiny model whose greedy verdict is (not) a readable 'A' / 'B' / 'Tie'.

    Random judges are position-biased: one answers every judge prompt with the same letter
    (its output layer is steered towards letters), so which one a seed gives is looked up.
    """
    tokenizer = load_tokenizer(ModelSpec(name="t", path=str(tiny / "tiny-A")))
    text = tasks.render_prompt(tokenizer, tasks.prompt_text("judge_system"),
                               tasks.judge_user_turn("Say hi.", "Hi", "Hello"), "Verdict:")
    ids = tokenizer(text)["input_ids"]
    for seed in range(3, 40):
        model = build_model(folder / f"judge-{seed}", tokenizer, seed=seed).eval()
        verdict = decode.generate_rows(model, [ids], [0], torch.zeros(1, dtype=torch.int64),
                                       temperature=0.0, max_new_tokens=3,
                                       end_token_ids=[tokenizer.eos_token_id],
                                       pad_token_id=tokenizer.pad_token_id)[0]
        if (tasks.parse_verdict(tokenizer.decode(list(verdict.token_ids))) is not None) \
                == parseable:
            return folder / f"judge-{seed}"
    raise AssertionError("no tiny judge of the wanted kind among seeds 3..39")


def _open_prompts_config(tiny: Path, folder: Path, judge: dict, **over) -> dict:
    prompts = pd.DataFrame({"prompt_id": ["p1", "p2", "p3"],
                            "prompt": ["Say hi.", "Name a colour.", "What is 2 + 3?"]})
    prompts.to_json(folder / "open.jsonl", orient="records", lines=True)
    task = {"name": "open", "type": "open", "path": str(folder / "open.jsonl")}
    return _config(tiny, folder / "out", **{"task": task, "seeds": 2, "max_new_tokens": 6,
                                           "judge": judge, **over})


@pytest.fixture(scope="session")
def judged_run(tiny, tmp_path_factory):
    """An open-prompt run with a local judge, and every judge user turn the run rendered."""
    folder = tmp_path_factory.mktemp("judged")
    judge = _judge_model(tiny, folder, parseable=True)
    config = _open_prompts_config(tiny, folder, {"path": str(judge), "max_new_tokens": 3})
    shown = []
    judge_user_turn = tasks.judge_user_turn
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tasks, "judge_user_turn",
                      lambda *args: shown.append(args) or judge_user_turn(*args))
        run(config, progress=False)
    return config, shown


def test_local_judge_sees_the_recorded_order_and_its_verdicts_are_parsed(judged_run):
    config, shown = judged_run
    out, names = config["output_dir"], ["tiny-A", "tiny-B", "tiny-A-copy"]
    generations = read_generations(out)
    assert len(generations) == 3 * 3 * 2 * 2  # models x prompts x seeds x modes
    comparisons = read_comparisons(out, models=names)
    assert len(comparisons) == 3 * 3 * 2 * 2  # pairs x prompts x seeds x modes
    response = {(r.prompt_id, r.seed, r.mode, r.model): r.response
                for r in generations.itertuples(index=False)}
    text = tasks.load_open_prompts(config["task"]["path"]).set_index("prompt_id")["prompt"]
    expected = []
    for row in comparisons.itertuples(index=False):
        # the order is the recorded reproducible coin, and the judge saw the answers in it
        assert row.shown_first == tasks.shown_first("open", row.prompt_id, row.seed,
                                                    row.model_a, row.model_b)
        answers = (response[(row.prompt_id, row.seed, row.mode, row.model_a)],
                   response[(row.prompt_id, row.seed, row.mode, row.model_b)])
        expected.append((text[row.prompt_id], *(answers if row.shown_first == "a"
                                                else answers[::-1])))
        # the recorded outcome is the parsed verdict mapped back to the canonical pair
        verdict = tasks.parse_verdict(row.judge_response)
        assert verdict is not None and not row.parse_failed
        assert (row.outcome, False) == tasks.outcome_from_verdict(verdict, row.shown_first)
    assert sorted(shown) == sorted(expected)
    # this judge always names the same position, so the outcome follows the recorded coin
    assert set(comparisons["shown_first"]) == {"a", "b"} and set(comparisons["outcome"]) == \
        {"a", "b"}


def test_unparseable_verdicts_are_flagged_and_kept_as_ties(tiny, tmp_path):
    judge = _judge_model(tiny, tmp_path, parseable=False)
    config = _open_prompts_config(tiny, tmp_path, {"path": str(judge), "max_new_tokens": 3},
                                  modes=["coupled"], seeds=1)
    run(config, progress=False)
    comparisons = read_comparisons(config["output_dir"])
    assert len(comparisons) == 3 * 3  # pairs x prompts: none dropped
    assert comparisons["parse_failed"].all() and (comparisons["outcome"] == "tie").all()
    assert comparisons["judge_response"].map(tasks.parse_verdict).isna().all()


def test_local_judge_decodes_greedily_with_the_paper_prompt(judged_run):
    config, _ = judged_run
    system = tasks.prompt_text("judge_system")
    assert system.startswith(PAPER_JUDGE_PROMPT_START) and system.endswith(PAPER_JUDGE_PROMPT_END)
    spec = ModelSpec(name="judge", path=config["judge"]["path"])
    tokenizer, model = load_tokenizer(spec), load_model(spec)
    comparisons = read_comparisons(config["output_dir"])
    generations = read_generations(config["output_dir"])
    response = {(r.prompt_id, r.seed, r.mode, r.model): r.response
                for r in generations.itertuples(index=False)}
    prompts = tasks.load_open_prompts(config["task"]["path"]).set_index("prompt_id")["prompt"]
    for row in comparisons.sample(6, random_state=0).itertuples(index=False):
        answers = [response[(row.prompt_id, row.seed, row.mode, m)]
                   for m in (row.model_a, row.model_b)]
        shown = answers if row.shown_first == "a" else answers[::-1]
        text = tasks.render_prompt(tokenizer, system,
                                   tasks.judge_user_turn(prompts[row.prompt_id], *shown),
                                   "Verdict:")
        ids = tokenizer(text, return_tensors="pt")["input_ids"].to(model.device)
        greedy = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                max_new_tokens=config["judge"]["max_new_tokens"],
                                pad_token_id=tokenizer.pad_token_id,
                                eos_token_id=tokenizer.eos_token_id)
        assert tokenizer.decode(greedy[0, ids.shape[1]:], skip_special_tokens=True) == \
            row.judge_response


def test_externally_judged_comparisons_are_accepted_as_they_are(judged_run, tmp_path):
    config, _ = judged_run
    names = ["tiny-A", "tiny-B", "tiny-A-copy"]
    external = read_comparisons(config["output_dir"], models=names).drop(
        columns=["judge_response"]).head(5)
    external.to_csv(tmp_path / "external.csv", index=False)
    run({**config, "output_dir": str(tmp_path / "ext"),
         "judge": {"comparisons": str(tmp_path / "external.csv")}}, progress=False)
    pd.testing.assert_frame_equal(read_comparisons(tmp_path / "ext").reset_index(drop=True),
                                  read_comparisons(tmp_path / "external.csv"),
                                  check_dtype=False)
    external.assign(model_b="nobody").to_csv(tmp_path / "unknown.csv", index=False)
    with pytest.raises(ValueError, match="nobody"):
        run({**config, "output_dir": str(tmp_path / "bad"),
             "judge": {"comparisons": str(tmp_path / "unknown.csv")}}, progress=False)
