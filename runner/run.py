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

from coupled.runner import tasks
from coupled.runner.config import ModelSpec, RunConfig, load_config
from coupled.tables import (
    completed_shards,
    read_comparisons,
    read_generations,
    read_manifest,
    write_manifest,
    write_shard,
)
from coupled.tables.noise_keys import text_hash

COUPLING = "gumbel"
_PACKAGES = ("coupled", "torch", "transformers", "tokenizers", "accelerate", "bitsandbytes",
             "safetensors", "numpy", "pandas", "pyarrow")


@dataclass(frozen=True)
class Chunk:
    """One unit of work: prompts ``prompts[start:stop]`` x all modes x all seeds, one model."""

    kind: str
    model: str
    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"{model_slug(self.model)}.{self.index:05d}"


def model_slug(name: str) -> str:
    """A file-safe, collision-free form of a model name for shard names."""
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", name)[:40]
    return f"{readable}-{text_hash(name) & 0xFFFFFFFF:08x}"


def plan_chunks(config: RunConfig, n_prompts: int, kind: str) -> list[Chunk]:
    """All chunks of a run, in the order they are computed (model by model)."""
    size = config.prompts_per_chunk
    return [Chunk(kind, spec.name, index, start, min(start + size, n_prompts))
            for spec in config.models
            for index, start in enumerate(range(0, n_prompts, size))]


def row_batches(n_prompts: int, modes: Sequence[str], seeds: Sequence[int], batch_size: int
                ) -> Iterator[list[tuple[int, str, int]]]:
    """(prompt index, mode, seed) rows of a chunk, prompt-major, in batches of ``batch_size``."""
    rows = [(p, m, s) for p in range(n_prompts) for m in modes for s in seeds]
    for start in range(0, len(rows), batch_size):
        yield rows[start:start + batch_size]


def run(config_or_path: str | os.PathLike | dict[str, Any] | RunConfig,
        out: str | os.PathLike | None = None, resume: bool = False,
        progress: bool = True) -> Path:
    """Run every chunk of a config that is not done yet; returns the output directory.

    Refuses a non-empty output directory unless ``resume`` (and then only one written by the
    same config). Writes ``scores/`` (multiple choice) or ``generations/`` + ``comparisons/``
    (open prompts), and ``manifest.json``.
    """
    config = load_config(config_or_path, out)
    out_dir = Path(config.output_dir)
    _build_missing_tiny_models(config)
    prompts = _load_task(config)
    tokenizers = _load_tokenizers(config)  # refuses mismatched vocabularies before any write
    manifest = _prepare_output(config, out_dir, resume)

    manifest.setdefault("model_hashes", {})
    from coupled.runner.models import model_file_hashes

    by_path: dict[str, dict[str, str]] = {}  # variants of one folder are hashed once
    for spec in config.models:
        if spec.name not in manifest["model_hashes"]:
            if spec.path not in by_path:
                by_path[spec.path] = model_file_hashes(spec.path)
            manifest["model_hashes"][spec.name] = by_path[spec.path]
    manifest["status"] = "running"
    write_manifest(out_dir, manifest)

    kind = "scores" if config.task.type == "multiple_choice" else "generations"
    chunks = plan_chunks(config, len(prompts), kind)
    done = completed_shards(out_dir, kind)
    started = time.perf_counter()
    stats = _Stats()
    from tqdm.auto import tqdm

    with tqdm(total=len(chunks), initial=sum(c.name in done for c in chunks), unit="chunk",
              disable=not progress, desc=f"{config.task.name}") as bar:
        for spec in config.models:
            pending = [c for c in chunks if c.model == spec.name and c.name not in done]
            if not pending:
                continue
            _run_model_chunks(config, spec, tokenizers[spec.name], prompts, pending, out_dir,
                              stats, bar)

    if config.task.type == "open":
        _judge(config, prompts, out_dir, progress, stats)
    manifest.update(status="complete", seconds_last_session=round(time.perf_counter() - started, 3),
                    generated_tokens_last_session=stats.tokens,
                    chunks_last_session=stats.chunks)
    write_manifest(out_dir, manifest)
    return out_dir


@dataclass
class _Stats:
    chunks: int = 0
    tokens: int = 0
    seconds: float = 0.0


def _prepare_output(config: RunConfig, out_dir: Path, resume: bool) -> dict[str, Any]:
    fingerprint = json.loads(json.dumps(config.fingerprint(), default=str))
    non_empty = out_dir.is_dir() and any(out_dir.iterdir())
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output {out_dir} exists and is not a directory")
    if non_empty and not resume:
        raise ValueError(f"output directory {out_dir} is not empty; pass --resume to continue "
                         f"the run it holds, or choose another --out")
    if non_empty:
        manifest = read_manifest(out_dir)
        if not manifest:
            raise ValueError(f"cannot resume into {out_dir}: it has no manifest.json, so it was "
                             f"not written by `coupled run`")
        if manifest.get("fingerprint") != fingerprint:
            changed = sorted(k for k in fingerprint
                             if manifest.get("fingerprint", {}).get(k) != fingerprint[k])
            raise ValueError(f"cannot resume into {out_dir}: it was written by a different "
                             f"config (differs in {changed}); use a fresh --out")
        manifest["resumed"] = manifest.get("resumed", 0) + 1
        return manifest
    out_dir.mkdir(parents=True, exist_ok=True)
    return {"config": config.as_dict(), "fingerprint": fingerprint, "coupling": COUPLING,
            "noise": "DESIGN §2 counter-based Gumbel noise (splitmix64 / blake2b keys)",
            "versions": _versions(), "python": platform.python_version(),
            "created_unix": time.time()}


def _versions() -> dict[str, str | None]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _build_missing_tiny_models(config: RunConfig) -> None:
    from coupled.runner.tiny import build_tiny_models

    specs = [config.judge.model] if config.judge and config.judge.model else []
    for spec in list(config.models) + specs:
        if spec.build is None or Path(spec.path).is_dir():
            continue
        if spec.build != "tiny":
            raise ValueError(f"model {spec.name!r}: unknown build {spec.build!r} (only 'tiny')")
        build_tiny_models(Path(spec.path).parent)


def _load_task(config: RunConfig) -> pd.DataFrame:
    if config.task.type == "multiple_choice":
        prompts = tasks.load_multiple_choice(config.task.path)
    else:
        prompts = tasks.load_open_prompts(config.task.path)
    if config.task.limit is not None:
        prompts = prompts.head(config.task.limit)
    return prompts


def _load_tokenizers(config: RunConfig) -> dict[str, Any]:
    from coupled.runner.models import check_same_vocabulary, load_tokenizer

    tokenizers = {spec.name: load_tokenizer(spec) for spec in config.models}
    if "coupled" in config.modes and len(tokenizers) > 1:
        check_same_vocabulary(tokenizers)
    return tokenizers


def _prompt_texts(config: RunConfig, tokenizer, prompts: pd.DataFrame) -> list[str]:
    if config.task.type == "multiple_choice":
        return [tasks.render_prompt(
                    tokenizer, config.task.system_prompt or
                    tasks.multiple_choice_system_prompt(len(choices)),
                    tasks.multiple_choice_user_turn(question, choices), "Answer:")
                for question, choices in zip(prompts["question"], prompts["choices"],
                                             strict=True)]
    system = config.task.system_prompt or tasks.prompt_text("open_system")
    return [tasks.render_prompt(tokenizer, system, prompt, "Answer:")
            for prompt in prompts["prompt"]]


def _encode(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    # Chat templates already hold the special tokens; plain prompts get the tokenizer's own.
    add_special = not getattr(tokenizer, "chat_template", None)
    return [tokenizer(text, add_special_tokens=add_special)["input_ids"] for text in texts]


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _run_model_chunks(config: RunConfig, spec: ModelSpec, tokenizer, prompts: pd.DataFrame,
                      chunks: list[Chunk], out_dir: Path, stats: _Stats, bar) -> None:
    from coupled.runner.decode import generate_rows
    from coupled.runner.models import end_token_ids, load_model
    from coupled.runner.noise_torch import row_keys, stream_key

    model = load_model(spec)
    prompt_ids = _encode(tokenizer, _prompt_texts(config, tokenizer, prompts))
    ends = end_token_ids(model, tokenizer)
    streams = {mode: stream_key(mode, spec.name) for mode in config.modes}
    for chunk in chunks:
        started = time.perf_counter()
        part = prompts.iloc[chunk.start:chunk.stop].to_dict("records")
        records = []
        for batch in row_batches(len(part), config.modes, config.seeds, config.batch_size):
            distinct = sorted({p for p, _, _ in batch})
            keys = row_keys(config.task.name, [part[p]["prompt_id"] for p, _, _ in batch],
                            [s for _, _, s in batch], [streams[m] for _, m, _ in batch])
            generations = generate_rows(
                model, [prompt_ids[chunk.start + p] for p in distinct],
                [distinct.index(p) for p, _, _ in batch], keys,
                temperature=config.temperature, top_p=config.top_p,
                max_new_tokens=config.max_new_tokens, end_token_ids=ends,
                pad_token_id=tokenizer.pad_token_id, vocab_size=len(tokenizer))
            for (p, mode, seed), generation in zip(batch, generations, strict=True):
                records.append(_record(config, chunk, part[p], mode, seed, tokenizer,
                                       generation))
                stats.tokens += len(generation.token_ids) + generation.finished
        write_shard(pd.DataFrame.from_records(records), out_dir, chunk.kind, chunk.name)
        stats.seconds += time.perf_counter() - started
        bar.set_postfix(model=spec.name, tok_s=f"{stats.tokens / max(stats.seconds, 1e-9):.0f}")
        bar.update(1)
        stats.chunks += 1
    del model
    _free_memory()


def _record(config: RunConfig, chunk: Chunk, prompt: dict[str, Any], mode: str, seed: int,
            tokenizer, generation) -> dict[str, Any]:
    response = tokenizer.decode(list(generation.token_ids), skip_special_tokens=True)
    record = {"task": config.task.name, "prompt_id": prompt["prompt_id"], "seed": seed,
              "mode": mode, "coupling": COUPLING, "model": chunk.model,
              "response": response, "n_tokens": len(generation.token_ids)}
    if chunk.kind == "scores":
        score, failed = tasks.score_choice(response, prompt["answer"], len(prompt["choices"]))
        record.update(score=score, parse_failed=failed)
    if "subject" in prompt:
        record["subject"] = prompt["subject"]
    return record


def _judge(config: RunConfig, prompts: pd.DataFrame, out_dir: Path, progress: bool,
           stats: _Stats) -> None:
    """Comparisons for open prompts: an external file, or a local judge model run greedily."""
    names = [spec.name for spec in config.models]
    done = completed_shards(out_dir, "comparisons")
    if config.judge.comparisons is not None:
        if "external" not in done:
            external = read_comparisons(config.judge.comparisons, models=names)
            write_shard(external, out_dir, "comparisons", "external")
        return
    generations = read_generations(out_dir)
    generations = generations[generations["task"] == config.task.name]
    responses = {(r.prompt_id, r.seed, r.mode, r.model): r.response
                 for r in generations.itertuples(index=False)}
    size = config.prompts_per_chunk
    chunks = [(mode, index, start) for mode in config.modes
              for index, start in enumerate(range(0, len(prompts), size))]
    pending = [c for c in chunks if f"judge.{c[0]}.{c[1]:05d}" not in done]
    if not pending:
        return
    from tqdm.auto import tqdm

    from coupled.runner.decode import generate_rows
    from coupled.runner.models import end_token_ids, load_model, load_tokenizer

    spec = config.judge.model
    tokenizer, model = load_tokenizer(spec), load_model(spec)
    ends = end_token_ids(model, tokenizer)
    system = tasks.prompt_text("judge_system")
    import torch

    for mode, index, start in tqdm(pending, disable=not progress, desc="judge", unit="chunk"):
        records, texts = [], []
        for prompt in prompts.iloc[start:start + size].itertuples(index=False):
            for seed in config.seeds:
                for model_a, model_b in combinations(sorted(names), 2):
                    first = tasks.shown_first(config.task.name, prompt.prompt_id, seed,
                                              model_a, model_b)
                    answers = (responses[(prompt.prompt_id, seed, mode, model_a)],
                               responses[(prompt.prompt_id, seed, mode, model_b)])
                    shown = answers if first == "a" else answers[::-1]
                    texts.append(tasks.render_prompt(
                        tokenizer, system, tasks.judge_user_turn(prompt.prompt, *shown),
                        "Verdict:"))
                    records.append({"task": config.task.name, "prompt_id": prompt.prompt_id,
                                    "seed": seed, "mode": mode, "coupling": COUPLING,
                                    "model_a": model_a, "model_b": model_b,
                                    "shown_first": first})
        encoded = _encode(tokenizer, texts)
        verdicts: list[str] = []
        for batch in range(0, len(encoded), config.batch_size):
            part = encoded[batch:batch + config.batch_size]
            generations = generate_rows(
                model, part, list(range(len(part))), torch.zeros(len(part), dtype=torch.int64),
                temperature=0.0, max_new_tokens=config.judge.max_new_tokens,
                end_token_ids=ends, pad_token_id=tokenizer.pad_token_id,
                vocab_size=len(tokenizer))
            verdicts += [tokenizer.decode(list(g.token_ids), skip_special_tokens=True)
                         for g in generations]
        for record, verdict in zip(records, verdicts, strict=True):
            outcome, failed = tasks.outcome_from_verdict(tasks.parse_verdict(verdict),
                                                         record["shown_first"])
            record.update(outcome=outcome, parse_failed=failed, judge_response=verdict)
        write_shard(pd.DataFrame.from_records(records), out_dir, "comparisons",
                    f"judge.{mode}.{index:05d}")
        stats.chunks += 1
    del model
    _free_memory()
