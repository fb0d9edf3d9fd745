"""Shard functions without a scheduler: ranges, embeddings parts -> stage, prediction parts -> output."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from setfit_core.pipeline import PipelineRun, predict_to_parquet
from setfit_core.pipeline import embeddings_stage as embeddings_module
from setfit_core.pipeline.batch_predict_shards import merge_predictions, predict_shard, predict_shard_layout
from setfit_core.pipeline.embedding_shards import assemble_embeddings, embedding_shard_layout, encode_shard
from setfit_core.pipeline.embeddings_stage import EMBEDDINGS_FILE
from setfit_core.pipeline.shards import part_uri, remove_prefix, shard_ranges


@pytest.mark.parametrize(("units", "shards", "expected"), [
    (10, 3, [(0, 4), (4, 7), (7, 10)]),
    (2, 5, [(0, 1), (1, 2)]),  # never an empty shard
    (4, 1, [(0, 4)]),
    (0, 3, []),
])
def test_shard_ranges_are_contiguous_and_near_equal(units, shards, expected):
    assert shard_ranges(units, shards) == expected


def test_shard_ranges_reject_zero_shards():
    with pytest.raises(ValueError, match=r"shards must be >= 1; got 0"):
        shard_ranges(4, 0)


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".tmp-*"))


@pytest.fixture
def trained_body(make_job, monkeypatch):
    """A run whose pairs and body are done; 5 distinct texts per encode chunk, so 24 texts make 5 chunks."""
    monkeypatch.setattr(embeddings_module, "ENCODE_CHUNK", 5)
    run = PipelineRun(make_job())
    run.run_stage("pairs")
    run.run_stage("body")
    return run


def encode_in_shards(run: PipelineRun, shards: int) -> list[str]:
    spec = run.plan["embeddings"]
    plan = embedding_shard_layout(run.store, spec, run.data, shards)
    parts = [part_uri(plan.prefix, i) for i in range(len(plan.ranges))]
    for chunks, uri in zip(plan.ranges, parts, strict=True):
        encode_shard(run.store, spec, run.data, chunks, uri)
    return parts


def test_sharded_embeddings_equal_the_unsharded_stage_bitwise(trained_body, tmp_path):
    run, root = trained_body, tmp_path / "artifacts"
    spec = run.plan["embeddings"]
    parts = encode_in_shards(run, 3)
    assert [Path(p).name for p in parts] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    sharded = assemble_embeddings(run.store, spec, run.data, parts)
    assert sharded.status == "computed" and sharded.key == spec.key
    remove_prefix(parts[0].rsplit("/", 1)[0])
    assert leftovers(root) == []
    sharded_table = pq.read_table(Path(sharded.uri) / EMBEDDINGS_FILE)

    run.store.delete_stage("embeddings", spec.key)
    unsharded = run.run_stage("embeddings")
    assert unsharded.status == "computed"
    assert pq.read_table(Path(unsharded.uri) / EMBEDDINGS_FILE).equals(sharded_table)
    assert unsharded.manifest.metrics == sharded.manifest.metrics
    assert sharded.manifest.metrics["texts_encoded"] == 24


def test_assembling_with_a_missing_part_publishes_nothing(trained_body, tmp_path):
    run = trained_body
    spec = run.plan["embeddings"]
    parts = encode_in_shards(run, 2)
    Path(parts[1]).unlink()  # as if its shard had failed
    with pytest.raises(FileNotFoundError, match=r"shard part .*part-00001.parquet' does not exist"):
        assemble_embeddings(run.store, spec, run.data, parts)
    assert run.store.find("embeddings", spec.key) is None
    remove_prefix(parts[0].rsplit("/", 1)[0])
    assert leftovers(tmp_path / "artifacts") == [], "the stage's own temp dir was removed too"


def test_remove_prefix_only_removes_shard_temp_prefixes(tmp_path):
    with pytest.raises(ValueError, match=r"refusing to remove .*: not a shard temp prefix"):
        remove_prefix(str(tmp_path))
    assert remove_prefix(str(tmp_path / ".tmp-x-shards-00")) is False


@pytest.fixture
def model_uri(make_job) -> str:
    return PipelineRun(make_job()).run_all()["model"].uri


def test_sharded_predictions_equal_the_unsharded_output(model_uri, tiny_splits, tmp_path):
    out = tmp_path / "out"
    unsharded = predict_to_parquet(model_uri, tiny_splits["test"], str(out / "one.parquet"), rows_per_group=2)
    plan = predict_shard_layout(tiny_splits["test"], str(out / "sharded.parquet"), 2, rows_per_group=2)
    assert plan.ranges == [(0, 2), (2, 3)]  # 6 rows: 3 batches of 2
    parts = [part_uri(plan.prefix, i) for i in range(2)]
    rows = [predict_shard(model_uri, tiny_splits["test"], uri, batches, rows_per_group=2)["rows"]
            for batches, uri in zip(plan.ranges, parts, strict=True)]
    assert rows == [4, 2]
    merged = merge_predictions(parts, str(out / "sharded.parquet"))
    assert merged["rows"] == unsharded["rows"] == 6
    assert pq.read_table(out / "sharded.parquet").equals(pq.read_table(out / "one.parquet"))
    assert pq.ParquetFile(out / "sharded.parquet").num_row_groups == 3
    remove_prefix(plan.prefix)
    assert sorted(p.name for p in out.iterdir()) == ["one.parquet", "sharded.parquet"]


def test_a_failed_merge_leaves_no_output(model_uri, tiny_splits, tmp_path):
    plan = predict_shard_layout(tiny_splits["test"], str(tmp_path / "p.parquet"), 2, rows_per_group=4)
    first = part_uri(plan.prefix, 0)
    predict_shard(model_uri, tiny_splits["test"], first, plan.ranges[0], rows_per_group=4)
    with pytest.raises(FileNotFoundError, match=r"part-00001.parquet' does not exist; did its shard fail"):
        merge_predictions([first, part_uri(plan.prefix, 1)], str(tmp_path / "p.parquet"))
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".parquet") or ".tmp" in p.name] == [
        Path(plan.prefix).name]


def test_planning_rejects_empty_input_and_a_missing_column(tmp_path):
    pd.DataFrame({"text": pd.Series([], dtype=str)}).to_parquet(tmp_path / "empty.parquet")
    with pytest.raises(ValueError, match=r"empty.parquet' has no rows to predict"):
        predict_shard_layout(str(tmp_path / "empty.parquet"), str(tmp_path / "o.parquet"), 2)
    pd.DataFrame({"review": ["good"]}).to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(ValueError, match=r"has no column 'text'; found \['review'\]. Pass text_column=..."):
        predict_shard_layout(str(tmp_path / "in.csv"), str(tmp_path / "o.parquet"), 2)


def test_shards_share_an_s3_root(make_job, s3_root, monkeypatch):
    """Parts go under the S3 root (where workers on other machines can read them), then away."""
    fsspec = pytest.importorskip("fsspec")
    monkeypatch.setattr(embeddings_module, "ENCODE_CHUNK", 5)
    run = PipelineRun(make_job(artifacts_root=s3_root))
    run.run_stage("pairs")
    run.run_stage("body")
    parts = encode_in_shards(run, 2)
    assert all(p.startswith(f"{s3_root}/embeddings/.tmp-") for p in parts)
    result = assemble_embeddings(run.store, run.plan["embeddings"], run.data, parts)
    assert result.status == "computed" and result.uri.startswith(s3_root)
    assert remove_prefix(parts[0].rsplit("/", 1)[0]) is True
    fs = fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False)
    assert [p for p in fs.find(s3_root.removeprefix("s3://")) if "/.tmp-" in p] == []
    assert run.run_stage("embeddings").status == "reused"
