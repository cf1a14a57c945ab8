"""Scorers beside the multiple-choice letter (issue 13 §1): exact match, numeric, regex.

Each returns (score, parse_failed); an unparseable reply scores 0 and is flagged, never dropped.
Generated replies check the rules as classes: any casing / punctuation / article / whitespace
variant of the gold is an exact match; any number written with thousands commas, a currency
sign and surrounding words is read back exactly as the last number; a reply naming several
options is never read as one of them.
"""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupled.runner import tasks
from coupled.runner.config import load_config
from coupled.runner.scorers import Scorer, gold_number, last_number, normalize_answer

EXACT, NUMERIC, REGEX = Scorer("exact_match"), Scorer("numeric"), \
    Scorer("regex", regex=r"(?i)answer\s*[:=]\s*(\w+)")


@pytest.mark.parametrize("reply, gold, score, failed", [
    ("Paris", "Paris", 1.0, False), ("  the PARIS. ", "Paris", 1.0, False),
    ("An apple!", "apple", 1.0, False), ("paris, france", "Paris", 0.0, False),
    ("", "Paris", 0.0, True), ("...", "Paris", 0.0, True), ("Ｐａｒｉｓ", "Paris", 1.0, False)])
def test_exact_match(reply, gold, score, failed):
    assert EXACT.score(reply, gold) == (score, failed)


_WORD = st.text(st.characters(categories=["Ll", "Lu", "Nd"]), min_size=1, max_size=8)


@given(words=st.lists(_WORD, min_size=1, max_size=4), data=st.data())
def test_every_normalisation_variant_of_the_gold_matches(words, data):
    gold = " ".join(words)
    if not normalize_answer(gold):
        return
    variant = data.draw(st.sampled_from([
        gold.upper(), gold.lower(), f"  {gold}  ", f"The {gold}.", f"a {gold}!",
        "  ".join(words), f'"{gold}"', f"**{gold}**", gold.replace(" ", "\n")]))
    assert EXACT.score(variant, gold) == (1.0, False)
    assert normalize_answer(normalize_answer(variant)) == normalize_answer(variant)


@pytest.mark.parametrize("reply, value", [
    ("The answer is 72.", Decimal(72)), ("It costs $1,234.50 in total", Decimal("1234.50")),
    ("from 3 to -4", Decimal(-4)), ("no digits here", None), ("2 apples and 3 pears", 3),
    ("x = .5", Decimal("0.5")), ("1,2,3", 3)])
def test_last_number(reply, value):
    assert last_number(reply) == (None if value is None else Decimal(value))


@given(value=st.decimals(min_value=-10**9, max_value=10**9, places=2, allow_nan=False),
       commas=st.booleans(), dollar=st.booleans(),
       before=st.sampled_from(["", "So the total is ", "3 cats, then 4: "]),
       after=st.sampled_from(["", ".", " dollars.", "!\n"]))
def test_numeric_reads_the_last_number_as_written(value, commas, dollar, before, after):
    text = f"{abs(value):,}" if commas else f"{abs(value)}"
    written = ("-" if value < 0 else "") + ("$" if dollar else "") + text
    reply = before + written + after
    assert last_number(reply) == value
    assert NUMERIC.score(reply, f"steps...\n#### {value}") == (1.0, False)


def test_numeric_gold_tolerance_and_failures():
    assert gold_number("Natalia sold 48/2 = 24 clips.\n#### 72") == 72
    assert NUMERIC.score("72.0", "72") == (1.0, False)
    assert NUMERIC.score("about 3.14", "3.1416") == (0.0, False)
    assert Scorer("numeric", tolerance=0.01).score("about 3.14", "3.1416") == (1.0, False)
    assert NUMERIC.score("I do not know", "72") == (0.0, True)
    assert NUMERIC.check_gold("seventy-two") is not None and NUMERIC.check_gold("72") is None


def test_regex_first_group_normalised_and_no_match_fails():
    assert REGEX.score("Reasoning... Answer: Paris.", "paris") == (1.0, False)
    assert REGEX.score("Answer = rome", "paris") == (0.0, False)
    assert REGEX.score("Paris", "paris") == (0.0, True)
    whole = Scorer("regex", regex=r"\d+")
    assert whole.score("it is 12 or 13", "12") == (1.0, False)


def test_the_config_names_the_scorer_and_refuses_misplaced_keys():
    base = {"output_dir": "/tmp/x", "models": [{"name": "a", "path": "/tmp/a"}]}
    task = {"name": "t", "type": "generate", "path": "q.jsonl"}
    assert load_config({**base, "task": task}).task.scorer == "exact_match"
    assert load_config({**base, "task": {**task, "type": "multiple_choice"}}).task.scorer == \
        "choice"
    for bad, message in [({"scorer": "regex"}, "'task.regex' is required by scorer = 'regex'"),
                         ({"regex": "x"}, "'task.regex' applies to scorer = 'regex' only"),
                         ({"tolerance": 0.1}, "'task.tolerance' applies to scorer = 'numeric'"),
                         ({"scorer": "choice"}, "'task.scorer' 'choice' scores multiple_choice"),
                         ({"scorer": "regex", "regex": "("}, "'task.regex' is not a valid"),
                         ({"fewshot_split": "dev"}, "'task.fewshot' fewshot_split")]:
        with pytest.raises(ValueError, match=message):
            load_config({**base, "task": {**task, **bad}})


# --- the multiple-choice letter: several options named is not an answer ----------------------

_FILLER = st.sampled_from(["", " ", "\n", " or ", ", ", " and ", " maybe ", ": ", " vs ",
                           " is wrong, ", "\n- "])


@st.composite
def _reply_naming_several(draw):
    n = draw(st.integers(2, 8))
    letters = draw(st.lists(st.sampled_from(tasks.LETTERS[:n]), min_size=2, max_size=5,
                            unique=True))
    wrap = draw(st.sampled_from(["{}", "({})", "{}.", "**{}**", "'{}'", "{})", "{}: {}",
                                 "Answer: {}", "option {}"]))
    parts = [wrap.format(letter, letter) for letter in letters]
    reply = parts[0]
    for part in parts[1:]:
        reply += draw(_FILLER) + part
    return n, reply


@given(_reply_naming_several())
def test_a_reply_naming_several_options_is_never_read_as_one_of_them(case):
    n, reply = case
    assert tasks.parse_choice(reply, n) is None, reply
    assert Scorer("choice").score(reply, "A", n) == (0.0, True)


@pytest.mark.parametrize("reply", ["A: A\nB: B\nC: C\nD: D", "B,C,D", "A or B", "(A) (C)",
                                   "A. Paris\nB. Rome", "**B**, **C**"])
def test_real_mmlu_false_positives(reply):
    assert tasks.parse_choice(reply, 4) is None


@given(letter=st.sampled_from(tasks.LETTERS[:4]),
       wrap=st.sampled_from(["{}", " {}", "({})", "{}.", "**{}**", "{}) Paris", "The answer is {}",
                             "Answer: ({})", "I think {} is right", "'{}'"]))
def test_one_named_option_is_read(letter, wrap):
    assert tasks.parse_choice(wrap.format(letter), 4) == letter
