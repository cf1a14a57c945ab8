"""The run configuration: a TOML file (or a dict of the same shape) -> frozen dataclasses.

Relative paths in a config file are relative to the file's folder. Example::

    output_dir = "../../runs/tiny"
    seeds = 5                        # 5 -> seeds 0..4; or an explicit list [0, 3, 7]
    modes = ["coupled", "independent"]
    temperature = 1.0
    top_p = 1.0                      # optional nucleus; noise stays attached to token ids
    max_new_tokens = 4
    batch_size = 64                  # rows decoded together
    prompts_per_chunk = 8            # unit of work and of resumption (x all seeds)
    device = "auto"                  # "cuda" when available, else "cpu"
    dtype = "float32"

    [task]
    name = "tiny-mc"
    type = "multiple_choice"         # or "open" (needs [judge])
    path = "questions.jsonl"
    # system_prompt = "..."          # default: the paper's (Tables 3 and 4)

    [[models]]
    name = "tiny-A"
    path = "models/tiny-A"           # local folder or hub id
    # quantization = "8bit"          # or "4bit" (bitsandbytes)
    # build = "tiny"                 # build examples/tiny models here if missing

    [judge]                          # open prompts only: a local judge model, or
    path = "models/judge"            #   comparisons = "judged.csv" (externally judged)
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from coupled.tables import MODES

TASK_TYPES = ("multiple_choice", "open")
QUANTIZATIONS = (None, "8bit", "4bit")
DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str
    dtype: str = "float32"
    quantization: str | None = None
    device: str = "auto"
    trust_remote_code: bool = False
    build: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    type: str
    path: str
    system_prompt: str | None = None
    limit: int | None = None


@dataclass(frozen=True)
class JudgeSpec:
    model: ModelSpec | None = None
    comparisons: str | None = None
    max_new_tokens: int = 8


@dataclass(frozen=True)
class RunConfig:
    task: TaskSpec
    models: tuple[ModelSpec, ...]
    output_dir: str
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    modes: tuple[str, ...] = MODES
    temperature: float = 1.0
    top_p: float | None = None
    max_new_tokens: int = 4
    batch_size: int = 64
    prompts_per_chunk: int = 8
    judge: JudgeSpec | None = None
    source: str | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> dict[str, Any]:
        """What decides the rows' values and the chunks: all but where the output goes."""
        data = self.as_dict()
        data.pop("output_dir")
        data.pop("source")
        return data


def load_config(config: str | os.PathLike | dict[str, Any] | RunConfig,
                out: str | os.PathLike | None = None) -> RunConfig:
    """Parse a TOML file (or a dict of its shape); ``out`` overrides ``output_dir``."""
    if isinstance(config, RunConfig):
        result = config
    elif isinstance(config, dict):
        result = _parse(config, Path.cwd(), None)
    else:
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"config file {path}: invalid TOML: {error}") from error
        result = _parse(data, path.resolve().parent, str(path))
    if out is not None:
        result = replace(result, output_dir=str(Path(out).resolve()))
    return result


def _parse(data: dict[str, Any], base: Path, source: str | None) -> RunConfig:
    def fail(key: str, problem: str) -> ValueError:
        return ValueError(f"config {source or '<config>'}: {key!r} {problem}")

    known = {"task", "models", "output_dir", "seeds", "modes", "temperature", "top_p",
             "max_new_tokens", "batch_size", "prompts_per_chunk", "judge", "device", "dtype",
             "trust_remote_code"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise fail(unknown[0], f"is not a known setting (known: {sorted(known)})")

    task = data.get("task")
    if not isinstance(task, dict):
        raise fail("task", "is missing: add a [task] table with name, type and path")
    for key in ("name", "type", "path"):
        if key not in task:
            raise fail(f"task.{key}", "is missing")
    if task["type"] not in TASK_TYPES:
        raise fail("task.type", f"must be one of {TASK_TYPES}, got {task['type']!r}")
    limit = task.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise fail("task.limit", f"must be a positive integer, got {limit!r}")
    task_spec = TaskSpec(name=str(task["name"]), type=task["type"],
                         path=_resolve(base, task["path"]), system_prompt=task.get("system_prompt"),
                         limit=limit)

    defaults = {"device": data.get("device", "auto"), "dtype": data.get("dtype", "float32"),
                "trust_remote_code": bool(data.get("trust_remote_code", False))}
    models = data.get("models")
    if not isinstance(models, list) or not models:
        raise fail("models", "is missing: add one [[models]] table per model (name, path)")
    specs = tuple(_model_spec(m, base, defaults, fail, f"models[{i}]")
                  for i, m in enumerate(models))
    names = [m.name for m in specs]
    if len(set(names)) != len(names):
        raise fail("models", f"names must be distinct, got {names}")

    seeds = data.get("seeds", 5)
    if isinstance(seeds, int) and seeds >= 1:
        seeds = tuple(range(seeds))
    elif isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds) \
            and len(set(seeds)) == len(seeds):
        seeds = tuple(seeds)
    else:
        raise fail("seeds", f"must be a positive count or a list of distinct non-negative "
                            f"integers, got {seeds!r}")
    modes = tuple(data.get("modes", MODES))
    if not modes or any(m not in MODES for m in modes) or len(set(modes)) != len(modes):
        raise fail("modes", f"must be a non-empty subset of {MODES}, got {list(modes)}")
    temperature = float(data.get("temperature", 1.0))
    if not temperature > 0:
        raise fail("temperature", f"must be > 0 for sampling, got {temperature}")
    top_p = data.get("top_p")
    if top_p is not None and not 0 < float(top_p) <= 1:
        raise fail("top_p", f"must be in (0, 1], got {top_p}")
    integers = {key: _positive_int(data, key, getattr(RunConfig, key), fail)
                for key in ("max_new_tokens", "batch_size", "prompts_per_chunk")}
    if "output_dir" not in data:
        raise fail("output_dir", "is missing (or pass --out DIR)")

    judge = None
    if "judge" in data:
        j = data["judge"]
        if "comparisons" in j:
            judge = JudgeSpec(comparisons=_resolve(base, j["comparisons"]))
        elif "path" in j:
            model = {"name": "judge", **{k: v for k, v in j.items() if k != "max_new_tokens"}}
            judge = JudgeSpec(model=_model_spec(model, base, defaults, fail, "judge"),
                              max_new_tokens=_positive_int(
                                  j, "max_new_tokens", JudgeSpec.max_new_tokens, fail,
                                  "judge.max_new_tokens"))
        else:
            raise fail("judge", "needs either path (a judge model) or comparisons (a file)")
    if task_spec.type == "open" and judge is None:
        raise fail("judge", "is required for open prompts (a judge model or a comparisons file)")
    return RunConfig(task=task_spec, models=specs, output_dir=_resolve(base, data["output_dir"]),
                     seeds=seeds, modes=modes, temperature=temperature,
                     top_p=None if top_p is None else float(top_p), judge=judge,
                     source=source, **integers)


def _model_spec(m: Any, base: Path, defaults: dict[str, Any], fail, where: str) -> ModelSpec:
    if not isinstance(m, dict) or "name" not in m or "path" not in m:
        raise fail(where, "needs a name and a path")
    extra = sorted(set(m) - {"name", "path", "dtype", "quantization", "device",
                             "trust_remote_code", "build"})
    if extra:
        raise fail(f"{where}.{extra[0]}", "is not a known model setting")
    quantization = m.get("quantization")
    if quantization not in QUANTIZATIONS:
        raise fail(f"{where}.quantization", f"must be '8bit' or '4bit', got {quantization!r}")
    dtype = m.get("dtype", defaults["dtype"])
    if dtype not in DTYPES:
        raise fail(f"{where}.dtype", f"must be one of {DTYPES}, got {dtype!r}")
    path = str(m["path"])
    # A hub id ("org/name") stays as it is; anything that looks like a path is made absolute.
    local = path.startswith((".", "/", "~")) or (base / path).exists() or m.get("build")
    return ModelSpec(name=str(m["name"]), path=_resolve(base, path) if local else path,
                     dtype=dtype, quantization=quantization,
                     device=m.get("device", defaults["device"]),
                     trust_remote_code=bool(m.get("trust_remote_code",
                                                  defaults["trust_remote_code"])),
                     build=m.get("build"))


def _positive_int(data: dict[str, Any], key: str, default: int, fail,
                  where: str | None = None) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or value < 1:
        raise fail(where or key, f"must be a positive integer, got {value!r}")
    return value


def _resolve(base: Path, path: str) -> str:
    return str((base / Path(path).expanduser()).resolve())
