"""``coupled rank FILE_OR_DIR``: average win-rates and rank-sets per mode (the paper's Table 1)."""

from __future__ import annotations

import argparse
import json
import sys

from coupled.cli.import_cmd import add_from_option, read_input
from coupled.cli.options import int_at_least, probability


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the `coupled` parser."""
    parser = subparsers.add_parser(
        "rank",
        help="rank models by average win-rate or Bradley-Terry score, with rank-sets",
        description="Average win-rate (or, with --score bt, Bradley-Terry score) of each "
                    "model (95% interval clustered by prompt), its tie rate, and its "
                    "rank-set, simultaneous at level 1 - alpha, for every mode in the table. A "
                    "scores table (no judge) is turned into derived comparisons "
                    "(a if score_a > score_b, b if less, tie if equal).")
    parser.add_argument("path", metavar="FILE_OR_DIR",
                        help="comparisons (or scores) table: parquet/CSV file, shard folder or "
                             "output directory")
    add_from_option(parser)
    parser.add_argument("--alpha", type=probability, default=0.05,
                        help="simultaneous error rate of the rank-sets (default 0.05)")
    parser.add_argument("--score", choices=("win-rate", "bt"), default="win-rate",
                        help="what to rank by: average win-rate (default) or Bradley-Terry "
                             "score (ties as half-wins; column bt_score)")
    parser.add_argument("--method", choices=("auto", "max_t", "bonferroni"), default="auto",
                        help="simultaneous intervals: max-|t| quantile, Bonferroni, or auto "
                             "(default: max-|t| with >= 10 effective prompts per model, else "
                             "Bonferroni)")
    parser.add_argument("--seed", type=int_at_least(0), default=0,
                        help="seed of the Monte-Carlo max-|t| quantile (default 0)")
    parser.add_argument("--json", action="store_true",
                        help="print the rank-sets as JSON records instead of a table")
    parser.add_argument("--out", metavar="FILE",
                        help="also write the rank-sets to FILE (.csv, .json or .parquet; "
                             "never over an input or an existing file)")
    parser.add_argument("--overwrite", action="store_true",
                        help="let --out replace an existing file (never an input)")
    parser.add_argument("--allow-incomplete", action="store_true",
                        help="rank a run that is unfinished or lacks comparisons for some "
                             "model or pair (the output then says what is missing); refused "
                             "otherwise")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from coupled.analysis.pairwise import load_comparisons
    from coupled.analysis.ranksets import rank_sets
    from coupled.cli.design import (
        check_design,
        design_of,
        incomplete_banner,
        left_out,
        with_design_notes,
    )
    from coupled.cli.output_paths import check_output_file
    from coupled.tables import atomic_write

    # Checked before any work (cli/output_paths.py: the one --out rule), so a bad --out fails
    # fast and nothing is written.
    out = (check_output_file(args.out, inputs=(args.path,), overwrite=args.overwrite,
                             suffixes=_WRITERS) if args.out else None)
    # The design is checked first: an unfinished run, or a model or pair lacking rows, is
    # refused (or, with --allow-incomplete, said at the top and in a 'note' per row).
    data, _ = load_comparisons(read_input(args.path, args.input_format, args.import_scorer))
    status = design_of(data, args.path)
    check_design(status, allow_incomplete=args.allow_incomplete, source=args.path)
    models = sorted(set(data["model_a"]) | set(data["model_b"]) | set(status.absent))
    if args.score == "bt":
        from coupled.analysis.bradley_terry import bradley_terry as rank_function
    else:
        rank_function = rank_sets
    table = with_design_notes(
        rank_function(data, alpha=args.alpha, method=args.method, seed=args.seed), status,
        models)
    if out is not None:
        atomic_write(out, lambda tmp: _WRITERS[out.suffix.lower()](table, tmp))
        print(f"wrote {out}", file=sys.stderr)
    if args.json:
        print(_to_json(table))
        return 0
    print(incomplete_banner(status, left_out(table)), end="")
    if bool(table["derived"].iloc[0]):
        print(f"note: {args.path} holds scores only; comparisons were derived from them "
              "(a if score_a > score_b, b if less, tie if equal).")
    print(format_table(table, args.alpha))
    from coupled.paper_figures.report import order_change_line

    explanation = order_change_line(table)  # only when the modes order the models differently
    if explanation:
        print(explanation)
    return 0


def _to_json(table) -> str:
    # pandas writes NaN as null and numpy scalars as plain numbers.
    return json.dumps(json.loads(table.to_json(orient="records")), indent=2)


_WRITERS = {
    ".csv": lambda table, path: table.to_csv(path, index=False),
    ".json": lambda table, path: path.write_text(_to_json(table) + "\n"),
    ".parquet": lambda table, path: table.to_parquet(path, index=False),
}


def format_table(table, alpha: float) -> str:
    """Table-1 layout: one row per model, per block its rank-set, its score (average win-rate,
    or Bradley-Terry score when the table has ``bt_score``) with its interval, and its tie
    rate."""
    import pandas as pd
    from tabulate import tabulate

    from coupled.analysis.ranksets import rank_set_label, win_rate_label

    bt = "bt_score" in table.columns
    score, score_label = ("bt_score", "BT score") if bt else ("win_rate", "avg win-rate")
    several_couplings = table["coupling"].nunique() > 1
    blocks = list(dict.fromkeys(zip(table["mode"], table["coupling"], strict=True)))
    # Models in the order of the first block (best first), then any it lacks.
    order = list(dict.fromkeys(table["model"]))
    columns: dict[str, list[str]] = {"model": order}
    for mode, coupling in blocks:
        label = f"{mode}/{coupling}" if several_couplings else mode
        block = table[(table["mode"] == mode) & (table["coupling"] == coupling)].set_index("model")
        ranks, rates, ties = [], [], []
        for model in order:
            if model not in block.index or pd.isna(block.loc[model, "rank_low"]):
                ranks.append("")  # left out of this block: the banner above says why
                rates.append("")
                ties.append("")
                continue
            row = block.loc[model]
            ranks.append(rank_set_label(int(row["rank_low"]), int(row["rank_high"])))
            rates.append(win_rate_label(row[score], row["ci_low"], row["ci_high"]))
            ties.append(f"{row['tie_rate']:.3f}" if "tie_rate" in row else "")
        columns[f"{label} rank"] = ranks
        columns[f"{label} {score_label}"] = rates
        columns[f"{label} tie rate"] = ties
    body = tabulate(pd.DataFrame(columns), headers="keys", showindex=False, tablefmt="github",
                    disable_numparse=True)
    footer = (f"rank-sets: simultaneous {100 * (1 - alpha):g}% (rank 1 = best); "
              f"{score_label}: each model's own 95% interval, clustered by prompt"
              + (" (centred log-strength, sum 0 per mode; a tie counts as half a win)"
                 if bt else "")
              + "\ntie rate: mean over opponents of P(tie); coupled win-rates are lower than "
              "independent ones because coupled models often give the same reply, which ties")
    return body + "\n" + footer
