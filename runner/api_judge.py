"""An OpenAI-compatible API judge for open prompts (the paper judged with GPT-4o).

``[judge] base_url = "http://127.0.0.1:8000/v1"`` and ``model = "..."`` send each comparison to
``POST {base_url}/chat/completions`` with the paper's judge prompt (``prompts/judge_*.txt``:
the system turn, then the user prompt and the two answers in the recorded, randomised A/B
order ``shown_first``), temperature 0 and ``max_tokens``. The API key is read at run time from
the environment variable named by ``api_key_env``; it is never written to the manifest, the
journal, the shards, an error message or a log line.

Retries are the ``openai`` client's own (``max_retries``): 408 / 409 / 429 / 5xx, timeouts
(``timeout_s``) and connection errors are retried with exponential back-off, 0.5 s x 2^n with
up to 25 % jitter and at most 8 s, or the server's ``Retry-After`` when it sends one. Other
errors (401, 400, ...) are not retried.

Verdicts already paid for survive a kill: each one is appended to the run folder's journal
(``judge-journal/verdicts.jsonl``, one JSON line per verdict, flushed and fsync'd before the
next request of that thread is sent), the journal is read before each chunk and a verdict in it
is never requested again; the chunk's comparisons shard is then written from the journal, as
for the local judge (one atomic shard per chunk). A torn last line (a kill mid-write) is cut
off when the journal is opened; the verdict it held is requested again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from coupled.runner import tasks
from coupled.runner.config import JudgeSpec

TEMPERATURE = 0.0
JOURNAL = Path("judge-journal") / "verdicts.jsonl"
JOURNAL_VERSION = 1
_KEY = ("task", "prompt_id", "seed", "mode", "model_a", "model_b")


class JudgeAPIError(ValueError):
    """The API judge failed (after its retries) or its journal is unreadable: one line, no key.

    A ``ValueError`` so that ``coupled run`` reports it as one message with exit status 2;
    the verdicts paid for before it are in the journal, and ``--resume`` continues from them.
    """


def api_key(spec: JudgeSpec) -> str:
    """The API key from the environment variable ``spec.api_key_env`` (checked before a run
    writes anything)."""
    key = os.environ.get(spec.api_key_env, "")
    if not key.strip():
        raise JudgeAPIError(f"[judge] api_key_env: the environment variable "
                            f"{spec.api_key_env} is not set (it must hold the API key of "
                            f"{spec.base_url}; a local server that checks no key accepts any "
                            f"value, e.g. {spec.api_key_env}=none)")
    return key


def judge_prompt_hash() -> str:
    """sha256 of the paper's judge prompt (system and user templates) as this version ships it."""
    text = "\x1f".join(tasks.prompt_text(name) for name in ("judge_system", "judge_user"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def judge_record(spec: JudgeSpec) -> dict[str, Any]:
    """What decides an API judge's verdicts, for the manifest and the resume check (no key)."""
    api_key(spec)  # a missing key is refused before the output folder is touched
    return {"base_url": spec.base_url, "model": spec.api_model, "temperature": TEMPERATURE,
            "max_tokens": spec.max_tokens, "prompt_sha256": judge_prompt_hash()}


def messages(user_turn: str) -> list[dict[str, str]]:
    """The chat sent for one comparison: the paper's judge system prompt, then the user turn."""
    return [{"role": "system", "content": tasks.prompt_text("judge_system")},
            {"role": "user", "content": user_turn}]


def request_hash(spec: JudgeSpec, user_turn: str) -> str:
    """sha256 of everything sent for a verdict but the key: a journal line answers only the
    identical request."""
    body = {"base_url": spec.base_url, "model": spec.api_model, "temperature": TEMPERATURE,
            "max_tokens": spec.max_tokens, "messages": messages(user_turn)}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False)
                          .encode("utf-8")).hexdigest()


def _key(record: dict[str, Any]) -> tuple:
    return tuple(record[name] for name in _KEY)


def verdict_id(key: tuple) -> str:
    """A stable id of one comparison, sent as the ``X-Coupled-Verdict`` header (retries carry
    the same value), so a server's or proxy's log shows whether a verdict was asked twice."""
    return hashlib.sha256(json.dumps(list(key)).encode("utf-8")).hexdigest()[:16]


class Journal:
    """The append-only, fsync'd per-verdict journal of one run folder (one writer: the run
    holds the folder's lock; threads of that run append under one lock)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self.entries: dict[tuple, dict[str, Any]] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            self._recover()
        else:
            path.touch()
            _fsync_dir(path.parent)  # the file itself survives a crash, not only its lines

    def _recover(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            # A kill mid-write leaves a torn last line: cut it off, so the next append starts a
            # line of its own (appending after it would glue two records into one bad line).
            with self.path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)
                handle.flush()
                os.fsync(handle.fileno())
            data = data[:data.rfind(b"\n") + 1]
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                key = tuple(entry["key"])
                if entry.get("version") != JOURNAL_VERSION or len(key) != len(_KEY):
                    raise ValueError("unknown layout")
            except (ValueError, KeyError, TypeError):
                raise JudgeAPIError(f"judge journal {self.path}, line {number}: not a verdict "
                                    f"record of this version ({line[:80]!r}); it was changed "
                                    f"by hand: restore it or start a fresh --out") from None
            self.entries[key] = entry  # a later line for the same key wins

    def get(self, key: tuple, digest: str) -> dict[str, Any] | None:
        entry = self.entries.get(key)
        return entry if entry is not None and entry["request"] == digest else None

    def append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
            self.entries[tuple(entry["key"])] = entry


def _fsync_dir(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory descriptors
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class ApiJudge:
    """One run's API judge: an ``openai`` client, the journal, and a small thread pool."""

    def __init__(self, spec: JudgeSpec, out_dir: Path):
        from openai import OpenAI

        self.spec = spec
        self._key = api_key(spec)
        self.journal = Journal(Path(out_dir) / JOURNAL)
        self._failed = threading.Event()  # after one failure, no thread sends another request
        self._client = OpenAI(base_url=spec.base_url, api_key=self._key,
                              max_retries=spec.max_retries, timeout=spec.timeout_s)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ApiJudge:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def judge(self, requests: list[tuple[dict[str, Any], str]]) -> list[dict[str, Any]]:
        """Comparison records with their verdicts, for (record, judge user turn) pairs.

        Verdicts found in the journal are used as they are; the others are requested
        ``concurrency`` at a time, each journalled as soon as it arrives. On the first failure
        the requests not yet sent are cancelled, those in flight finish (and are journalled),
        and :class:`JudgeAPIError` is raised.
        """
        digests = [request_hash(self.spec, user) for _, user in requests]
        todo = [(record, user, digest) for (record, user), digest in zip(requests, digests,
                                                                         strict=True)
                if self.journal.get(_key(record), digest) is None]
        if todo:
            self._failed.clear()
            pool = ThreadPoolExecutor(max_workers=min(self.spec.concurrency, len(todo)),
                                      thread_name_prefix="coupled-judge")
            futures = [pool.submit(self._ask, *item) for item in todo]
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            except BaseException:  # Ctrl-C: the queued requests are not sent
                self._failed.set()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            failed = [f for f in done if f.exception() is not None]
            pool.shutdown(wait=True, cancel_futures=bool(failed))
            if failed:
                raise failed[0].exception()
        return [self._fold(record, self.journal.get(_key(record), digest))
                for (record, _), digest in zip(requests, digests, strict=True)]

    def _ask(self, record: dict[str, Any], user: str, digest: str) -> None:
        if self._failed.is_set():  # another request failed: send nothing more
            return
        try:
            reply = self._client.chat.completions.create(
                model=self.spec.api_model, messages=messages(user), temperature=TEMPERATURE,
                max_tokens=self.spec.max_tokens,
                extra_headers={"X-Coupled-Verdict": verdict_id(_key(record))})
        except Exception as error:
            self._failed.set()
            raise self._error(error) from None  # no chained request (its headers hold the key)
        choice = reply.choices[0] if reply.choices else None
        usage = reply.usage
        self.journal.append({
            "version": JOURNAL_VERSION, "key": list(_key(record)), "request": digest,
            "shown_first": record["shown_first"],
            "response": (choice.message.content if choice and choice.message else None) or "",
            "finish_reason": choice.finish_reason if choice else None,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "served_model": reply.model, "unix": time.time()})

    def _error(self, error: Exception) -> Exception:
        import openai

        if isinstance(error, openai.APIStatusError):
            retried = " after its retries" if _retryable(error.status_code) else ""
            text = (f"judge API {self.spec.base_url} (model {self.spec.api_model!r}) answered "
                    f"HTTP {error.status_code}{retried}: {str(error)[:300]}")
        elif isinstance(error, openai.APIConnectionError):  # timeouts included
            what = "timed out" if isinstance(error, openai.APITimeoutError) else \
                f"could not be reached ({error.__cause__ or error})"
            text = (f"judge API {self.spec.base_url} {what} after {self.spec.max_retries} "
                    f"retries (timeout_s = {self.spec.timeout_s})")
        elif isinstance(error, openai.OpenAIError):
            text = f"judge API {self.spec.base_url}: {type(error).__name__}: {error}"
        else:
            return error  # not the API's: a bug of ours keeps its traceback
        return JudgeAPIError(self._scrub(f"{text}; {self._kept()}"))

    def _fold(self, record: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
        verdict = entry["response"]
        outcome, failed = tasks.outcome_from_verdict(tasks.parse_verdict(verdict),
                                                     record["shown_first"])
        return {**record, "outcome": outcome, "parse_failed": failed, "judge_response": verdict,
                "judge_model": entry["served_model"] or self.spec.api_model,
                "prompt_tokens": entry["prompt_tokens"],
                "completion_tokens": entry["completion_tokens"]}

    def _kept(self) -> str:
        return (f"the {len(self.journal.entries)} verdicts paid for so far are kept in "
                f"{self.journal.path}; fix the cause and rerun with --resume")

    def _scrub(self, text: str) -> str:
        # A server may echo request headers in an error body: the key never leaves this object.
        return text.replace(self._key, "<api key>") if self._key else text


def _retryable(status: int) -> bool:
    # The openai client's rule (408, 409, 429, 5xx), for the message only.
    return status in (408, 409, 429) or status >= 500
