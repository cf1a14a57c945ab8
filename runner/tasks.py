"""Tasks: multiple-choice questions and open prompts with a pairwise judge (paper, appendix C).

Torch-free: loading the task files, writing the prompts (the paper's system prompts, Tables 2-4),
rendering them with a tokenizer's chat template, and parsing answers and verdicts.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pandas as pd

from coupled.runner import datasets as task_sources
from coupled.tables import identifier_text
from coupled.tables.noise_keys import text_hash

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_EXAMPLES = 3


def prompt_text(name: str) -> str:
    """A packaged prompt template from ``runner/prompts/<name>.txt``."""
    return resources.files("coupled.runner").joinpath("prompts", f"{name}.txt").read_text().strip()


def _bad(path: Path, column: str, problem: str, rows: pd.DataFrame | None = None) -> ValueError:
    message = f"{path}, column {column!r}: {problem}"
    if rows is not None and len(rows):
        message += f" ({len(rows)} row(s); e.g.)\n" + rows.head(_EXAMPLES).to_string(max_colwidth=40)
    return ValueError(message)


# Columns of a task file read as the exact text written (no type or NA guessing), through the
# tables' one string-identifier layer: ids, questions, answers, subjects, prompts, and the
# one-column-per-letter layout of choices.
_TASK_TEXT = ("prompt_id", "question", "answer", "subject", "prompt", *LETTERS)


def _read_mapped(path: Path, task_type: str, columns: dict | None, split: str | None,
                 dataset_name: str | None, what: str = "task") -> tuple[pd.DataFrame,
                                                                      pd.DataFrame, str]:
    """(the raw rows, the standard fields by the column map, the source's name)."""
    plan = task_sources.column_plan(task_type, columns)
    text = task_sources.text_columns_for(plan, _TASK_TEXT)
    raw = task_sources.read_source(path, split=split, dataset_name=dataset_name,
                                   text_columns=text, what=what)
    source = str(path) + (f" (split {split!r})" if split else "")
    return raw, task_sources.mapped_fields(raw, task_type, columns, source), source


def _with_prompt_ids(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    if "prompt_id" not in df.columns:
        df.insert(0, "prompt_id", [str(i) for i in range(len(df))])
    duplicated = df["prompt_id"].duplicated(keep=False)
    if duplicated.any():
        raise _bad(path, "prompt_id", "duplicated prompt ids", df[duplicated])
    return df


def load_multiple_choice(path: str | Path, answer_kind: str | None = None, *,
                         columns: dict | None = None, split: str | None = None,
                         dataset_name: str | None = None, what: str = "task") -> pd.DataFrame:
    """Questions from JSONL / CSV / parquet as ``prompt_id, question, choices, answer[, subject]``.

    ``choices`` is a list per row (in CSV: a JSON list, or one column per letter ``A, B, ...``).
    ``answer_kind`` says how ``answer`` names the gold option: ``"text"`` (the option's text),
    ``"label"`` (its letter ``A, B, ...``, or a 1-based number as ARC's ``answerKey`` uses) or
    ``"index"`` (0-based). When it is not given, every reading is tried and they must agree:
    the option whose text matches, a letter label, and a 0-based integer index — the index only
    when no option text is a number (with options ``["1", "2", "3"]`` the answer ``"2"`` is the
    option ``"2"``, never the third one). An answer no reading resolves, or one that two readings
    resolve to different options, is an error naming the rows. The gold comes back as a letter;
    ``prompt_id`` defaults to the row number. Every cell is read as the text written.

    ``columns`` is the ``[task.columns]`` map (:mod:`coupled.runner.datasets`): e.g. ARC's
    ``question = "question", choices = "choices.text", labels = "choices.label", answer =
    "answerKey", id = "id"`` — with ``labels`` the answer is looked up in the row's own label
    list (letters or numbers, as ARC mixes them). ``path`` may be a dataset folder (``split``,
    ``dataset_name``).
    """
    path = Path(path)
    raw, df, source = _read_mapped(path, "multiple_choice", columns, split, dataset_name, what)
    path = Path(source)
    mapped_choices = bool(columns) and columns.get("choices") is not None
    if "choices" not in df.columns and not mapped_choices:
        letter_columns = [c for c in LETTERS if c in raw.columns]
        if len(letter_columns) < 2:
            raise _bad(path, "choices", f"missing; give a 'choices' list or columns A, B, ... "
                                        f"or map it ([task.columns] choices = ...) (found "
                                        f"{list(raw.columns)})")
        df["choices"] = [[v for v in row if not task_sources.is_missing(v)]
                         for row in raw[letter_columns].itertuples(index=False)]
    for column in ("question", "answer"):
        if column not in df.columns:
            raise _bad(path, column, f"missing (found {list(raw.columns)}); map it with "
                                     f"[task.columns] {column} = \"<column>\"")
    df = _with_prompt_ids(df.copy(), path)
    df["choices"] = [_as_choice_list(c) for c in df["choices"]]
    short = df["choices"].map(lambda c: c is None or len(c) < 2 or len(c) > len(LETTERS))
    if short.any():
        raise _bad(path, "choices", f"each question needs 2 to {len(LETTERS)} choices", df[short])
    if "labels" in df.columns:
        df["labels"] = [_as_choice_list(c) for c in df["labels"]]
        readings = [_gold_by_labels(a, c, labels) for a, c, labels in
                    zip(df["answer"], df["choices"], df["labels"], strict=True)]
    else:
        readings = [gold_option(a, c, answer_kind) for a, c in zip(df["answer"], df["choices"],
                                                                  strict=True)]
    problems = pd.Series([r if isinstance(r, str) and r.startswith("!") else None
                          for r in readings], index=df.index)
    if problems.notna().any():
        first = problems.dropna().iloc[0][1:]
        kind = f"answer_kind = {answer_kind!r}" if answer_kind else "no answer_kind"
        raise _bad(path, "answer", f"{first} ({kind}; set [task] answer_kind = \"text\", "
                                   f"\"label\" or \"index\" to say how answers are given)",
                   df[problems.notna()][["prompt_id", "answer", "choices"]])
    df["answer"] = readings
    keep = ["prompt_id", "question", "choices", "answer"] + (["subject"] if "subject" in df else [])
    out = df[keep].reset_index(drop=True)
    out["question"] = out["question"].astype(str)
    return out


def _gold_by_labels(answer: object, choices: list[str], labels: list[str] | None) -> str:
    """The gold letter when the row carries its own option labels (ARC: ``A-D`` or ``1-4``)."""
    if labels is None or len(labels) != len(choices):
        return (f"!the row's labels {labels!r} do not give one label per option "
                f"({len(choices)} options)")
    if task_sources.is_missing(answer):
        return "!missing answer"
    text = (answer if isinstance(answer, str) else identifier_text(answer)).strip()
    found = [i for i, label in enumerate(labels) if label.strip() == text]
    if len(found) != 1:
        return (f"!answer {text!r} is {'none' if not found else 'several'} of the row's "
                f"labels {labels}")
    return LETTERS[found[0]]


def _as_choice_list(value: object) -> list[str] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value, parse_int=str, parse_float=str)
        except json.JSONDecodeError:
            return None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list | tuple):
        return None
    return [v if isinstance(v, str) else identifier_text(v) for v in value]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def gold_option(answer: object, choices: list[str], answer_kind: str | None = None) -> str:
    """The gold option's letter, or a problem text starting with ``"!"`` (see
    :func:`load_multiple_choice` for the rules)."""
    if task_sources.is_missing(answer):
        return "!missing answer"
    text = answer if isinstance(answer, str) else identifier_text(answer)
    stripped = text.strip()
    n = len(choices)
    by_text = {i for i, c in enumerate(choices) if c.strip() == stripped} if stripped else set()
    by_label: set[int] = set()
    if len(stripped) == 1 and stripped.upper() in LETTERS[:n]:
        by_label = {LETTERS.index(stripped.upper())}
    by_index: set[int] = set()
    integer = stripped.isdigit()
    if answer_kind == "text":
        found = by_text
    elif answer_kind == "label":
        found = by_label or ({int(stripped) - 1} if integer and 1 <= int(stripped) <= n else set())
    elif answer_kind == "index":
        found = {int(stripped)} if integer and int(stripped) < n else set()
    else:
        if integer and int(stripped) < n and not any(_is_number(c) for c in choices):
            by_index = {int(stripped)}
        found = by_text | by_label | by_index
        if len(found) > 1:
            return (f"!answer {text!r} is ambiguous: it reads as option(s) "
                    f"{sorted(LETTERS[i] for i in found)}")
    if len(found) != 1:
        if len(found) > 1:
            return f"!answer {text!r} matches several options {sorted(LETTERS[i] for i in found)}"
        return f"!answer {text!r} names none of the {n} options"
    return LETTERS[found.pop()]


def load_open_prompts(path: str | Path, *, columns: dict | None = None,
                      split: str | None = None, dataset_name: str | None = None,
                      task_type: str = "open", what: str = "task") -> pd.DataFrame:
    """Open prompts as ``prompt_id, prompt[, subject]``; with ``task_type = "generate"`` also
    the gold ``answer`` (its text, as written). Sources and ``columns`` as in
    :func:`load_multiple_choice`."""
    path = Path(path)
    raw, df, source = _read_mapped(path, task_type, columns, split, dataset_name, what)
    path = Path(source)
    needed = ("prompt", "answer") if task_type == "generate" else ("prompt",)
    for column in needed:
        if column not in df.columns:
            raise _bad(path, column, f"missing (found {list(raw.columns)}); map it with "
                                     f"[task.columns] {column} = \"<column>\"")
    df = _with_prompt_ids(df.copy(), path)
    for column in needed:
        empty = df[column].isna() | (df[column].astype(str).str.strip() == "")
        if empty.any():
            raise _bad(path, column, f"empty {column}s", df[empty])
    keep = ["prompt_id", *needed] + (["subject"] if "subject" in df.columns else [])
    return df[keep].reset_index(drop=True)


def load_task(task, *, fewshot_pool: bool = False) -> pd.DataFrame:
    """The rows of a ``TaskSpec`` (its type, path, column map, split); ``fewshot_pool=True``
    reads its few-shot source instead (``fewshot_path`` or ``fewshot_split``; by default the
    task's own rows)."""
    columns = task.columns.model_dump() if task.columns is not None else None
    path, split, what = task.path, task.split, "task"
    if fewshot_pool and (task.fewshot_path or task.fewshot_split):
        path = task.fewshot_path or task.path
        split = task.fewshot_split if task.fewshot_split else (
            None if task.fewshot_path else task.split)
        what = "few-shot"
    if task.type == "multiple_choice":
        return load_multiple_choice(path, task.answer_kind, columns=columns, split=split,
                                    dataset_name=task.dataset_name, what=what)
    rows = load_open_prompts(path, columns=columns, split=split,
                             dataset_name=task.dataset_name, task_type=task.type, what=what)
    if task.type == "generate":  # a gold the scorer cannot compare with: the file's error
        from coupled.runner.scorers import Scorer

        scorer = Scorer(task.scorer, task.regex, task.tolerance)
        problems = rows["answer"].map(scorer.check_gold)
        if problems.notna().any():
            raise _bad(Path(path), "answer", f"{problems.dropna().iloc[0]} (scorer = "
                                            f"{task.scorer!r})", rows[problems.notna()])
    return rows


def fewshot_examples(task_name: str, prompts: pd.DataFrame, pool: pd.DataFrame, k: int,
                     same_pool: bool) -> list[list[int]]:
    """For each prompt, the ``k`` pool rows shown before it, fixed by the prompt's key.

    The choice is a function of (task, prompt id) and the pool's content, through the project's
    blake2b ``text_hash`` (no RNG whose stream could change between library versions): it
    depends on neither the file order, the model, the seed nor the mode, and a longer ``limit``
    leaves earlier prompts' examples unchanged. Pools of up to :data:`_EXACT_POOL` rows rank every
    candidate by a hash of (task, prompt id, example id); larger ones probe positions of the
    pool sorted by id with hashes of (task, prompt id, j), j = 0, 1, ... — O(k) per prompt,
    where ranking all would be quadratic (MMLU's 14k questions). Never the question itself:
    from the task's own rows the same prompt id is left out; from any pool a row with the same
    question (or prompt) text is too.
    """
    if k == 0:
        return [[] for _ in range(len(prompts))]
    field = "question" if "question" in prompts.columns else "prompt"
    pool_ids, pool_texts = list(pool["prompt_id"]), list(pool[field])
    order = sorted(range(len(pool)), key=pool_ids.__getitem__)  # by id, not file order
    by_text: dict[str, set[int]] = {}
    for i, ptext in enumerate(pool_texts):
        by_text.setdefault(ptext.strip(), set()).add(i)
    position = {pid: i for i, pid in enumerate(pool_ids)}
    chosen = []
    for prompt_id, text in zip(prompts["prompt_id"], prompts[field], strict=True):
        excluded = set(by_text.get(text.strip(), ()))
        if same_pool and prompt_id in position:
            excluded.add(position[prompt_id])
        if len(pool) - len(excluded) < k:
            raise ValueError(f"task {task_name!r}: fewshot = {k} but prompt {prompt_id!r} has "
                             f"only {len(pool) - len(excluded)} other example(s) to draw from")
        key = "\x1f".join(("fewshot", task_name, prompt_id))
        if len(pool) <= _EXACT_POOL:
            candidates = [i for i in range(len(pool)) if i not in excluded]
            candidates.sort(key=lambda i: (text_hash(f"{key}\x1f{pool_ids[i]}"), pool_ids[i]))
            chosen.append(candidates[:k])
            continue
        picked: list[int] = []
        probe = 0
        while len(picked) < k:  # ends: at least k rows are not excluded
            i = order[text_hash(f"{key}\x1f#{probe}") % len(pool)]
            probe += 1
            if i not in excluded and i not in picked:
                picked.append(i)
        chosen.append(picked)
    return chosen


_EXACT_POOL = 256


def fewshot_block(pool: pd.DataFrame, rows: list[int]) -> str:
    """The solved examples as text before the question (``Answer: <letter or gold>``)."""
    parts = []
    for i in rows:
        example = pool.iloc[i]
        if "question" in pool.columns:
            turn = multiple_choice_user_turn(example["question"], list(example["choices"]))
        else:
            turn = example["prompt"]
        parts.append(f"{turn}\nAnswer: {example['answer']}")
    return "".join(f"{part}\n\n" for part in parts)


def multiple_choice_system_prompt(n_choices: int) -> str:
    """The paper's Table 3 system prompt, adapted to ``n_choices`` options (A, B, C, ...)."""
    quoted = [f"'{letter}'" for letter in LETTERS[:n_choices]]
    letters = (", ".join(quoted[:-1]) + ", or " + quoted[-1]) if n_choices > 2 else " or ".join(
        quoted)
    return prompt_text("multiple_choice_system").format(letters=letters)


def multiple_choice_user_turn(question: str, choices: list[str]) -> str:
    options = "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))
    return f"{question}\n\n{options}"


# Robust answer parsing. First, a reply that names two or more distinct options (stand-alone
# capital letters among the options, quoted or not: "A: A\nB: B...", "B,C,D", "A or B") is not
# an answer. Then, in order: the reply is (or starts with) a lone letter, possibly wrapped as
# "(B)", "B.", "**B**", "B) Paris"; then "answer is B" / "Answer: (B)"; then exactly one distinct
# stand-alone capital letter among the options anywhere in the reply.
# Named: a capital letter with no letter or digit beside it, not part of a contraction ("I'm",
# "O'Neil"): the letters a reader would take as options.
_NAMED = re.compile(r"(?<![A-Za-z0-9])(?<![A-Za-z]')([A-Z])(?![A-Za-z0-9])(?!'[A-Za-z])")
_LEADING = re.compile(r"^[\s*_`'\"(\[]*([A-Z])(?![A-Za-z0-9])")
_STATED = re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*[*_`'\"(\[]*([A-Z])(?![A-Za-z0-9])",
                     re.IGNORECASE)
_LONE = re.compile(r"(?<![A-Za-z0-9'])([A-Z])(?![A-Za-z0-9'])")


def parse_choice(response: str, n_choices: int) -> str | None:
    """The option letter a reply gives, or None when it cannot be read unambiguously."""
    valid = LETTERS[:n_choices]
    if len({m.group(1) for m in _NAMED.finditer(response)} & set(valid)) > 1:
        return None  # several options named: a list of the options, or a hedge
    for pattern in (_LEADING, _STATED):
        match = pattern.search(response)
        if match and match.group(1).upper() in valid:
            return match.group(1).upper()
    lone = {m.group(1) for m in _LONE.finditer(response)} & set(valid)
    return lone.pop() if len(lone) == 1 else None


def score_choice(response: str, answer: str, n_choices: int) -> tuple[float, bool]:
    """(score, parse_failed): 1 for the right letter, 0 otherwise; unparseable scores 0."""
    letter = parse_choice(response, n_choices)
    return (float(letter == answer), letter is None)


def judge_user_turn(prompt: str, answer_a: str, answer_b: str) -> str:
    return prompt_text("judge_user").format(prompt=prompt, answer_a=answer_a, answer_b=answer_b)


# Letters are case-sensitive (a lowercase "a" is an article); "tie" is not.
_VERDICT = re.compile(r"\[\[\s*(A|B|(?i:tie))\s*\]\]|\b((?i:tie))\b|(?<![A-Za-z])(A|B)(?![A-Za-z])")


def parse_verdict(text: str) -> str | None:
    """The judge's verdict about the answers *as shown*: 'A', 'B', 'tie', or None if unreadable.

    The first verdict-like token decides ("[[A]]", "'B'", "Tie", "Assistant A is better").
    """
    match = _VERDICT.search(text)
    if not match:
        return None
    word = next(g for g in match.groups() if g)
    return "tie" if word.lower() == "tie" else word.upper()


def shown_first(task: str, prompt_id: str, seed: int, model_a: str, model_b: str) -> str:
    """Which model of the canonical pair the judge sees as 'Assistant A': 'a' or 'b'.

    A reproducible coin from the key (not from the mode, so both modes show a pair's answers in
    the same order and the order adds no noise to the coupled-vs-independent comparison).
    """
    coin = text_hash("\x1f".join((task, prompt_id, str(seed), model_a, model_b))) & 1
    return "a" if coin == 0 else "b"


def outcome_from_verdict(verdict: str | None, first: str) -> tuple[str, bool]:
    """(outcome about the canonical pair, parse_failed). Unreadable verdicts count as a tie."""
    if verdict is None:
        return "tie", True
    if verdict == "tie":
        return "tie", False
    shown_a_is_model_a = first == "a"
    return ("a" if (verdict == "A") == shown_a_is_model_a else "b"), False


def uses_chat_template(tokenizer, chat_template: bool | None = None) -> bool:
    """Whether prompts are rendered with the tokenizer's chat template: ``chat_template`` (a
    model's config key) when set — true with a tokenizer that has none is an error — else
    whether it has one."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if chat_template and not has:
        raise ValueError(f"chat_template = true but the tokenizer of "
                         f"{getattr(tokenizer, 'name_or_path', 'this model')!r} has no chat "
                         f"template; set chat_template = false for plain prompts")
    return has if chat_template is None else chat_template


def render_prompt(tokenizer, system: str | None, user: str, plain_answer_cue: str,
                  chat_template: bool | None = None) -> str:
    """The text to feed a model: its chat template with the system prompt, else a plain prompt.

    Templates without a system role (they raise, or drop the system text) get the system prompt
    folded into the user turn; tokenizers with no chat template, or ``chat_template=False``, get
    ``system \\n\\n user \\n\\n plain_answer_cue``.
    """
    if not uses_chat_template(tokenizer, chat_template):
        parts = [p for p in (system, user, plain_answer_cue) if p]
        return "\n\n".join(parts)
    if system:
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "system", "content": system}, {"role": "user", "content": user}],
                tokenize=False, add_generation_prompt=True)
            if system in text:
                return text
        except Exception:  # jinja raises for "system role not supported": fold it instead
            pass
        user = f"{system}\n\n{user}"
    return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                         add_generation_prompt=True)
