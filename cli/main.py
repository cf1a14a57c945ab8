"""The ``coupled`` command: thin argument parsing; the work is done by the library parts.

Each group of subcommands lives in its own module (``cli/<group>_cmd.py``) exposing
``register(subparsers)``; every subcommand sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Order = order in --help. Modules import their part lazily inside ``func`` so that
# ``coupled --help`` stays fast and never needs torch.
_GROUPS = ("theory_cmd", "simulate_cmd", "run_cmd", "analysis_cmd", "rank_cmd", "figures_cmd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coupled",
        description="Evaluate and rank language models under coupled generation.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in _GROUPS:
        importlib.import_module(f"coupled.cli.{group}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as error:
        # Bad input: one clear message, non-zero exit, no traceback (COUPLED_DEBUG=1 shows it,
        # since a bug of ours can also surface as a ValueError).
        if os.environ.get("COUPLED_DEBUG"):
            raise
        print(f"coupled {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"coupled {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
