"""``coupled rank FILE_OR_DIR``: average win-rates and rank-sets per mode (the paper's Table 1)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the `coupled` parser."""
    parser = subparsers.add_parser(
        "rank",
        help="rank models by average win-rate, with simultaneous rank-sets",
        description="Average win-rate of each model (95%% interval clustered by prompt) and its "
                    "rank-set, simultaneous at level 1 - alpha, for every mode in the table. A "
                    "scores table (no judge) is turned into derived comparisons "
                    "(a if score_a > score_b, b if less, tie if equal).")
    parser.add_argument("path", metavar="FILE_OR_DIR",
                        help="comparisons (or scores) table: parquet/CSV file, shard folder or "
                             "output directory")
    parser.add_argument("--alpha", type=float, default=0.05,
                        help="simultaneous error rate of the rank-sets (default 0.05)")
    parser.add_argument("--method", choices=("max_t", "bonferroni"), default="max_t",
                        help="simultaneous intervals: Gaussian max-|t| (default) or Bonferroni")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the Monte-Carlo max-|t| quantile (default 0)")
    parser.add_argument("--json", action="store_true",
                        help="print the rank-sets as JSON records instead of a table")
    parser.add_argument("--out", metavar="FILE",
                        help="also write the rank-sets to FILE (.csv, .json or .parquet)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from coupled.analysis.ranksets import rank_sets

    if args.out and Path(args.out).suffix not in (".csv", ".json", ".parquet"):
        raise ValueError(f"--out {args.out}: use a .csv, .json or .parquet file name")
    table = rank_sets(args.path, alpha=args.alpha, method=args.method, seed=args.seed)
    if args.out:
        _write_atomic(table, Path(args.out))
    if args.json:
        print(table.to_json(orient="records", indent=2))
        return 0
    if bool(table["derived"].iloc[0]):
        print(f"note: {args.path} holds scores only; comparisons were derived from them "
              "(a if score_a > score_b, b if less, tie if equal).")
    print(format_table(table, args.alpha))
    return 0


def format_table(table, alpha: float) -> str:
    """Table-1 layout: one row per model, per block its rank-set and average win-rate +- half-width."""
    import pandas as pd
    from tabulate import tabulate

    several_couplings = table["coupling"].nunique() > 1
    blocks = list(dict.fromkeys(zip(table["mode"], table["coupling"], strict=True)))
    # Models in the order of the first block (best first).
    order = list(dict.fromkeys(table["model"]))
    columns: dict[str, list[str]] = {"model": order}
    for mode, coupling in blocks:
        label = f"{mode}/{coupling}" if several_couplings else mode
        block = table[(table["mode"] == mode) & (table["coupling"] == coupling)].set_index("model")
        ranks, rates = [], []
        for model in order:
            if model not in block.index:
                ranks.append("")
                rates.append("")
                continue
            row = block.loc[model]
            low, high = int(row["rank_low"]), int(row["rank_high"])
            ranks.append(str(low) if low == high else f"{low}\u2013{high}")
            half = (row["ci_high"] - row["ci_low"]) / 2
            rates.append(f"{row['win_rate']:.4f} \u00b1{half:.4f}")
        columns[f"{label} rank"] = ranks
        columns[f"{label} avg win-rate"] = rates
    body = tabulate(pd.DataFrame(columns), headers="keys", showindex=False, tablefmt="github")
    footer = (f"rank-sets: simultaneous {100 * (1 - alpha):g}% (rank 1 = best); "
              "\u00b1: half-width of each model's 95% interval, clustered by prompt")
    return body + "\n" + footer


def _write_atomic(table, path: Path) -> None:
    # Write next to the target and rename, so a failure never leaves a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        if path.suffix == ".csv":
            table.to_csv(temporary, index=False)
        elif path.suffix == ".json":
            Path(temporary).write_text(json.dumps(json.loads(table.to_json(orient="records")),
                                                  indent=2))
        else:
            table.to_parquet(temporary, index=False)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    print(f"wrote {path}", file=sys.stderr)
