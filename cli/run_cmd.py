"""`coupled run CONFIG.toml [--out DIR] [--resume]`: real-model runs (needs the runner extra)."""

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
    parser.set_defaults(func=_run)


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
    out = run(args.config, out=args.out, resume=args.resume, progress=not args.no_progress)
    print(f"wrote {out}")
    return 0
