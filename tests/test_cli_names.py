"""File names from model names (paper_figures.names.file_stem): distinct names give distinct,
safe files, and `coupled figures` prints the count of the files it really wrote."""

from __future__ import annotations

import contextlib
import io
import re
import unicodedata

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coupled.cli.main import main
from coupled.paper_figures.names import file_stem

SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
TRICKY = ["x/y", "x y", "x-y", "X-Y", "x_y", "..", ".", "-", "con", "a_vs_b", "Ünïcødé",
          "模型", "a" * 300, "../../etc/passwd", "model\n", "x:y", "e\u0301", "\u00e9",
          "x-0123456789", "x-" + file_stem("x/y").split("-")[-1]]
names = st.one_of(st.sampled_from(TRICKY), st.text(min_size=1, max_size=80))


def _is_safe(stem: str) -> bool:
    return (SAFE.fullmatch(stem) is not None and ".." not in stem and "_" not in stem
            and len(stem.encode()) <= 60 and stem.split(".")[0].lower() not in {"con", "nul"})


@given(st.lists(names, min_size=1, max_size=30, unique=True))
def test_distinct_names_give_distinct_safe_stems(models):
    stems = [file_stem(m) for m in models]
    assert all(_is_safe(s) for s in stems), [s for s in stems if not _is_safe(s)]
    # Distinct even on a case-insensitive file system.
    assert len({s.lower() for s in stems}) == len(models)


@given(st.lists(names, min_size=2, max_size=6, unique=True))
def test_pair_file_names_split_one_way(models):
    """fig2_<a>_vs_<b>: stems hold no '_', so distinct ordered pairs give distinct names."""
    pairs = [(a, b) for a in models for b in models if a != b]
    files = {f"fig2_{file_stem(a)}_vs_{file_stem(b)}" for a, b in pairs}
    assert len(files) == len(pairs)


def test_known_collisions_of_the_old_slug_are_gone():
    assert file_stem("x/y") != file_stem("x y")
    assert file_stem("e\u0301") != file_stem("\u00e9")  # same text to a reader, two names
    assert file_stem("large") == "large"  # plain names stay as they are
    assert file_stem("x-0123456789") != "x-0123456789"  # looks hashed: hashed itself


def _table(models: list[str], n: int = 8, seeds: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    skill = np.linspace(0.3, 0.8, len(models))
    rows = [{"task": "t", "prompt_id": str(q), "seed": s, "mode": "coupled",
             "coupling": "gumbel", "model": m, "score": float(rng.random() < p)}
            for q in range(n) for s in range(seeds) for m, p in zip(models, skill, strict=True)]
    return pd.DataFrame(rows)


printable = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)


@pytest.mark.filterwarnings("ignore:Glyph .* missing from font")
@settings(max_examples=3)
@given(st.lists(st.one_of(st.sampled_from(TRICKY[:12]), printable), min_size=3, max_size=3,
                unique_by=lambda m: unicodedata.normalize("NFC", m).strip()))
def test_figures_writes_one_file_per_pair_and_counts_true(tmp_path_factory, models):
    """N pairs of generated model names give N distinct Fig. 2 files; the count printed is
    the number of files in the folder."""
    folder = tmp_path_factory.mktemp("names")
    path = folder / "scores.parquet"
    _table(models).to_parquet(path)
    pairs = [(models[0], models[1]), (models[1], models[2]), (models[0], models[2]),
             (models[0], models[1])]  # the last one twice: one figure
    out = folder / "figs"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["figures", "--from", str(path), "--out", str(out), "--no-progress",
                     "--pairs", *(f"{a}:{b}" for a, b in pairs)])
    assert code == 0, stderr.getvalue()
    printed = stdout.getvalue()
    written = sorted(p for p in out.rglob("*") if p.is_file())
    count = int(re.match(r"wrote (\d+) files", printed).group(1))
    assert count == len(written)
    assert len([p for p in written if p.name.startswith("fig2_") and p.suffix == ".png"]) == 3
    assert all(_is_safe(p.stem.split("_")[-1]) for p in written if p.name.startswith("fig"))
    assert all(p.parent == out for p in written)  # nothing escaped the folder


def test_pairs_split_at_the_colon_that_names_two_models():
    from coupled.paper_figures.figures import split_pair

    models = ["org:a", "b", "org", "a:b"]
    assert split_pair("org:a:b", ["org:a", "b"]) == ("org:a", "b")
    assert split_pair(("a:b", "b"), models) == ("a:b", "b")
    with pytest.raises(ValueError, match="ambiguous"):
        split_pair("org:a:b", models)  # org + a:b, or org:a + b
    with pytest.raises(ValueError, match="nobody"):
        split_pair("b:nobody", models)
    with pytest.raises(ValueError, match="two different"):
        split_pair("b:b", models)
