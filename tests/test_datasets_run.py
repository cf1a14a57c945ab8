"""ARC-, HellaSwag-, MMLU- and GSM8K-shaped data run through `coupled run` with only a column map.

One run holds four ``[[tasks]]``: ARC from a ``save_to_disk`` folder made here with
``datasets`` (nested ``choices.text`` / ``choices.label``, letter and number labels), HellaSwag
from JSONL (``ctx`` + ``endings``, integer ``label``), MMLU from a folder of parquet data files
(split ``test``, one few-shot example from split ``dev``) and a GSM8K-shaped generate task
scored by the last number. Checked: every row is there (none dropped), its stored gold and
rendered prompt, its score equals the named scorer applied to its reply, the manifest names
each task's scorer and blocks, chunk names are distinct per task, and a resume that adds a
task computes only that task while one that changes a task's setting is refused naming it.
"""

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from test_datasets import (
    ARC_COLUMNS,
    ARC_ROWS,
    HELLASWAG_COLUMNS,
    HELLASWAG_ROWS,
    MMLU_COLUMNS,
    MMLU_ROWS,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

from coupled.cli.main import main  # noqa: E402
from coupled.runner.scorers import Scorer  # noqa: E402
from coupled.runner.tiny import build_tiny_models  # noqa: E402
from coupled.tables import read_scores  # noqa: E402

QUESTIONS = Path(__file__).resolve().parents[1] / "examples" / "tiny" / "questions.jsonl"
GSM_ROWS = [{"question": "Natalia sold 48 clips in April and half as many in May. How many?",
             "answer": "She sold 48/2 = 24 in May.\n#### 72"},
            {"question": "What is 6 times 7?", "answer": "#### 42"},
            {"question": "A book costs $1,200. What does it cost?", "answer": "#### 1,200"}]


def _toml_value(value) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def _task(name: str, columns: dict, **keys) -> str:
    lines = ["[[tasks]]", f'name = "{name}"']
    lines += [f"{k} = {_toml_value(v)}" for k, v in keys.items()]
    lines += ["[tasks.columns]"] + [f"{k} = {_toml_value(v)}" for k, v in columns.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    build_tiny_models(folder / "models", QUESTIONS)
    datasets.DatasetDict({"test": datasets.Dataset.from_list(ARC_ROWS),
                          "validation": datasets.Dataset.from_list(ARC_ROWS[:1])}
                         ).save_to_disk(str(folder / "arc"))
    (folder / "hellaswag.jsonl").write_text("".join(json.dumps(r) + "\n" for r in HELLASWAG_ROWS))
    (folder / "mmlu" / "data").mkdir(parents=True)
    pd.DataFrame(MMLU_ROWS).to_parquet(folder / "mmlu" / "data" / "test-00000-of-00001.parquet")
    dev = [{**r, "question": "dev: " + r["question"]} for r in MMLU_ROWS[:2]]
    pd.DataFrame(dev).to_parquet(folder / "mmlu" / "data" / "dev-00000-of-00001.parquet")
    (folder / "gsm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GSM_ROWS))
    return folder


def _config(data: Path, out: Path, tasks: list[str], **models) -> Path:
    chat = models.get("chat_template_b", False)
    text = (f'output_dir = "{out}"\nseeds = 2\nmodes = ["coupled", "independent"]\n'
            f"max_new_tokens = 3\nbatch_size = 8\nprompts_per_chunk = 2\n\n" + "\n".join(tasks)
            + f'\n[[models]]\nname = "tiny-A"\npath = "models/tiny-A"\n\n'
              f'[[models]]\nname = "tiny-B"\npath = "models/tiny-B"\n'
              f"chat_template = {_toml_value(chat)}\n")
    path = data / f"{out.name}.toml"
    path.write_text(text)
    return path


ARC = _task("arc", ARC_COLUMNS, type="multiple_choice", path="arc", split="test",
            answer_kind="label")
HELLASWAG = _task("hellaswag", HELLASWAG_COLUMNS, type="multiple_choice",
                  path="hellaswag.jsonl", answer_kind="index")
MMLU = _task("mmlu", MMLU_COLUMNS, type="multiple_choice", path="mmlu", split="test",
             answer_kind="index", fewshot=1, fewshot_split="dev")
GSM = _task("gsm", {"prompt": "question", "answer": "answer"}, type="generate",
            path="gsm.jsonl", scorer="numeric")


def test_native_layouts_run_with_only_a_column_map(data, capsys):
    out = data / "run"
    assert main(["run", str(_config(data, out, [ARC, HELLASWAG, MMLU])), "--no-progress"]) == 0
    scores = read_scores(out)
    n_prompts = {"arc": 3, "hellaswag": 3, "mmlu": 4}
    # every row is there: prompts x 2 models x 2 seeds x 2 modes, per task; none dropped
    assert scores.groupby("task").size().to_dict() == {t: n * 8 for t, n in n_prompts.items()}
    gold = scores.drop_duplicates(["task", "prompt_id"]).set_index(["task", "prompt_id"])["gold"]
    assert gold["arc"].to_dict() == {"Mercury_7175875": "B", "NYSEDREGENTS_2015_4_8": "C",
                                     "007": "A"}
    assert gold["hellaswag"].to_dict() == {"24": "D", "92": "D", "106": "B"}
    assert list(gold["mmlu"].sort_index()) == ["C", "B", "B", "A"]
    # the score is the named scorer applied to the stored reply and gold: parse failures kept
    n_choices = {("arc", "NYSEDREGENTS_2015_4_8"): 3, ("arc", "007"): 5}
    for row in scores.itertuples(index=False):
        n = n_choices.get((row.task, row.prompt_id), 4)
        assert Scorer("choice").score(row.response, row.gold, n) == (row.score, row.parse_failed)
    # the rendered prompt: the same for every seed and mode of a model; MMLU's holds its one
    # dev example, solved, before the question
    texts = scores.groupby(["task", "prompt_id", "model"])["prompt_text"].nunique()
    assert (texts == 1).all()
    mmlu = scores[(scores["task"] == "mmlu") & (scores["prompt_id"] == "1")]
    prompt = mmlu["prompt_text"].iloc[0]
    assert prompt.count("Which organ pumps blood?") == 1 and "dev: " in prompt
    assert "\nAnswer: " in prompt.split("Which organ pumps blood?")[0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scorers"]["arc"]["scorer"] == "choice"
    assert sorted({b["task"] for b in manifest["blocks"]}) == sorted(n_prompts)
    names = [p.stem for p in (out / "scores").iterdir()]
    assert len(names) == len(set(names)) and {n.split("-")[0] for n in names} == set(n_prompts)
    capsys.readouterr()

    # a resume that adds a task computes only its chunks; the rows already there stay as they are
    before = {p.name: p.read_bytes() for p in (out / "scores").iterdir()}
    grown = _config(data, out, [ARC, HELLASWAG, MMLU, GSM])
    assert main(["run", str(grown), "--resume", "--no-progress"]) == 0
    after = read_scores(out)
    assert all((out / "scores" / name).read_bytes() == blob for name, blob in before.items())
    gsm = after[after["task"] == "gsm"]
    assert len(gsm) == 3 * 8 and set(gsm["gold"]) == {r["answer"] for r in GSM_ROWS}
    numeric = Scorer("numeric")
    for row in gsm.itertuples(index=False):
        assert numeric.score(row.response, row.gold) == (row.score, row.parse_failed)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scorers"]["gsm"] == numeric.describe()

    # changing a task's row-deciding setting is refused, naming the task and the setting
    changed = MMLU.replace("fewshot = 1", "fewshot = 2")
    path = _config(data, out, [ARC, HELLASWAG, changed, GSM])
    assert main(["run", str(path), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "task 'mmlu' changed" in err and "fewshot: 1 -> 2" in err


def test_chat_template_true_without_a_template_is_refused_before_any_write(data, capsys):
    out = data / "chat"
    path = _config(data, out, [HELLASWAG], chat_template_b=True)
    assert main(["run", str(path), "--no-progress"]) == 2
    assert "chat_template = true but the tokenizer" in capsys.readouterr().err
    assert not out.exists()


def test_a_bad_column_map_is_refused_before_any_write(data, capsys):
    out = data / "badmap"
    bad = HELLASWAG.replace('question = "ctx"', 'question = "context"')
    assert main(["run", str(_config(data, out, [bad])), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "[task.columns] question = 'context': no column 'context'" in err
    assert not out.exists()
