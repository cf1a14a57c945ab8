"""The tables contract: validation names file/column/rows, readers accept every layout, writes are atomic."""

import json

import numpy as np
import pandas as pd
import pytest

from coupled import tables
from coupled.tables import TableError


def _scores(n_prompts=3, seeds=(0, 1), models=("A", "B"), modes=("coupled",)):
    rows = [
        dict(task="t", prompt_id=f"{p:03d}", seed=s, mode=m, coupling="gumbel", model=model,
             score=float((p + s) % 2))
        for p in range(n_prompts) for s in seeds for m in modes for model in models
    ]
    return pd.DataFrame(rows)


def _comparisons():
    return pd.DataFrame([
        dict(task="t", prompt_id="1", seed=0, mode="coupled", coupling="gumbel",
             model_a="A", model_b="B", outcome="a", shown_first="b"),
        dict(task="t", prompt_id="1", seed=1, mode="coupled", coupling="gumbel",
             model_a="A", model_b="B", outcome="tie", shown_first="a"),
    ])


def test_valid_scores_are_normalised():
    out = tables.validate_scores(_scores())
    assert list(out.columns[:7]) == list(tables.SCORE_KEY) + ["score"]
    assert out["seed"].dtype == np.int64 and out["score"].dtype == np.float64
    assert out["prompt_id"].iloc[0] == "000"


@pytest.mark.parametrize(
    "mutate, column, fragment",
    [
        (lambda d: d.drop(columns="score"), "score", "missing required column"),
        (lambda d: d.assign(mode=["paired"] + list(d["mode"][1:])), "mode", "unknown value"),
        (lambda d: d.assign(score=[np.nan] + list(d["score"][1:])), "score", "missing values"),
        (lambda d: d.assign(score=[np.inf] + list(d["score"][1:])), "score", "finite"),
        (lambda d: d.assign(seed=[-1] + list(d["seed"][1:])), "seed", "non-negative integer"),
        (lambda d: d.assign(coupling="gumble"), "coupling", "unknown value"),
        (lambda d: pd.concat([d, d.iloc[:2]]), "task,prompt_id", "duplicated key"),
        (lambda d: d.iloc[:0], None, "empty"),
    ],
)
def test_bad_scores_raise_one_clear_error(mutate, column, fragment):
    with pytest.raises(TableError) as info:
        tables.validate_scores(mutate(_scores()), source="runs/x/scores.parquet")
    message = str(info.value)
    assert "runs/x/scores.parquet" in message and fragment in message
    if column:
        assert column in message
    if fragment not in ("missing required column", "empty"):
        assert "e.g." in message  # example rows are shown


def test_comparisons_checks_order_outcome_and_models():
    ok = tables.validate_comparisons(_comparisons())
    assert set(ok["outcome"]) == {"a", "tie"}
    swapped = _comparisons().assign(model_a="B", model_b="A")
    with pytest.raises(TableError, match="canonical order"):
        tables.validate_comparisons(swapped)
    with pytest.raises(TableError, match="outcome"):
        tables.validate_comparisons(_comparisons().assign(outcome="A"))
    with pytest.raises(TableError, match="names a model"):
        tables.validate_comparisons(_comparisons(), models=["A", "C"])
    with pytest.raises(TableError, match="shown_first"):
        tables.validate_comparisons(_comparisons().assign(shown_first="left"))


def test_unbalanced_designs_are_valid():
    df = _scores(seeds=(0, 1, 2))
    df = df[~((df.prompt_id == "001") & (df.seed == 2))]      # a prompt with fewer seeds
    df = df[~((df.prompt_id == "002") & (df.model == "B"))]   # a model missing a prompt
    assert len(tables.validate_scores(df)) == len(df)


def test_readers_accept_file_csv_shard_folder_and_output_dir(tmp_path):
    df = tables.validate_scores(_scores(n_prompts=4))
    # single parquet file and CSV (prompt ids keep their leading zeros)
    tables.write_table(df, tmp_path / "s.parquet", "scores")
    df.to_csv(tmp_path / "s.csv", index=False)
    for path in (tmp_path / "s.parquet", tmp_path / "s.csv"):
        back = tables.read_scores(path)
        pd.testing.assert_frame_equal(back, df)
    # output dir with shards
    out = tmp_path / "run"
    tables.write_shard(df.iloc[:8], out, "scores", "chunk-000000")
    tables.write_shard(df.iloc[8:], out, "scores", "chunk-000001")
    assert tables.completed_shards(out, "scores") == {"chunk-000000", "chunk-000001"}
    for path in (out, out / "scores"):
        back = tables.read_scores(path).sort_values(list(tables.SCORE_KEY)).reset_index(drop=True)
        pd.testing.assert_frame_equal(back, df.sort_values(list(tables.SCORE_KEY))
                                      .reset_index(drop=True))


def test_duplicates_across_shards_are_an_error(tmp_path):
    df = _scores()
    tables.write_shard(df, tmp_path, "scores", "chunk-0")
    tables.write_shard(df.iloc[:1], tmp_path, "scores", "chunk-1")
    with pytest.raises(TableError, match="2 shards.*duplicated key"):
        tables.read_scores(tmp_path)


def test_missing_and_wrong_paths(tmp_path):
    with pytest.raises(TableError, match="no such file"):
        tables.read_scores(tmp_path / "nope")
    with pytest.raises(TableError, match="holds no comparisons table"):
        tables.read_comparisons(tmp_path)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(TableError, match="unsupported file type"):
        tables.read_scores(tmp_path / "x.txt")
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(TableError, match="cannot be read"):
        tables.read_scores(tmp_path / "broken.parquet")


def test_invalid_shard_is_never_written(tmp_path):
    bad = _scores().assign(score=np.nan)
    with pytest.raises(TableError):
        tables.write_shard(bad, tmp_path, "scores", "chunk-0")
    assert not (tmp_path / "scores" / "chunk-0.parquet").exists()
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path, monkeypatch):
    df = tables.validate_scores(_scores())
    target = tables.write_shard(df, tmp_path, "scores", "chunk-0")
    before = target.read_bytes()

    def explode(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", explode)
    with pytest.raises(OSError, match="disk full"):
        tables.write_shard(df, tmp_path, "scores", "chunk-0")
    assert target.read_bytes() == before
    assert [p.name for p in (tmp_path / "scores").iterdir()] == ["chunk-0.parquet"]


def test_manifest_round_trip(tmp_path):
    tables.write_manifest(tmp_path, {"config": {"seeds": 3}, "path": tmp_path})
    manifest = tables.read_manifest(tmp_path)
    assert manifest["config"] == {"seeds": 3} and manifest["path"] == str(tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    assert tables.read_manifest(tmp_path / "elsewhere") == {}
