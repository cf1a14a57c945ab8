"""A run's chunks spread over many workers with Ray core actors; sharded runs and their merge.

Why Ray *core actors* (not Ray Data): the unit of work is a (model, chunk) that needs a loaded
engine — an expensive, stateful object (an HF model or a vLLM engine holding GPU memory). An
actor holds one engine for all the chunks it computes, and :class:`ray.util.ActorPool` hands
the chunks out as workers free up. Ray Data's stateless batch pipeline would reload or re-shard
the engine and needs CPUs beside the actors (a pipeline started while actors held every CPU
waited forever on this machine). Ray restarts a killed actor and retries its chunk
(``max_restarts`` / ``max_task_retries``); the driver is the only writer of the output folder
and writes each finished chunk as one atomic shard, so a retried chunk is written once.

Because the noise is a function of a row's key alone, which worker computes a chunk never
changes its rows: an N-worker run gives exactly the rows of a one-process run (tested).

For clusters without Ray (SLURM): ``coupled run CONFIG --shard i/N`` computes every N-th chunk
(by the run's fixed chunk order) into its own folder, and ``coupled merge OUT DIR ...`` checks
that the shards' manifests agree and puts their shards together.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from coupled.runner.config import ModelSpec, RunConfig
from coupled.tables import completed_shards, read_manifest, write_manifest

# Usage reporting off and nothing but loopback for local clusters (tests bind 127.0.0.1 only).
_QUIET_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


def _ray():
    try:
        import ray
    except ImportError as error:
        raise ValueError(f"--workers / --ray-address need Ray ({error}): pip install "
                         f"'coupled[scale]'") from error
    return ray


def start_ray(workers: int, address: str | None = None) -> bool:
    """Connect to ``address`` or start a local cluster; True when this call started Ray."""
    ray = _ray()
    os.environ.update(_QUIET_ENV)
    if ray.is_initialized():
        return False
    env = {key: os.environ[key] for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                                            "VLLM_TARGET_DEVICE", "VLLM_CPU_KVCACHE_SPACE",
                                            "VLLM_ENABLE_V1_MULTIPROCESSING") if key in os.environ}
    runtime_env = {"env_vars": {**_QUIET_ENV, **env}}
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    else:
        ray.init(num_cpus=max(workers, 1), include_dashboard=False,
                 _node_ip_address="127.0.0.1", runtime_env=runtime_env, log_to_driver=False)
    return True


class ChunkWorker:
    """A Ray actor computing chunks; it holds one model's
    :class:`~coupled.runner.run.ModelChunks` at a time and loads the next model when a chunk of
    another model arrives (so one pool of actors serves the whole run, and an actor that Ray
    restarted after a crash reloads its model before the retried chunk)."""

    def __init__(self, config: RunConfig, prompts: pd.DataFrame, threads: int = 1) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.config, self.prompts = config, prompts
        self.spec: ModelSpec | None = None
        self.computer = None

    def compute(self, spec: ModelSpec, chunk) -> tuple[Any, pd.DataFrame, int, float]:
        from coupled.runner.run import ModelChunks

        if self.spec != spec:
            if self.computer is not None:
                self.computer.close()
            self.computer, self.spec = None, None
            self.computer, self.spec = ModelChunks(self.config, spec, self.prompts), spec
        started = time.perf_counter()
        frame, tokens = self.computer.compute(chunk)
        return chunk, frame, tokens, time.perf_counter() - started

    def pid(self) -> int:
        return os.getpid()


def _resources(specs: Sequence[ModelSpec], cpus: float) -> dict[str, float]:
    import torch

    gpus = max((float(s.tensor_parallel_size) for s in specs
                if s.device.startswith("cuda") or (s.device == "auto"
                                                   and torch.cuda.is_available())), default=0.0)
    return {"num_cpus": cpus, "num_gpus": gpus}


class WorkerPool(list):
    """The actors of a run, plus the object-store reference to their constructor's prompts:
    kept alive as long as the actors, so that Ray can restart a crashed actor with them."""

    prompts_ref: Any = None


def chunk_workers(config: RunConfig, prompts: pd.DataFrame, workers: int,
                  cpus_per_worker: float = 1.0) -> WorkerPool:
    """``workers`` actors for the run's models (one engine each at a time; one GPU each, or
    ``tensor_parallel_size`` GPUs, when there are GPUs)."""
    ray = _ray()
    actor = ray.remote(max_restarts=3, max_task_retries=3)(ChunkWorker)
    pool = WorkerPool()
    pool.prompts_ref = ray.put(prompts)
    options = _resources(config.models, cpus_per_worker)
    pool.extend(actor.options(**options).remote(config, pool.prompts_ref,
                                                max(1, int(cpus_per_worker)))
                for _ in range(workers))
    return pool


def compute_chunks(actors: Sequence, spec: ModelSpec, chunks: Sequence
                   ) -> Iterator[tuple[Any, pd.DataFrame, int, float]]:
    """(chunk, rows, tokens, seconds) for every chunk of one model, in the order they finish."""
    from ray.util import ActorPool

    pool = ActorPool(list(actors))
    yield from pool.map_unordered(lambda actor, chunk: actor.compute.remote(spec, chunk), chunks)


def stop_workers(actors: Sequence) -> None:
    ray = _ray()
    for actor in actors:
        ray.kill(actor, no_restart=True)


# --- shards without Ray: --shard i/N and merge --------------------------------------------------

def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` -> (i, N) with 0 <= i < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/N (e.g. 0/4), got {text!r}") from None
    if not (count >= 1 and 0 <= index < count):
        raise ValueError(f"--shard {text}: need 0 <= i < N")
    return index, count


_AGREE = ("layout_version", "row_spec", "models", "judge", "blocks", "kind")


def merge_runs(out: str | os.PathLike, shard_dirs: Sequence[str | os.PathLike]) -> Path:
    """Put the shards of ``coupled run --shard i/N`` runs together into a new folder ``out``.

    Refuses unless every folder is a shard run of the same design (its manifest agrees on every
    row-deciding setting, the models and their hashes, and the blocks), the shards are distinct
    and cover 0..N-1, and no chunk appears twice. ``out`` must not exist; it is written in a
    temporary folder and renamed, so a failed merge leaves nothing behind. The merged run's
    ``coupled run CONFIG --out OUT --resume`` continues it (e.g. judges open prompts).
    """
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise ValueError(f"merge output {out} exists; give a new folder")
    if not shard_dirs:
        raise ValueError("merge needs the shard folders to merge")
    manifests = []
    for folder in map(Path, shard_dirs):
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a run folder")
        manifest = read_manifest(folder)
        if not manifest or "shard" not in manifest:
            raise ValueError(f"{folder} is not a `coupled run --shard i/N` folder (its manifest "
                             f"has no shard)")
        manifests.append((folder, manifest))
    first_folder, first = manifests[0]
    count = first["shard"][1]
    for folder, manifest in manifests[1:]:
        for key in _AGREE:
            if json.dumps(manifest.get(key), sort_keys=True) != json.dumps(first.get(key),
                                                                           sort_keys=True):
                raise ValueError(f"{folder} and {first_folder} are shards of different runs: "
                                 f"their manifests differ in {key!r}")
        if manifest["shard"][1] != count:
            raise ValueError(f"{folder} is shard {manifest['shard'][0]}/{manifest['shard'][1]} "
                             f"but {first_folder} is one of {count}")
    indices = sorted(m["shard"][0] for _, m in manifests)
    if indices != sorted(set(indices)):
        raise ValueError(f"shard indices repeat: {indices}")
    missing = sorted(set(range(count)) - set(indices))
    for folder, manifest in manifests:
        if manifest.get("status") != "complete":
            raise ValueError(f"{folder}: shard {manifest['shard'][0]}/{count} is not complete "
                             f"(status {manifest.get('status')!r}); resume it first")
    seen: dict[tuple[str, str], Path] = {}
    for folder, _ in manifests:
        for kind in ("scores", "generations", "comparisons"):
            for name in completed_shards(folder, kind):
                if (kind, name) in seen:
                    raise ValueError(f"chunk {kind}/{name} is in both {seen[kind, name]} and "
                                     f"{folder}")
                seen[kind, name] = folder
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.merging-", dir=out.parent))
    try:
        for (kind, name), folder in seen.items():
            (staging / kind).mkdir(exist_ok=True)
            shutil.copy2(folder / kind / f"{name}.parquet", staging / kind / f"{name}.parquet")
        merged = {key: value for key, value in first.items() if key != "shard"}
        merged.update(status="complete" if not missing else "incomplete",
                      merged_from=[str(Path(f).resolve()) for f, _ in manifests],
                      missing_shards=missing)
        write_manifest(staging, merged)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
