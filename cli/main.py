"""The ``coupled`` command: thin argument parsing; the work is done by the library parts.

Each group of subcommands lives in its own module (``cli/<group>_cmd.py``) exposing
``register(subparsers)``; every subcommand sets ``func(args) -> int``. This module gives
every (sub)command the same look — defaults shown, examples at the end of ``--help`` — and
the same ending on bad input: one message on stderr, exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Order = order in --help. Modules import their part lazily inside ``func`` so that
# ``coupled --help`` stays fast and never needs torch.
_GROUPS = ("theory_cmd", "simulate_cmd", "run_cmd", "analysis_cmd", "rank_cmd", "figures_cmd",
           "import_cmd", "export_cmd")

# Shown at the end of each command's --help; tests/test_cli_help.py parses every line.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "coupled": ("coupled demo --quick --out demo-quick",
                "coupled analyze runs/mine --help"),
    "theory": ("coupled theory example",),
    "theory example": ("coupled theory example --json",),
    "simulate": ("coupled simulate --out sim  # the folder above --out must exist",
                 "coupled simulate --out sim --config examples/simulate/tiny.toml --force"),
    "run": ("coupled run examples/tiny/run.toml --out runs/tiny",
            "coupled run examples/tiny/run.toml --out runs/tiny --resume",
            "coupled run examples/tiny/run.toml --out runs/tiny --workers 2",
            "coupled run examples/tiny/run.toml --out runs/part0 --shard 0/2",
            "coupled run --show-config"),
    "merge": ("coupled merge runs/tiny runs/part0 runs/part1",),
    "analyze": ("coupled analyze runs/sim",
                "coupled analyze runs/sim --error-curve question --json --out report.json",
                "coupled analyze runs/sim --by-subject --error-curve row --without-replacement",
                "coupled analyze runs/tiny --allow-incomplete  # while the run is running"),
    "plan": ("coupled plan --accuracies per_question.csv --effect 0.02",
             "coupled plan --pilot runs/sim --models large small --budget 400",
             "coupled plan --win-rate --prompt-probs probs.csv --seeds 1,5"),
    "rank": ("coupled rank runs/sim",
             "coupled rank runs/sim --score bt --method bonferroni",
             "coupled rank lm_eval_out/ --from lm-eval",
             "coupled rank runs/sim --alpha 0.1 --out ranks.csv --overwrite"),
    "figures": ("coupled figures --from runs/sim --out runs/sim/figures",
                "coupled figures --simulated --out figures --pairs large:small"),
    "demo": ("coupled demo",
             "coupled demo --quick --out demo-quick"),
    "import": ("coupled import lm-eval lm_eval_out --out scores.parquet",
               "coupled import inspect logs/ --out scores.parquet --scorer choice"),
    "import lm-eval": ("coupled import lm-eval lm_eval_out --scorer letter --out scores.parquet",
                       "coupled import lm-eval lm_eval_out --scorer regex --regex '([A-E])' "
                       "--rename pretrained-a=a --out scores.csv"),
    "import inspect": ("coupled import inspect logs/ --out scores.parquet",
                       "coupled import inspect a.eval b.eval --scorer match --out scores.csv"),
    "export": ("coupled export lm-eval runs/sim --out lm_eval_results",),
    "export lm-eval": ("coupled export lm-eval scores.parquet --out lm_eval_results "
                       "--metric exact_match",),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown (unless the help names its default already, or there is none worth
    showing), descriptions wrapped, the examples epilog kept line by line."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if ("default" in text.lower() or action.default is None or action.default is False
                or action.default is argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line (like every other error here)."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _style(parser: argparse.ArgumentParser, name: str) -> None:
    """Defaults and examples for ``parser`` and, recursively, its subcommands."""
    parser.formatter_class = HelpFormatter
    if name in EXAMPLES:
        parser.epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name])
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                _style(sub, sub_name if name == "coupled" else f"{name} {sub_name}")


def build_parser() -> argparse.ArgumentParser:
    from coupled.cli.options import coupled_version

    parser = Parser(
        prog="coupled",
        description="Evaluate and rank language models under coupled generation.",
    )
    parser.add_argument("--version", action="version", version=f"coupled {coupled_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in _GROUPS:
        importlib.import_module(f"coupled.cli.{group}").register(subparsers)
    _style(parser, "coupled")
    return parser


def error_message(error: BaseException) -> str:
    """The one line (or one message) the user sees for ``error``."""
    if isinstance(error, KeyError) and error.args and isinstance(error.args[0], str):
        return error.args[0]  # str(KeyError) would add quotes around the message
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse would blame the top-level `coupled`; name the subcommand instead
        command = " ".join(filter(None, ["coupled", getattr(args, "command", None),
                                         getattr(args, "theory_command", None)]))
        print(f"{command}: error: unrecognized arguments: {' '.join(extra)} (see {command} "
              "--help)", file=sys.stderr)
        return 2
    if getattr(args, "out", None) == "":  # `--out ""` would otherwise mean "no --out"
        print(f"coupled {args.command}: error: argument --out: give a path, not an empty "
              "string", file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from coupled.cli.options import INPUT_DESTS, naming, user_words

    # The input table the command reads: errors about it name it.
    source = next((getattr(args, name) for name in INPUT_DESTS if getattr(args, name, None)),
                  None)
    try:
        # Library parameter names -> the user's options; the file named.
        with user_words(args.command), naming(source):
            return int(args.func(args) or 0)
    except BrokenPipeError:  # the reader went away (`coupled rank ... | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except (ValueError, OSError, KeyError) as error:
        # Bad input (a ValueError from the validation layers; OSError for paths that cannot be
        # read or written): one clear message, exit status 2, no traceback (COUPLED_DEBUG=1
        # shows it, since a bug of ours can also surface as a ValueError).
        if os.environ.get("COUPLED_DEBUG"):
            raise
        print(f"coupled {args.command}: error: {error_message(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"coupled {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
