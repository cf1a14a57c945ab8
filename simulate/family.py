"""Whole-family simulation: models, both tasks, both modes, tables on disk and the exact truth.

:func:`simulate_family` builds a family of synthetic bigram models (default: the paper's six,
:data:`coupled.simulate.models.DEFAULT_FAMILY`), runs the benchmark and the pairwise task in
coupled and independent mode, returns the ``scores`` / ``comparisons`` tables and the exact
per-prompt truth of every pair (the pair chain of :mod:`coupled.simulate.exact`), and with
``out_dir`` writes them through :mod:`coupled.tables` (shards + manifest with the simulation
parameters) plus ``truth/benchmark.parquet`` and ``truth/pairwise.parquet``.

A configuration is a mapping (or TOML file, :func:`load_config`) with the keys of
:class:`SimulationConfig`; ``examples/simulate/*.toml`` show every key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from coupled.simulate.exact import PairTruth, exact_points_law, pair_truth
from coupled.simulate.generate import sequence_comparisons, sequence_scores
from coupled.simulate.models import DEFAULT_FAMILY, SyntheticModel, model_family
from coupled.simulate.paired import pair_order, simulated_seeds
from coupled.simulate.samplers import MODES, SAMPLERS, check_choice
from coupled.simulate.tasks import (
    TASK_KINDS,
    SequenceTask,
    base_bigram_logits,
    benchmark_task,
    pairwise_task,
)
from coupled.tables import write_manifest, write_shard, write_table

# base_bigram_logits' knobs, recorded in full in every manifest.
DEFAULT_BASE = {"strength": 1.5, "spread": 1.0, "end_logit": -0.5, "end_after_points": 1.5}
# A truth table's value columns are PairTruth's fields, in their order.
TRUTH_COLUMNS = tuple(f.name for f in dataclasses.fields(PairTruth))


@dataclass(frozen=True)
class SimulationConfig:
    """Everything a simulation depends on (defaults: the paper's six models, both tasks).

    ``seed`` seeds the tasks and models and picks the noise seeds ``seed * n_seeds + s``.
    ``base`` holds the knobs of :func:`coupled.simulate.tasks.base_bigram_logits`;
    ``models`` maps names to recipes (:func:`coupled.simulate.models.variant_logits`).
    """

    seed: int = 0
    n_seeds: int = 10
    tasks: tuple[str, ...] = TASK_KINDS
    modes: tuple[str, ...] = MODES
    couplings: tuple[str, ...] = ("gumbel",)
    vocab_size: int = 6
    max_length: int = 4
    benchmark_prompts: int = 200
    n_subjects: int = 4
    pairwise_prompts: int = 200
    max_points: int = 2
    judge_noise: float = 0.1
    tie_margin: float = 0.0
    position_bias: float = 0.5
    base: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_BASE))
    models: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(DEFAULT_FAMILY))

    def __post_init__(self) -> None:
        for name in ("tasks", "modes", "couplings"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for task in self.tasks:
            check_choice("tasks", task, TASK_KINDS)
        for mode in self.modes:
            check_choice("modes", mode, MODES)
        for coupling in self.couplings:
            check_choice("couplings", coupling, SAMPLERS)
        if not (self.tasks and self.modes and self.couplings):
            raise ValueError("config: tasks, modes and couplings must each name at least one")
        for name in ("n_seeds", "max_length", "benchmark_prompts", "pairwise_prompts",
                     "max_points"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"config: {name} must be at least 1, got {getattr(self, name)}")
        if self.vocab_size < 2:
            raise ValueError(f"config: vocab_size must be at least 2, got {self.vocab_size}")
        if len(self.models) < 2:
            raise ValueError("config: models must name at least two models")
        unknown = set(self.base) - set(DEFAULT_BASE)
        if unknown:
            raise ValueError(f"config: unknown key(s) in [base]: {sorted(unknown)}; known: "
                             f"{sorted(DEFAULT_BASE)}")
        object.__setattr__(self, "base", {**DEFAULT_BASE, **self.base})

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> SimulationConfig:
        """A config from a (TOML-shaped) mapping; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(mapping) - known
        if unknown:
            raise ValueError(f"config: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        values = dict(mapping)
        if "models" in values:
            values["models"] = {str(k): dict(v) for k, v in values["models"].items()}
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | os.PathLike) -> SimulationConfig:
    """Read a TOML simulation config (keys of :class:`SimulationConfig`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such config file: {path}")
    try:
        with path.open("rb") as handle:
            mapping = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML: {error}") from error
    try:
        return SimulationConfig.from_mapping(mapping)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from error


@dataclass(frozen=True)
class SimulationResult:
    """Tables, exact truth, tasks and models of one simulation.

    ``benchmark_truth`` / ``pairwise_truth``: one row per (task, prompt_id, mode, coupling,
    model_a, model_b) with :class:`coupled.simulate.exact.PairTruth`'s fields — exact per-prompt
    values of what the tables estimate (benchmark scores are 0/1; pairwise ``win_a`` / ``win_b``
    / ``tie`` include the judge's noise).
    """

    config: SimulationConfig
    tasks: dict[str, SequenceTask]
    models: dict[str, list[SyntheticModel]]
    scores: pd.DataFrame | None
    comparisons: pd.DataFrame | None
    benchmark_truth: pd.DataFrame | None
    pairwise_truth: pd.DataFrame | None
    out_dir: Path | None = None


def build_tasks_and_models(config: SimulationConfig
                           ) -> tuple[dict[str, SequenceTask], dict[str, list[SyntheticModel]]]:
    """The tasks of ``config`` and, per task, the family's models on its prompts."""
    task_rng, model_rng = np.random.default_rng(config.seed).spawn(2)
    tasks: dict[str, SequenceTask] = {}
    if "benchmark" in config.tasks:
        tasks["benchmark"] = benchmark_task(config.benchmark_prompts, config.vocab_size,
                                            config.max_length, task_rng,
                                            n_subjects=config.n_subjects)
    if "pairwise" in config.tasks:
        tasks["pairwise"] = pairwise_task(config.pairwise_prompts, config.vocab_size,
                                          config.max_length, task_rng,
                                          max_points=config.max_points)
    models = {}
    for name, task, rng in zip(tasks, tasks.values(), model_rng.spawn(len(tasks)), strict=True):
        base_rng, family_rng = rng.spawn(2)
        base = base_bigram_logits(task, base_rng, **config.base)
        models[name] = model_family(base, config.models, family_rng)
    return tasks, models


def exact_pair_truth(models: Sequence[SyntheticModel], task: SequenceTask, *,
                     modes: Sequence[str] = MODES, couplings: Sequence[str] = ("gumbel",),
                     judge_noise: float = 0.0, tie_margin: float = 0.0) -> pd.DataFrame:
    """Exact per-prompt truth of every canonical pair of ``models`` on ``task``, each mode and
    coupling, from the exact pair chain (:func:`coupled.simulate.exact.exact_points_law`)."""
    names = [m.name for m in models]
    ia, ib = pair_order(names)
    values = task.score_of_points(np.arange(task.max_length * task.points.max() + 1))
    blocks: list[tuple[str, str, str, str, PairTruth]] = []
    for mode in dict.fromkeys(modes):
        # Independent mode does not depend on the sampler: compute it once, label each coupling.
        for coupling in dict.fromkeys(couplings if mode == "coupled" else couplings[:1]):
            for a, b in zip(ia, ib, strict=True):
                law = exact_points_law(models[a].probs, models[b].probs, task.points,
                                       task.max_length, coupling=coupling, mode=mode,
                                       end_token=task.end_token)
                truth = pair_truth(law, values, tie_margin=tie_margin, judge_noise=judge_noise)
                for label in (couplings if mode == "independent" else (coupling,)):
                    blocks.append((mode, label, names[a], names[b], truth))
    n = task.n_prompts
    columns: dict[str, np.ndarray] = {
        "task": np.full(n * len(blocks), task.name, dtype=object),
        "prompt_id": np.tile(np.asarray(task.prompt_ids, dtype=object), len(blocks)),
    }
    for position, name in enumerate(("mode", "coupling", "model_a", "model_b")):
        columns[name] = np.repeat(np.array([block[position] for block in blocks], dtype=object), n)
    for name in TRUTH_COLUMNS:
        columns[name] = np.concatenate([getattr(block[4], name) for block in blocks])
    # Explicit dtypes keep the text columns ``object``, as coupled.tables returns them.
    return pd.DataFrame({name: pd.Series(column, dtype=column.dtype)
                         for name, column in columns.items()})


def simulate_family(out_dir: str | os.PathLike | None = None,
                    config: SimulationConfig | Mapping[str, Any] | str | os.PathLike | None = None,
                    progress: bool = True, truth: bool = True) -> SimulationResult:
    """Simulate a model family on the benchmark and pairwise tasks, coupled and independent.

    ``config``: a :class:`SimulationConfig`, a mapping of its keys, a TOML path, or ``None`` for
    the default (the paper's six models, 200 + 200 prompts, 10 seeds, both modes, Gumbel-max).
    With ``out_dir``: writes ``scores/``, ``comparisons/`` (one shard per task, mode and
    coupling), ``truth/*.parquet`` and ``manifest.json`` (the config and the model recipes).
    ``truth=False`` skips the exact pair chain (tables only).
    """
    if config is None:
        config = SimulationConfig()
    elif isinstance(config, Mapping):
        config = SimulationConfig.from_mapping(config)
    elif not isinstance(config, SimulationConfig):
        config = load_config(config)
    tasks, models = build_tasks_and_models(config)
    units = [(kind, coupling) for kind in tasks for coupling in config.couplings]
    scores, comparisons = [], []
    bar = tqdm(total=len(units) + (len(tasks) if truth else 0), disable=not progress,
               desc="simulate", unit="step")
    for kind, coupling in units:
        task, family = tasks[kind], models[kind]
        if kind == "benchmark":
            frame = sequence_scores(family, task, config.n_seeds, modes=config.modes,
                                    coupling=coupling, seed=config.seed)
            scores.append(frame)
        else:
            frame = sequence_comparisons(family, task, config.n_seeds, modes=config.modes,
                                         coupling=coupling, seed=config.seed,
                                         judge_noise=config.judge_noise,
                                         tie_margin=config.tie_margin,
                                         position_bias=config.position_bias)
            comparisons.append(frame)
        bar.update()
    truths: dict[str, pd.DataFrame | None] = {"benchmark": None, "pairwise": None}
    if truth:
        for kind, task in tasks.items():
            noisy = kind == "pairwise"
            truths[kind] = exact_pair_truth(models[kind], task, modes=config.modes,
                                            couplings=config.couplings,
                                            judge_noise=config.judge_noise if noisy else 0.0,
                                            tie_margin=config.tie_margin if noisy else 0.0)
            bar.update()
    bar.close()
    result = SimulationResult(
        config=config, tasks=tasks, models=models,
        scores=pd.concat(scores, ignore_index=True) if scores else None,
        comparisons=pd.concat(comparisons, ignore_index=True) if comparisons else None,
        benchmark_truth=truths["benchmark"], pairwise_truth=truths["pairwise"],
        out_dir=None if out_dir is None else Path(out_dir))
    if out_dir is not None:
        write_simulation(result, out_dir)
    return result


def write_simulation(result: SimulationResult, out_dir: str | os.PathLike) -> Path:
    """Write a simulation's tables (validated shards), truth files and manifest to ``out_dir``."""
    out = Path(out_dir)
    for kind, frame in (("scores", result.scores), ("comparisons", result.comparisons)):
        if frame is None:
            continue
        for (task, mode, coupling), shard in frame.groupby(["task", "mode", "coupling"],
                                                           sort=False):
            write_shard(shard.reset_index(drop=True), out, kind, f"{task}-{mode}-{coupling}")
    for kind, truth in (("benchmark", result.benchmark_truth),
                        ("pairwise", result.pairwise_truth)):
        if truth is not None:
            write_table(truth, out / "truth" / f"{kind}.parquet")
    write_manifest(out, simulation_manifest(result))
    return out


def simulation_manifest(result: SimulationResult) -> dict[str, Any]:
    """The manifest: producer, the full config (model recipes included) and task summaries."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package_version = version("coupled")
    except PackageNotFoundError:  # running from a source tree without an install
        package_version = "unknown"
    return {
        "producer": "coupled.simulate",
        "coupled_version": package_version,
        "numpy_version": np.__version__,
        "pandas_version": pd.__version__,
        "simulation": result.config.as_dict(),
        "noise_seeds": [int(s) for s in
                        simulated_seeds(result.config.seed, result.config.n_seeds)[[0, -1]]],
        "tasks": {name: {"kind": task.kind, "n_prompts": task.n_prompts,
                         "vocab_size": task.vocab_size, "max_length": task.max_length,
                         "end_token": task.end_token}
                  for name, task in result.tasks.items()},
        "models": {name: [m.name for m in family] for name, family in result.models.items()},
        "truth_files": [f"truth/{kind}.parquet" for kind, t in
                        (("benchmark", result.benchmark_truth),
                         ("pairwise", result.pairwise_truth)) if t is not None],
    }
