"""``coupled export lm-eval TABLE --out DIR``: per-model results files in lm-eval's layout.

lm-eval writes ``OUT/<model_name_sanitized>/results_<date>.json`` (``EvaluationTracker.
save_results_aggregated``); dashboards and scripts that read those files read ours. Mapping:

* ``results[<task>]["<metric>,<filter>"]``: the model's mean score (mean over questions of each
  question's mean over seeds), with ``"<metric>_stderr,<filter>"`` its question-clustered
  standard error (sd of the per-question means / sqrt(Q); lm-eval's own stderr is the same
  formula with one reply per question). The *filter* slot carries ``<mode>-<coupling>``
  (e.g. ``coupled-gumbel``, ``independent-none``), lm-eval's way of keeping several scorings
  of one task apart; ``"N/A"`` where there are fewer than two questions (as lm-eval writes).
* ``configs``, ``versions``, ``n-shot``, ``higher_is_better``, ``n-samples``,
  ``group_subtasks``, ``config.model`` / ``config.model_args``, ``model_name``,
  ``model_name_sanitized``, ``date``: lm-eval's keys; ``configs[<task>].repeats`` is the
  largest number of seeds per question. Our confidence intervals are under a separate
  ``coupled`` key so that no dashboard mistakes them for metrics.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime

from coupled.cli.options import coupled_version, probability

# lm_eval.utils.sanitize_model_name: the folder name lm-eval gives a model's results.
_UNSAFE = re.compile(r"[\"<>:/|\\?*\[\]]+")
PRODUCER = "export lm-eval"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the `coupled` parser."""
    parser = subparsers.add_parser(
        "export", help="write results in another tool's layout (lm-eval results_*.json)",
        description="Export a scores table's per-model, per-task mean scores with "
                    "question-clustered standard errors in another tool's results layout.")
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    lm_eval = formats.add_parser(
        "lm-eval", help="lm-eval's OUT/<model>/results_<date>.json files",
        description="One results_<date>.json per model under OUT/<model_name_sanitized>/, as "
                    "lm-eval --output_path writes them: per task '<metric>,<mode>-<coupling>' "
                    "and its '_stderr' (clustered by question), plus lm-eval's config keys.")
    lm_eval.add_argument("path", metavar="FILE_OR_DIR",
                         help="scores file (parquet/CSV/JSONL), shard folder or output directory")
    lm_eval.add_argument("--out", required=True, metavar="DIR",
                         help="folder to write (new, empty, or an earlier `coupled export "
                              "lm-eval` output, which is replaced whole)")
    lm_eval.add_argument("--metric", default="acc",
                         help="metric name the scores are reported under (default acc)")
    lm_eval.add_argument("--alpha", type=probability, default=0.05,
                         help="1 - level of the intervals under the 'coupled' key")
    lm_eval.set_defaults(func=_export_lm_eval)


def sanitize_model_name(name: str) -> str:
    return _UNSAFE.sub("__", name)


def lm_eval_results(scores, metric: str = "acc", alpha: float = 0.05) -> dict[str, dict]:
    """``{model: results dict in lm-eval's layout}`` for a validated scores table."""
    from coupled.analysis._clustered import clustered_mean

    if not metric or "," in metric:
        raise ValueError(f"--metric {metric!r}: give a name without commas (lm-eval keys are "
                         "'<metric>,<filter>')")
    created = time.time()
    out: dict[str, dict] = {}
    for model, rows in scores.groupby("model", sort=True):
        results, configs, intervals, n_samples = {}, {}, {}, {}
        for task, in_task in rows.groupby("task", sort=True):
            entry = {"alias": task}
            seeds = int(in_task.groupby("prompt_id")["seed"].nunique().max())
            for (mode, coupling), block in in_task.groupby(["mode", "coupling"], sort=True):
                key = f"{mode}-{coupling}"
                per_question = block.groupby("prompt_id")["score"].mean().to_numpy(dtype=float)
                mean = float(per_question.mean())
                entry[f"{metric},{key}"] = mean
                if len(per_question) >= 2:
                    fit = clustered_mean(per_question, alpha=alpha)
                    entry[f"{metric}_stderr,{key}"] = float(fit.se)
                    intervals.setdefault(task, {})[key] = {
                        "estimate": mean, "ci_low": float(fit.ci_low),
                        "ci_high": float(fit.ci_high), "level": 1 - alpha,
                        "n_questions": int(fit.n_clusters),
                        "n_rows": int(len(block))}
                else:
                    entry[f"{metric}_stderr,{key}"] = "N/A"
            n_questions = int(in_task["prompt_id"].nunique())
            entry["sample_len"] = n_questions
            results[task] = entry
            configs[task] = {
                "task": task, "output_type": "generate_until", "repeats": seeds,
                "metric_list": [{"metric": metric, "aggregation": "mean",
                                 "higher_is_better": True}],
                "metadata": {"version": 1.0, "exported_by": "coupled"}}
            n_samples[task] = {"original": n_questions, "effective": n_questions}
        tasks = sorted(results)
        out[str(model)] = {
            "results": results,
            "group_subtasks": {task: [] for task in tasks},
            "configs": configs,
            "versions": {task: 1.0 for task in tasks},
            "n-shot": {task: 0 for task in tasks},
            "higher_is_better": {task: {metric: True} for task in tasks},
            "n-samples": n_samples,
            "config": {"model": "coupled", "model_args": {"pretrained": str(model)},
                       "batch_size": None, "limit": None, "bootstrap_iters": 0,
                       "gen_kwargs": {}, "random_seed": None},
            "model_name": str(model),
            "model_name_sanitized": sanitize_model_name(str(model)),
            "date": created,
            "coupled": {"version": coupled_version(), "stderr": "clustered by question",
                        "intervals": intervals},
        }
        # Every number must be plain JSON (no NaN): lm-eval's readers use json.load.
        json.dumps(out[str(model)], allow_nan=False, default=_not_json)
    folders: dict[str, str] = {}
    for model, results in out.items():
        other = folders.setdefault(results["model_name_sanitized"], model)
        if other != model:
            raise ValueError(f"models {other!r} and {model!r} share lm-eval's folder name "
                             f"{results['model_name_sanitized']!r}; rename one")
    return out


def _not_json(value):
    raise ValueError(f"export: value {value!r} is not JSON")


def _export_lm_eval(args: argparse.Namespace) -> int:
    from coupled.cli.output_paths import check_output_folder, staged_output_folder
    from coupled.tables import read_scores

    folder = check_output_folder(args.out, producer=PRODUCER, inputs=(args.path,))
    files = lm_eval_results(read_scores(args.path), metric=args.metric, alpha=args.alpha)
    date_id = datetime.now().isoformat().replace(":", "-")
    with staged_output_folder(folder) as staging:
        for results in files.values():
            target = staging / results["model_name_sanitized"] / f"results_{date_id}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n",
                              encoding="utf-8")
    print(f"wrote {len(files)} lm-eval results file(s) under {folder.path}", file=sys.stderr)
    return 0
