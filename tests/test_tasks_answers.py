"""How a multiple-choice file names its gold option (issue 10): never silently wrong.

Generated questions give the gold as text, letter label or 0-based index; read with the declared
``answer_kind`` the gold is always right, and read without it the gold is either right or an
error naming the row — with one documented exception: when an option text is a number, an
integer answer is read as that text (``["1","2","3","4"]`` with ``"2"`` is the option "2").
"""

import json

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupled.runner import tasks
from coupled.runner.tasks import LETTERS, gold_option

_OPTION = st.one_of(st.sampled_from(["A", "B", "C", "0", "1", "2", "3", "10", "1.5", "NA",
                                     "None", "", " x", "yes"]),
                    st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=6))


@st.composite
def _question(draw):
    choices = draw(st.lists(_OPTION, min_size=2, max_size=6))
    gold = draw(st.integers(0, len(choices) - 1))
    kind = draw(st.sampled_from(["text", "label", "index"]))
    answer = {"text": choices[gold], "label": LETTERS[gold], "index": str(gold)}[kind]
    as_int = kind == "index" and draw(st.booleans())
    return choices, gold, kind, int(answer) if as_int else answer


@given(_question())
def test_the_declared_kind_always_finds_the_gold(question):
    choices, gold, kind, answer = question
    result = gold_option(answer, choices, kind)
    if kind == "text" and choices.count(choices[gold]) > 1 or \
            kind == "text" and [c.strip() for c in choices].count(choices[gold].strip()) > 1:
        assert result.startswith("!")  # two options with the same text: refused, not guessed
    elif kind == "text" and not choices[gold].strip():
        assert result.startswith("!")
    else:
        assert result == LETTERS[gold]


@given(_question())
def test_without_a_kind_the_gold_is_right_or_an_error_never_another_option(question):
    choices, gold, kind, answer = question
    numeric_options = any(tasks._is_number(c) for c in choices)
    result = gold_option(answer, choices)
    if kind == "index" and numeric_options:
        return  # the documented rule: with numeric options an integer is read as text
    assert result == LETTERS[gold] or result.startswith("!"), (choices, answer, result)


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_numeric_options_are_matched_by_text_in_csv_and_jsonl(tmp_path, suffix):
    rows = [{"prompt_id": "q1", "question": "pick two", "choices": ["1", "2", "3", "4"],
             "answer": "2"}]
    path = tmp_path / f"q.{suffix}"
    if suffix == "csv":
        pd.DataFrame([{**rows[0], "choices": json.dumps(rows[0]["choices"])}]).to_csv(
            path, index=False)
    else:
        path.write_text(json.dumps(rows[0]) + "\n")
    loaded = tasks.load_multiple_choice(path)
    assert loaded["answer"][0] == "B"  # the option "2", not the third option
    assert tasks.load_multiple_choice(path, "index")["answer"][0] == "C"


def test_an_ambiguous_or_unresolvable_answer_is_an_error_naming_the_row(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"prompt_id": "odd-one", "question": "?",
                                "choices": ["B", "A", "C"], "answer": "A"}) + "\n")
    with pytest.raises(ValueError, match=r"q\.jsonl, column 'answer'.*ambiguous(.|\n)*odd-one"):
        tasks.load_multiple_choice(path)
    assert tasks.load_multiple_choice(path, "text")["answer"][0] == "B"
    assert tasks.load_multiple_choice(path, "label")["answer"][0] == "A"
    path.write_text(json.dumps({"prompt_id": "x", "question": "?", "choices": ["1", "2"],
                                "answer": 5}) + "\n")
    with pytest.raises(ValueError, match="names none of the 2 options"):
        tasks.load_multiple_choice(path)


def test_identifiers_and_texts_are_read_as_written(tmp_path):
    path = tmp_path / "q.csv"
    pd.DataFrame([{"prompt_id": "001", "question": "NA", "A": "None", "B": "null",
                   "answer": "A", "subject": "NA"},
                  {"prompt_id": "01", "question": "q", "A": "x", "B": "y", "answer": "B",
                   "subject": "1"}]).to_csv(path, index=False)
    loaded = tasks.load_multiple_choice(path)
    assert list(loaded["prompt_id"]) == ["001", "01"] and loaded["question"][0] == "NA"
    assert loaded["choices"][0] == ["None", "null"] and list(loaded["subject"]) == ["NA", "1"]


# --- a row's own labels (ARC's choices.label with answerKey) ---------------------------------

@given(n=st.integers(2, 6), gold=st.data(), numeric=st.booleans(),
       shuffled=st.randoms(use_true_random=False))
def test_the_rows_own_labels_map_the_answer_to_its_option(n, gold, numeric, shuffled):
    labels = [str(i + 1) for i in range(n)] if numeric else list(LETTERS[:n])
    shuffled.shuffle(labels)  # labels in any order: the answer's position in them decides
    choices = [f"option {i}" for i in range(n)]
    g = gold.draw(st.integers(0, n - 1))
    assert tasks._gold_by_labels(labels[g], choices, labels) == LETTERS[g]
    assert tasks._gold_by_labels("Z9", choices, labels).startswith("!")
    assert tasks._gold_by_labels(labels[g], choices, labels[:-1]).startswith("!")


def test_a_generate_gold_the_scorer_cannot_read_is_refused_naming_the_row(tmp_path):
    from coupled.runner.config import TaskSpec

    path = tmp_path / "gsm.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "seventy-two"}) + "\n")
    task = TaskSpec(name="g", type="generate", path=str(path), scorer="numeric",
                    columns={"prompt": "question", "answer": "answer"})
    with pytest.raises(ValueError, match=r"column 'answer': gold 'seventy-two' holds no number"):
        tasks.load_task(task)
