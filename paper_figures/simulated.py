"""Simulated input for the figures and the demo: ``coupled.simulate.simulate_family`` (the
default six-model family unless a config is given), its tables and its exact truth.

The simulator's truth is per prompt (``benchmark_truth`` / ``pairwise_truth``: one row per
prompt, pair, mode); the calibration figure needs it over the prompts of the run, which is
done here: win-rates and mean differences are means over the (equally likely) prompts, and the
variance of one row's difference is the law of total variance,
``E_prompt[Var(R_a - R_b | prompt)] + Var_prompt(E[R_a - R_b | prompt])``. These are exact
values of the simulated design, not estimates; no library has this aggregation.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from coupled.paper_figures.calibration import KnownTruth
from coupled.paper_figures.inputs import RunTables, tables_from_frames

# --quick: the same family and tasks on fewer prompts and seeds (tests, first look).
QUICK = {"benchmark_prompts": 60, "pairwise_prompts": 60, "n_seeds": 4}
SAMPLER = "gumbel"


def _matrices(truth: pd.DataFrame, models: list[str], coupling: str
              ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    index = {m: k for k, m in enumerate(models)}
    k = len(models)
    win, mean, variance = {}, {}, {}
    for mode, part in truth[truth["coupling"] == coupling].groupby("mode"):
        w, m, v = np.zeros((k, k)), np.zeros((k, k)), np.zeros((k, k))
        for (a, b), pair in part.groupby(["model_a", "model_b"]):
            i, j = index[a], index[b]
            difference = (pair["mean_a"] - pair["mean_b"]).to_numpy()
            w[i, j], w[j, i] = pair["win_a"].mean(), pair["win_b"].mean()
            m[i, j] = difference.mean()
            m[j, i] = -m[i, j]
            v[i, j] = v[j, i] = pair["var_diff"].mean() + difference.var()
        win[mode], mean[mode], variance[mode] = w, m, v
    return win, mean, variance


def known_truth(result: Any, coupling: str = SAMPLER) -> KnownTruth | None:
    """:class:`KnownTruth` of a ``SimulationResult`` (None when it carries no truth)."""
    win = mean = variance = None
    pairwise_models = benchmark_models = None
    if result.pairwise_truth is not None:
        pairwise_models = [m.name for m in result.models["pairwise"]]
        win, _, _ = _matrices(result.pairwise_truth, pairwise_models, coupling)
    if result.benchmark_truth is not None:
        benchmark_models = [m.name for m in result.models["benchmark"]]
        _, mean, variance = _matrices(result.benchmark_truth, benchmark_models, coupling)
    if win is None and mean is None:
        return None
    return KnownTruth(models=pairwise_models or benchmark_models, win=win,
                      benchmark_models=benchmark_models, mean_difference=mean,
                      variance_difference=variance)


def simulated_tables(config: str | os.PathLike | dict | None = None, *, quick: bool = False,
                     out_dir: str | os.PathLike | None = None
                     ) -> tuple[RunTables, KnownTruth | None, dict[str, Any]]:
    """Simulate (writing the tables to ``out_dir`` when given); return the tables, the truth
    and a few facts for captions (``description``, ``n_seeds``, ``models``, and ``coupling``:
    the sampler the truth is for)."""
    from coupled.simulate.family import SimulationConfig, load_config, simulate_family

    if config is None:
        config = SimulationConfig(**QUICK) if quick else SimulationConfig()
    elif isinstance(config, dict):
        config = SimulationConfig.from_mapping({**config, **(QUICK if quick else {})})
    else:
        config = load_config(config)
    result = simulate_family(out_dir=out_dir, config=config, progress=False)
    tables = tables_from_frames(result.scores, result.comparisons, "<simulated family>",
                                {"simulation": config.as_dict()})
    models = list(config.models)
    description = (
        f"Simulated family: {len(models)} synthetic autoregressive models ({', '.join(models)}; "
        f"recipes in `data/manifest.json`), vocabulary {config.vocab_size}, outputs of up to "
        f"{config.max_length} tokens; benchmark task {config.benchmark_prompts} questions and "
        f"pairwise task {config.pairwise_prompts} prompts (judge noise {config.judge_noise}), "
        f"each with {config.n_seeds} seeds, in modes {', '.join(config.modes)}, sampler "
        f"{', '.join(config.couplings)}.")
    coupling = SAMPLER if SAMPLER in config.couplings else config.couplings[0]
    about = {"description": description, "n_seeds": config.n_seeds, "models": models,
             "coupling": coupling}
    return tables, known_truth(result, coupling), about
