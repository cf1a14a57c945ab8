"""Every subcommand, driven through generated bad inputs — bad tables, bad option values, bad
paths — ends the same way: exit status 2, one error message on stderr naming the file or the
option (a table error may add its example rows below that line), no traceback, no warning,
and no file created or changed anywhere in the working folder."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from coupled.cli.main import main

EXAMPLES = Path(__file__).parent.parent / "examples"


def _scores() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame([{"task": "t", "prompt_id": str(q), "seed": s, "mode": mode,
                          "coupling": "gumbel", "model": m, "score": float(rng.random() < p)}
                         for q in range(10) for s in range(2)
                         for mode in ("coupled", "independent")
                         for m, p in (("a", 0.7), ("b", 0.4), ("c", 0.5))])


def _comparisons() -> pd.DataFrame:
    rng = np.random.default_rng(6)
    return pd.DataFrame([{"task": "t", "prompt_id": str(q), "seed": s, "mode": mode,
                          "coupling": "gumbel", "model_a": a, "model_b": b,
                          "outcome": rng.choice(["a", "b", "tie"])}
                         for q in range(10) for s in range(2)
                         for mode in ("coupled", "independent")
                         for a, b in (("a", "b"), ("a", "c"), ("b", "c"))])


def _write(frame: pd.DataFrame, path: Path) -> None:
    frame.to_parquet(path) if path.suffix == ".parquet" else frame.to_csv(path, index=False)


def _bad_tables(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, what the error must name)."""
    scores, comparisons = _scores(), _comparisons()
    out: dict[str, tuple[Path, str]] = {}

    def table(name: str, frame: pd.DataFrame, suffix: str = ".csv", needle: str | None = None):
        path = folder / f"{name}{suffix}"
        _write(frame, path)
        out[name] = (path, needle or path.name)

    for column in ("task", "prompt_id", "seed", "mode", "model", "score"):
        table(f"no-{column}", scores.drop(columns=column))
    table("text-score", scores.astype({"score": object}).assign(score="high"))
    table("nan-score", scores.assign(score=np.where(np.arange(len(scores)) == 3, np.nan, 1.0)))
    table("text-seed", scores.astype({"seed": object}).assign(seed="first"))
    table("bad-mode", scores.assign(mode="both"))
    table("duplicate-key", pd.concat([scores, scores.head(2)]), ".parquet")
    table("bad-outcome", comparisons.assign(outcome="maybe"))
    table("single-model", scores[scores["model"] == "a"])
    table("one-mode-model", scores[~((scores["model"] == "c")
                                     & (scores["mode"] == "independent"))])
    table("missing-questions", scores[~((scores["model"] == "c")
                                        & (scores["prompt_id"].astype(int) > 3))])
    (folder / "empty.csv").write_text("")
    out["empty"] = (folder / "empty.csv", "empty.csv")
    (folder / "garbage.parquet").write_bytes(os.urandom(64))
    out["garbage"] = (folder / "garbage.parquet", "garbage.parquet")
    (folder / "notes.txt").write_text("task,prompt_id\n")
    out["wrong-suffix"] = (folder / "notes.txt", "notes.txt")
    os.symlink(folder / "gone.csv", folder / "dangling.csv")
    out["dangling-link"] = (folder / "dangling.csv", "dangling.csv")
    out["missing-file"] = (folder / "missing.csv", "missing.csv")
    (folder / "no-tables").mkdir()
    (folder / "no-tables" / "README").write_text("hi")
    out["folder-without-tables"] = (folder / "no-tables", "no-tables")
    for name, manifest in (("manifest-list", "[1, 2]"), ("manifest-corrupt", "{oops"),
                           ("manifest-running", json.dumps({"status": "running"}))):
        run = folder / name
        (run / "scores").mkdir(parents=True)
        scores.to_parquet(run / "scores" / "chunk-0.parquet")
        comparisons.to_parquet(run / "comparisons.parquet")
        (run / "manifest.json").write_text(manifest)
        out[name] = (run, "running" if name == "manifest-running" else "manifest.json")
    return out


# Which commands read a bad table, and which bad tables each must refuse. One-mode and
# missing-question designs are valid for figures (drawn with a note) and plan (a pilot).
COMMANDS = {
    "analyze": lambda t: ["analyze", str(t)],
    "rank": lambda t: ["rank", str(t)],
    "plan": lambda t: ["plan", "--pilot", str(t), "--models", "a", "b", "--effect", "0.1"],
    "plan-win-rate": lambda t: ["plan", "--win-rate", "--pilot", str(t), "--models", "a", "b",
                                "--effect", "0.1"],
    "figures": lambda t: ["figures", "--from", str(t), "--out", "new-figures",
                          "--no-progress", "--pairs", "a:b"],
}
DESIGN_ONLY = {"one-mode-model", "missing-questions", "manifest-running"}
NOT_FOR = {
    "plan": DESIGN_ONLY | {"bad-outcome", "manifest-list", "manifest-corrupt"},
    "plan-win-rate": DESIGN_ONLY | {"single-model", "manifest-list", "manifest-corrupt"},
    "figures": DESIGN_ONLY,
    "analyze": {"single-model"},  # valid (issue 13): per-model accuracy, no pair to compare
    "rank": {"no-task"},  # rank derives comparisons per key; checked below for the rest
}
TABLE_NAMES = ["no-task", "no-prompt_id", "no-seed", "no-mode", "no-model", "no-score",
               "text-score", "nan-score", "text-seed", "bad-mode", "duplicate-key",
               "bad-outcome", "single-model", "one-mode-model", "missing-questions", "empty",
               "garbage", "wrong-suffix", "dangling-link", "missing-file",
               "folder-without-tables", "manifest-list", "manifest-corrupt",
               "manifest-running"]
TABLE_CASES = [(c, t) for c, t in itertools.product(COMMANDS, TABLE_NAMES)
               if t not in NOT_FOR.get(c, set())
               and not (c in ("analyze", "plan") and t == "bad-outcome")]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    tables = _bad_tables(folder)
    _scores().to_csv(folder / "scores.csv", index=False)
    _comparisons().to_csv(folder / "comparisons.csv", index=False)
    pd.DataFrame({"p_a": [0.7, 0.6], "p_b": [0.4, 0.5]}).to_csv(folder / "acc.csv",
                                                                index=False)
    (folder / "a-file").write_text("not a folder")
    for name, frame in {
            "acc-big": {"p_a": [1.5, 0.2], "p_b": [0.3, 0.4]},
            "acc-nan": {"p_a": [np.nan, 0.2], "p_b": [0.3, 0.4]},
            "acc-text": {"p_a": ["x", 0.2], "p_b": [0.3, 0.4]},
            "acc-both": {"p_a": [0.5, 0.2], "p_b": [0.3, 0.4], "p_both": [0.6, 0.1]},
            "acc-empty": {"p_a": [], "p_b": []},
            "probs-one": {"0": [0.7, 0.2]},
            "probs-big": {"0": [0.7, 0.2], "1": [1.5, 0.3]}}.items():
        pd.DataFrame(frame).to_csv(folder / f"{name}.csv", index=False)
    return folder, tables


def run_refused(argv: list[str], folder: Path, *needles: str) -> str:
    """Run ``coupled argv`` in ``folder``; assert the failure contract; return stderr."""
    before = snapshot(folder)
    stdout, stderr = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(argv)
            except SystemExit as exit_:  # argparse
                code = exit_.code
    finally:
        os.chdir(cwd)
    err = stderr.getvalue()
    assert code == 2, (argv, code, err, stdout.getvalue()[-500:])
    lines = err.rstrip("\n").splitlines()
    assert lines and lines[0].startswith(f"coupled {argv[0]}") and ": error: " in lines[0], err
    # One message: its first line names the file/option; a table error may list example rows.
    assert all(line.startswith("  ") for line in lines[1:]), err
    assert "Traceback" not in err and "Warning" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, err)
    assert snapshot(folder) == before, argv
    return err


@pytest.mark.parametrize("command, table", TABLE_CASES)
def test_bad_tables(workdir, command, table):
    folder, tables = workdir
    path, needle = tables[table]
    argv = COMMANDS[command](path)
    if table in ("one-mode-model", "missing-questions", "manifest-running"):
        needle = "--allow-incomplete"  # the design is refused, and the way out is named
    run_refused(argv, folder, needle)


# ---------------------------------------------------------------------------- bad options
def _not_probability(x: float) -> bool:
    return not (0 < x < 1)


bad_probability = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).filter(
        lambda x: not (x == x) or _not_probability(x)).map(repr),
    st.sampled_from(["", "x", "0", "1", "nan", "-inf", "1e400", "0.5.5"]))
bad_int = st.one_of(st.integers(max_value=-1).map(str),
                    st.sampled_from(["", "1.5", "ten", "1e3", "nan"]))
bad_budget = st.one_of(st.integers(max_value=1).map(str), st.sampled_from(["2.5", "x"]))
bad_float = st.sampled_from(["nan", "inf", "-inf", "x", "", "1e400"])

OPTION_CASES = {
    "--alpha": (bad_probability, [["analyze", "scores.csv"], ["rank", "comparisons.csv"],
                                  ["plan", "--accuracies", "acc.csv"],
                                  ["figures", "--from", "scores.csv", "--out", "f"]]),
    "--power": (bad_probability, [["plan", "--accuracies", "acc.csv"]]),
    "--effect": (bad_float, [["plan", "--accuracies", "acc.csv"]]),
    "--budget": (bad_budget, [["plan", "--accuracies", "acc.csv"]]),
    "--seed": (bad_int, [["analyze", "scores.csv"], ["rank", "comparisons.csv"],
                         ["simulate", "--out", "s"]]),
    "--n-seeds": (st.one_of(bad_int, st.just("0")), [["simulate", "--out", "s"]]),
}


@settings(max_examples=25)
@given(data=st.data())
def test_bad_option_values_name_the_option(workdir, data):
    folder, _ = workdir
    option = data.draw(st.sampled_from(sorted(OPTION_CASES)))
    values, commands = OPTION_CASES[option]
    command = data.draw(st.sampled_from(commands))
    value = data.draw(values)
    run_refused([*command, f"{option}={value}"], folder, option)


@pytest.mark.parametrize("argv, needle", [
    (["analyze", "scores.csv", "--models", "a", "--error-curve", "row"], "--error-curve"),
    (["analyze", "scores.csv", "--without-replacement"], "--without-replacement"),
    (["analyze", "scores.csv", "--models", "a", "a"], "--models"),
    (["analyze", "scores.csv", "--models", "a", "zz"], "zz"),
    (["plan", "--pilot", "scores.csv", "--models", "a", "a"], "--models"),
    (["plan", "--pilot", "scores.csv", "--models", "a", "zz"], "--models"),
    (["plan", "--pilot", "scores.csv"], "--models"),
    (["plan", "--pilot", "scores.csv", "--models", "a", "b", "--coupling", "potato"],
     "--coupling"),
    (["plan", "--pilot", "scores.csv", "--models", "a", "b", "--effect", "5"], "--effect"),
    (["plan", "--pilot", "scores.csv", "--models", "a", "b", "--seeds", "0,2"], "--seeds"),
    (["plan", "--pilot", "scores.csv", "--models", "a", "b", "--seeds", "1,,2"], "--seeds"),
    (["plan", "--accuracies", "scores.csv"], "--accuracies"),
    (["plan", "--win-rate", "--prompt-probs", "scores.csv"], "--prompt-probs"),
    (["plan", "--prompt-probs", "acc.csv"], "--prompt-probs"),
    (["plan", "--win-rate", "--accuracies", "acc.csv"], "--accuracies"),
    (["plan", "--win-rate", "--pilot", "comparisons.csv"], "--models"),
    *[(["plan", "--accuracies", f"acc-{kind}.csv"], f"acc-{kind}.csv")
      for kind in ("big", "nan", "text", "both", "empty")],
    (["plan", "--accuracies", "acc-text.csv"], "'p_a'"),
    (["plan", "--accuracies", "acc-both.csv"], "'p_both'"),
    *[(["plan", "--win-rate", "--prompt-probs", name], name)
      for name in ("probs-one.csv", "probs-big.csv", "acc-empty.csv")],
    (["analyze", "scores.csv", "--error-curve", "row", "--models", "a", "zz"], "zz"),
    (["figures", "--from", "scores.csv", "--out", "f", "--pairs", "a:zz"], "zz"),
    (["figures", "--from", "comparisons.csv", "--out", "f", "--pairs", "a:b"], "--pairs"),
    (["figures", "--from", "scores.csv", "--out", "f", "--model", "zz"], "zz"),
    (["figures", "--from", "scores.csv", "--out", "f", "--config", "x.toml"], "--config"),
    (["figures", "--simulated", "--out", "f", "--config", "missing.toml"], "missing.toml"),
    (["simulate", "--out", "s", "--config", "missing.toml"], "missing.toml"),
    (["simulate", "--out", "s", "--config", "scores.csv"], "scores.csv"),
    (["run", "missing.toml"], "missing.toml"),
    (["theory", "example", "--bogus"], "--bogus"),
    (["analyze", "scores.csv", "extra.csv"], "extra.csv"),
    (["import", "lm-eval", "missing", "--out", "x.parquet"], "missing"),
    (["import", "inspect", "missing", "--out", "x.parquet"], "missing"),
    (["import", "lm-eval", "scores.csv", "--out", "x.parquet"], "scores.csv"),
    (["export", "lm-eval", "missing.csv", "--out", "ex"], "missing.csv"),
    (["export", "lm-eval", "scores.csv", "--out", "scores.csv"], "--out"),
    (["merge", "new-run", "missing-1", "missing-2"], "missing-1"),
    (["run", "scores.csv"], "scores.csv"),
])
def test_bad_option_combinations(workdir, argv, needle):
    folder, _ = workdir
    run_refused([*argv, "--no-progress"] if argv[0] == "figures" else argv, folder, needle)


# ---------------------------------------------------------------------------- bad paths
OUT_CASES = {  # --out value -> what the message names
    "scores.csv": "input", "./sub/../scores.csv": "input", ".": "existing folder",
    "a-file/x.json": "is a file", "nowhere/x.json": "does not exist",
    "acc.csv": "--overwrite",
}
ONE_FILE = [["analyze", "scores.csv"], ["rank", "scores.csv"],
            ["plan", "--pilot", "scores.csv", "--models", "a", "b", "--effect", "0.1"]]
FOLDER = [["figures", "--from", "scores.csv", "--no-progress"], ["demo", "--quick",
                                                                 "--no-progress"],
          ["simulate", "--quiet"]]
FOLDER_OUT = {".": "--out", "scores.csv": "not a folder", "a-file/x": "is a file",
              "nowhere/x": "does not exist", "no-tables": "not written by"}


@pytest.mark.parametrize("command, out", [(c, o) for c in ONE_FILE for o in OUT_CASES])
def test_bad_out_for_one_file_commands(workdir, command, out):
    folder, _ = workdir
    (folder / "sub").mkdir(exist_ok=True)
    if command[0] == "plan" and out == "acc.csv":
        out = "comparisons.csv"  # an existing file that is not plan's input
    run_refused([*command, "--out", out], folder, "--out", OUT_CASES.get(out, "--overwrite"))


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("command", [*ONE_FILE, *FOLDER])
def test_out_where_no_file_can_be_created(workdir, command):
    """/proc refuses new files even to root: the probe of the folder above --out says so
    before any work, instead of an error about a temporary file."""
    folder, _ = workdir
    out = "/proc/coupled-out.csv" if command in ONE_FILE else "/proc/coupled-out"
    run_refused([*command, "--out", out], folder, "--out", "cannot create files in /proc")


@pytest.mark.parametrize("command", [*ONE_FILE, *FOLDER])
def test_empty_out_is_not_no_out(workdir, command):
    folder, _ = workdir
    run_refused([*command, "--out", ""], folder, "--out")


@pytest.mark.parametrize("command, out", [(c, o) for c in FOLDER for o in FOLDER_OUT])
def test_bad_out_for_folder_commands(workdir, command, out):
    folder, _ = workdir
    run_refused([*command, "--out", out], folder, "--out", FOLDER_OUT[out])
