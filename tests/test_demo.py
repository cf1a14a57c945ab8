"""`coupled demo`: the real command path (with --quick, a smaller simulation) writes the
figures, tables and a REPORT.md that names every file it produced — and only files that exist.
"""

from __future__ import annotations

import json
import re
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
    report = (demo_dir / "REPORT.md").read_text()
    produced = {str(p.relative_to(demo_dir)) for p in demo_dir.rglob("*") if p.is_file()}
    named = _named_files(report)
    assert produced == named, (produced - named, named - produced)
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


def test_demo_refuses_a_file_as_output(tmp_path, capsys):
    target = tmp_path / "not-a-folder"
    target.write_text("x")
    assert main(["demo", "--quick", "--out", str(target), "--no-progress"]) == 2
    assert target.read_text() == "x"
    assert Path(tmp_path).joinpath("not-a-folder").is_file()


def test_replacing_output_drops_stale_files_and_keeps_foreign_folders(tmp_path):
    from coupled.paper_figures.output import staged_output

    out = tmp_path / "demo-output"
    out.mkdir()
    (out / "REPORT.md").write_text("old")
    (out / "fig3_win_rates_someone-else.png").write_text("stale")
    with staged_output(out, replace=True) as staging:
        (staging / "REPORT.md").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["REPORT.md"]
    assert (out / "REPORT.md").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-output"]

    with pytest.raises(RuntimeError), staged_output(out, replace=True) as staging:
        (staging / "REPORT.md").write_text("half")
        raise RuntimeError("a stage failed")
    assert (out / "REPORT.md").read_text() == "new"  # the earlier output is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-output"]

    foreign = tmp_path / "my-thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("precious")
    with pytest.raises(ValueError, match="no REPORT.md"), staged_output(foreign, replace=True):
        pass
    assert (foreign / "chapter1.tex").read_text() == "precious"
