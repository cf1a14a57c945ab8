"""The one --out rule (cli/output_paths.py), command by command: no command writes over one
of its inputs, however the path is spelled; one-file outputs refuse folders and, without
--overwrite, existing files; folder outputs re-use only their own marked output; a bad --out
is one clear error, exit 2, with nothing created or changed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import snapshot
from hypothesis import given
from hypothesis import strategies as st

from coupled.cli.main import main
from coupled.cli.output_paths import MARKER, OutputPathError, check_output_file


def _scores(n: int = 12, seeds: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = [{"task": "t", "prompt_id": str(q), "seed": s, "mode": mode, "coupling": "gumbel",
             "model": m, "score": float(rng.random() < p)}
            for q in range(n) for s in range(seeds) for mode in ("coupled", "independent")
            for m, p in (("a", 0.7), ("b", 0.4))]
    return pd.DataFrame(rows)


@pytest.fixture()
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _scores().to_csv(tmp_path / "scores.csv", index=False)
    run = tmp_path / "run" / "scores"
    run.mkdir(parents=True)
    _scores().to_parquet(run / "chunk-0.parquet")
    return tmp_path


def _refused(argv: list[str], folder: Path, capsys, *needles: str) -> str:
    before = snapshot(folder)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"coupled {argv[0]}: error:") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert snapshot(folder) == before
    return err


# --------------------------------------------------------------------------- never an input
def _spellings(work: Path) -> list[str]:
    """The input table ``scores.csv`` named six ways."""
    os.symlink(work / "scores.csv", work / "link.csv")
    os.link(work / "scores.csv", work / "hard.csv")
    (work / "sub").mkdir()
    return ["scores.csv", "./scores.csv", "sub/../scores.csv", str(work / "scores.csv"),
            "link.csv", "hard.csv"]


@pytest.mark.parametrize("command", [
    ["analyze", "scores.csv"],
    ["rank", "scores.csv"],
    ["plan", "--pilot", "scores.csv", "--models", "a", "b", "--effect", "0.1"],
])
def test_no_command_writes_over_its_input_however_spelled(work, capsys, command):
    for spelling in _spellings(work):
        # Even --overwrite never lets a command replace its input.
        _refused([*command, "--out", spelling, "--overwrite"], work, capsys, "--out",
                 "would write over the input")


def test_input_spelled_through_its_folder_link(work, capsys):
    os.symlink(work / "run", work / "alias")
    for out in ("run/scores/ranks.csv", "alias/scores/ranks.csv", "run/scores.csv",
                "run/manifest.json"):
        _refused(["rank", "run", "--out", out], work, capsys, "would write over the input")
    # Beside the tables of the run folder is fine (the README's `--out runs/mine/...`).
    assert main(["rank", "run", "--out", "run/ranks.csv"]) == 0
    assert (work / "run" / "ranks.csv").is_file()


# --------------------------------------------------------------------------- one-file outputs
@pytest.mark.parametrize("command", [
    ["analyze", "scores.csv"],
    ["rank", "scores.csv"],
    ["plan", "--accuracies", "acc.csv"],
])
def test_one_file_rule(work, capsys, command):
    pd.DataFrame({"p_a": [0.7, 0.6], "p_b": [0.4, 0.5]}).to_csv(work / "acc.csv", index=False)
    out_name = "result.json"
    (work / "afile").write_text("x")
    (work / "folder").mkdir()
    _refused([*command, "--out", "folder"], work, capsys, "existing folder")
    _refused([*command, "--out", "folder/"], work, capsys, "not a folder")
    _refused([*command, "--out", f"afile/{out_name}"], work, capsys, "is a file")
    _refused([*command, "--out", f"nowhere/{out_name}"], work, capsys, "does not exist")
    assert main([*command, "--out", out_name]) == 0
    capsys.readouterr()
    first = (work / out_name).read_bytes()
    _refused([*command, "--out", out_name], work, capsys, "--overwrite")
    assert (work / out_name).read_bytes() == first
    assert main([*command, "--out", out_name, "--overwrite"]) == 0
    assert not [p for p in work.iterdir() if p.name.startswith(".")]  # no temporary left


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_out_folder(work, capsys):
    locked = work / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        _refused(["rank", "scores.csv", "--out", "locked/r.csv"], work, capsys, "not writable")
    finally:
        locked.chmod(0o700)


@pytest.fixture(scope="module")
def maze(tmp_path_factory):
    """a/b.csv (the input), a link l -> a, a hard link a/h.csv, a folder a/c."""
    folder = tmp_path_factory.mktemp("maze")
    (folder / "a" / "c").mkdir(parents=True)
    (folder / "a" / "b.csv").write_text("x")
    os.symlink(folder / "a", folder / "l")
    os.link(folder / "a" / "b.csv", folder / "a" / "h.csv")
    return folder


@given(st.lists(st.sampled_from(["a", "l", "c", ".", "..", "b.csv", "h.csv", "x.csv"]),
                min_size=1, max_size=6))
def test_generated_spellings_of_the_input_are_refused(maze, parts):
    """Every spelling that names the input (through '..', '.', a folder link, a hard link) is
    refused as the input, even with --overwrite; no other path is refused as the input."""
    target = maze / "a" / "b.csv"
    candidate = maze / Path(*parts)
    names_input = candidate.exists() and os.path.samefile(candidate, target)
    try:
        check_output_file(candidate, inputs=[target], overwrite=True)
    except OutputPathError as error:
        assert ("would write over the input" in str(error)) == names_input, str(error)
    else:
        assert not names_input


# --------------------------------------------------------------------------- folder outputs
def test_figures_reuses_only_its_own_folder(work, capsys):
    args = ["figures", "--from", "scores.csv", "--pairs", "a:b", "--no-progress"]
    assert main([*args, "--out", "figs"]) == 0
    first = snapshot(work / "figs")
    assert MARKER in first
    printed = capsys.readouterr().out
    assert f"wrote {len(first)} files" in printed
    assert main([*args, "--out", "figs"]) == 0   # its own earlier output: replaced whole
    assert "replacing its earlier output" in capsys.readouterr().out
    assert set(snapshot(work / "figs")) == set(first)

    (work / "figs" / "notes.txt").write_text("mine")        # now it holds a user's file
    _refused([*args, "--out", "figs"], work, capsys, "did not write", "notes.txt")
    (work / "figs" / "notes.txt").unlink()
    (work / "figs" / "example_b6.md").write_text("edited")  # or a file changed by hand
    _refused([*args, "--out", "figs"], work, capsys, "changed since", "example_b6.md")

    mine = work / "thesis"
    mine.mkdir()
    (mine / "chapter.tex").write_text("precious")
    _refused([*args, "--out", "thesis"], work, capsys, "not written by `coupled figures`")
    _refused([*args, "--out", "."], work, capsys, "--out")
    _refused([*args, "--out", "scores.csv"], work, capsys, "not a folder")
    _refused([*args, "--out", "nowhere/figs"], work, capsys, "does not exist")
    (work / "afile").write_text("x")
    _refused([*args, "--out", "afile/figs"], work, capsys, "is a file")


def test_folder_outputs_never_contain_or_enter_an_input(work, capsys):
    _refused(["figures", "--from", "run", "--out", "run", "--no-progress"], work, capsys,
             "--out")
    _refused(["figures", "--from", "run/scores", "--out", "run", "--no-progress"], work,
             capsys, "holds the input")
    _refused(["figures", "--from", "run", "--out", "run/scores/figs", "--no-progress"], work,
             capsys, "would write over the input")


def test_one_command_never_takes_over_anothers_folder(work, capsys):
    assert main(["figures", "--from", "scores.csv", "--pairs", "a:b", "--no-progress",
                 "--out", "figs"]) == 0
    capsys.readouterr()
    _refused(["simulate", "--out", "figs", "--force", "--quiet"], work, capsys,
             "it holds `coupled figures` output")
    _refused(["demo", "--quick", "--out", "figs", "--no-progress"], work, capsys,
             "not written by `coupled demo`")


def test_simulate_force_replaces_only_its_own_output(work, capsys):
    config = Path(__file__).parent.parent / "examples" / "simulate" / "tiny.toml"
    args = ["simulate", "--config", str(config), "--no-truth", "--quiet", "--n-seeds", "2"]
    assert main([*args, "--out", "sim"]) == 0
    marker = json.loads((work / "sim" / MARKER).read_text())
    assert marker["producer"] == "simulate" and "manifest.json" in marker["files"]
    _refused([*args, "--out", "sim"], work, capsys, "--force")
    assert main([*args, "--out", "sim", "--force"]) == 0
    (work / "sim" / "analysis.ipynb").write_text("{}")
    _refused([*args, "--out", "sim", "--force"], work, capsys, "analysis.ipynb")
    _refused([*args, "--out", str(config.parent), "--force"], work, capsys, "--out")


def test_folder_filled_during_the_work_is_not_replaced(tmp_path):
    from coupled.cli.output_paths import check_output_folder, staged_output_folder

    folder = check_output_folder(tmp_path / "out", producer="figures")
    with pytest.raises(OutputPathError, match="not written by"), \
            staged_output_folder(folder) as staging:
        (staging / "fig.png").write_bytes(b"new")
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "mine.txt").write_text("written meanwhile")  # by someone else
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # staging removed
