"""Ray workers against one process: the same run, the same rows, wall time per configuration.

    python bench/bench_ray.py [--prompts 24] [--seeds 5] [--new-tokens 8] [--rounds 2]

Runs one tiny-model config (tiny-A and tiny-B, both modes) into fresh folders, alternating in
one process: ``workers=1`` (in-process, 2 torch threads), and ``workers=2`` (two Ray actors with
one thread each, on a local cluster started once and reused). Each round checks that both give
identical rows, so the timing compares equal work. Prints wall seconds (median of rounds) and
the ratio one-process / two-workers (> 1: the workers are faster).

What limits it on a 2-core machine: two actors each hold one core, exactly what one process uses
with two threads; the tiny models are too small for two threads to help inside one process, so
the gain comes from overlapping per-chunk Python work, minus Ray's start-up and per-actor model
load (paid per model per actor) and the transfer of each chunk's rows to the driver.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from coupled.runner import distributed, run
from coupled.runner.tiny import build_tiny_models
from coupled.tables import read_scores

QUESTIONS = Path(__file__).resolve().parents[1] / "examples" / "tiny" / "questions.jsonl"
KEY = ["mode", "model", "prompt_id", "seed"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = build_tiny_models(tmp / "models", QUESTIONS)

        def config(out: Path) -> dict:
            return {"output_dir": str(out), "seeds": args.seeds,
                    "max_new_tokens": args.new_tokens, "batch_size": 32,
                    "prompts_per_chunk": 4, "task": {"name": "bench", "type": "multiple_choice",
                                                     "path": str(QUESTIONS),
                                                     "limit": args.prompts},
                    "models": [{"name": n, "path": str(models / n)}
                               for n in ("tiny-A", "tiny-B")]}

        distributed.start_ray(2)
        times: dict[str, list[float]] = {"one process": [], "2 Ray workers": []}
        try:
            for round_ in range(args.rounds):
                tables = {}
                for label, workers in (("one process", 1), ("2 Ray workers", 2)):
                    out = tmp / f"{label.replace(' ', '-')}-{round_}"
                    started = time.perf_counter()
                    run(config(out), progress=False, workers=workers)
                    times[label].append(time.perf_counter() - started)
                    tables[label] = read_scores(out).sort_values(KEY).reset_index(drop=True)
                pd.testing.assert_frame_equal(*tables.values())
        finally:
            import ray

            ray.shutdown()
    medians = {label: statistics.median(values) for label, values in times.items()}
    ratio = medians["one process"] / medians["2 Ray workers"]
    rows = 2 * 2 * args.prompts * args.seeds
    for label, seconds in medians.items():
        print(f"{label:>14}: {seconds:6.1f} s for {rows} rows ({rows / seconds:6.1f} rows/s)")
    print(f"one process / 2 Ray workers: {ratio:.2f}x (identical rows in every round)")
    if args.json:
        Path(args.json).write_text(json.dumps({"seconds": times, "ratio": ratio, "rows": rows},
                                              indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
