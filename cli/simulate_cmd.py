"""CLI subcommands for the simulate group: ``coupled simulate --out DIR [--config FILE.toml]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from coupled.cli.options import int_at_least


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the `coupled` parser."""
    parser = subparsers.add_parser(
        "simulate",
        help="simulate a family of synthetic models; write scores/comparisons tables and truth",
        description="Simulate a family of synthetic autoregressive models (default: the paper's "
                    "six — large, medium, small and three quantized variants of the large) on a "
                    "benchmark and a pairwise task, in coupled and independent mode. Writes "
                    "DIR/scores/, DIR/comparisons/ (parquet shards), DIR/truth/*.parquet (exact "
                    "per-prompt values from the pair chain) and DIR/manifest.json.",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder: new or empty, or with --force an earlier "
                             "`coupled simulate` output; its parent must exist")
    parser.add_argument("--config", type=Path, metavar="FILE.toml",
                        help="simulation config (see examples/simulate/); default: the paper's "
                             "six-model family, 200 + 200 prompts, 10 seeds")
    parser.add_argument("--seed", type=int_at_least(0), help="override the config's seed")
    parser.add_argument("--n-seeds", type=int_at_least(1),
                        help="override the config's n_seeds")
    parser.add_argument("--no-truth", action="store_true",
                        help="skip the exact pair-chain truth (tables only)")
    parser.add_argument("--force", action="store_true",
                        help="replace DIR if it holds an earlier `coupled simulate` output "
                             "(and nothing else)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.set_defaults(func=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    from coupled.cli import output_paths
    from coupled.simulate.family import (
        SimulationConfig,
        load_config,
        simulate_family,
        write_simulation,
    )

    folder = output_paths.check_output_folder(args.out, producer="simulate",
                                              inputs=(args.config,), reuse=args.force,
                                              reuse_flag="--force")
    config = load_config(args.config) if args.config else SimulationConfig()
    overrides = {name: value for name, value in (("seed", args.seed), ("n_seeds", args.n_seeds))
                 if value is not None}
    if overrides:
        config = SimulationConfig.from_mapping({**config.as_dict(), **overrides})
    result = simulate_family(None, config, progress=not args.quiet, truth=not args.no_truth)
    # Written beside the target and swapped in at the end: an interrupted or failed write
    # leaves no half-written output folder, and --force replaces the earlier one whole.
    with output_paths.staged_output_folder(folder) as staging:
        write_simulation(result, staging)
    if not args.quiet:
        _print_summary(result, folder.path)
    return 0


def _print_summary(result, out: Path) -> None:
    import pandas as pd

    print(f"wrote {out}")
    if result.scores is not None:
        table = (result.scores.groupby(["model", "mode"])["score"].mean().unstack("mode")
                 .rename_axis(columns=None))
        print(f"\nscores: {len(result.scores)} rows; mean score by model and mode")
        print(table.to_string(float_format=lambda x: f"{x:.3f}"))
    if result.comparisons is not None:
        comparisons = result.comparisons
        shares = (comparisons.groupby("mode")["outcome"].value_counts(normalize=True)
                  .unstack("outcome").reindex(columns=["a", "b", "tie"]).fillna(0.0))
        print(f"\ncomparisons: {len(comparisons)} rows; outcome shares by mode")
        print(pd.DataFrame(shares).to_string(float_format=lambda x: f"{x:.3f}"))
