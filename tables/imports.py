"""Scores tables from other tools' logs: lm-evaluation-harness samples and inspect_ai ``.eval``.

Both tools sample every model with its own noise, so imported rows are ``mode =
"independent"`` with ``coupling = "none"`` (:data:`coupled.tables.NO_SHARED_NOISE`): the
paired, question-clustered tests and the rank-sets apply; analyses that need shared noise
(variance reduction) refuse them. Only the standard library and pandas are used — neither
lm-eval nor inspect_ai is needed to import their logs.

**lm-eval** (``lm_eval run … --log_samples --output_path OUT``) writes, per model,
``OUT/<model>/results_<date>.json`` and one ``samples_<task>_<date>.jsonl`` per task with the
same ``<date>`` (``lm_eval.loggers.EvaluationTracker``). Fields read from each samples line:
``doc_id`` (-> ``prompt_id``), ``doc`` (its ``subject``, and ``choices`` for the letter
scorer), ``target``, ``arguments.gen_args_<i>.arg_0`` (the rendered prompt) and ``arg_1`` (the
continuation of choice ``i``), ``resps`` (``resps[i][k]``: request ``i``, repeat ``k``) and
``filter``. From the results file: ``model_name`` (else ``config.model_args``' ``pretrained``)
and ``configs[<task>].output_type`` / ``target_delimiter``.

* ``generate_until``: one request per doc; its ``repeats`` replies ``resps[0][0..K-1]`` become
  seeds ``0..K-1``, each re-scored with a named scorer (:func:`exact_match`,
  :func:`regex_match`, or any ``(response, target, doc) -> (score, parse_failed)``). lm-eval's
  own per-sample metric covers only the *filtered* response (one per doc), so it is not used.
  The gold is what lm-eval scores against: ``choices[target]`` when the task sets
  ``doc_to_choice`` (read from ``configs``; a Jinja template is rendered with ``jinja2`` as
  lm-eval does), any of several targets when ``target`` is a list.
  A doc logged once per filter (``filter_list`` with several entries) is one set of replies.
* ``multiple_choice`` (MMLU, ARC, HellaSwag as lm-eval ships them): scored by log-likelihood,
  deterministic, so one seed (``0``); ``acc`` = the choice of highest log-likelihood is gold,
  ``acc_norm`` = the same per character of the choice (lm-eval's definitions, recomputed from
  ``resps``).
* ``loglikelihood``: ``acc`` = the continuation is the greedy one (``resps[0][0][1]``).

**inspect_ai** ``.eval`` logs are zip archives of JSON (``inspect_ai.log._recorders.eval``):
``header.json`` (an ``EvalLog`` without samples: ``status``, ``eval.task``, ``eval.model``,
``eval.config.epochs``) and ``samples/<id>_epoch_<n>.json`` (one ``EvalSample``: ``id``,
``epoch``, ``input``, ``target``, ``output.completion``, ``scores[<scorer>].value``,
``metadata.subject``, ``error``). A log still being written has no ``header.json``; its spec is
in ``_journal/start.json``. ``--log-format json`` logs hold the same objects in one JSON file
(``samples`` inline). Epoch ``n`` becomes seed ``n - 1``; score values map to numbers as
inspect's ``value_to_float`` does (``C`` 1, ``P`` 0.5, ``I``/``N`` 0, yes/true 1, no/false 0,
numbers as numbers); ``parse_failed`` marks inspect's "no answer" (``N``).

Bad input raises :class:`coupled.tables.TableError` naming the file (and line / zip member).
"""

from __future__ import annotations

import json
import math
import os
import re
import string
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from coupled.tables.schema import NO_SHARED_NOISE, TableError, validate

IMPORT_MODE = "independent"
Scorer = Callable[[str, str, dict], tuple[float, bool]]

# lm-eval writes samples_<task>_<date>.jsonl and results_<date>.json with the same <date>
# (datetime.isoformat() with ':' replaced by '-'); task names may contain underscores.
_SAMPLES_NAME = re.compile(r"^samples_(?P<task>.+)_(?P<date>\d{4}-\d{2}-\d{2}T[0-9.\-]+)\.jsonl$")
_CHOICE_METRICS = ("acc", "acc_norm")


# --- scorers for generated replies -----------------------------------------------------------

def exact_match(*, ignore_case: bool = False, ignore_punctuation: bool = False,
                regexes_to_ignore: tuple[str, ...] = (), strip: bool = True) -> Scorer:
    """lm-eval's ``exact_match`` (reply == target after the same optional normalisations:
    ``regexes_to_ignore`` removed, case folded, punctuation removed) plus ``strip`` of the
    surrounding whitespace, which a raw generated reply carries and lm-eval's filters remove."""
    patterns = [re.compile(p) for p in regexes_to_ignore]
    table = str.maketrans("", "", string.punctuation)

    def normalise(text: str) -> str:
        for pattern in patterns:
            text = pattern.sub("", text)
        if ignore_case:
            text = text.lower()
        if ignore_punctuation:
            text = text.translate(table)
        return text.strip() if strip else text

    def score(response: str, target: str, doc: dict) -> tuple[float, bool]:
        return float(normalise(response) == normalise(target)), False

    score.__name__ = "exact_match"
    return score


def regex_match(pattern: str, *, group: int = 1, ignore_case: bool = False) -> Scorer:
    """The first match of ``pattern`` in the reply (its ``group``, as lm-eval's ``regex``
    filter takes it) compared with the target; a reply with no match scores 0 and is counted
    in ``parse_failed``, never dropped."""
    compiled = re.compile(pattern)
    if group > compiled.groups:
        raise ValueError(f"regex {pattern!r} has {compiled.groups} group(s); group {group} "
                         "asked for")

    def score(response: str, target: str, doc: dict) -> tuple[float, bool]:
        match = compiled.search(response)
        if match is None or match.group(group) is None:
            return 0.0, True
        found, wanted = match.group(group).strip(), target.strip()
        if ignore_case:
            found, wanted = found.lower(), wanted.lower()
        return float(found == wanted), False

    score.__name__ = "regex_match"
    return score


SCORERS: dict[str, Callable[[], Scorer]] = {"exact_match": exact_match}


def _resolve_scorer(scorer: str | Scorer) -> tuple[Scorer, str]:
    if callable(scorer):
        return scorer, getattr(scorer, "__name__", "custom")
    if scorer not in SCORERS:
        raise ValueError(f"unknown scorer {scorer!r}; known: {sorted(SCORERS)} (or pass a "
                         "callable (response, target, doc) -> (score, parse_failed))")
    return SCORERS[scorer](), scorer


# --- lm-eval ---------------------------------------------------------------------------------

def read_lm_eval_samples(path: str | os.PathLike, *, scorer: str | Scorer = "exact_match",
                         choice_metric: str = "acc", model: str | None = None,
                         tasks: list[str] | None = None) -> pd.DataFrame:
    """A scores table from lm-eval ``samples_*.jsonl`` files (a file, or a folder searched
    recursively, e.g. an ``--output_path``), every repeat of every doc as a row.

    ``scorer`` re-scores generated replies (``generate_until``); ``choice_metric`` (``acc`` or
    ``acc_norm``) scores log-likelihood multiple choice. ``model`` overrides the model name
    (otherwise read from the ``results_<date>.json`` beside each samples file); ``tasks``
    keeps only those tasks. Columns: the scores key, ``score``, ``parse_failed``,
    ``response``, ``target``, ``prompt``, ``scorer``, and ``subject`` when the docs have one
    (:func:`fill_subject`).
    """
    if choice_metric not in _CHOICE_METRICS:
        raise ValueError(f"choice_metric must be one of {_CHOICE_METRICS}, got {choice_metric!r}")
    score_reply, scorer_name = _resolve_scorer(scorer)
    root = Path(path)
    files = _samples_files(root)
    frames, seen = [], {}
    for file in files:
        task = _SAMPLES_NAME.match(file.name).group("task")
        if tasks is not None and task not in tasks:
            continue
        results = _results_beside(file)
        name = model or _lm_eval_model(results, file)
        _claim_run(seen, task, name, file, "run")
        config = (results or {}).get("configs", {}).get(task, {})
        rows = list(_lm_eval_rows(file, task, name, config, score_reply, scorer_name,
                                  choice_metric))
        if not rows:
            raise TableError(str(file), None, "holds no samples")
        frames.append(pd.DataFrame(rows))
    if not frames:
        raise TableError(str(root), None, f"no samples file of the tasks {tasks}")
    return _scores_of_runs(frames, root)


def _claim_run(seen: dict[tuple[str, str], Path], task: str, model: str, file: Path,
               unit: str) -> None:
    """Record that ``file`` holds ``task`` of ``model``; a second file with both is an error
    (both readers: two runs of one model and task would give each key twice)."""
    if (task, model) in seen:
        raise TableError(str(file), None, f"task {task!r} of model {model!r} is also in "
                         f"{seen[task, model]}; import one {unit} per model and task")
    seen[task, model] = file


def _scores_of_runs(frames: list[pd.DataFrame], root: Path) -> pd.DataFrame:
    """The one validated scores table of every imported run (both readers end here)."""
    return validate(fill_subject(pd.concat(frames, ignore_index=True)), "scores", str(root))


def fill_subject(table: pd.DataFrame) -> pd.DataFrame:
    """No ``subject`` column when no row has one; otherwise rows without one get their task's
    name (a subject is a non-empty identifier, and an lm-eval group's subtask is its subject,
    as MMLU's are)."""
    if "subject" not in table.columns:
        return table
    subject = table["subject"].where(table["subject"].notna() & (table["subject"] != ""))
    if subject.isna().all():
        return table.drop(columns="subject")
    return table.assign(subject=subject.fillna(table["task"]))


def _samples_files(root: Path) -> list[Path]:
    if root.is_file():
        if not _SAMPLES_NAME.match(root.name):
            raise TableError(str(root), None, "is not an lm-eval samples file (expected "
                             "samples_<task>_<date>.jsonl, written by --log_samples)")
        return [root]
    if not root.is_dir():
        raise TableError(str(root), None, "no such file or directory")
    files = sorted(p for p in root.rglob("samples_*.jsonl") if _SAMPLES_NAME.match(p.name))
    if not files:
        raise TableError(str(root), None, "holds no lm-eval samples_<task>_<date>.jsonl file "
                         "(run lm-eval with --log_samples --output_path)")
    return files


def _results_beside(samples: Path) -> dict | None:
    date = _SAMPLES_NAME.match(samples.name).group("date")
    results = samples.with_name(f"results_{date}.json")
    if not results.is_file():
        return None
    try:
        data = json.loads(results.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TableError(str(results), None, f"cannot be read as JSON: {error}") from error
    if not isinstance(data, dict):
        raise TableError(str(results), None, "is not an lm-eval results file (not an object)")
    return data


def _lm_eval_model(results: dict | None, samples: Path) -> str:
    if results is None:
        raise TableError(str(samples), None,
                         "no results_<date>.json beside it with the same date: lm-eval writes "
                         "the model name there (pass model=/--model to name it)")
    name = results.get("model_name")
    if not name:
        args = (results.get("config") or {}).get("model_args")
        if isinstance(args, str):  # older lm-eval: "pretrained=NAME,dtype=..."
            args = dict(part.split("=", 1) for part in args.split(",") if "=" in part)
        name = (args or {}).get("pretrained") if isinstance(args, dict) else None
    if not name:
        raise TableError(str(samples), None, "its results file names no model (no model_name, "
                         "no config.model_args pretrained); pass model=/--model")
    return str(name)


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        handle = path.open(encoding="utf-8")
    except OSError as error:
        raise TableError(str(path), None, f"cannot be read: {error}") from error
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise TableError(f"{path}, line {number}", None,
                                 f"is not valid JSON ({error.msg} at column {error.colno})"
                                 ) from error
            if not isinstance(record, dict):
                raise TableError(f"{path}, line {number}", None, "is not a JSON object")
            yield number, record


def _field(record: dict, name: str, where: str) -> Any:
    if name not in record:
        raise TableError(where, name, f"missing (fields present: {sorted(record)[:12]}); is "
                         "this a samples file written by lm-eval --log_samples?")
    return record[name]


def _output_type(config: dict, arguments: dict, where: str) -> str:
    kind = config.get("output_type")
    if kind:
        return kind
    # No results file (model given by hand): the shape of the requests tells.
    first = arguments.get("gen_args_0", {})
    if isinstance(first.get("arg_1"), dict):
        return "generate_until"
    return "multiple_choice" if len(arguments) > 1 else "loglikelihood"


def _lm_eval_rows(file: Path, task: str, model: str, config: dict, score_reply: Scorer,
                  scorer_name: str, choice_metric: str) -> Iterator[dict]:
    replies_of: dict[str, tuple[int, list]] = {}
    for number, record in _jsonl(file):
        where = f"{file}, line {number}"
        doc_id = _field(record, "doc_id", where)
        resps = _field(record, "resps", where)
        arguments = _field(record, "arguments", where)
        doc = record.get("doc") if isinstance(record.get("doc"), dict) else {}
        target = str(_field(record, "target", where))
        if not isinstance(resps, list) or not resps or not isinstance(arguments, dict):
            raise TableError(where, "resps", "must be a non-empty list of per-request "
                             "replies, with 'arguments' an object")
        prompt_id = str(doc_id)
        # One line per filter of the same doc: the raw replies are the same, import them once.
        if prompt_id in replies_of:
            first_line, first_resps = replies_of[prompt_id]
            if first_resps != resps:
                raise TableError(where, "resps", f"doc_id {prompt_id} appears again (first on "
                                 f"line {first_line}) with different replies")
            continue
        replies_of[prompt_id] = (number, resps)
        kind = _output_type(config, arguments, where)
        prompt = arguments.get("gen_args_0", {}).get("arg_0")
        base = {"task": task, "prompt_id": prompt_id, "mode": IMPORT_MODE,
                "coupling": NO_SHARED_NOISE, "model": model, "target": target,
                "prompt": None if prompt is None else str(prompt),
                "subject": None if doc.get("subject") is None else str(doc["subject"])}
        if kind == "generate_until":
            if len(resps) != 1 or not isinstance(resps[0], list) or not resps[0]:
                raise TableError(where, "resps", "a generate_until doc must have one request "
                                 f"with its repeats (a list of replies); got {str(resps)[:80]}")
            golds = _generation_golds(target, config, doc, where)
            base["target"] = " | ".join(golds)
            for seed, reply in enumerate(resps[0]):
                if not isinstance(reply, str):
                    raise TableError(where, "resps", f"repeat {seed} is not text: {reply!r}")
                # Several golds (lm-eval's multiple targets): right if any is, as lm-eval does.
                results = [score_reply(reply, gold, doc) for gold in golds]
                score = max(float(r[0]) for r in results)
                yield {**base, "seed": seed, "score": score,
                       "parse_failed": all(bool(r[1]) for r in results), "response": reply,
                       "scorer": scorer_name}
        elif kind in ("multiple_choice", "loglikelihood"):
            score, response = _loglikelihood_score(kind, resps, arguments, target, config,
                                                   choice_metric, where)
            yield {**base, "seed": 0, "score": score, "parse_failed": False,
                   "response": response,
                   "scorer": choice_metric if kind == "multiple_choice" else "acc"}
        else:
            raise TableError(where, None, f"task {task!r} has output_type {kind!r}: only "
                             "generate_until, multiple_choice and loglikelihood are scored per "
                             "sample")


def _generation_golds(target: str, config: dict, doc: dict, where: str) -> list[str]:
    """The gold answer text(s) of a generate_until doc, as lm-eval's process_results has them.

    The samples file stores ``str(doc_to_target(doc))``: with ``doc_to_choice`` set that is an
    index into the choices (lm-eval then scores against ``choices[index]``), and a list target
    (lm-eval's multiple targets) is written as a Python list literal.
    """
    import ast

    try:
        value = ast.literal_eval(target)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = target
    choice_spec = config.get("doc_to_choice")
    if choice_spec is None:
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return value
        return [target]
    choices = _doc_choices(choice_spec, doc, where)
    indices = value if isinstance(value, list) else [value]
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(choices)
               for i in indices):
        raise TableError(where, "target", f"with doc_to_choice set, the target must index the "
                         f"{len(choices)} choices; got {target!r}")
    return [str(choices[i]) for i in indices]


def _doc_choices(spec: Any, doc: dict, where: str) -> list:
    # lm_eval.api.task.ConfigurableTask.doc_to_choice: a doc field, a Jinja template rendering
    # a list literal (rendered as lm_eval.utils.apply_template does), a list, or a dict.
    import ast

    if isinstance(spec, list):
        return spec
    if isinstance(spec, dict):
        return list(spec.values())
    if isinstance(spec, str):
        if spec in doc:
            choices = doc[spec]
        else:
            import jinja2

            env = jinja2.Environment(loader=jinja2.BaseLoader, undefined=jinja2.StrictUndefined,
                                     keep_trailing_newline=True)
            env.filters["regex_replace"] = lambda text, pattern, repl, count=0: re.sub(
                pattern, repl, text, count=count)
            try:
                choices = ast.literal_eval(env.from_string(spec).render(**doc))
            except (jinja2.TemplateError, ValueError, SyntaxError, TypeError) as error:
                raise TableError(where, "doc_to_choice", f"the task's doc_to_choice {spec!r} "
                                 f"cannot be evaluated on this doc ({error})") from error
        if isinstance(choices, list | tuple):
            return list(choices)
    raise TableError(where, "doc_to_choice", f"the task's doc_to_choice {str(spec)[:80]!r} is "
                     "not a doc field, a template, a list or a dict (a Python function cannot "
                     "be re-run here); the gold choice is unknown")


def _loglikelihood_score(kind: str, resps: list, arguments: dict, target: str, config: dict,
                         choice_metric: str, where: str) -> tuple[float, str]:
    # resps[i][0] is (log-likelihood, is_greedy) of request i, stringified by lm-eval.
    try:
        pairs = [(float(r[0][0]), str(r[0][1]) == "True") for r in resps]
    except (TypeError, ValueError, IndexError) as error:
        raise TableError(where, "resps", "log-likelihood replies must be "
                         f"[[loglik, is_greedy]] per request; got {str(resps)[:80]}") from error
    if kind == "loglikelihood":
        return float(pairs[0][1]), str(pairs[0][0])
    lls = [ll for ll, _ in pairs]
    if choice_metric == "acc_norm":
        delimiter = config.get("target_delimiter", " ")
        lengths = []
        for i in range(len(lls)):
            choice = str(arguments.get(f"gen_args_{i}", {}).get("arg_1", ""))
            # lm-eval normalises by the length of the choice text, without the delimiter.
            if delimiter and choice.startswith(delimiter):
                choice = choice[len(delimiter):]
            lengths.append(max(len(choice), 1))
        lls = [ll / n for ll, n in zip(lls, lengths, strict=True)]
    gold = _gold_indices(target, len(lls), where)
    best = max(range(len(lls)), key=lls.__getitem__)
    return float(best in gold), str(best)


def _gold_indices(target: str, n_choices: int, where: str) -> set[int]:
    try:
        value = json.loads(target)
    except json.JSONDecodeError:
        value = None
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, int) and 0 <= v < n_choices for v in values):
        raise TableError(where, "target", f"must be the index of the gold choice (0..{n_choices - 1}"
                         f") or a list of them, got {target!r}")
    return set(values)


# --- inspect_ai ------------------------------------------------------------------------------

_ZIP_ZSTANDARD = 93  # APPNOTE 4.4.5 compression method 93; stdlib zipfile reads it from 3.14
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")


def read_inspect_log(path: str | os.PathLike, *, scorer: str | None = None,
                     score_key: str | None = None, allow_incomplete: bool = False
                     ) -> pd.DataFrame:
    """A scores table from inspect_ai logs (a ``.eval``/``.json`` log, or a folder searched
    recursively), one row per sample and epoch.

    ``scorer`` picks the scorer when the samples carry several; ``score_key`` the entry of a
    dict-valued score. A log whose status is not ``success``, or a sample that ended in an
    error, is refused unless ``allow_incomplete`` (then the errored samples are left out).
    Columns: the scores key, ``score``, ``parse_failed``, ``response``, ``target``,
    ``prompt``, ``scorer``, and ``subject`` when the samples' metadata has one.
    """
    root = Path(path)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        # logs.json / listing.json: the log folder's manifest for inspect's viewer, not a log.
        files = sorted(p for p in root.rglob("*") if p.suffix in (".eval", ".json")
                       and p.is_file() and not p.name.startswith(".")
                       and p.name not in ("logs.json", "listing.json"))
        if not files:
            raise TableError(str(root), None, "holds no inspect_ai log (*.eval or *.json)")
    else:
        raise TableError(str(root), None, "no such file or directory")
    frames, seen = [], {}
    for file in files:
        header, samples = _inspect_log(file)
        rows = _inspect_rows(file, header, samples, scorer, score_key, allow_incomplete)
        _claim_run(seen, rows[0]["task"], rows[0]["model"], file, "log")
        frames.append(pd.DataFrame(rows))
    return _scores_of_runs(frames, root)


def _inspect_log(file: Path) -> tuple[dict, list[tuple[str, dict]]]:
    """(header, [(where, sample), ...]) of one log file."""
    if file.suffix == ".json":
        data = _json_bytes(_read_bytes(file), str(file))
        if not isinstance(data, dict) or "eval" not in data:
            raise TableError(str(file), None, "is not an inspect_ai log (no 'eval' spec)")
        samples = data.get("samples") or []
        return data, [(f"{file}, samples[{i}]", s) for i, s in enumerate(samples)]
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError) as error:
        raise TableError(str(file), None, f"is not a readable .eval (zip) log: {error}"
                         ) from error
    with archive:
        names = set(archive.namelist())
        if "header.json" in names:
            header = _json_bytes(_member(archive, file, "header.json"), f"{file}:header.json")
        elif "_journal/start.json" in names:  # still being written (or the writer died)
            start = _json_bytes(_member(archive, file, "_journal/start.json"),
                                f"{file}:_journal/start.json")
            header = {**start, "status": "started"}
        else:
            raise TableError(str(file), None, "is not an inspect_ai .eval log (no header.json "
                             "and no _journal/start.json)")
        if not isinstance(header, dict) or not isinstance(header.get("eval"), dict):
            raise TableError(f"{file}:header.json", "eval", "missing: not an inspect_ai log")
        samples = []
        for name in sorted(n for n in names if n.startswith("samples/") and n.endswith(".json")):
            where = f"{file}:{name}"
            samples.append((where, _json_bytes(_member(archive, file, name), where)))
    return header, samples


def _read_bytes(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as error:
        raise TableError(str(file), None, f"cannot be read: {error}") from error


def _json_bytes(data: bytes, where: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TableError(where, None, f"is not valid JSON: {error}") from error


def _member(archive: zipfile.ZipFile, file: Path, name: str) -> bytes:
    info = archive.getinfo(name)
    try:
        if info.compress_type != _ZIP_ZSTANDARD or hasattr(zipfile, "ZIP_ZSTANDARD"):
            return archive.read(info)
        return _read_zstd_member(archive, info)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError,
            RuntimeError) as error:
        raise TableError(f"{file}:{name}", None, f"cannot be decompressed: {error}") from error


def _read_zstd_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    # inspect_ai writes zstd-compressed members (method 93), which zipfile reads only from
    # Python 3.14 on. By hand, per APPNOTE 4.3.7: skip the local file header, decompress the
    # member's bytes with zstandard (several frames may follow each other), check the CRC-32.
    try:
        import zstandard
    except ImportError as error:  # a core dependency; say what to do if it is missing
        raise RuntimeError("this .eval log is zstd-compressed: pip install zstandard") from error
    handle = archive.fp
    handle.seek(info.header_offset)
    header = handle.read(_LOCAL_HEADER.size)
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != b"PK\x03\x04":
        raise zipfile.BadZipFile("bad local file header")
    handle.seek(fields[9] + fields[10], os.SEEK_CUR)  # file name, extra field
    raw = handle.read(info.compress_size)
    try:
        data = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True).read()
    except zstandard.ZstdError as error:
        raise zipfile.BadZipFile(f"zstd: {error}") from error
    if len(data) != info.file_size or zlib.crc32(data) != info.CRC:
        raise zipfile.BadZipFile("CRC-32 or size mismatch after zstd decompression")
    return data


def _inspect_rows(file: Path, header: dict, samples: list[tuple[str, dict]],
                  scorer: str | None, score_key: str | None, allow_incomplete: bool
                  ) -> list[dict]:
    spec = header["eval"]
    status = header.get("status", "started")
    if status != "success" and not allow_incomplete:
        raise TableError(str(file), "status", f"the eval's status is {status!r}, not "
                         "'success': its samples may be partial (allow_incomplete / "
                         "--allow-incomplete imports what is there)")
    task, model = spec.get("task"), spec.get("model")
    if not task or not model:
        raise TableError(str(file), "eval", "names no task or no model")
    if not samples:
        raise TableError(str(file), None, "holds no samples (was it run with log_samples off?)")
    rows = []
    for where, sample in samples:
        if not isinstance(sample, dict):
            raise TableError(where, None, "is not a JSON object")
        if sample.get("error"):
            if allow_incomplete:
                continue
            message = sample["error"].get("message") if isinstance(sample["error"], dict) \
                else sample["error"]
            raise TableError(where, "error", f"the sample ended in an error ({str(message)[:80]}"
                             "); allow_incomplete / --allow-incomplete leaves such samples out")
        sample_id, epoch = _field(sample, "id", where), _field(sample, "epoch", where)
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
            raise TableError(where, "epoch", f"must be an integer >= 1, got {epoch!r}")
        name, value = _pick_score(sample.get("scores") or {}, scorer, score_key, where)
        score, failed = _inspect_value(value, where)
        metadata = sample.get("metadata") if isinstance(sample.get("metadata"), dict) else {}
        target = sample.get("target")
        prompt = sample.get("input")
        output = sample.get("output") if isinstance(sample.get("output"), dict) else {}
        rows.append({
            "task": str(task), "prompt_id": str(sample_id), "seed": epoch - 1,
            "mode": IMPORT_MODE, "coupling": NO_SHARED_NOISE, "model": str(model),
            "score": score, "parse_failed": failed,
            "response": str(output.get("completion") or ""),
            "target": " | ".join(map(str, target)) if isinstance(target, list) else str(target),
            "prompt": prompt if isinstance(prompt, str) else json.dumps(prompt)[:2000],
            "scorer": name,
            "subject": None if metadata.get("subject") is None else str(metadata["subject"]),
        })
    if not rows:
        raise TableError(str(file), None, "every sample ended in an error: nothing to import")
    return rows


def _pick_score(scores: dict, scorer: str | None, score_key: str | None,
                where: str) -> tuple[str, Any]:
    if not isinstance(scores, dict) or not scores:
        raise TableError(where, "scores", "the sample has no scores (was it scored?)")
    if scorer is None:
        if len(scores) > 1:
            raise TableError(where, "scores", f"the samples carry several scorers "
                             f"{sorted(scores)}; choose one with scorer= / --scorer")
        scorer = next(iter(scores))
    if scorer not in scores:
        raise TableError(where, "scores", f"no scorer {scorer!r} (scorers: {sorted(scores)})")
    value = scores[scorer].get("value") if isinstance(scores[scorer], dict) else None
    if isinstance(value, dict):
        if score_key is None or score_key not in value:
            raise TableError(where, "scores", f"scorer {scorer!r} gives several values "
                             f"{sorted(value)}; choose one with score_key= / --score-key")
        value = value[score_key]
    return scorer, value


def _inspect_value(value: Any, where: str) -> tuple[float, bool]:
    # inspect_ai.scorer.value_to_float's mapping, except that a value it cannot map (which it
    # turns into 0 with a warning) is an error here: a score table never guesses a score.
    if value == "C":
        return 1.0, False
    if value == "P":
        return 0.5, False
    if value == "I":
        return 0.0, False
    if value == "N":
        return 0.0, True
    if isinstance(value, bool | int | float):
        if not math.isfinite(float(value)):
            raise TableError(where, "scores", f"score value {value!r} is not finite")
        return float(value), False
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("yes", "true"):
            return 1.0, False
        if lowered in ("no", "false"):
            return 0.0, False
        try:
            number = float(lowered)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number, False
    raise TableError(where, "scores", f"score value {value!r} is not a number or one of "
                     "C/P/I/N, yes/no, true/false")
