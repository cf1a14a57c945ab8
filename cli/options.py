"""Option values checked where the user typed them, and library errors told in the user's words.

Every subcommand's options reach the library under other names (``--budget`` is
``n_questions``/``budget_questions``/``budget``, ``--seed`` is ``seed``, ``--models``
is ``model_a``/``model_b``/``model``/``opponent``). Two layers keep the user's option in the
message:

1. argparse ``type=`` checks here (:func:`probability`, :func:`finite_float`,
   :func:`int_at_least`): a bad value never reaches the library, and argparse names the option.
2. :func:`user_words`: a ``ValueError`` the library raises about one of its parameters (the
   message starts with that parameter's name, as the library's checks do) is re-raised with
   the option's name, from the per-command maps in :data:`OPTION_NAMES`.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# Internal parameter -> the option a user typed, per subcommand (audited against each
# subcommand's calls into coupled.analysis / coupled.simulate).
OPTION_NAMES: dict[str, dict[str, str]] = {
    "analyze": {"alpha": "--alpha", "seed": "--seed",
                "models": "--models", "model_a": "--models", "model_b": "--models",
                "unit": "--error-curve", "by_subject": "--by-subject"},
    "plan": {"alpha": "--alpha", "power": "--power", "effect": "--effect",
             "|effect|": "--effect", "n_questions": "--budget", "budget_questions": "--budget",
             "budget": "--budget", "seeds": "--seeds", "n_seeds": "--seeds",
             "model_a": "--models", "model_b": "--models", "model": "--models",
             "opponent": "--models", "coupling": "--coupling", "pilot": "--pilot",
             "prompt_probs": "--prompt-probs", "p_both_coupled": "column 'p_both'",
             "components": "the variance components it implies"},
    "rank": {"alpha": "--alpha", "method": "--method", "seed": "--seed", "models": "--models"},
    "figures": {"alpha": "--alpha", "unit": "--unit", "model": "--model", "pairs": "--pairs"},
    "simulate": {"seed": "--seed", "n_seeds": "--n-seeds"},
}


# The argparse dests that name a command's input tables: errors about a table name it
# (cli/main.py), and no --out may write over one (cli/analysis_cmd.py).
INPUT_DESTS = ("path", "pilot", "accuracies", "prompt_probs", "source")


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def probability(text: str) -> float:
    """A level or power: a number strictly between 0 and 1."""
    value = finite_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {text}")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def check_present(value: str | None, present, option: str, source: str) -> None:
    """``value`` (when given) is one of the values in ``present`` (a column of the input)."""
    if value is not None and value not in set(present):
        raise ValueError(f"{option} {value}: not in {source} (present: "
                         f"{sorted(set(present))})")


def distinct_models(models: list[str] | None, option: str = "--models", *,
                    at_least: int = 1) -> None:
    """Refuse the same model named twice (the library would say 'model_a and model_b'), or
    fewer than ``at_least`` models."""
    if models is not None and len(models) < at_least:
        raise ValueError(f"{option}: name at least {at_least} models, got {models}")
    if models and len(set(models)) != len(models):
        twice = sorted({m for m in models if models.count(m) > 1})
        raise ValueError(f"{option}: names {twice} more than once; name different models")


def _translated(message: str, names: dict[str, str]) -> str | None:
    # Longest names first, so 'n_questions' wins over a shorter name it contains.
    for name in sorted(names, key=len, reverse=True):
        match = re.match(rf"{re.escape(name)}(?![A-Za-z0-9_-])", message)
        if match:
            rest = message[match.end():]
            return f"{names[name]}{rest if rest.startswith((':', ' ')) else ': ' + rest}"
    return None


def _reworded(message: str, names: dict[str, str]) -> str | None:
    """``message`` with a leading internal parameter — or one right after a leading
    ``<source>: `` prefix or two — in the user's words; None when it names none."""
    parts = message.split(": ")
    for k in range(len(parts)):  # after 0, 1, 2 ... leading "<source>: " prefixes
        inner = _translated(": ".join(parts[k:]), names)
        if inner is not None:
            return ": ".join([*parts[:k], inner])
    return None


@contextmanager
def user_words(command: str) -> Iterator[None]:
    """Re-raise a library ``ValueError`` about an internal parameter under the option's name."""
    try:
        yield
    except ValueError as error:
        message = _reworded(str(error), OPTION_NAMES.get(command, {}))
        if message is None:
            raise
        raise ValueError(message) from error


@contextmanager
def naming(source: str | None) -> Iterator[None]:
    """Errors about a table already read (the library sees a DataFrame, not the file) name the
    file the user gave: ``source: <message>`` unless the message names it already."""
    try:
        yield
    except ValueError as error:
        message = str(error)
        if (source is None or message.startswith("--") or str(source) in message
                or Path(source).name in message):
            raise
        raise ValueError(f"{source}: {message}") from error


def coupled_version() -> str:
    """This toolkit's version (``coupled --version``, exported results), or a plain word when
    run from a source tree that was never installed. importlib.metadata alone: the parser is
    built for every command, so this must not import pandas."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("coupled")
    except PackageNotFoundError:
        return "unknown (not installed)"
