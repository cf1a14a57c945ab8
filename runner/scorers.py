"""Scorers of a reply against a gold answer, named in the config (``[task] scorer``).

Each scorer returns ``(score, parse_failed)``: an unparseable reply scores 0 *and* is flagged,
so it is counted in ``parse_failed`` and never dropped.

* ``choice`` — the option letter of a multiple-choice reply (:func:`coupled.runner.tasks.
  parse_choice`); a reply naming no option, or several, fails to parse.
* ``exact_match`` — the normalised reply equals the normalised gold. Normalisation (SQuAD's
  ``normalize_answer``, the usual one, plus Unicode NFKC): NFKC, case folded (``str.casefold``,
  lower case for every script), punctuation (Unicode category P*, and symbols S*) removed, the English articles ``a``/``an``/``the``
  removed as words, runs of whitespace collapsed, ends stripped. Only a reply that is empty
  after normalisation fails to parse.
* ``numeric`` — GSM8K-style: the *last* number in the reply (``-1,234.5``, ``$12``, ``3/4`` is
  two numbers, ``1e3`` the number ``1`` then ``3``: replies seldom use exponents) with thousands
  commas and currency signs stripped, compared with the gold's number (for a gold holding
  GSM8K's ``#### 72``, the text after the last ``####``): right when ``|reply - gold| <=
  tolerance`` (default 0: equal as decimals, ``72.0`` = ``72``). No number in the reply fails
  to parse; a gold without a number is a task-file error (raised by :func:`check_gold`).
* ``regex`` — the pattern's first match in the reply; its first capture group (the whole match
  when it has none) normalised as in exact match and compared with the normalised gold. No match
  fails to parse.

Written by hand: the normalisations are a few lines each and the libraries that have them
(``evaluate``, lm-eval) pull in far more than these rules.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import get_args

from coupled.runner.config import ScorerName

SCORERS = get_args(ScorerName)  # the config's one list

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_WHITESPACE = re.compile(r"\s+")
# A number as written in replies: optional sign, currency, digits with thousands commas, decimals.
_NUMBER = re.compile(r"(?<![\w.])[-+−]?[$€£¥]?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|"
                     r"(?<![\w.])[-+−]?[$€£¥]?\.\d+")


def normalize_answer(text: str) -> str:
    """Exact match's normalisation (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return _WHITESPACE.sub(" ", text).strip()


def last_number(text: str) -> Decimal | None:
    """The last number in ``text`` (commas, currency signs stripped), or None."""
    found = _NUMBER.findall(unicodedata.normalize("NFKC", text))
    if not found:
        return None
    literal = re.sub(r"[,$€£¥\s]", "", found[-1]).replace("−", "-")
    try:
        return Decimal(literal)
    except InvalidOperation:  # pragma: no cover - the pattern only matches numbers
        return None


def gold_number(gold: str) -> Decimal | None:
    """The gold's number: the text after GSM8K's last ``####`` when there is one."""
    if "####" in gold:
        gold = gold.rsplit("####", 1)[1]
    return last_number(gold)


@dataclass(frozen=True)
class Scorer:
    """A configured scorer: ``score(reply, gold) -> (score, parse_failed)``."""

    name: str
    regex: str | None = None
    tolerance: float | None = None

    def __post_init__(self) -> None:
        if self.name not in SCORERS:
            raise ValueError(f"scorer must be one of {SCORERS}, got {self.name!r}")
        if (self.name == "regex") != (self.regex is not None):
            raise ValueError("a regex scorer needs a pattern (and only it takes one)")

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(self.regex or "")

    def describe(self) -> dict[str, object]:
        """What the manifest records about the scorer."""
        out: dict[str, object] = {"scorer": self.name}
        if self.name == "exact_match" or self.name == "regex":
            out["normalisation"] = "NFKC, casefold, punctuation/symbols, articles, whitespace"
        if self.name == "regex":
            out["regex"] = self.regex
        if self.name == "numeric":
            out["tolerance"] = self.tolerance or 0.0
            out["extraction"] = "last number in the reply; commas and currency signs stripped"
        return out

    def check_gold(self, gold: str) -> str | None:
        """Why ``gold`` cannot be scored against (a task-file error), or None."""
        if self.name == "numeric" and gold_number(gold) is None:
            return f"gold {gold!r} holds no number for the numeric scorer"
        if self.name in ("exact_match", "regex") and not normalize_answer(gold):
            return f"gold {gold!r} is empty after normalisation"
        return None

    def score(self, reply: str, gold: str, n_choices: int | None = None) -> tuple[float, bool]:
        if self.name == "choice":
            from coupled.runner.tasks import parse_choice

            letter = parse_choice(reply, int(n_choices or 0))
            return float(letter == gold), letter is None
        if self.name == "exact_match":
            text = normalize_answer(reply)
            return float(bool(text) and text == normalize_answer(gold)), not text
        if self.name == "numeric":
            value, target = last_number(reply), gold_number(gold)
            if value is None:
                return 0.0, True
            tolerance = Decimal(repr(self.tolerance or 0.0))
            return float(target is not None and abs(value - target) <= tolerance), False
        match = self.pattern.search(reply)
        if match is None:
            return 0.0, True
        extracted = next((g for g in match.groups() if g is not None), match.group(0))
        return float(normalize_answer(extracted) == normalize_answer(gold)), False
