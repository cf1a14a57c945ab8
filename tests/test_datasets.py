"""Task files in their native column layouts, read with only a column map (issue 13 §1).

ARC (nested ``choices.text`` / ``choices.label``, ``answerKey`` with letter *or* number labels),
HellaSwag (``ctx`` + ``endings``, integer or string ``label``), MMLU (``question``, ``choices``,
integer ``answer``, ``subject``) and a capitalised CSV, from JSONL, parquet, CSV, a
``save_to_disk`` folder and a folder of data files read by ``datasets``. Every field passes
through the tables' string-identifier layer; a bad map names the key and the missing column.
"""

import json
import random
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupled.runner import tasks
from coupled.runner.config import load_config
from coupled.runner.datasets import DatasetError

ARC_ROWS = [
    {"id": "Mercury_7175875", "question": "Which gas do plants take in?",
     "choices": {"text": ["oxygen", "carbon dioxide", "helium", "neon"],
                 "label": ["A", "B", "C", "D"]}, "answerKey": "B"},
    {"id": "NYSEDREGENTS_2015_4_8", "question": "Which is a mammal?",
     "choices": {"text": ["shark", "trout", "whale"], "label": ["1", "2", "3"]},
     "answerKey": "3"},
    {"id": "007", "question": "Ice is water that is",
     "choices": {"text": ["frozen", "boiling", "a gas", "a plasma", "hot"],
                 "label": ["A", "B", "C", "D", "E"]}, "answerKey": "A"},
]
ARC_COLUMNS = {"id": "id", "question": "question", "choices": "choices.text",
               "labels": "choices.label", "answer": "answerKey"}

HELLASWAG_ROWS = [
    {"ind": 24, "activity_label": "Roof shingle removal", "ctx_a": "A man is on a roof.",
     "ctx_b": "he", "ctx": "A man is on a roof. he",
     "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                 "is holding a rubik's cube.", "starts pulling up roofing on a roof."],
     "source_id": "activitynet~v_-JhWjGDPHMY", "split": "val", "split_type": "indomain",
     "label": 3},
    {"ind": 92, "activity_label": "Clean and jerk", "ctx_a": "A lady walks to a barbell.",
     "ctx_b": "she", "ctx": "A lady walks to a barbell. she",
     "endings": ["swings and lands in her arms.", "pulls the barbell forward.",
                 "pulls a rope attached to the barbell.", "stands and lifts the weight."],
     "source_id": "activitynet~v_-lJS58hyo1c", "split": "val", "split_type": "zeroshot",
     "label": 3},
    {"ind": 106, "activity_label": "Canoeing", "ctx_a": "Two women in a child are shown.",
     "ctx_b": "the child", "ctx": "Two women in a child are shown. the child",
     "endings": ["falls in the water.", "paddles the canoe.", "is seen smiling.",
                 "waves at the camera."], "source_id": "activitynet~v_-xQvJmC2jhk",
     "split": "val", "split_type": "indomain", "label": 1},
]
HELLASWAG_COLUMNS = {"id": "ind", "question": "ctx", "choices": "endings", "answer": "label",
                     "subject": "activity_label"}

MMLU_ROWS = [
    {"question": "Find the degree of Q(sqrt(2)) over Q.", "subject": "abstract_algebra",
     "choices": ["0", "4", "2", "6"], "answer": 2},
    {"question": "Which organ pumps blood?", "subject": "anatomy",
     "choices": ["lung", "heart", "liver", "kidney"], "answer": 1},
    {"question": "2 + 2 =", "subject": "elementary_mathematics",
     "choices": ["3", "4", "5", "22"], "answer": 1},
    {"question": "The capital of France is", "subject": "NA",
     "choices": ["Paris", "Rome", "Berlin", "Madrid"], "answer": 0},
]
MMLU_COLUMNS = {"question": "question", "choices": "choices", "answer": "answer",
                "subject": "subject"}


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_arc_nested_columns_and_its_own_labels(tmp_path):
    path = _jsonl(tmp_path / "arc.jsonl", ARC_ROWS)
    loaded = tasks.load_multiple_choice(path, "label", columns=ARC_COLUMNS)
    # letters and numbers as labels, each mapped through the row's own label list
    assert list(loaded["answer"]) == ["B", "C", "A"]
    assert list(loaded["prompt_id"]) == ["Mercury_7175875", "NYSEDREGENTS_2015_4_8", "007"]
    assert loaded["choices"][1] == ["shark", "trout", "whale"]
    assert "labels" not in loaded.columns


def test_hellaswag_integer_and_string_labels_from_parquet_and_jsonl(tmp_path):
    frame = pd.DataFrame(HELLASWAG_ROWS)
    frame.to_parquet(tmp_path / "hs.parquet")
    from_parquet = tasks.load_multiple_choice(tmp_path / "hs.parquet", "index",
                                              columns=HELLASWAG_COLUMNS)
    # the HF copy stores label as a string: the same golds
    as_text = [{**r, "label": str(r["label"])} for r in HELLASWAG_ROWS]
    from_jsonl = tasks.load_multiple_choice(_jsonl(tmp_path / "hs.jsonl", as_text), "index",
                                            columns=HELLASWAG_COLUMNS)
    for loaded in (from_parquet, from_jsonl):
        assert list(loaded["answer"]) == ["D", "D", "B"]
        assert list(loaded["prompt_id"]) == ["24", "92", "106"]  # ids are strings
        assert list(loaded["subject"]) == ["Roof shingle removal", "Clean and jerk", "Canoeing"]
        assert loaded["question"][0] == "A man is on a roof. he"


def test_mmlu_integer_answers_index_numeric_options(tmp_path):
    path = _jsonl(tmp_path / "mmlu.jsonl", MMLU_ROWS)
    loaded = tasks.load_multiple_choice(path, "index", columns=MMLU_COLUMNS)
    # answer 2 with options ["0","4","2","6"] is the third option ("2"), read as an index
    assert list(loaded["answer"]) == ["C", "B", "B", "A"]
    assert list(loaded["subject"])[-1] == "NA"  # the word, not a missing value
    assert list(loaded["prompt_id"]) == ["0", "1", "2", "3"]


def test_capitalised_csv_with_one_column_per_option(tmp_path):
    frame = pd.DataFrame({"ID": ["001", "002"], "Question": ["Sky?", "Grass?"],
                          "A": ["blue", "red"], "B": ["green", "green"], "C": ["NA", "None"],
                          "Answer": ["A", "B"], "Subject": ["colour", "colour"]})
    frame.to_csv(tmp_path / "caps.csv", index=False)
    columns = {"id": "ID", "question": "Question", "choices": ["A", "B", "C"],
               "answer": "Answer", "subject": "Subject"}
    loaded = tasks.load_multiple_choice(tmp_path / "caps.csv", "label", columns=columns)
    assert list(loaded["prompt_id"]) == ["001", "002"]  # as written, not 1, 2
    assert loaded["choices"][0] == ["blue", "green", "NA"]
    assert list(loaded["answer"]) == ["A", "B"]


def test_save_to_disk_folder_with_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "arc_saved"
    data = datasets.DatasetDict({"test": datasets.Dataset.from_list(ARC_ROWS),
                                 "validation": datasets.Dataset.from_list(ARC_ROWS[:2])})
    data.save_to_disk(str(folder))
    with pytest.raises(DatasetError, match=r"has splits \['test', 'validation'\].*split"):
        tasks.load_multiple_choice(folder, "label", columns=ARC_COLUMNS)
    with pytest.raises(DatasetError, match="no split 'train'"):
        tasks.load_multiple_choice(folder, "label", columns=ARC_COLUMNS, split="train")
    loaded = tasks.load_multiple_choice(folder, "label", columns=ARC_COLUMNS, split="test")
    assert list(loaded["answer"]) == ["B", "C", "A"]
    assert list(loaded["prompt_id"])[-1] == "007"
    one = tmp_path / "one_split"
    datasets.Dataset.from_list(HELLASWAG_ROWS).save_to_disk(str(one))
    loaded = tasks.load_multiple_choice(one, "index", columns=HELLASWAG_COLUMNS)
    assert list(loaded["prompt_id"]) == ["24", "92", "106"]


def test_folder_of_data_files_in_the_hub_layout(tmp_path):
    pytest.importorskip("datasets")
    folder = tmp_path / "mmlu" / "data"
    folder.mkdir(parents=True)
    pd.DataFrame(MMLU_ROWS).to_parquet(folder / "test-00000-of-00001.parquet")
    pd.DataFrame(MMLU_ROWS[:2]).to_parquet(folder / "dev-00000-of-00001.parquet")
    loaded = tasks.load_multiple_choice(tmp_path / "mmlu", "index", columns=MMLU_COLUMNS,
                                        split="test")
    assert list(loaded["answer"]) == ["C", "B", "B", "A"]
    dev = tasks.load_multiple_choice(tmp_path / "mmlu", "index", columns=MMLU_COLUMNS,
                                     split="dev")
    assert len(dev) == 2


def test_a_bad_column_map_names_the_key_and_the_missing_column(tmp_path):
    path = _jsonl(tmp_path / "arc.jsonl", ARC_ROWS)
    with pytest.raises(DatasetError, match=r"\[task.columns\] question = 'query': no column "
                                           r"'query' \(columns: \['id', 'question'"):
        tasks.load_multiple_choice(path, columns={**ARC_COLUMNS, "question": "query"})
    with pytest.raises(DatasetError, match=r"choices = 'choices.txt': row 0 has no 'txt' inside "
                                           r"column 'choices' \(it has keys \['label', 'text'\]"):
        tasks.load_multiple_choice(path, columns={**ARC_COLUMNS, "choices": "choices.txt"})
    with pytest.raises(DatasetError, match="did you mean 'answerKey'"):
        tasks.load_multiple_choice(path, columns={**ARC_COLUMNS, "answer": "answerkey"})
    # without the map the standard names are looked for, and the error says how to map them
    with pytest.raises(DatasetError, match=r"choices = 'choices' holds tables \(keys \['label', "
                                           r"'text'\]\).*e.g. choices = 'choices.label'"):
        tasks.load_multiple_choice(path)
    with pytest.raises(ValueError, match=r"column 'answer': missing .*\[task.columns\] answer"):
        tasks.load_multiple_choice(path, columns={"choices": "choices.text"})
    # the row's own labels must hold the answer
    bad = [{**ARC_ROWS[0], "answerKey": "E"}]
    with pytest.raises(ValueError, match=r"answer.*'E' is none of the row's labels"):
        tasks.load_multiple_choice(_jsonl(tmp_path / "bad.jsonl", bad), columns=ARC_COLUMNS)


def test_never_a_hub_and_split_only_for_folders(tmp_path):
    with pytest.raises(DatasetError, match="does not exist on this machine.*never a hub"):
        tasks.load_multiple_choice(tmp_path / "allenai" / "ai2_arc")
    path = _jsonl(tmp_path / "arc.jsonl", ARC_ROWS)
    with pytest.raises(DatasetError, match="one file: 'split' applies to a dataset folder"):
        tasks.load_multiple_choice(path, columns=ARC_COLUMNS, split="test")


def test_config_column_map_errors_name_the_key():
    base = {"output_dir": "/tmp/x", "models": [{"name": "a", "path": "/tmp/a"}],
            "task": {"name": "t", "type": "multiple_choice", "path": "q.jsonl"}}
    with pytest.raises(ValueError, match=r"'task.columns.qestion' is not a known setting of "
                                         r"\[task.columns\] \(did you mean 'question'"):
        load_config({**base, "task": {**base["task"], "columns": {"qestion": "q"}}})
    with pytest.raises(ValueError, match=r"'task.columns.prompt' does not apply to a "
                                         r"multiple_choice task"):
        load_config({**base, "task": {**base["task"], "columns": {"prompt": "p"}}})
    with pytest.raises(ValueError, match=r"'task.columns.choices'"):
        load_config({**base, "task": {**base["task"], "columns": {"choices": 3}}})
    with pytest.raises(ValueError, match=r"'tasks\[1\].limt' .*\[\[tasks\]\] #2"):
        load_config({**{k: v for k, v in base.items() if k != "task"},
                     "tasks": [base["task"], {**base["task"], "name": "u", "limt": 1}]})
    with pytest.raises(ValueError, match=r"'tasks' names must be distinct"):
        load_config({**{k: v for k, v in base.items() if k != "task"},
                     "tasks": [base["task"], base["task"]]})


# --- few-shot examples -------------------------------------------------------------------------

def _mc_frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"prompt_id": [f"q{i:03d}" for i in range(n)],
                         "question": [f"question {i}?" for i in range(n)],
                         "choices": [["x", "y", "z"]] * n, "answer": ["B"] * n})


@given(n=st.integers(4, 30), k=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_fewshot_examples_are_fixed_by_the_key_never_the_question_itself(n, k, seed):
    frame = _mc_frame(n)
    chosen = tasks.fewshot_examples("t", frame, frame, k, same_pool=True)
    by_id = {frame["prompt_id"][i]: [frame["prompt_id"][j] for j in rows]
             for i, rows in enumerate(chosen)}
    for prompt_id, examples in by_id.items():
        assert len(examples) == k == len(set(examples)) and prompt_id not in examples
    # the file order does not decide them, and neither does a limit
    order = list(range(n))
    random.Random(seed).shuffle(order)
    shuffled = frame.iloc[order].reset_index(drop=True)
    again = tasks.fewshot_examples("t", shuffled, shuffled, k, same_pool=True)
    assert {shuffled["prompt_id"][i]: [shuffled["prompt_id"][j] for j in rows]
            for i, rows in enumerate(again)} == by_id
    # another task draws other examples (the task is part of the key), as often as not
    other = tasks.fewshot_examples("u", frame, frame, k, same_pool=True)
    assert all(len(rows) == k for rows in other)


def test_fewshot_from_another_pool_skips_the_same_question_and_too_few_is_an_error():
    frame = _mc_frame(5)
    pool = _mc_frame(3)  # the same question texts as the first three prompts
    chosen = tasks.fewshot_examples("t", frame, pool, 2, same_pool=False)
    for i, rows in enumerate(chosen):
        assert all(pool["question"][j] != frame["question"][i] for j in rows)
    with pytest.raises(ValueError, match="fewshot = 3 but prompt 'q000' has only 2"):
        tasks.fewshot_examples("t", frame, pool, 3, same_pool=False)
    block = tasks.fewshot_block(pool, [1])
    assert block == "question 1?\n\nA. x\nB. y\nC. z\nAnswer: B\n\n"


def test_the_benchmarks_example_config_loads_every_task():
    from coupled.runner.run import _load_task

    example = Path(__file__).resolve().parents[1] / "examples" / "tiny" / "benchmarks.toml"
    config = load_config(example)
    assert [t.name for t in config.tasks] == ["tiny-mc", "tiny-arithmetic"] and config.task is None
    loaded = {view.task.name: _load_task(view) for view in config.task_views()}
    assert len(loaded["tiny-mc"]) == 41 and loaded["tiny-mc"]["fewshot"].str.count(
        "\nAnswer: ").eq(2).all()
    assert list(loaded["tiny-arithmetic"]["answer"][:2]) == ["33", "11"]
    assert config.models[1].chat_template is False


# --- generated layouts: any nesting, any column names, values read back as written -------------

_NAME = st.text(st.characters(categories=["Lu", "Ll"], include_characters="_"), min_size=1,
                max_size=6)
_TEXT = st.one_of(st.sampled_from(["001", "1", "NA", "None", "null", "1.50", "true", " x "]),
                  st.text(st.characters(categories=["L", "N", "Zs"]), min_size=1, max_size=8))


@st.composite
def _layout(draw):
    # Each field lives at a path of 1-3 distinct names (one top-level column per field).
    fields = ("id", "question", "choices", "answer")
    tops = draw(st.lists(_NAME, min_size=4, max_size=4, unique=True))
    paths = {f: [tops[i]] + draw(st.lists(_NAME, max_size=2)) for i, f in enumerate(fields)}
    n = draw(st.integers(1, 4))
    rows, expected = [], []
    for r in range(n):
        choices = draw(st.lists(_TEXT, min_size=2, max_size=5, unique_by=str.strip)
                       .filter(lambda c: all(x.strip() for x in c)))
        gold = draw(st.integers(0, len(choices) - 1))
        values = {"id": f"{draw(_TEXT)}#{r}", "question": draw(_TEXT), "choices": choices,
                  "answer": str(gold)}
        row: dict = {}
        for field, path in paths.items():
            cell = row
            for part in path[:-1]:
                cell = cell.setdefault(part, {})
            cell[path[-1]] = values[field]
        rows.append(row)
        expected.append((values["id"], values["question"], choices, tasks.LETTERS[gold]))
    columns = {f: ".".join(p) for f, p in paths.items()}
    return rows, columns, expected


@given(_layout(), st.sampled_from(["jsonl", "parquet"]))
def test_any_nested_layout_reads_back_exactly_as_written(tmp_path_factory, case, suffix):
    rows, columns, expected = case
    path = tmp_path_factory.mktemp("layout") / f"t.{suffix}"
    if suffix == "jsonl":
        _jsonl(path, rows)
    else:
        pd.DataFrame(rows).to_parquet(path)
    loaded = tasks.load_multiple_choice(path, "index", columns=columns)
    got = [(r.prompt_id, r.question, list(r.choices), r.answer)
           for r in loaded.itertuples(index=False)]
    assert got == expected


def test_fewshot_from_another_file_with_the_same_column_map(tmp_path):
    from coupled.runner.config import TaskSpec
    from coupled.runner.run import _load_task

    _jsonl(tmp_path / "test.jsonl", HELLASWAG_ROWS)
    train = [{**r, "ind": r["ind"] + 1000, "ctx": "train: " + r["ctx"]} for r in HELLASWAG_ROWS]
    _jsonl(tmp_path / "train.jsonl", train)
    task = TaskSpec(name="hs", type="multiple_choice", path=str(tmp_path / "test.jsonl"),
                    answer_kind="index", columns=HELLASWAG_COLUMNS, fewshot=2,
                    fewshot_path=str(tmp_path / "train.jsonl"), limit=2)
    config = load_config({"output_dir": str(tmp_path / "out"), "task": task.as_dict(),
                          "models": [{"name": "a", "path": str(tmp_path)}]})
    loaded = _load_task(config)
    assert len(loaded) == 2
    for shot in loaded["fewshot"]:
        assert shot.count("train: ") == 2 and shot.count("\nAnswer: ") == 2


def test_fewshot_from_a_large_pool_is_fixed_spread_and_never_the_question():
    n = 3000  # above the exact-ranking size: the O(k) probing path
    frame = _mc_frame(n)
    chosen = tasks.fewshot_examples("mmlu", frame, frame, 5, same_pool=True)
    assert all(len(set(rows)) == 5 and i not in rows for i, rows in enumerate(chosen))
    order = list(range(n))
    random.Random(1).shuffle(order)
    shuffled = frame.iloc[order].reset_index(drop=True)
    again = tasks.fewshot_examples("mmlu", shuffled, shuffled, 5, same_pool=True)
    ids = [[frame["prompt_id"][j] for j in rows] for rows in chosen]
    assert {shuffled["prompt_id"][i]: [shuffled["prompt_id"][j] for j in rows]
            for i, rows in enumerate(again)} == dict(zip(frame["prompt_id"], ids, strict=True))
    # the examples spread over the pool: 15000 draws leave a row undrawn with probability about
    # e^-5, so ~20 of 3000 (SE ~4.5); more than 300 undrawn would be 60 SE off
    counts = pd.Series([j for rows in ids for j in rows]).value_counts()
    assert len(counts) > 0.9 * n
