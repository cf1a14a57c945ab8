"""`coupled run CONFIG.toml [--out DIR] [--resume] [--workers N] [--shard i/N]` and
`coupled merge OUT SHARD_DIR...`: real-model runs (need the runner extra; Ray for --workers)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the `coupled` parser."""
    parser = subparsers.add_parser(
        "run", help="generate coupled/independent paired scores with Hugging Face models",
        description="Run the models of a TOML config on its task, in coupled and/or "
                    "independent mode, writing scores (or generations + comparisons) and a "
                    "manifest to the output directory. Needs the [runner] extra (torch).")
    parser.add_argument("config", nargs="?",
                        help="the run's TOML config (see examples/tiny/run.toml)")
    parser.add_argument("--show-config", action="store_true",
                        help="print every config key (type, default, meaning) and exit")
    parser.add_argument("--out", help="output directory (overrides the config's output_dir)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in the same output directory: "
                             "finished chunks are kept, unfinished ones recomputed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--workers", type=int, default=1,
                        help="spread the chunks over N Ray actors, one engine each (one GPU "
                             "each when there are GPUs); the same rows as one process")
    parser.add_argument("--ray-address", help="an existing Ray cluster (e.g. auto or "
                                              "HOST:PORT); default: a local one")
    parser.add_argument("--shard", help="i/N: compute only every N-th chunk, from the i-th "
                                        "(clusters without Ray); then `coupled merge`")
    parser.set_defaults(func=_run)

    merge = subparsers.add_parser(
        "merge", help="put the shards of `coupled run --shard i/N` runs together",
        description="Check that the shard folders' manifests agree (same settings, models, "
                    "hashes, blocks; distinct shards; no chunk twice) and copy their shards "
                    "into a new run folder OUT, which `coupled run CONFIG --out OUT --resume` "
                    "continues (e.g. to judge open prompts, or to compute missing shards).")
    merge.add_argument("out", help="the merged run folder (must not exist)")
    merge.add_argument("shards", nargs="+", help="the shard run folders")
    merge.set_defaults(func=_merge)


def _run(args: argparse.Namespace) -> int:
    if args.show_config:
        from coupled.runner.config import config_reference

        print(config_reference(), end="")
        return 0
    if args.config is None:
        raise ValueError("CONFIG is missing: give the run's TOML config (or --show-config)")
    try:
        from coupled.runner import run
    except ImportError as error:  # torch/transformers missing: say which extra to install
        raise ValueError(f"the runner needs the [runner] extra (pip install "
                         f"'coupled[runner]'): {error}") from error
    from coupled.runner.distributed import parse_shard

    shard = parse_shard(args.shard) if args.shard else None
    if args.workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {args.workers}")
    if shard and (args.workers > 1 or args.ray_address):
        raise ValueError("--shard and --workers/--ray-address are alternatives: a shard runs "
                         "in one process")
    out = run(args.config, out=args.out, resume=args.resume, progress=not args.no_progress,
              workers=args.workers, ray_address=args.ray_address, shard=shard)
    _print_first_numbers(out)
    print(f"wrote {out}")
    return 0


def _print_first_numbers(out) -> None:
    """The numbers users look for first: each model's mean score ± CI per mode, and whether
    coupling is on (identical replies coupled vs independent)."""
    from pathlib import Path

    from coupled.analysis import coupling_check, coupling_check_lines, model_scores
    from coupled.tables import read_generations, read_scores

    out = Path(out)
    if (out / "scores").is_dir():
        table = read_scores(out)
        for task, part in table.groupby("task", sort=True):
            means = model_scores(part)
            print(f"mean score ± 95 % CI (question-clustered), task {task!r}, per mode:")
            for row in means.itertuples(index=False):
                print(f"  {row.model:>20} {row.mode:>11}: {row.mean:.3f} "
                      f"[{row.ci_low:.3f}, {row.ci_high:.3f}]  ({row.n_questions} questions, "
                      f"{row.n_rows} rows)")
    elif (out / "generations").is_dir():
        table = read_generations(out)
    else:
        return
    lines = coupling_check_lines(coupling_check(table))
    if lines:
        print("coupling check (coupled replies should agree far more often than independent):")
        print("\n".join(f"  {line}" for line in lines))


def _merge(args: argparse.Namespace) -> int:
    from coupled.runner.distributed import merge_runs

    print(f"wrote {merge_runs(args.out, args.shards)}")
    return 0
