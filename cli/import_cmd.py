"""``coupled import lm-eval|inspect PATH... --out TABLE``: other tools' logs as a scores table.

The reading is :mod:`coupled.tables.imports` (standard library and pandas only); this module
picks the scorer, renames models, checks ``--out`` by the one output rule
(:mod:`coupled.cli.output_paths`) and writes the table atomically.
"""

from __future__ import annotations

import argparse
import sys

_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the `coupled` parser."""
    parser = subparsers.add_parser(
        "import", help="turn lm-eval samples files or inspect_ai logs into a scores table",
        description="Read the per-sample logs of lm-evaluation-harness (--log_samples) or "
                    "inspect_ai (.eval logs) into a scores table: every repeat or epoch is a "
                    "seed, mode 'independent', coupling 'none' (those tools use no shared "
                    "noise). `coupled analyze` and `coupled rank` then give question-clustered "
                    "paired tests and rank-sets; variance reduction needs a coupled run.")
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)

    lm_eval = formats.add_parser(
        "lm-eval", help="lm-eval samples_<task>_<date>.jsonl files",
        description="Every repeat in 'resps' is re-scored with --scorer (lm-eval's own "
                    "per-sample metric covers only the filtered reply); log-likelihood "
                    "multiple-choice tasks (MMLU, ARC, HellaSwag as lm-eval ships them) are "
                    "deterministic and imported as one seed, scored by --choice-metric. The "
                    "model name comes from the results_<date>.json beside each samples file.")
    lm_eval.add_argument("paths", nargs="+", metavar="PATH",
                         help="samples_*.jsonl file(s) or lm-eval --output_path folder(s)")
    lm_eval.add_argument("--scorer", choices=("exact_match", "regex", "letter"),
                         default="exact_match",
                         help="how a generated reply is scored against the target: exact match "
                              "(after --ignore-case/--ignore-punctuation, whitespace stripped), "
                              "the first --regex match, or the option letter read by coupled's "
                              "multiple-choice reply parser (needs a list 'choices' in the doc "
                              "or --n-choices)")
    lm_eval.add_argument("--regex", metavar="PATTERN",
                         help="--scorer regex: pattern whose first group is the answer, e.g. "
                              "'([A-E])'")
    lm_eval.add_argument("--ignore-case", action="store_true",
                         help="exact_match/regex: compare case-insensitively")
    lm_eval.add_argument("--ignore-punctuation", action="store_true",
                         help="exact_match: drop punctuation before comparing")
    lm_eval.add_argument("--n-choices", type=int, metavar="N",
                         help="--scorer letter: number of options when the docs have no "
                              "'choices' list")
    lm_eval.add_argument("--choice-metric", choices=("acc", "acc_norm"), default="acc",
                         help="multiple-choice (log-likelihood) tasks: lm-eval's acc or "
                              "acc_norm, recomputed from the log-likelihoods")
    lm_eval.add_argument("--model", help="model name (only with one model's files; default: "
                                         "model_name in results_<date>.json)")
    lm_eval.add_argument("--tasks", nargs="+", metavar="TASK", help="only these tasks")
    _common_options(lm_eval)
    lm_eval.set_defaults(func=_import_lm_eval)

    inspect = formats.add_parser(
        "inspect", help="inspect_ai .eval (or .json) logs",
        description="One row per sample and epoch (epoch n is seed n - 1), scored by the "
                    "log's own per-epoch score of --scorer, mapped to numbers as inspect's "
                    "value_to_float does (C 1, P 0.5, I 0, N 0 counted as parse_failed). "
                    "inspect_ai itself is not needed.")
    inspect.add_argument("paths", nargs="+", metavar="PATH",
                         help=".eval/.json log file(s) or folder(s) of them (one log per model)")
    inspect.add_argument("--scorer", metavar="NAME",
                         help="scorer to import when the samples carry several (default: the "
                              "only one)")
    inspect.add_argument("--score-key", metavar="KEY",
                         help="entry of a dict-valued score")
    inspect.add_argument("--allow-incomplete", action="store_true",
                         help="import a log whose status is not 'success' and leave out "
                              "samples that ended in an error (refused otherwise)")
    _common_options(inspect)
    inspect.set_defaults(func=_import_inspect)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="TABLE",
                        help="scores table to write (.parquet, .csv, .jsonl or .json)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out file")
    parser.add_argument("--rename", nargs="+", default=(), metavar="OLD=NEW",
                        help="rename models, e.g. hf/tiny-A=tiny-A")


def _import_lm_eval(args: argparse.Namespace) -> int:
    from coupled.tables.imports import exact_match, read_lm_eval_samples, regex_match

    out = _check_out(args)
    if args.scorer == "regex":
        if not args.regex:
            raise ValueError("--scorer regex needs --regex PATTERN (e.g. '([A-E])')")
        scorer = regex_match(args.regex, ignore_case=args.ignore_case)
    elif args.scorer == "letter":
        scorer = _letter_scorer(args.n_choices)
    else:
        scorer = exact_match(ignore_case=args.ignore_case,
                             ignore_punctuation=args.ignore_punctuation)
    if args.regex and args.scorer != "regex":
        raise ValueError("--regex is used only with --scorer regex")
    tables = [read_lm_eval_samples(path, scorer=scorer, choice_metric=args.choice_metric,
                                   model=args.model, tasks=args.tasks) for path in args.paths]
    return _write(tables, args, out)


def _import_inspect(args: argparse.Namespace) -> int:
    from coupled.tables.imports import read_inspect_log

    out = _check_out(args)
    tables = [read_inspect_log(path, scorer=args.scorer, score_key=args.score_key,
                               allow_incomplete=args.allow_incomplete) for path in args.paths]
    return _write(tables, args, out)


def _check_out(args: argparse.Namespace):
    from coupled.cli.output_paths import check_output_file

    # Before any reading: a bad --out costs nothing, and no input is ever written over.
    return check_output_file(args.out, inputs=args.paths, overwrite=args.overwrite,
                             suffixes=_SUFFIXES)


def _letter_scorer(n_choices: int | None):
    # The one multiple-choice reply parser is the runner's (its fixes apply to imports too).
    try:
        from coupled.runner.tasks import parse_choice
    except ImportError as error:
        raise ValueError(f"--scorer letter uses coupled's reply parser (coupled.runner), which "
                         f"cannot be imported here ({error}); install the [runner] extra or "
                         "use --scorer regex --regex '([A-E])'") from error
    if n_choices is not None and n_choices < 2:
        raise ValueError(f"--n-choices must be at least 2, got {n_choices}")

    def letter(response: str, target: str, doc: dict) -> tuple[float, bool]:
        choices = doc.get("choices")
        n = len(choices) if isinstance(choices, list) else n_choices
        if n is None:
            raise ValueError("--scorer letter: the doc has no 'choices' list; pass --n-choices")
        found = parse_choice(response, n)
        return float(found is not None and found == target.strip()), found is None

    return letter


def _renames(pairs) -> dict[str, str]:
    renames = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise ValueError(f"--rename {pair!r}: use OLD=NEW")
        renames[old] = new
    return renames


def _write(tables, args: argparse.Namespace, out) -> int:
    import pandas as pd

    from coupled.tables import validate, write_table
    from coupled.tables.imports import fill_subject

    renames = _renames(args.rename)
    table = fill_subject(pd.concat(tables, ignore_index=True))
    unknown = sorted(set(renames) - set(table["model"]))
    if unknown:
        raise ValueError(f"--rename: no model {unknown} in the input (models: "
                         f"{sorted(set(table['model']))})")
    table["model"] = table["model"].replace(renames)
    # Several inputs (or a rename) can give one key twice: validate says which rows.
    table = validate(table, "scores", " + ".join(args.paths))
    write_table(table, out)
    seeds = table.groupby(["task", "prompt_id", "model"])["seed"].nunique()
    print(f"wrote {out}: {len(table)} rows, {table['model'].nunique()} model(s) "
          f"{sorted(table['model'].unique())}, {table['task'].nunique()} task(s), "
          f"{table.groupby('task')['prompt_id'].nunique().sum()} question(s), "
          f"{seeds.min()}-{seeds.max()} seed(s) per question; "
          f"{int(table['parse_failed'].sum())} unparseable repl(ies) scored 0", file=sys.stderr)
    print("mode 'independent', coupling 'none' (no shared noise): `coupled analyze` and "
          "`coupled rank` apply; variance reduction needs a coupled run.", file=sys.stderr)
    return 0


# --- other tools' logs read directly by analyze / rank (`--from lm-eval|inspect`) -------------

FORMATS = ("table", "lm-eval", "inspect")


def add_from_option(parser: argparse.ArgumentParser) -> None:
    """``--from``: what FILE_OR_DIR is — a coupled table (default), lm-eval samples files, or
    inspect_ai logs (read with the importers' defaults; `coupled import` offers their
    options)."""
    parser.add_argument("--from", dest="input_format", choices=FORMATS, default="table",
                        help="what FILE_OR_DIR is: a coupled table or run (default), an "
                             "lm-eval --log_samples output (samples_*.jsonl / its folder; "
                             "replies re-scored by exact match) or inspect_ai .eval log(s); "
                             "use `coupled import` for its other options")
    parser.add_argument("--import-scorer", metavar="NAME",
                        help="with --from: inspect_ai, which of the log's scorers (when it has "
                             "several); lm-eval, exact_match (default) or letter")


def read_input(path: str, input_format: str, scorer: str | None = None):
    """``path`` as given (a coupled table) or the scores table read from another tool's log."""
    if input_format == "table":
        if scorer is not None:
            raise ValueError("--import-scorer goes with --from lm-eval or --from inspect")
        return path
    # The importers return a validated scores table, subjects filled: nothing to redo here.
    from coupled.tables.imports import read_inspect_log, read_lm_eval_samples

    if input_format == "lm-eval":
        if scorer not in (None, "exact_match", "letter"):
            raise ValueError(f"--import-scorer {scorer!r}: with --from lm-eval use exact_match "
                             f"or letter (`coupled import lm-eval` has regex and more)")
        chosen = _letter_scorer(None) if scorer == "letter" else "exact_match"
        return read_lm_eval_samples(path, scorer=chosen)
    return read_inspect_log(path, scorer=scorer)

