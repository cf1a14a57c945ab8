"""`coupled demo`: the real command path (with --quick, a smaller simulation) writes the
figures, tables and a REPORT.md that names every file it produced — and only files that exist.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from coupled.cli.main import main


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo-output"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out


def _named_files(report: str) -> set[str]:
    return set(re.findall(r"`([^`\s]+\.(?:png|pdf|md|tex|csv|json|parquet))`", report))


def test_report_names_every_file_and_every_named_file_exists(demo_dir):
    from coupled.cli.output_paths import MARKER

    report = (demo_dir / "REPORT.md").read_text()
    produced = {str(p.relative_to(demo_dir)) for p in demo_dir.rglob("*") if p.is_file()}
    named = _named_files(report)
    # The command's marker lists every file it wrote; the report names all but the marker.
    assert set(json.loads((demo_dir / MARKER).read_text())["files"]) == produced - {MARKER}
    assert produced - {MARKER} == named, (produced - named, named - produced)
    assert not [p for p in demo_dir.parent.iterdir() if ".staging-" in p.name]


def test_demo_writes_the_paper_set(demo_dir):
    names = {p.name for p in demo_dir.iterdir()}
    for stem in ("table1_ranking", "example_b6"):
        assert {f"{stem}.md", f"{stem}.tex", f"{stem}.csv"} <= names
    assert any(n.startswith("fig3_win_rates_") and n.endswith(".png") for n in names)
    assert sum(n.startswith("fig2_") and n.endswith(".pdf") for n in names) >= 1
    assert {"calibration_theory_vs_simulation.png", "REPORT.md", "summary.json"} <= names
    assert (demo_dir / "data" / "manifest.json").is_file()


def test_report_numbers_come_from_the_analysis(demo_dir):
    """The headline numbers in REPORT.md are the ones in summary.json, which the demo took
    from the result objects; the variance-reduction CSV holds compare_models' numbers (checked
    for one pair against a fresh variance_reduction on the written tables)."""
    import pandas as pd

    from coupled.analysis.benchmark import variance_reduction

    summary = json.loads((demo_dir / "summary.json").read_text())
    report = (demo_dir / "REPORT.md").read_text()
    for line in summary["lines"]:
        assert line in report
    written = pd.read_csv(demo_dir / "variance_reduction.csv")
    row = written[(written["model_a"] == "large") & (written["model_b"] == "small")].iloc[0]
    fresh = variance_reduction(demo_dir / "data", "large", "small")
    assert row["ratio"] == pytest.approx(fresh.ratio, rel=1e-12)
    assert row["ratio_ci_low"] == pytest.approx(fresh.ratio_ci_low, rel=1e-12)
    for pair, numbers in summary["variance_reduction"].items():
        assert f"{numbers['ratio']:.3f}" in report, pair
    needed = summary["planning"]["questions_needed"]
    assert f"{needed['coupled']} questions coupled vs {needed['independent']} independent" \
        in report


def test_table1_redraws_from_the_demo_data(demo_dir):
    """The written tables are a run folder: Table 1 drawn from them is the demo's."""
    import pandas as pd

    from coupled.paper_figures.inputs import load_run
    from coupled.paper_figures.table1 import RANK_COLUMNS, ranking_table

    again = ranking_table(load_run(demo_dir / "data").comparisons).ranks
    written = pd.read_csv(demo_dir / "table1_ranking.csv")
    pd.testing.assert_frame_equal(again[RANK_COLUMNS].reset_index(drop=True),
                                  written[RANK_COLUMNS], check_dtype=False, rtol=1e-12)
    # tie rates beside the win-rates: coupled ties more (identical replies tie)
    pd.testing.assert_series_equal(again["tie_rate"].reset_index(drop=True),
                                   written["tie_rate"], check_dtype=False, rtol=1e-12)
    ties = written.groupby("mode")["tie_rate"].mean()
    assert ties["coupled"] > ties["independent"]
    assert "Tie rate" in (demo_dir / "table1_ranking.md").read_text()


def test_demo_refuses_a_file_as_output(tmp_path, capsys):
    target = tmp_path / "not-a-folder"
    target.write_text("x")
    assert main(["demo", "--quick", "--out", str(target), "--no-progress"]) == 2
    assert target.read_text() == "x"
    assert Path(tmp_path).joinpath("not-a-folder").is_file()


def test_rerun_replaces_own_output_and_never_a_foreign_folder(demo_dir, tmp_path, capsys):
    """`coupled demo --out` re-uses its own earlier output (recognised by its marker), replaced
    whole so no stale file survives; a folder holding anything else is never touched."""
    from coupled.cli.output_paths import MARKER

    out = tmp_path / "demo-output"
    shutil.copytree(demo_dir, out)
    (out / "REPORT.md").write_text("edited by hand")
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 2
    assert "changed since" in capsys.readouterr().err
    assert (out / "REPORT.md").read_text() == "edited by hand"

    shutil.rmtree(out)
    shutil.copytree(demo_dir, out)
    stale = out / "fig2_old-pair_vs_gone.png"   # listed in the marker as one of its files
    stale.write_bytes(b"stale")
    marker = json.loads((out / MARKER).read_text())
    marker["files"][stale.name] = {"sha256": hashlib.sha256(b"stale").hexdigest(), "bytes": 5}
    (out / MARKER).write_text(json.dumps(marker))
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert "replacing its earlier output" in capsys.readouterr().out
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-output"]  # no staging left

    foreign = tmp_path / "my-thesis"
    foreign.mkdir()
    (foreign / "REPORT.md").write_text("precious")  # looks like a demo output; is not one
    assert main(["demo", "--quick", "--out", str(foreign), "--no-progress"]) == 2
    assert "not written by `coupled demo`" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["REPORT.md"]
    assert (foreign / "REPORT.md").read_text() == "precious"


def test_library_writes_only_into_a_new_or_empty_folder(tmp_path):
    """From Python (no command, no marker), run_demo never replaces a non-empty folder."""
    from coupled.paper_figures.demo import run_demo

    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        run_demo(folder, quick=True, progress=False)
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
