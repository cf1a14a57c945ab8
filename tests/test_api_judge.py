"""The OpenAI-compatible API judge against a real server on 127.0.0.1 (`transformers serve`).

A tiny random judge model (steered towards option letters, like the tiny models) with a chat
template is served by ``transformers serve``; a small fault-injecting HTTP proxy (stdlib
``http.server`` in a thread) sits in front of it, answers some requests with 429 / 500 / a
stall past the client's timeout, holds requests on demand (to SIGKILL a run mid-chunk), and
counts every request and every verdict the server answered, per comparison (the
``X-Coupled-Verdict`` header). Every server test has a hard timeout and kills its process
group; everything binds to 127.0.0.1 only.
"""

import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("openai")
pytest.importorskip("fastapi")  # transformers[serving]
pytest.importorskip("uvicorn")

from coupled.runner import api_judge, decode, load_config, run, tasks  # noqa: E402
from coupled.runner.config import ConfigError, ModelSpec  # noqa: E402
from coupled.runner.models import load_tokenizer  # noqa: E402
from coupled.runner.tiny import build_model, build_tiny_models  # noqa: E402
from coupled.tables import read_comparisons, read_generations  # noqa: E402

pytestmark = pytest.mark.runner
QUESTIONS = Path(__file__).resolve().parents[1] / "examples" / "tiny" / "questions.jsonl"
KEY_ENV = "COUPLED_TEST_JUDGE_KEY"
# What a real key looks like; it must never appear in anything the run writes or prints.
SECRET = "sk-test-" + "7f3Q9zK2mW8xR4vB1nL6"
CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}Verdict:{% endif %}")
SERVE = Path(sys.executable).with_name("transformers")
TIMEOUT_S = 5.0  # the judge's request timeout in the stall test (the proxy stalls 6 s)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


# --- the real server ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_models(tmp_path_factory.mktemp("tiny") / "models", QUESTIONS)


def _judge_folder(tiny: Path, folder: Path) -> Path:
    """A tiny judge with a chat template whose greedy verdict on a judge prompt reads as A/B.

    The chat template renders the turns as ``transformers serve`` will; which letter a random
    seed's model names is looked up, as in tests/test_runner.py.
    """
    tokenizer = load_tokenizer(ModelSpec(name="t", path=str(tiny / "tiny-A")))
    tokenizer.chat_template = CHAT_TEMPLATE
    text = tokenizer.apply_chat_template(
        api_judge.messages(tasks.judge_user_turn("Say hi.", "Hi", "Hello")), tokenize=False,
        add_generation_prompt=True)
    ids = tokenizer(text)["input_ids"]
    for seed in range(3, 40):
        path = folder / f"judge-{seed}"
        model = build_model(path, tokenizer, seed=seed).eval()
        verdict = decode.generate_rows(model, [ids], [0], torch.zeros(1, dtype=torch.int64),
                                       temperature=0.0, max_new_tokens=3,
                                       end_token_ids=[tokenizer.eos_token_id],
                                       pad_token_id=tokenizer.pad_token_id)[0]
        if tasks.parse_verdict(tokenizer.decode(list(verdict.token_ids))) is not None:
            tokenizer.save_pretrained(path)  # with its chat template
            return path
    raise AssertionError("no tiny judge with readable verdicts among seeds 3..39")


class Server:
    """`transformers serve` on 127.0.0.1 with the tiny judge preloaded, started at once;
    :meth:`ready` waits for its health check (the tiny models generate meanwhile)."""

    def __init__(self, judge: Path, folder: Path):
        self.model, self.log = str(judge), folder / "serve.log"
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        with self.log.open("w") as log:
            # `timeout -s KILL`: the server never outlives this module, even if pytest dies.
            self.process = subprocess.Popen(
                ["timeout", "-s", "KILL", "300", str(SERVE), "serve", str(judge), "--host",
                 "127.0.0.1", "--port", str(port), "--device", "cpu", "--log-level",
                 "warning"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        self._ready = False

    def ready(self) -> None:
        deadline = time.monotonic() + 120
        while not self._ready:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "transformers serve did not start in 120 s"
            try:
                connection = http.client.HTTPConnection(*self.url[7:].split(":"), timeout=2)
                connection.request("GET", "/health")
                self._ready = connection.getresponse().status == 200
            except OSError:
                time.sleep(0.25)


@pytest.fixture(scope="module")
def server(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("judge")
    started = Server(_judge_folder(tiny, folder), folder)
    yield started
    _kill_group(started.process)


# --- the fault-injecting proxy -----------------------------------------------------------------

class Proxy:
    """Forwards to the server; ``plan(proxy, request) -> action`` decides each request's fate:
    "pass", an HTTP status to answer instead (429 / 500 / 503, or 401 with a body echoing the
    Authorization header), "stall" (answer nothing for longer than the client's timeout) or
    "hold" (wait until the next :meth:`reset`). Records every request and counts the verdicts
    the server answered. One proxy serves the module: its URL is the judge's ``base_url``,
    which a resumed run must keep.
    """

    def __init__(self, upstream: str):
        self.upstream = upstream.removeprefix("http://").split(":")
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.reset()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = {"t": time.monotonic(), "path": self.path,
                           "verdict": self.headers.get("X-Coupled-Verdict"),
                           "retry": int(self.headers.get("x-stainless-retry-count", -1)),
                           "authorization": self.headers.get("Authorization"),
                           "body": json.loads(body)}
                with proxy._lock:
                    proxy.requests.append(request)
                    request["action"] = action = proxy.plan(proxy, request)
                    release = proxy._release
                if action == "stall":
                    time.sleep(TIMEOUT_S + 1.0)
                    return self._close()
                if action == "hold":
                    with proxy._lock:
                        proxy.held += 1
                    release.wait(120)
                    return self._close()
                if action == 401:
                    return self._reply(401, json.dumps({"error": {
                        "message": f"invalid key in {request['authorization']}"}}).encode())
                if isinstance(action, int):
                    return self._reply(action, b'{"error": {"message": "injected"}}')
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                upstream.request("POST", self.path, body, {
                    "Content-Type": "application/json",
                    "Authorization": self.headers.get("Authorization", "")})
                response = upstream.getresponse()
                data = response.read()
                request["seconds"] = time.monotonic() - request["t"]
                if response.status == 200:
                    with proxy._lock:
                        proxy.answered[request["verdict"]] += 1
                self._reply(response.status, data)

            def _reply(self, status: int, data: bytes):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timed out) first
                    pass

            def _close(self):
                self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def reset(self, plan=None) -> None:
        """A new plan, and no requests seen; requests still held are let go."""
        with self._lock:
            self._release.set()
            self._release = threading.Event()
            self.plan = plan or (lambda proxy, request: "pass")
            self.requests: list[dict] = []
            self.answered: Counter = Counter()  # verdict id -> 200 answers forwarded
            self.held = 0

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def proxy(server):
    made = Proxy(server.url)
    yield made
    made.close()


# --- configs and helpers ------------------------------------------------------------------------

PROMPTS = pd.DataFrame({"prompt_id": ["p1", "p2", "p3"],
                        "prompt": ["Say hi.", "Name a colour.", "What is 2 + 3?"]})
N_VERDICTS = 3 * 3 * 1 * 2  # pairs x prompts x seeds x modes; chunks of 6, 3, 6, 3


def _config(tiny: Path, folder: Path, base_url: str, model: str, **judge) -> dict:
    PROMPTS.to_json(folder / "open.jsonl", orient="records", lines=True)
    return {"output_dir": str(folder / "out"), "seeds": 1, "max_new_tokens": 6,
            "prompts_per_chunk": 2, "batch_size": 16,
            "task": {"name": "open", "type": "open", "path": str(folder / "open.jsonl")},
            "models": [{"name": n, "path": str(tiny / n)}
                       for n in ("tiny-A", "tiny-B", "tiny-A-copy")],
            "judge": {"base_url": base_url, "model": model, "api_key_env": KEY_ENV,
                      "max_tokens": 4, "timeout_s": 60.0, "concurrency": 2, **judge}}


def _toml(config: dict) -> str:
    """This test's config as TOML (scalars, [task], [[models]], [judge]; JSON strings and
    numbers are valid TOML values)."""
    def table(values: dict) -> list[str]:
        return [f"{k} = {json.dumps(v)}" for k, v in values.items()]

    lines = table({k: v for k, v in config.items() if not isinstance(v, dict | list)})
    lines += ["[task]", *table(config["task"]), "[judge]", *table(config["judge"])]
    for model in config["models"]:
        lines += ["[[models]]", *table(model)]
    return "\n".join(lines) + "\n"


def _assert_key_nowhere(folder: Path, *texts: str) -> None:
    secret = SECRET.encode()
    written = [p for p in folder.rglob("*") if p.is_file()]
    assert written
    for path in written:
        assert secret not in path.read_bytes(), f"the API key was written to {path}"
    for text in texts:
        assert SECRET not in text


def _verdict_ids(out: Path) -> dict[tuple, str]:
    comparisons = read_comparisons(out)
    return {key: api_judge.verdict_id(key) for key in
            comparisons[["task", "prompt_id", "seed", "mode", "model_a", "model_b"]]
            .itertuples(index=False, name=None)}


# --- config (no server) ---------------------------------------------------------------------

def test_config_takes_exactly_one_judge_source_and_keeps_api_keys_apart(tiny, tmp_path):
    base = _config(tiny, tmp_path, "http://127.0.0.1:9/v1", "judge-model")
    config = load_config(base)
    assert (config.judge.base_url, config.judge.api_model, config.judge.model) == \
        ("http://127.0.0.1:9/v1", "judge-model", None)
    assert config.as_dict()["judge"]["model"] == "judge-model"  # the TOML key round-trips
    cases = {
        "exactly one of path": {"base_url": "http://x/v1", "model": "m",
                                "comparisons": str(tmp_path / "c.csv")},
        "base_url needs model": {"base_url": "http://x/v1"},
        "'dtype' applies to a judge model": {"base_url": "http://x/v1", "model": "m",
                                             "dtype": "float16"},
        "'max_retries' applies to an API judge": {"path": str(tiny / "tiny-A"),
                                                  "max_retries": 2},
        "http:// or https://": {"base_url": "127.0.0.1:8000", "model": "m"},
        "must not hold credentials": {"base_url": "http://u:pw@x/v1", "model": "m"},
    }
    for message, judge in cases.items():
        with pytest.raises(ConfigError, match=message):
            load_config({**base, "judge": judge})
    # a key pasted where the variable's name belongs is refused without being echoed
    with pytest.raises(ConfigError, match="NAME of an environment variable") as error:
        load_config({**base, "judge": {**base["judge"], "api_key_env": SECRET}})
    assert SECRET not in str(error.value)


_entries = st.lists(st.fixed_dictionaries({
    "prompt_id": st.text(min_size=1, max_size=6), "seed": st.integers(0, 2**63 - 1),
    "response": st.text(max_size=20)}), min_size=1, max_size=6)


@given(entries=_entries, cut=st.floats(0, 1))
def test_the_journal_keeps_every_whole_line_and_cuts_a_torn_one(tmp_path_factory, entries, cut):
    """Generated verdicts (any text, including newlines and non-ASCII) cut at any byte: the
    reopened journal holds exactly the lines written whole, and appends after the cut parse."""
    path = tmp_path_factory.mktemp("journal") / api_judge.JOURNAL
    journal = api_judge.Journal(path)
    records = []
    for i, entry in enumerate(entries):
        key = ["t", entry["prompt_id"], entry["seed"], "coupled", "a", f"b{i}"]
        records.append({"version": api_judge.JOURNAL_VERSION, "key": key, "request": str(i),
                        "response": entry["response"]})
        journal.append(records[-1])
    data = path.read_bytes()
    assert data.count(b"\n") == len(records)  # one line per verdict, whatever its text
    size = int(cut * len(data))
    path.write_bytes(data[:size])
    whole = data[:size].count(b"\n")
    reopened = api_judge.Journal(path)
    assert list(reopened.entries.values()) == records[:whole]
    assert path.read_bytes() == data[:data[:size].rfind(b"\n") + 1]  # the torn tail is cut
    for record in records[whole:]:
        reopened.append(record)
    assert list(api_judge.Journal(path).entries.values()) == records
    assert all(reopened.get(tuple(r["key"]), r["request"]) == r for r in records)
    assert reopened.get(tuple(records[0]["key"]), "another request") is None


def test_a_journal_line_changed_by_hand_is_one_error_naming_the_line(tmp_path):
    path = tmp_path / api_judge.JOURNAL
    journal = api_judge.Journal(path)
    journal.append({"version": api_judge.JOURNAL_VERSION, "key": ["t", "p", 0, "coupled", "a",
                                                                   "b"], "request": "x"})
    path.write_text(path.read_text() + "{not json}\n" + path.read_text())
    with pytest.raises(api_judge.JudgeAPIError, match=r"verdicts.jsonl, line 2: not a verdict"):
        api_judge.Journal(path)


def _with_key_env(name: str) -> dict:
    return {"output_dir": "/tmp/never", "task": {"name": "o", "type": "open",
                                                 "path": "/tmp/never.jsonl"},
            "models": [{"name": "a", "path": "org/model"}],
            "judge": {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": name}}


@given(key=st.text(min_size=1, max_size=40).map(lambda text: "sk-" + text))
def test_a_key_pasted_as_api_key_env_is_refused_without_being_echoed(key):
    with pytest.raises(ConfigError, match="NAME of an environment variable") as error:
        load_config(_with_key_env(key))
    assert key not in str(error.value) and "sk-" not in str(error.value)


@given(name=st.from_regex(r"[A-Z_][A-Z0-9_]{0,30}", fullmatch=True))
def test_any_environment_variable_name_is_accepted(name):
    assert load_config(_with_key_env(name)).judge.api_key_env == name


@pytest.mark.timeout(60)
def test_a_missing_key_is_refused_before_anything_is_written(tiny, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    config = _config(tiny, tmp_path, "http://127.0.0.1:9/v1", "m")
    with pytest.raises(api_judge.JudgeAPIError, match=f"{KEY_ENV} is not set"):
        run(config, progress=False)
    assert not (tmp_path / "out").exists()


# --- against the server -------------------------------------------------------------------------

def _faulty(proxy: Proxy, request: dict) -> str | int:
    """Verdict #0's first three tries fail (500, 429, 500: the back-off is measured on them)
    and every 7th other first try is a 429."""
    firsts = [r["verdict"] for r in proxy.requests if r["retry"] == 0]
    order = firsts.index(request["verdict"])
    if order == 0 and request["retry"] < 3:
        return (500, 429, 500)[request["retry"]]
    if request["retry"] == 0 and order % 7 == 3:
        return 429
    return "pass"


@pytest.fixture(scope="module")
def generated(tiny, server, proxy, tmp_path_factory):
    """A run folder whose generations are done and which nothing has judged yet, and its
    config: copied by the tests. Made while the server starts (its judge step is skipped)."""
    import importlib

    folder = tmp_path_factory.mktemp("generated")
    config = _config(tiny, folder, proxy.url, server.model)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, SECRET)
        patch.setattr(importlib.import_module("coupled.runner.run"), "_judge",
                      lambda *args: None)
        run(config, progress=False)
    return folder / "out", config


def _copy_generated(generated, folder: Path, **judge) -> dict:
    source, config = generated
    shutil.copytree(source, folder / "out")
    return {**config, "output_dir": str(folder / "out"),
            "judge": {**config["judge"], **judge}}


@pytest.fixture(scope="module")
def judged(generated, server, proxy, tmp_path_factory):
    """The generated run judged through the faulty proxy with `coupled run --resume`:
    (config, the requests the proxy saw, verdicts answered, captured output)."""
    from coupled.cli.main import main

    folder = tmp_path_factory.mktemp("judged")
    config = _copy_generated(generated, folder)
    (folder / "run.toml").write_text(_toml(config))
    server.ready()
    proxy.reset(_faulty)
    output = io.StringIO()  # progress bars and warnings
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, SECRET)
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            code = main(["run", str(folder / "run.toml"), "--resume"])
    assert code == 0, output.getvalue()[-3000:]
    return config, list(proxy.requests), Counter(proxy.answered), output.getvalue()


@pytest.mark.timeout(150)
def test_api_judge_sends_the_paper_prompt_in_the_recorded_order_and_records_tokens(judged):
    config, requests, _, _ = judged
    out = Path(config["output_dir"])
    comparisons = read_comparisons(out)
    assert len(comparisons) == N_VERDICTS and not comparisons.duplicated(
        ["prompt_id", "seed", "mode", "model_a", "model_b"]).any()
    generations = read_generations(out)
    response = {(r.prompt_id, r.seed, r.mode, r.model): r.response
                for r in generations.itertuples(index=False)}
    text = PROMPTS.set_index("prompt_id")["prompt"]
    answered = {r["verdict"]: r["body"] for r in requests if r["action"] == "pass"}
    for row in comparisons.itertuples(index=False):
        assert row.shown_first == tasks.shown_first("open", row.prompt_id, row.seed,
                                                    row.model_a, row.model_b)
        answers = (response[(row.prompt_id, row.seed, row.mode, row.model_a)],
                   response[(row.prompt_id, row.seed, row.mode, row.model_b)])
        shown = answers if row.shown_first == "a" else answers[::-1]
        body = answered[api_judge.verdict_id((row.task, row.prompt_id, row.seed, row.mode,
                                              row.model_a, row.model_b))]
        # what the server got: the paper's judge prompt, answers in the recorded order, T = 0
        assert body["messages"] == [
            {"role": "system", "content": tasks.prompt_text("judge_system")},
            {"role": "user", "content": tasks.judge_user_turn(text[row.prompt_id], *shown)}]
        assert (body["temperature"], body["max_tokens"], body["model"]) == \
            (0, 4, config["judge"]["model"])
        assert (row.outcome, row.parse_failed) == tasks.outcome_from_verdict(
            tasks.parse_verdict(row.judge_response), row.shown_first)
        assert row.prompt_tokens > 100 and 1 <= row.completion_tokens <= 4
        assert row.judge_model == config["judge"]["model"]
    assert (~comparisons["parse_failed"]).all()  # this judge's verdicts read as A / B
    assert set(comparisons["shown_first"]) == {"a", "b"}
    assert str(comparisons["prompt_tokens"].dtype) == "Int64"


@pytest.mark.timeout(150)
def test_api_judge_retries_with_exponential_backoff_and_pays_each_verdict_once(judged):
    config, requests, answered, _ = judged
    by_verdict = defaultdict(list)
    for request in requests:
        by_verdict[request["verdict"]].append(request)
    assert len(by_verdict) == N_VERDICTS
    assert set(answered.values()) == {1} and len(answered) == N_VERDICTS
    first = next(r for r in requests if r["retry"] == 0)["verdict"]
    tries = by_verdict[first]
    assert [r["action"] for r in tries] == [500, 429, 500, "pass"]
    assert [r["retry"] for r in tries] == [0, 1, 2, 3]
    gaps = [later["t"] - earlier["t"] for earlier, later in zip(tries, tries[1:], strict=False)]
    for n, gap in enumerate(gaps):
        # the client's back-off: 0.5 s x 2^n less up to 25 % jitter (+ scheduling slack)
        assert 0.75 * 0.5 * 2**n - 0.02 <= gap <= 0.5 * 2**n + 1.0, gaps
    assert sum(r["action"] == 429 and r["retry"] == 0 for r in requests) == 3  # #3, #10, #17
    retried = {r["verdict"] for r in requests if r["action"] == 429 and r["retry"] == 0}
    assert all([r["action"] for r in by_verdict[v]] == [429, "pass"] for v in retried)
    journal = (Path(config["output_dir"]) / api_judge.JOURNAL).read_text().splitlines()
    assert len(journal) == N_VERDICTS


@pytest.mark.timeout(150)
def test_the_key_is_sent_but_never_written_and_the_judge_is_in_the_manifest(judged):
    config, requests, _, output = judged
    assert {r["authorization"] for r in requests} == {f"Bearer {SECRET}"}
    out = Path(config["output_dir"])
    _assert_key_nowhere(out, output)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["judge"]["api"] == {
        "base_url": config["judge"]["base_url"], "model": config["judge"]["model"],
        "temperature": 0.0,
        "max_tokens": 4, "prompt_sha256": api_judge.judge_prompt_hash()}
    assert manifest["config"]["judge"]["api_key_env"] == KEY_ENV
    assert manifest["status"] == "complete"


@pytest.mark.timeout(150)
def test_resume_refuses_another_api_judge(judged, monkeypatch):
    config = judged[0]
    monkeypatch.setenv(KEY_ENV, SECRET)
    for change, message in ((("model", "another-judge"), "judge changed: api.model"),
                            (("base_url", "http://127.0.0.1:9/v1"), "judge changed: api.base_url"),
                            (("max_tokens", 5), "judge changed: api.max_tokens")):
        changed = {**config, "judge": {**config["judge"], change[0]: change[1]}}
        with pytest.raises(ValueError, match=message):
            run(changed, resume=True, progress=False)
    # retries, timeouts and concurrency decide no verdict: a resume with others is a no-op
    run({**config, "judge": {**config["judge"], "max_retries": 1, "concurrency": 1}},
        resume=True, progress=False)


_KILLABLE_RUN = """
import json, sys
from coupled.runner import run
run(json.load(open(sys.argv[1])), resume=True, progress=False)
"""


@pytest.mark.timeout(180)
def test_sigkill_mid_chunk_then_resume_requests_no_paid_verdict_again(judged, generated, proxy,
                                                                      tmp_path, monkeypatch):
    """Killed while the proxy holds the requests after 10 answers (chunk 3 of 4, mid-way),
    with the journal's last line then torn in half: the resumed run asks only for what is
    not journalled (the torn line's verdict once more, every other verdict exactly once over
    both runs) and its comparisons equal the uninterrupted run's."""
    n_answered = 10  # one more may pass: a request sent while the 10th was in flight

    def hold_after(proxy, request):
        return "hold" if sum(proxy.answered.values()) >= n_answered else "pass"

    config = _copy_generated(generated, tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    proxy.reset(hold_after)
    log = (tmp_path / "child.log").open("w")
    child = subprocess.Popen([sys.executable, "-c", _KILLABLE_RUN, str(tmp_path / "config.json")],
                             env={**os.environ, KEY_ENV: SECRET}, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while proxy.held < 2:  # both threads wait on a request: every answer is journalled
            assert child.poll() is None, (tmp_path / "child.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the run never reached the held requests"
            time.sleep(0.02)
    finally:
        _kill_group(child)  # SIGKILL: no cleanup, no flush
        log.close()
    assert child.returncode == -signal.SIGKILL
    paid = Counter(proxy.answered)
    out = Path(config["output_dir"])
    journal = out / api_judge.JOURNAL
    lines = journal.read_bytes().splitlines(keepends=True)
    # both threads wait on a held request, so every answer paid for was journalled first
    assert len(lines) == sum(paid.values()) in (n_answered, n_answered + 1)
    assert set(paid.values()) == {1}
    assert len(list((out / "comparisons").glob("*.parquet"))) == 2  # chunks 1, 2: 6 + 3
    torn = json.loads(lines[-1])
    journal.write_bytes(b"".join(lines[:-1]) + lines[-1][:len(lines[-1]) // 2])

    proxy.reset()
    monkeypatch.setenv(KEY_ENV, SECRET)
    run(config, resume=True, progress=False)
    ids = set(_verdict_ids(out).values())
    journalled = {api_judge.verdict_id(tuple(json.loads(line)["key"])) for line in lines[:-1]}
    torn_id = api_judge.verdict_id(tuple(torn["key"]))
    assert set(proxy.answered) == ids - journalled and torn_id in proxy.answered
    assert set(proxy.answered.values()) == {1}  # and nothing journalled was asked again
    assert len(journal.read_text().splitlines()) == N_VERDICTS  # the torn half was cut off
    expected = read_comparisons(judged[0]["output_dir"])
    got = read_comparisons(out)
    columns = ["prompt_id", "seed", "mode", "model_a", "model_b", "shown_first", "outcome",
               "judge_response", "prompt_tokens", "completion_tokens"]
    pd.testing.assert_frame_equal(
        got[columns].sort_values(columns[:5]).reset_index(drop=True),
        expected[columns].sort_values(columns[:5]).reset_index(drop=True))
    _assert_key_nowhere(out, (tmp_path / "child.log").read_text())


@pytest.mark.timeout(150)
@pytest.mark.parametrize("fault", [401, 503])
def test_a_failing_api_is_one_clear_error_without_the_key(fault, judged, generated, proxy,
                                                           tmp_path, monkeypatch, capfd):
    """401 (the body echoes the Authorization header; not retried), or: the first request
    stalls past timeout_s (retried after it), then 503 for every request after 5 answers
    (retried max_retries = 1 times). `coupled run` exits 2 with one message, the manifest
    says failed, the key is nowhere, and the verdicts paid for are kept in the journal."""
    from coupled.cli.main import main

    def plan(proxy, request):
        if fault == 401:
            return 401
        if len(proxy.requests) == 1:
            return "stall"
        return "pass" if sum(proxy.answered.values()) < 5 else 503

    config = _copy_generated(generated, tmp_path, max_retries=1, concurrency=1,
                             timeout_s=TIMEOUT_S)
    (tmp_path / "run.toml").write_text(_toml(config))
    proxy.reset(plan)
    monkeypatch.setenv(KEY_ENV, SECRET)
    code = main(["run", str(tmp_path / "run.toml"), "--resume", "--no-progress"])
    captured = capfd.readouterr()
    assert code == 2
    message = captured.err.strip()
    assert f"HTTP {fault}" in message and len(message.splitlines()) == 1, message
    out = Path(config["output_dir"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and f"HTTP {fault}" in manifest["error"]
    _assert_key_nowhere(out, captured.out, captured.err)
    failed = [r for r in proxy.requests if r["action"] == fault]
    journal = (out / api_judge.JOURNAL).read_text().splitlines()
    if fault == 401:
        assert "<api key>" in message and len(failed) == 1  # not retried
        assert not journal
        return
    assert "after its retries" in message and "5 verdicts paid for" in message
    assert [r["retry"] for r in failed] == [0, 1]  # max_retries = 1
    assert len(journal) == sum(proxy.answered.values()) == 5
    stalled = proxy.requests[0]
    retry = next(r for r in proxy.requests[1:] if r["verdict"] == stalled["verdict"])
    assert retry["retry"] == 1 and retry["t"] - stalled["t"] >= TIMEOUT_S  # after the timeout
