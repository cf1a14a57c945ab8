"""Identifiers are read exactly as written, in every format (issue 10, "Tables read exactly as
written"): no type guessing ("001" stays "001", "01" and "1" differ), no NA guessing ("NA",
"None", "null" are text), an empty identifier is an error naming the column and rows."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coupled import tables
from coupled.tables import TableError

FORMATS = (".parquet", ".csv", ".jsonl", ".json")

# Any non-empty text a file can hold: every Unicode character but lone surrogates (not
# encodable in UTF-8) and NUL (no CSV or filesystem tool keeps it).
identifier = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
                     min_size=1, max_size=12)
TRICKY = ["001", "01", "1", "1.0", "1e3", "NA", "None", "null", "nan", "NaN", "true", "False",
          " 1", "1 ", "#N/A", "<NA>", "n/a", "-0", "0x1F", "１"]


def _scores(models, prompts, task="t", subjects=None):
    rows = [dict(task=task, prompt_id=p, seed=s, mode="coupled", coupling="gumbel", model=m,
                 score=float(i % 3) / 2)
            for i, (p, s, m) in enumerate((p, s, m) for p in prompts for s in (0, 1)
                                          for m in models)]
    df = pd.DataFrame(rows)
    if subjects is not None:
        df["subject"] = df["prompt_id"].map(dict(zip(prompts, subjects, strict=True)))
    return df


@settings(max_examples=30)  # each example writes and reads a file
@given(models=st.lists(identifier, min_size=2, max_size=3, unique=True),
       prompts=st.lists(identifier, min_size=1, max_size=4, unique=True),
       task=identifier, subject=identifier, fmt=st.sampled_from(FORMATS))
def test_identifiers_round_trip_exactly_in_every_format(tmp_path_factory, models, prompts, task,
                                                        subject, fmt):
    df = _scores(models, prompts, task, subjects=[subject] * len(prompts))
    path = tmp_path_factory.mktemp("rt") / f"scores{fmt}"
    tables.write_table(df, path, "scores")
    back = tables.read_scores(path)
    for column in ("task", "prompt_id", "model", "subject"):
        assert back[column].tolist() == df[column].tolist()
        assert all(type(v) is str for v in back[column])
    assert back["score"].tolist() == df["score"].tolist()
    records = tables.read_records(path)
    assert records["model"].tolist() == df["model"].tolist()


@pytest.mark.parametrize("fmt", FORMATS)
def test_tricky_identifiers_stay_distinct_text(tmp_path, fmt):
    df = _scores(TRICKY, TRICKY[:5])
    path = tmp_path / f"scores{fmt}"
    tables.write_table(df, path, "scores")
    back = tables.read_scores(path)
    assert back["model"].tolist() == df["model"].tolist()
    assert back["prompt_id"].tolist() == df["prompt_id"].tolist()
    assert back["model"].nunique() == len(TRICKY)


def test_hand_written_csv_keeps_identifiers_as_written(tmp_path):
    # The examples: 001/002 were read as 1/2, 01 and 1 merged, NA/None became missing.
    path = tmp_path / "scores.csv"
    path.write_text("task,prompt_id,seed,mode,coupling,model,score\n"
                    "t,NA,0,coupled,gumbel,001,1\n"
                    "t,None,0,coupled,gumbel,002,0\n"
                    "t,null,0,coupled,gumbel,01,1\n"
                    "t,007,0,coupled,gumbel,1,0.5\n")
    back = tables.read_scores(path)
    assert back["model"].tolist() == ["001", "002", "01", "1"]
    assert back["prompt_id"].tolist() == ["NA", "None", "null", "007"]


@pytest.mark.parametrize("column", ["model", "prompt_id", "task", "subject"])
def test_empty_identifier_cell_is_an_error_naming_column_and_row(tmp_path, column):
    df = _scores(["A", "B"], ["p1", "p2"], subjects=["s1", "s2"])
    path = tmp_path / "scores.csv"
    df.to_csv(path, index=False)
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[3].split(",")
    cells[header.index(column)] = ""
    lines[3] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TableError) as info:
        tables.read_scores(path)
    message = str(info.value)
    assert str(path) in message and repr(column) in message and "empty identifier" in message
    assert "e.g. (1 row(s)" in message


def test_empty_score_or_na_score_is_still_missing(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("task,prompt_id,seed,mode,coupling,model,score\n"
                    "t,1,0,coupled,gumbel,A,NA\n")
    with pytest.raises(TableError, match="'score': has missing values"):
        tables.read_scores(path)


def test_json_numbers_in_identifier_columns_are_their_literals(tmp_path):
    path = tmp_path / "scores.jsonl"
    rows = ['{"task": "t", "prompt_id": 1.50, "seed": 0, "mode": "coupled", '
            '"coupling": "gumbel", "model": 7, "score": 1}',
            '{"task": "t", "prompt_id": 1.5, "seed": 0, "mode": "coupled", '
            '"coupling": "gumbel", "model": 7, "score": 0.25}',
            "",  # a blank line is skipped
            '{"task": "t", "prompt_id": "001", "seed": 1, "mode": "coupled", '
            '"coupling": "gumbel", "model": true, "score": 1e-3}']
    path.write_text("\n".join(rows) + "\n")
    back = tables.read_scores(path)
    assert back["prompt_id"].tolist() == ["1.50", "1.5", "001"]
    assert back["model"].tolist() == ["7", "7", "true"]
    assert back["score"].tolist() == [1.0, 0.25, 1e-3]
    assert back["seed"].tolist() == [0, 0, 1]


@pytest.mark.parametrize("null", [True, False])
def test_json_null_or_absent_identifier_is_an_error(tmp_path, null):
    first = dict(task="t", prompt_id="1", seed=0, mode="coupled", coupling="gumbel", score=1,
                 model="A")
    second = dict(first, prompt_id="2", model=None) if null else {
        k: v for k, v in first.items() if k != "model"}
    path = tmp_path / "scores.jsonl"
    path.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")
    with pytest.raises(TableError, match="'model': has missing or empty identifier"):
        tables.read_records(path)
    with pytest.raises(TableError, match="'model': has missing or empty identifier"):
        tables.read_scores(path)


@pytest.mark.parametrize("name, content, message", [
    ("scores.jsonl", '{"model": "A"}\n{"model": \n', r"scores\.jsonl: line 2: invalid JSON"),
    ("scores.jsonl", '{"model": "A"}\n[1, 2]\n', "line 2: expected a JSON object"),
    ("scores.json", '{"model": ["A"]}', "array of objects"),
    ("x.csv", "model,model\nA,B\n", r"duplicated column name\(s\) \['model'\]"),
])
def test_malformed_file_names_the_file_and_the_problem(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TableError, match=message):
        tables.read_records(path)


def test_parquet_and_in_memory_non_text_identifiers_by_one_documented_rule(tmp_path):
    df = _scores(["A", "B"], ["p"]).drop(columns="model")
    df["model"] = [1, 2, 1, 2]
    df["prompt_id"] = [3.0, 3.0, 3.0, 3.0]
    df.to_parquet(tmp_path / "s.parquet")
    for source in (tmp_path / "s.parquet", df):
        back = tables.read_scores(source)
        assert back["model"].tolist() == ["1", "2", "1", "2"]
        assert back["prompt_id"].tolist() == ["3", "3", "3", "3"]
    with pytest.raises(TableError, match="'model': must hold text"):
        tables.validate_scores(df.assign(model=[[1], [2], [1], [2]]))


@given(st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                 identifier, st.binary(max_size=5).filter(lambda b: _utf8(b))))
def test_identifier_text_is_deterministic_and_keeps_text(value):
    text = tables.identifier_text(value)
    assert isinstance(text, str) and text == tables.identifier_text(value)
    if isinstance(value, str):
        assert text == value
    elif isinstance(value, bool):
        assert text == str(value)
    elif isinstance(value, int):
        assert text == str(value) and int(text) == value
    elif isinstance(value, float):
        assert float(text) == value  # exact: integral floats as integers, others by repr
    assert tables.identifier_text(np.int64(7)) == "7"
    assert tables.identifier_text(None) is None and tables.identifier_text(np.nan) is None


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_read_records_is_general_for_task_files(tmp_path):
    # The runner's task loader and dataset readers: any columns forced to text, lists kept.
    path = tmp_path / "questions.jsonl"
    path.write_text('{"id": 1, "question": "2+2?", "choices": [3, 4, 5], "answer": 1, '
                    '"subject": "NA"}\n'
                    '{"id": 2, "question": "1+1?", "choices": ["1", "2"], "answer": "2", '
                    '"subject": "None"}\n')
    df = tables.read_records(path, text_columns=["id", "choices"], identifiers=["id", "subject"])
    assert df["id"].tolist() == ["1", "2"]
    assert df["choices"].tolist() == [["3", "4", "5"], ["1", "2"]]
    assert df["answer"].tolist() == [1, "2"]  # not a text column: the JSON types are kept
    assert df["subject"].tolist() == ["NA", "None"]
    everything = tables.read_records(path, all_text=True, identifiers=())
    assert everything["answer"].tolist() == ["1", "2"]
    csv = tmp_path / "questions.csv"
    csv.write_text("id,question,A,B,answer\n01,x,1.50,NA,2\n")
    df = tables.read_records(csv, all_text=True, identifiers=["id"])
    assert df.iloc[0].tolist() == ["01", "x", "1.50", "NA", "2"]
    with pytest.raises(TableError, match="unsupported file type"):
        tables.read_records(tmp_path / "q.txt")
    with pytest.raises(TableError, match="no such file"):
        tables.read_records(tmp_path / "missing.csv")
