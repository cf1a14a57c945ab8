"""Runs spread over Ray actors, sharded runs and their merge: the same rows as one process.

Every test here has a hard timeout (pytest-timeout) and the local cluster binds to 127.0.0.1
with usage reporting off; ``ray.shutdown()`` runs in a ``finally``. Skip with ``-m 'not ray'``.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
ray = pytest.importorskip("ray")

from coupled.runner import distributed, run  # noqa: E402
from coupled.runner.config import load_config  # noqa: E402
from coupled.runner.run import plan_chunks  # noqa: E402
from coupled.runner.tasks import load_multiple_choice  # noqa: E402
from coupled.runner.tiny import build_tiny_models  # noqa: E402
from coupled.tables import read_scores, validate_scores  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.runner, pytest.mark.timeout(300)]
QUESTIONS = Path(__file__).resolve().parents[1] / "examples" / "tiny" / "questions.jsonl"
KEY = ["mode", "model", "prompt_id", "seed"]
os.environ.update(HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_models(tmp_path_factory.mktemp("tiny") / "models", QUESTIONS)


def _config(tiny: Path, out: Path, **over) -> dict:
    config = {"output_dir": str(out), "seeds": 2, "max_new_tokens": 3, "batch_size": 8,
              "prompts_per_chunk": 2, "modes": ["coupled", "independent"],
              "task": {"name": "t", "type": "multiple_choice", "path": str(QUESTIONS),
                       "limit": 8},
              "models": [{"name": n, "path": str(tiny / n)} for n in ("tiny-A", "tiny-B")]}
    config.update(over)
    return config


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(KEY).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("one") / "out"
    run(_config(tiny, out), progress=False)
    return _sorted(read_scores(out))


@pytest.fixture
def local_ray():
    distributed.start_ray(2)
    try:
        yield
    finally:
        ray.shutdown()


def test_two_workers_give_the_rows_of_one_process(tiny, tmp_path, reference, local_ray):
    out = tmp_path / "two"
    run(_config(tiny, out), progress=False, workers=2)
    pd.testing.assert_frame_equal(_sorted(read_scores(out)), reference)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"


def test_a_killed_worker_is_restarted_and_its_chunk_retried_once(tiny, tmp_path, reference,
                                                                 local_ray):
    config = load_config(_config(tiny, tmp_path / "unused"))
    prompts = load_multiple_choice(QUESTIONS).head(8)
    spec = config.models[0]
    chunks = [c for c in plan_chunks(config, len(prompts), "scores") if c.model == spec.name]
    actors = distributed.chunk_workers(config, prompts, 2)
    try:
        victim = ray.get(actors[0].pid.remote())
        results = []
        for result in distributed.compute_chunks(actors, spec, chunks):
            results.append(result)
            if len(results) == 1:
                os.kill(victim, signal.SIGKILL)  # mid-run: Ray restarts it and retries
    finally:
        distributed.stop_workers(actors)
    names = [chunk.name for chunk, *_ in results]
    assert sorted(names) == sorted(c.name for c in chunks)  # none lost, none twice
    rows = _sorted(validate_scores(pd.concat([frame for _, frame, _, _ in results])))
    expected = reference[reference["model"] == spec.name].reset_index(drop=True)
    pd.testing.assert_frame_equal(rows[list(expected.columns)], expected)


# The driver kills its own process group (itself and every Ray process it started) right after
# its second scores shard is on disk: a deterministic mid-run SIGKILL. Polling for shards from
# the test raced on fast machines, where the remaining chunks landed between two polls.
_KILLABLE = """
import importlib, json, os, signal, sys
from coupled.runner import run

run_module = importlib.import_module("coupled.runner.run")  # the module, not the function

write_shard = run_module.write_shard
written = []

def write_then_die(frame, out_dir, kind, name):
    write_shard(frame, out_dir, kind, name)
    written.append(name)
    if kind == "scores" and len(written) == 2 and sys.argv[2] == "0":
        os.killpg(os.getpgid(0), signal.SIGKILL)

run_module.write_shard = write_then_die
run(json.load(open(sys.argv[1])), resume=sys.argv[2] == "1", progress=False, workers=2)
"""


def test_sigkill_of_the_whole_run_then_resume_loses_and_duplicates_nothing(tiny, tmp_path,
                                                                          reference):
    out = tmp_path / "killed"
    config = _config(tiny, out)
    config["models"] = config["models"][:1]  # one model, four chunks: enough to kill mid-run
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    script = tmp_path / "go.py"
    script.write_text(_KILLABLE)
    child = subprocess.Popen([sys.executable, str(script), str(config_file), "0"],
                             start_new_session=True, stderr=subprocess.PIPE)
    try:
        _, stderr = child.communicate(timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # whatever of the group is still alive
        child.wait()
    assert child.returncode == -signal.SIGKILL, stderr.decode(errors="replace")[-3000:]
    written = len(list((out / "scores").glob("*.parquet")))
    assert written == 2  # of four: the rest must come from the resume
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] != "complete"
    resumed = subprocess.run([sys.executable, str(script), str(config_file), "1"],
                             capture_output=True, text=True, timeout=240,
                             start_new_session=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    table = read_scores(out)
    assert not table.duplicated(KEY).any()
    expected = reference[reference["model"] == "tiny-A"].reset_index(drop=True)
    pd.testing.assert_frame_equal(_sorted(table), expected)


def test_shards_and_merge_give_the_rows_of_one_process(tiny, tmp_path, reference):
    parts = [tmp_path / f"part{i}" for i in range(3)]
    for i, part in enumerate(parts):
        run(_config(tiny, part), progress=False, shard=(i, 3))
    sizes = [len(read_scores(p)) for p in parts]
    assert sum(sizes) == len(reference) and all(sizes)
    merged = distributed.merge_runs(tmp_path / "merged", parts)
    pd.testing.assert_frame_equal(_sorted(read_scores(merged)), reference)
    manifest = json.loads((merged / "manifest.json").read_text())
    assert manifest["status"] == "complete" and "shard" not in manifest
    run(_config(tiny, merged), resume=True, progress=False)  # nothing left: a no-op resume
    pd.testing.assert_frame_equal(_sorted(read_scores(merged)), reference)


def test_merge_refuses_shards_of_different_runs_or_repeated_shards(tiny, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run(_config(tiny, a, seeds=1), progress=False, shard=(0, 2))
    run(_config(tiny, b, seeds=1, temperature=0.5), progress=False, shard=(1, 2))
    with pytest.raises(ValueError, match="shards of different runs.*row_spec"):
        distributed.merge_runs(tmp_path / "m", [a, b])
    with pytest.raises(ValueError, match="shard indices repeat"):
        distributed.merge_runs(tmp_path / "m", [a, a])
    with pytest.raises(ValueError, match="exists"):
        distributed.merge_runs(a, [a])
    assert not (tmp_path / "m").exists()
    with pytest.raises(ValueError, match="holds shard"):
        run(_config(tiny, a, seeds=1), resume=True, progress=False, shard=(1, 2))


def test_cli_rejects_bad_shard_and_worker_options(tmp_path, capsys):
    from coupled.cli.main import main

    config = tmp_path / "c.toml"
    config.write_text("x = 1\n")
    for argv, named in ((["--shard", "3/2"], "--shard 3/2: need 0 <= i < N"),
                        (["--shard", "a"], "--shard must look like i/N"),
                        (["--workers", "0"], "--workers must be a positive integer"),
                        (["--shard", "0/2", "--workers", "2"], "--shard and --workers")):
        assert main(["run", str(config), *argv, "--no-progress"]) == 2
        assert named in capsys.readouterr().err
