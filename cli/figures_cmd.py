"""`coupled figures` (the paper's figures and tables) and `coupled demo` (all of it, simulated)."""

from __future__ import annotations

import argparse

from coupled.cli.options import probability


def _pair(text: str) -> str:
    # Split later, against the models of the run: a model name may itself hold a ':'.
    if ":" not in text:
        raise argparse.ArgumentTypeError(f"expected MODEL_A:MODEL_B, got {text!r}")
    return text


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `figures` and `demo` to the `coupled` parser."""
    figures = subparsers.add_parser(
        "figures", help="draw the paper's figures and tables from a run or a simulation",
        description="Fig. 2 (per pair of models), Fig. 3, Table 1 (Markdown, LaTeX, CSV), the "
                    "appendix B.6 example and, for simulated input, a calibration figure "
                    "(theory vs simulation). PNG and PDF.")
    source = figures.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", metavar="DIR",
                        help="a run's output folder (scores/, comparisons/) or one table file")
    source.add_argument("--simulated", action="store_true",
                        help="simulate the default six-model family (or --config) first")
    figures.add_argument("--out", required=True, metavar="DIR",
                         help="folder to write into: new, empty, or an earlier `coupled "
                              "figures` output (replaced whole); its parent must exist")
    figures.add_argument("--pairs", nargs="+", type=_pair, metavar="A:B",
                         help="pairs of models for Fig. 2 (default: every pair)")
    figures.add_argument("--model", help="the model of Fig. 3 (default: the best by average "
                                         "win-rate under coupled generation)")
    figures.add_argument("--alpha", type=probability, default=0.05,
                         help="level of the rank-sets and tests (default 0.05)")
    figures.add_argument("--unit", choices=("row", "question"), default="row",
                         help="what Fig. 2c subsamples: rows (question, seed) as the paper "
                              "does (default), or whole questions")
    figures.add_argument("--config", metavar="FILE.toml",
                         help="with --simulated: a simulation config for `coupled simulate`")
    figures.add_argument("--no-progress", action="store_true", help="no progress bar")
    figures.set_defaults(func=_figures)

    demo = subparsers.add_parser(
        "demo", help="simulate the default family, analyse, plan, and write every figure, "
                     "table and a REPORT.md (what `make demo` runs)")
    demo.add_argument("--out", default="demo-output", metavar="DIR",
                      help="folder to write into: new, empty, or an earlier `coupled demo` "
                           "output (replaced whole); default demo-output")
    demo.add_argument("--quick", action="store_true",
                      help="a smaller simulation (fewer questions and seeds) and one Fig. 2 "
                           "pair, for tests and a first look")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)


def _figures(args: argparse.Namespace) -> int:
    from coupled.cli import output_paths
    from coupled.paper_figures.figures import figures_command

    if args.config and not args.simulated:
        raise ValueError("--config goes with --simulated (a run folder has its own manifest)")
    folder = output_paths.check_output_folder(args.out, producer="figures",
                                              inputs=(args.source, args.config))
    result = figures_command(source=args.source, simulated=args.simulated, out_dir=folder.path,
                             pairs=args.pairs, model=args.model, alpha=args.alpha,
                             unit=args.unit, config=args.config,
                             progress=not args.no_progress,
                             output=lambda _: output_paths.staged_output_folder(folder))
    _print_written(folder, result.files)
    return 0


def _print_written(folder, files, *, list_files: bool = True) -> None:
    """The files the command committed, counted as they are on disk: the artifacts and the
    marker listing them."""
    from coupled.cli.output_paths import MARKER

    written = [*files, folder.path / MARKER]
    replaced = " (replacing its earlier output)" if folder.earlier_output else ""
    print(f"wrote {len(written)} files to {folder.path}{replaced}")
    for path in written if list_files else ():
        print(f"  {path.relative_to(folder.path).as_posix()}")


def _demo(args: argparse.Namespace) -> int:
    from coupled.cli import output_paths
    from coupled.paper_figures.demo import run_demo

    folder = output_paths.check_output_folder(args.out, producer="demo")
    result = run_demo(out_dir=folder.path, quick=args.quick, progress=not args.no_progress,
                      output=lambda _: output_paths.staged_output_folder(folder))
    print(result.screen_summary)
    print()
    _print_written(folder, result.files, list_files=False)
    print(f"start with {result.report_path}")
    return 0
