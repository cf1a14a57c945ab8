"""Shards are never skipped (issue 10): an unreadable shard or a stray file in a shard folder is
an error naming it; shard names are ones pandas.read_parquet(folder) and pyarrow.dataset read."""

import os

import pandas as pd
import pyarrow.dataset as ds
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from coupled import tables
from coupled.tables import TableError


def _scores(prompts=("1", "2"), models=("A", "B")):
    return pd.DataFrame([dict(task="t", prompt_id=p, seed=0, mode="coupled", coupling="gumbel",
                              model=m, score=1.0) for p in prompts for m in models])


@pytest.fixture
def run(tmp_path):
    """An output folder with two good shards and a manifest."""
    tables.write_shard(_scores(("1",)), tmp_path, "scores", "chunk-0")
    tables.write_shard(_scores(("2",)), tmp_path, "scores", "chunk-1")
    tables.write_manifest(tmp_path, {"status": "complete"})
    assert len(tables.read_scores(tmp_path)) == 4
    return tmp_path


def _expect_error_naming(run, entry, fragment):
    with pytest.raises(TableError) as info:
        tables.read_scores(run)
    assert str(entry) in str(info.value) and fragment in str(info.value)


def test_dangling_symlink_shard_is_an_error(run):
    link = run / "scores" / "chunk-2.parquet"
    link.symlink_to(run / "gone.parquet")
    _expect_error_naming(run, link, "dangling symlink")
    assert "chunk-2" not in tables.completed_shards(run, "scores")  # resume writes it again


def test_looping_symlink_shard_is_an_error(run):
    a, b = run / "scores" / "a.parquet", run / "scores" / "b.parquet"
    a.symlink_to(b)
    b.symlink_to(a)
    _expect_error_naming(run, a, "symlink loop")


def test_symlink_to_a_good_shard_is_read(run, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    target = tables.write_shard(_scores(("3",)), elsewhere, "scores", "chunk-9")
    (run / "scores" / "chunk-2.parquet").symlink_to(target)
    assert len(tables.read_scores(run)) == 6
    assert "chunk-2" in tables.completed_shards(run, "scores")


# the fixture's shard is rewritten in full by every example, so sharing it is safe
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.0, 0.999))
def test_truncated_shard_is_an_error_at_any_length(run, cut):
    shard = run / "scores" / "chunk-1.parquet"
    data = tables.write_shard(_scores(("2",)), run, "scores", "chunk-1").read_bytes()
    shard.write_bytes(data[:int(len(data) * cut)])
    _expect_error_naming(run, shard, "cannot be read")
    assert tables.completed_shards(run, "scores") == {"chunk-0"}


def test_corrupt_shard_is_an_error(run):
    shard = run / "scores" / "chunk-1.parquet"
    data = bytearray(shard.read_bytes())
    data[4:len(data) // 2] = b"\xff" * (len(data) // 2 - 4)  # the data pages, not the footer
    shard.write_bytes(bytes(data))
    _expect_error_naming(run, shard, "cannot be read")


@pytest.mark.parametrize("name, fragment", [
    ("notes.txt", "not a table shard"),
    ("README", "not a table shard"),
    ("chunk-3.parquet.bak", "not a table shard"),
    ("_hidden.parquet", "starts with '_'"),
])
def test_stray_file_in_a_shard_folder_is_an_error(run, name, fragment):
    (run / "scores" / name).write_text("x")
    _expect_error_naming(run, run / "scores" / name, fragment)


def test_folder_inside_a_shard_folder_is_an_error(run):
    (run / "scores" / "old").mkdir()
    _expect_error_naming(run, run / "scores" / "old", "a folder inside a shard folder")


def test_entries_pandas_and_pyarrow_skip_are_skipped_here_too(run):
    # atomic_write's temporary files (a write in progress), OS files, dataset metadata
    (run / "scores" / ".chunk-5.parquet.abc.tmp").write_bytes(b"half")
    (run / "scores" / ".DS_Store").write_bytes(b"\0")
    (run / "scores" / "_SUCCESS").write_bytes(b"")
    assert len(tables.read_scores(run)) == 4
    assert len(pd.read_parquet(run / "scores")) == 4


def test_an_empty_csv_shard_names_the_shard(run):
    (run / "scores" / "extra.csv").write_text("")
    _expect_error_naming(run, run / "scores" / "extra.csv", "empty")


def test_shard_with_bad_rows_is_named_among_many(run):
    bad = _scores(("9",)).assign(model=["A", "A"])  # duplicated key inside one shard
    bad.to_parquet(run / "scores" / "chunk-2.parquet")
    with pytest.raises(TableError) as info:
        tables.read_scores(run)
    assert "chunk-2.parquet" in str(info.value) and "duplicated key" in str(info.value)


def test_output_folder_layout_problems(tmp_path, run):
    # kind folder a dangling symlink / a file; two single-file tables; no table at all
    other = tmp_path / "other"
    other.mkdir()
    (other / "scores").symlink_to(tmp_path / "nowhere")
    with pytest.raises(TableError, match="dangling symlink"):
        tables.read_scores(other)
    (other / "scores").unlink()
    _scores().to_csv(other / "scores.csv", index=False)
    _scores().to_parquet(other / "scores.parquet")
    with pytest.raises(TableError, match="more than one scores table"):
        tables.read_scores(other)
    with pytest.raises(TableError, match="holds no comparisons table"):
        tables.read_comparisons(run)  # an output folder: its manifest is never read as a table
    (tmp_path / "link.parquet").symlink_to(tmp_path / "missing.parquet")
    with pytest.raises(TableError, match="dangling symlink"):
        tables.read_scores(tmp_path / "link.parquet")


# --- shard names ------------------------------------------------------------------------------

names = st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=30)


@settings(max_examples=80)
@given(name=names)
@example(name="模型-1a2b3c4d.00000")
@example(name="a=b %41 [x] {y} #z")
@example(name="e\u0301")  # not NFC
@example(name="ä")
def test_every_accepted_shard_name_is_read_by_pandas_pyarrow_and_us(tmp_path_factory, name):
    out = tmp_path_factory.mktemp("names")
    df = _scores()
    try:
        tables.check_shard_name(name)
    except ValueError as error:
        assert repr(name) in str(error)
        with pytest.raises(ValueError):
            tables.write_shard(df, out, "scores", name)
        assert not (out / "scores").exists() or not any((out / "scores").iterdir())
        return
    target = tables.write_shard(df, out, "scores", name)
    assert target.name == f"{name}.parquet"
    folder = out / "scores"
    assert len(pd.read_parquet(folder)) == len(df)
    assert ds.dataset(folder, format="parquet").count_rows() == len(df)
    assert len(tables.read_scores(out)) == len(df)
    assert tables.completed_shards(out, "scores") == {name}


@pytest.mark.parametrize("name", ["_x-1a2b3c4d.00000", ".chunk", "a/b", "..", "a\\b", "a:b",
                                  "a\nb", "trailing.", "trailing ", "e\u0301", "x" * 201, ""])
def test_names_readers_would_skip_or_that_break_paths_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="shard name"):
        tables.write_shard(_scores(), tmp_path, "scores", name)
    assert not (tmp_path / "scores").exists() or not any((tmp_path / "scores").iterdir())


@given(model=st.text(min_size=1, max_size=30))
def test_runner_shard_names_from_any_model_name_are_safe(model):
    # The runner names shards by model_slug(model) + chunk numbers; any model name (non-ASCII
    # ones gave "_-<hash>" before) must give a name every reader of the folder reads.
    run = pytest.importorskip("coupled.runner.run")
    name = f"{run.model_slug(model)}.b000.00000"
    assert tables.check_shard_name(name) == name


def test_readers_skip_underscore_names_so_they_must_be_refused(tmp_path):
    # The reason for the rule: pandas and pyarrow silently read nothing from such a shard.
    folder = tmp_path / "scores"
    folder.mkdir()
    _scores().to_parquet(folder / "_-deadbeef.00000.parquet")
    _scores(("3",)).to_parquet(folder / "m-1.00000.parquet")
    assert len(pd.read_parquet(folder)) == 2
    assert ds.dataset(folder, format="parquet").count_rows() == 2
    with pytest.raises(TableError, match="starts with '_'"):
        tables.read_scores(tmp_path)


def test_unlistable_shard_folder_is_an_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can list any folder")
    folder = tmp_path / "scores"
    tables.write_shard(_scores(), tmp_path, "scores", "chunk-0")
    folder.chmod(0)
    try:
        with pytest.raises(TableError, match="cannot be listed"):
            tables.read_scores(tmp_path)
    finally:
        folder.chmod(0o755)
