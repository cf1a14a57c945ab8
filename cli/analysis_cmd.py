"""CLI subcommands for the analysis group: ``coupled analyze`` and ``coupled plan``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from coupled.cli.import_cmd import add_from_option, read_input
from coupled.cli.options import (
    INPUT_DESTS,
    check_present,
    distinct_models,
    finite_float,
    int_at_least,
    probability,
)
from coupled.tables import atomic_write

DEFAULT_SEEDS = "1,2,5,10"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the `coupled` parser."""
    analyze = subparsers.add_parser(
        "analyze", help="benchmark report: per-model accuracy, paired differences, tests, "
                        "variance reduction",
        description="First each model's mean score (accuracy) with a question-clustered CI "
                    "per mode, and the coupling check (identical replies, first divergence "
                    "step, coupled vs independent) when the table has replies; a single-model "
                    "table stops there. Then, for every pair of models and mode: the mean score "
                    "difference (mean over questions) with a question-clustered CI and a "
                    "design-respecting test, within-question variances and covariance, and the "
                    "coupled/independent variance ratio and sample saving with CIs over questions "
                    "(the independent variance is estimated from coupled rows when the run has "
                    "no independent rows).")
    analyze.add_argument("path", metavar="FILE_OR_DIR",
                         help="scores file (parquet/CSV), shard folder or output directory")
    add_from_option(analyze)
    analyze.add_argument("--alpha", type=probability, default=0.05, help="1 - confidence level")
    analyze.add_argument("--models", nargs="+", help="only these models (default: all)")
    analyze.add_argument("--by-subject", action="store_true",
                         help="add one row per subject (needs a 'subject' column); with "
                              "--error-curve, one curve fit per subject too")
    analyze.add_argument("--seed", type=int_at_least(0), default=0,
                         help="seed of the resampling behind --error-curve")
    analyze.add_argument("--allow-incomplete", action="store_true",
                         help="analyse a run that is unfinished or lacks rows for some model "
                              "(the output then says what is missing); refused otherwise")
    analyze.add_argument("--error-curve", choices=("row", "question"), metavar="UNIT",
                         help="also fit error-vs-n curves (Fig. 2c) subsampling rows or "
                              "questions, and report how many fewer samples coupled needs "
                              "(needs coupled and independent rows)")
    analyze.add_argument("--without-replacement", action="store_true",
                         help="--error-curve: subsample without replacement, as the paper's "
                              "Fig. 2c (the error is 0 at the full pool; finite-population "
                              "law c*sqrt(1/n - 1/N)); default: with replacement")
    _add_output_options(analyze)
    analyze.set_defaults(func=_analyze)

    plan = subparsers.add_parser(
        "plan", help="questions x seeds needed, coupled vs independent; detectable effects",
        description="Plan a comparison: the questions needed (for each number of seeds per "
                    "question) to detect a mean score difference EFFECT with the given power, "
                    "coupled vs independent, and/or the minimum detectable effect at a budget "
                    "of questions. Assumptions come from a pilot scores table (--pilot) or a "
                    "CSV of per-question probabilities of a correct answer (--accuracies, "
                    "columns p_a, p_b and optionally p_both for the coupled joint). With "
                    "--win-rate: questions needed to separate two models' average win-rates "
                    "(pilot comparisons table, or --prompt-probs).")
    source = plan.add_mutually_exclusive_group(required=True)
    source.add_argument("--pilot", metavar="FILE_OR_DIR", help="pilot scores (or comparisons "
                                                               "with --win-rate)")
    source.add_argument("--accuracies", metavar="CSV",
                        help="per-question probabilities: columns p_a, p_b[, p_both]")
    source.add_argument("--prompt-probs", metavar="CSV",
                        help="--win-rate only: [prompt types x models] probabilities of the "
                             "preferred answer")
    plan.add_argument("--models", nargs=2, metavar=("A", "B"),
                      help="the two models of the pilot (default: the pilot's only two)")
    plan.add_argument("--effect", type=finite_float,
                      help="difference to detect (default: the one the assumptions imply)")
    plan.add_argument("--power", type=probability, default=0.8,
                      help="probability that the test detects the effect")
    plan.add_argument("--alpha", type=probability, default=0.05, help="level of the test")
    plan.add_argument("--seeds", default=DEFAULT_SEEDS,
                      help="seeds per question to plan for, comma-separated")
    plan.add_argument("--budget", type=int_at_least(2), metavar="Q",
                      help="also report the minimum detectable effect with Q questions")
    plan.add_argument("--win-rate", action="store_true",
                      help="plan the separation of two models' average win-rates instead")
    plan.add_argument("--coupling", help="coupling of the pilot rows (if it has several)")
    _add_output_options(plan)
    plan.set_defaults(func=_plan)


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--out", metavar="FILE",
                        help="also write the result as JSON to FILE (written atomically; "
                             "never over an input or an existing file)")
    parser.add_argument("--overwrite", action="store_true",
                        help="let --out replace an existing file (never an input)")


# ----------------------------------------------------------------------------- output
def _records(frame) -> list[dict]:
    return _json_rows(frame.to_dict(orient="records"))


def _json_rows(rows: list[dict]) -> list[dict]:
    # JSON has no NaN: missing numbers become null.
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in row.items()} for row in rows]


def _emit(payload: dict, screen: str, args: argparse.Namespace) -> int:
    text = json.dumps(payload, indent=2, default=_json_default)
    if args.out:  # everything is computed before anything is written; rename is atomic
        target = _out_file(args)  # checked again: the folder may have changed meanwhile
        atomic_write(target, lambda tmp: tmp.write_text(text + "\n"))
    sys.stdout.write((text if args.json else screen) + "\n")
    return 0


def _out_file(args: argparse.Namespace) -> Path:
    """``--out`` checked by the one rule (cli/output_paths.py) against this command's inputs."""
    from coupled.cli.output_paths import check_output_file

    inputs = [getattr(args, name, None) for name in INPUT_DESTS]
    return check_output_file(args.out, inputs=inputs, overwrite=args.overwrite)


def _json_default(value):
    import dataclasses

    if getattr(value, "ndim", 0) > 0 and hasattr(value, "tolist"):  # numpy arrays
        return value.tolist()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _fmt(x: float, digits: int = 4) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) \
        else f"{x:.{digits}f}"


def _pvalue(p: float) -> str:
    return "<1e-4" if p < 1e-4 else f"{p:.4f}"


def _table(rows: list[list[str]], headers: list[str]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, disable_numparse=True)


# ----------------------------------------------------------------------------- analyze
def _analyze(args: argparse.Namespace) -> int:
    from coupled.analysis.benchmark import compare_models
    from coupled.cli.design import check_design, design_json, design_of, incomplete_banner
    from coupled.tables import read_scores

    if args.without_replacement and not args.error_curve:
        raise ValueError("--without-replacement is a sampling scheme of --error-curve; add "
                         "--error-curve row or --error-curve question")
    distinct_models(args.models)
    if args.out:
        _out_file(args)  # before any work: a bad --out costs nothing
    # read once: the report and the error curves share it
    scores = read_scores(read_input(args.path, args.input_format, args.import_scorer))
    if args.by_subject and "subject" not in scores.columns:
        raise ValueError(f"--by-subject: {args.path} has no 'subject' column")
    status = design_of(scores, args.path, models=args.models)
    check_design(status, allow_incomplete=args.allow_incomplete, source=args.path)
    level = f"{100 * (1 - args.alpha):g}% CI"
    # The numbers users look for first: each model's accuracy, and whether coupling works.
    accuracy = _model_scores(scores, args)
    screen = incomplete_banner(status)  # what is missing, before any number
    screen += (f"Mean score per model ({level}, clustered by question; each question weighs "
               "the same)\n" + _accuracy_table(accuracy, args.by_subject))
    payload = {"design": design_json(status), "model_scores": _records(accuracy)}
    check_lines = _coupling_check(scores, args, payload)
    if check_lines:
        screen += ("\n\nCoupling check (coupled replies should agree far more often than "
                   "independent ones)\n" + "\n".join(f"  {line}" for line in check_lines))
    models = sorted(scores["model"].unique()) if args.models is None else args.models
    if len(models) < 2:
        if args.error_curve:
            raise ValueError(f"--error-curve: {args.path} holds one model ({models[0]}); an "
                             "error curve is of a difference between two models")
        screen += (f"\n\nOne model ({models[0]}): no pair to compare, so no paired "
                   "differences or variance reduction.")
        payload.update(differences=[], variance_reduction=[], alpha=args.alpha, notes=[])
        return _emit(payload, screen, args)
    import warnings

    with warnings.catch_warnings(record=True) as caught:  # said in the output, not as warnings
        warnings.simplefilter("always")
        report = compare_models(scores, alpha=args.alpha, models=args.models,
                                by_subject=args.by_subject,
                                # --allow-incomplete: compare on the shared questions (the
                                # banner and the JSON 'design' say which are missing)
                                missing_questions="drop" if args.allow_incomplete else "error")
    notes = list(dict.fromkeys(str(w.message) for w in caught))
    diffs, reduction = report.differences, report.variance_reduction
    rows = []
    for r in diffs.to_dict(orient="records"):
        rows.append(([r["subject"]] if args.by_subject else []) + [
            f"{r['model_a']} − {r['model_b']}", r["mode"], r["coupling"], _fmt(r["estimate"]),
            f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]", _pvalue(r["pvalue"]), r["test"],
            str(r["n_questions"]), str(r["n_rows"]), _fmt(r["mean_var_diff"]),
            _fmt(r["mean_cov"]), r["note"]])
    head = (["subject"] if args.by_subject else []) + [
        "pair", "mode", "coupling", "difference", level, "p-value", "test", "questions", "rows",
        "var(diff|q)", "cov(q)", "note"]
    screen += "\n\nMean score differences (mean over questions; SE clustered by question)\n"
    screen += _table(rows, head)
    if len(reduction):
        rows = []
        for r in reduction.to_dict(orient="records"):
            rows.append(([r["subject"]] if args.by_subject else []) + [
                f"{r['model_a']} − {r['model_b']}", r["coupling"], r["independent_source"],
                _fmt(r["var_coupled"]), _fmt(r["var_independent"]),
                f"{_fmt(r['ratio'], 3)} [{_fmt(r['ratio_ci_low'], 3)}, "
                f"{_fmt(r['ratio_ci_high'], 3)}]",
                f"{100 * r['saving']:.1f}% [{100 * r['saving_ci_low']:.1f}, "
                f"{100 * r['saving_ci_high']:.1f}]", r["note"]])
        head = (["subject"] if args.by_subject else []) + [
            "pair", "coupling", "independent from", "Var coupled", "Var independent",
            f"ratio [{level}]", "sample saving", "note"]
        screen += ("\n\nVariance of one row's difference, coupled vs independent "
                   "(jackknife over questions)\n" + _table(rows, head))
        screen += _negative_saving_line(reduction, level)
    screen += "".join(f"\nnote: {note}" for note in notes)
    payload.update(differences=_records(diffs), variance_reduction=_records(reduction),
                   alpha=args.alpha, notes=notes)
    if args.error_curve:
        savings, curves = _error_curve_savings(scores, diffs, args)
        payload["sample_saving"] = savings
        payload["error_curves"] = _records(curves)
        rows = [([r["subject"]] if args.by_subject else []) + [
            f"{r['model_a']} − {r['model_b']}", r["coupling"], r["unit"],
            _percent(r["saving"]),
            f"{_percent(r['theoretical_saving'])} [{_percent(r['theoretical_ci_low'], '')}, "
            f"{_percent(r['theoretical_ci_high'], '')}]", _fmt(r["error"]),
            _count(r["n_coupled"]), _count(r["n_independent"]), r["note"]] for r in savings]
        scheme = ("without replacement, E|error| = c·sqrt(1/n − 1/N)"
                  if args.without_replacement else "with replacement, E|error| = c/sqrt(n)")
        screen += (f"\n\nSamples needed for the same error (subsampling {scheme}, fit to "
                   "the curves)\n" + _table(rows, (["subject"] if args.by_subject else []) + [
                       "pair", "coupling", "unit", "saving (curves)", "1 − Var ratio",
                       "at error", "n coupled", "n independent", "note"]))
    return _emit(payload, screen, args)


def _percent(x, unit: str = "%") -> str:
    return "—" if x is None or not math.isfinite(x) else f"{100 * x:.1f}{unit}"


def _count(x) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.0f}"


def _model_scores(scores, args: argparse.Namespace):
    """``model_scores`` of the whole table (subject ``(all)`` with ``--by-subject``) and of
    each subject."""
    import pandas as pd

    from coupled.analysis import model_scores

    overall = model_scores(scores, alpha=args.alpha, models=args.models)
    if not args.by_subject:
        return overall
    parts = [overall.assign(subject="(all)")]
    for subject, part in scores.groupby("subject", sort=True):
        models = None if args.models is None else [m for m in args.models
                                                    if m in set(part["model"])]
        if models == []:
            continue
        parts.append(model_scores(part, alpha=args.alpha, models=models)
                     .assign(subject=str(subject)))
    frame = pd.concat(parts, ignore_index=True)
    return frame[["subject", *overall.columns]]


def _accuracy_table(accuracy, by_subject: bool) -> str:
    rows = [([r["subject"]] if by_subject else []) + [
        r["model"], r["mode"], r["coupling"], _fmt(r["mean"]),
        f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]", str(r["n_questions"]), str(r["n_rows"])]
        for r in accuracy.to_dict(orient="records")]
    head = (["subject"] if by_subject else []) + [
        "model", "mode", "coupling", "mean score", "CI", "questions", "rows"]
    return _table(rows, head)


def _coupling_check(scores, args: argparse.Namespace, payload: dict) -> list[str]:
    """The coupling check's lines (and its rows into ``payload``) when the table has
    replies; nothing otherwise."""
    from coupled.analysis import coupling_check, coupling_check_lines

    if "response" not in scores.columns:
        return []
    rows = scores if args.models is None else scores[scores["model"].isin(args.models)]
    check = coupling_check(rows)
    payload["coupling_check"] = _records(check)
    return coupling_check_lines(check)


def _negative_saving_line(reduction, level: str) -> str:
    """One line, only when a saving is negative: what it means and when it is noise."""
    negative = reduction[reduction["saving"] < 0]
    if negative.empty:
        return ""
    noise = bool((negative["saving_ci_high"] >= 0).all())
    return ("\nnegative saving: coupled differences varied more than independent ones "
            "(ratio > 1), so coupling needs more rows for that pair; "
            + (f"every such {level} includes 0, so this is within noise."
               if noise else "its CI excludes 0: under coupling one model tends to be right where "
               "the other is wrong (their scores are anti-correlated)."))


def _error_curve_savings(scores, diffs, args: argparse.Namespace):
    """Error curves and the implied saving for every pair with both modes: on the whole table
    and, with ``--by-subject``, on each subject's rows (a subject too small for a fit gets a
    row with its reason in ``note``; the whole table's failure is an error)."""
    from dataclasses import asdict, fields

    import pandas as pd

    from coupled.analysis.errorcurve import SampleSaving, error_curves

    if "subject" not in diffs.columns:
        diffs = diffs.assign(subject="(all)")
    n_modes = diffs.groupby(["subject", "model_a", "model_b", "coupling"])["mode"].nunique()
    cells = [key for key, count in n_modes.items() if count == 2]
    if not any(subject == "(all)" for subject, *_ in cells):
        raise ValueError("--error-curve: no pair of models has both coupled and independent "
                         "rows")
    by_subject = dict(tuple(scores.groupby("subject", sort=True))) if args.by_subject else {}
    savings, curves = [], []
    for subject, model_a, model_b, coupling in cells:
        rows = scores if subject == "(all)" else by_subject[subject]
        where = {"subject": subject} if args.by_subject else {}
        try:
            frame, saving = error_curves(rows, model_a, model_b, unit=args.error_curve,
                                         coupling=coupling, alpha=args.alpha, seed=args.seed,
                                         replace=not args.without_replacement)
        except ValueError as error:
            if subject == "(all)":
                raise
            empty = {f.name: float("nan") for f in fields(SampleSaving)}
            savings.append({**where, "model_a": model_a, "model_b": model_b,
                            "coupling": coupling, **empty, "unit": args.error_curve,
                            "note": f"no fit: {error}"})
            continue
        savings.append({**where, "model_a": model_a, "model_b": model_b, "coupling": coupling,
                        **asdict(saving), "note": ""})
        curves.append(frame.assign(**where, model_a=model_a, model_b=model_b,
                                   coupling=coupling,
                                   replace=not args.without_replacement))
    return _json_rows(savings), pd.concat(curves, ignore_index=True)


# ----------------------------------------------------------------------------- plan
def _parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError as error:
        raise ValueError(f"--seeds: expected comma-separated integers, got {text!r}") from error
    if not seeds or min(seeds) < 1:
        raise ValueError(f"--seeds: seeds per question must be positive, got {text!r}")
    return seeds


def _read_csv(path: str, option: str):
    import pandas as pd

    if not Path(path).is_file():
        raise FileNotFoundError(f"{option}: no such file {path}")
    try:
        return pd.read_csv(path)
    except Exception as error:
        raise ValueError(f"{option}: {path} cannot be read as CSV: {error}") from error


def _numeric_columns(table, columns: list[str], option: str, path: str):
    """``columns`` of ``table`` as finite numbers; else an error naming the column and rows."""
    import numpy as np
    import pandas as pd

    out = pd.DataFrame(index=table.index)
    for column in columns:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=float))
        if bad.any():
            rows = [int(i) + 2 for i in np.flatnonzero(bad)[:3]]  # +2: header, 1-based
            first = table[column][bad].iloc[0]
            raise ValueError(f"{option}: {path}, column {column!r}: not a finite number on "
                             f"line(s) {rows} (e.g. {first!r})" if isinstance(first, str) else
                             f"{option}: {path}, column {column!r}: not a finite number on "
                             f"line(s) {rows} (e.g. {first})")
        out[column] = values
    return out


def _pilot_models(scores, models: list[str] | None) -> tuple[str, str]:
    if models:
        return models[0], models[1]
    present = sorted(scores["model"].unique())
    if len(present) != 2:
        raise ValueError(f"--pilot: holds models {present}; name two with --models A B")
    return present[0], present[1]


def _plan(args: argparse.Namespace) -> int:
    seeds = _parse_seeds(args.seeds)
    distinct_models(args.models)
    if args.out:
        _out_file(args)  # before any work: a bad --out costs nothing
    if args.win_rate:
        return _plan_win_rate(args, seeds)
    if args.prompt_probs:
        raise ValueError("--prompt-probs is for --win-rate; use --accuracies for scores")
    from coupled.analysis.planning import (
        components_from_accuracies,
        components_from_pilot,
        plan_from_accuracies,
        plan_mean_difference,
    )

    accuracy_range = None
    if args.pilot:
        from coupled.tables import read_scores

        scores = read_scores(args.pilot)
        model_a, model_b = _pilot_models(scores, args.models)
        check_present(args.coupling, scores["coupling"], "--coupling", args.pilot)
        components = components_from_pilot(scores, model_a, model_b, coupling=args.coupling)
        binary = bool(scores["score"].isin((0.0, 1.0)).all())
        source = f"pilot {args.pilot} ({model_a} − {model_b})"
    else:
        table = _read_csv(args.accuracies, "--accuracies")
        missing = [c for c in ("p_a", "p_b") if c not in table.columns]
        if missing:
            raise ValueError(f"--accuracies: {args.accuracies} lacks column(s) {missing} "
                             f"(found {list(table.columns)})")
        numbers = _numeric_columns(table, [c for c in ("p_a", "p_b", "p_both")
                                           if c in table.columns], "--accuracies",
                                   args.accuracies)
        both = numbers["p_both"].to_numpy() if "p_both" in numbers.columns else None
        components = components_from_accuracies(numbers["p_a"].to_numpy(),
                                                 numbers["p_b"].to_numpy(), both)
        binary = True
        source = f"accuracies {args.accuracies} ({len(table)} questions)"
    effect = args.effect if args.effect is not None else components.effect
    if binary and abs(effect) > 1:
        raise ValueError(f"--effect {effect:g}: a difference of two accuracies lies in "
                         "[-1, 1]")
    if effect == 0 and args.budget is None:
        raise ValueError("--effect: the assumptions imply no difference; give --effect or "
                         "--budget")
    if not args.pilot and both is None:
        # Without p_both the coupled joint is unknown: the honest range (issue 13 §4).
        accuracy_range = plan_from_accuracies(
            numbers["p_a"].to_numpy(), numbers["p_b"].to_numpy(),
            effect if effect != 0 else None, seeds=seeds, power=args.power, alpha=args.alpha,
            budget_questions=args.budget)
        frame = accuracy_range.plans
        frame = frame[(frame["mode"] == "coupled")
                      | (frame["assumption"] == "independence")].reset_index(drop=True)
    else:
        frame = plan_mean_difference(components, effect if effect != 0 else None, seeds=seeds,
                                     power=args.power, alpha=args.alpha,
                                     budget_questions=args.budget, binary=binary)
    rows = []
    for r in frame.to_dict(orient="records"):
        row = [r["mode"], str(r["n_seeds"])]
        if accuracy_range is not None:
            row = [r["mode"] if r["mode"] == "independent" else r["assumption"],
                   str(r["n_seeds"])]
        if "n_questions" in r:
            row += [r["test"], str(r["n_questions"]), str(r["n_rows"]), _fmt(r["power"], 3),
                    _fmt(r["design_effect"], 2)]
        if args.budget is not None:
            row += [_fmt(r["mde"])]
        rows.append(row)
    head = ["mode" if accuracy_range is None else "mode / coupled joint", "seeds/question"]
    if "n_questions" in frame.columns:
        head += ["test", "questions", "rows", "power", "design effect"]
    if args.budget is not None:
        head += [f"MDE at {args.budget} questions"]
    screen = (f"Plan from {source}: effect {_fmt(effect)}, power {args.power}, "
              f"alpha {args.alpha}\nvariance components"
              f"{' (comonotone joint)' if accuracy_range is not None else ''}: "
              f"between {_fmt(components.between)}, "
              f"within coupled {_fmt(components.within_coupled)}, within independent "
              f"{_fmt(components.within_independent)}\n" + _table(rows, head))
    if accuracy_range is not None:
        screen += ("\nno p_both given: the coupled plan at three joints —\n"
                   + "\n".join(f"  {k}: {v}" for k, v in accuracy_range.labels.items()))
    if components.note:
        screen += f"\nnote: {components.note}"
    if "mde_note" in frame.columns:
        screen += "".join(f"\nMDE: {n}" for n in frame["mde_note"].unique() if n)
    payload = {"source": source, "effect": effect, "power": args.power, "alpha": args.alpha,
               "components": components.summary(), "plans": _records(frame)}
    if accuracy_range is not None:
        payload["coupled_joint_labels"] = accuracy_range.labels
    return _emit(payload, screen, args)


def _plan_win_rate(args: argparse.Namespace, seeds: tuple[int, ...]) -> int:
    from dataclasses import asdict

    from coupled.analysis.pairwise import load_comparisons
    from coupled.analysis.pairwise_planning import plan_win_rate_separation

    if args.accuracies:
        raise ValueError("--accuracies is for score differences; use --prompt-probs or --pilot "
                         "with --win-rate")
    kwargs = dict(effect=args.effect, alpha=args.alpha, power=args.power,
                  coupling=args.coupling, budget=args.budget)
    if args.pilot:
        if not args.models:
            raise ValueError("--win-rate --pilot: name the two models with --models A B")
        pilot, _ = load_comparisons(args.pilot)  # read once for every seed count
        check_present(args.coupling, pilot["coupling"], "--coupling", args.pilot)
        kwargs.update(pilot=pilot, model=args.models[0], opponent=args.models[1])
    else:
        table = _read_csv(args.prompt_probs, "--prompt-probs")
        probs = _numeric_columns(table, list(table.columns), "--prompt-probs",
                                 args.prompt_probs).to_numpy(dtype=float)
        if probs.shape[0] < 1 or probs.shape[1] < 2:
            raise ValueError(f"--prompt-probs: {args.prompt_probs} needs at least one row "
                             f"and two model columns, found {probs.shape[0]} x {probs.shape[1]}")
        kwargs.update(prompt_probs=probs, model=0, opponent=1)
        if args.models:
            raise ValueError("--prompt-probs: models are its columns 0 and 1; drop --models")
    plans = [asdict(plan_win_rate_separation(n_seeds=s, **kwargs)) for s in seeds]
    rows = [[str(p["n_seeds"]), _fmt(p["effect_coupled"]), str(p["n_questions_coupled"]),
             _fmt(p["effect_independent"]), str(p["n_questions_independent"]),
             "—" if not math.isfinite(p["saving"]) else f"{100 * p['saving']:.1f}%"]
            for p in plans]
    head = ["seeds/question", "effect coupled", "questions coupled", "effect independent",
            "questions independent", "saving"]
    if args.budget is not None:
        for row, plan in zip(rows, plans, strict=True):
            row += [_fmt(plan["mde_coupled"]), _fmt(plan["mde_independent"])]
        head += [f"MDE coupled at {args.budget} questions",
                 f"MDE independent at {args.budget} questions"]
    screen = (f"Separating average win-rates of {kwargs['model']} and {kwargs['opponent']}: "
              f"power {args.power}, alpha {args.alpha}\n" + _table(rows, head))
    payload = {"plans": _json_rows(plans)}
    note = _negative_win_rate_saving(plans)
    if note:
        screen += f"\n{note}"
        payload["saving_note"] = note
    return _emit(payload, screen, args)


def _negative_win_rate_saving(plans: list[dict]) -> str:
    """One line, only when a saving is negative: which of the two factors of the questions
    needed, ``(sd / effect)^2``, makes coupled need more."""
    negative = [p for p in plans if math.isfinite(p["saving"]) and p["saving"] < 0]
    if not negative:
        return ""
    plan = min(negative, key=lambda p: p["saving"])
    reasons = []
    if abs(plan["effect_coupled"]) < abs(plan["effect_independent"]):
        reasons.append(f"the coupled separation is smaller ({_fmt(plan['effect_coupled'])} vs "
                       f"{_fmt(plan['effect_independent'])}: coupling makes identical replies, "
                       "which tie, so both win-rates shrink)")
    if plan["sd_coupled"] > plan["sd_independent"]:
        reasons.append(f"its per-question SD is larger ({_fmt(plan['sd_coupled'])} vs "
                       f"{_fmt(plan['sd_independent'])})")
    return (f"negative saving ({100 * plan['saving']:.0f}% at {plan['n_seeds']} seed(s)): "
            "coupled needs more questions for this pair, because "
            + " and ".join(reasons or ["of rounding"])
            + "; questions needed scale as (SD / separation)^2 in each mode.")
