"""`coupled --version`; every (sub)command's --help shows its defaults and ends with examples
that parse; usage errors are one line naming the option, exit status 2."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from importlib.metadata import version

import pytest

from coupled.cli.main import EXAMPLES, build_parser, main


def _commands(parser: argparse.ArgumentParser, name: str = "coupled"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _commands(sub, sub_name if name == "coupled" else
                                     f"{name} {sub_name}")


COMMANDS = dict(_commands(build_parser()))


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"coupled {version('coupled')}"


def test_version_from_the_installed_command():
    done = subprocess.run([sys.executable, "-m", "coupled.cli.main", "--version"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"coupled {version('coupled')}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_help_has_parsing_examples_and_defaults(name):
    parser = COMMANDS[name]
    text = parser.format_help()
    assert "examples:" in text, name
    assert name in EXAMPLES, name
    for line in EXAMPLES[name]:
        argv = shlex.split(line, comments=True)
        assert argv[0] == "coupled"
        if "--help" in argv:
            continue
        build_parser().parse_args(argv[1:])  # would exit 2 on a wrong example
    for action in parser._actions:
        if action.default not in (None, False, argparse.SUPPRESS) and action.help and \
                action.option_strings:
            shown = text.replace("\n", " ")
            assert "default" in (action.help.lower() + shown), (name, action.dest)
            assert str(action.default) in " ".join(shown.split()), (name, action.dest)


def test_defaults_are_shown():
    plan = " ".join(COMMANDS["plan"].format_help().split())
    assert "(default: 0.8)" in plan and "(default: 0.05)" in plan and "1,2,5,10" in plan
    analyze = " ".join(COMMANDS["analyze"].format_help().split())
    assert "(default: 0.05)" in analyze and "(default: 0)" in analyze


@pytest.mark.parametrize("argv, option", [
    (["analyze", "x.csv", "--alpha", "nan"], "--alpha"),
    (["analyze", "x.csv", "--seed", "ten"], "--seed"),
    (["plan", "--accuracies", "a.csv", "--budget", "1"], "--budget"),
    (["plan", "--accuracies", "a.csv", "--power", "1"], "--power"),
    (["plan", "--accuracies", "a.csv", "--effect", "inf"], "--effect"),
    (["rank", "x.csv", "--seed", "-1"], "--seed"),
    (["figures", "--from", "x", "--out", "y", "--pairs", "ab"], "--pairs"),
    (["simulate", "--out", "y", "--n-seeds", "0"], "--n-seeds"),
    (["analyze"], "FILE_OR_DIR"),
    (["nonsense"], "nonsense"),
])
def test_usage_errors_are_one_line_naming_the_option(argv, option, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and option in err and "Traceback" not in err


@pytest.mark.parametrize("command, message, expected", [
    ("plan", "n_questions must be an integer of at least 2, got 0",
     "--budget must be an integer of at least 2, got 0"),
    ("plan", "acc.csv: components: zero variance in mode 'coupled'",
     "acc.csv: the variance components it implies: zero variance in mode 'coupled'"),
    ("analyze", "scores.csv: scores: by_subject needs a 'subject' column",
     "scores.csv: scores: --by-subject needs a 'subject' column"),
    ("plan", "model_b: model 'zz' has no coupled rows", "--models: model 'zz' has no coupled rows"),
    ("analyze", "seed must be >= 0", "--seed must be >= 0"),
    ("plan", "power must be in (alpha, 1), got 2", "--power must be in (alpha, 1), got 2"),
    ("plan", "a powerful message", None),  # 'power' inside a word is not the parameter
    ("rank", "scores: no rows", None),
])
def test_library_errors_are_told_with_the_users_option(command, message, expected):
    from coupled.cli.options import user_words

    with pytest.raises(ValueError) as raised, user_words(command):
        raise ValueError(message)
    assert str(raised.value) == (message if expected is None else expected)
