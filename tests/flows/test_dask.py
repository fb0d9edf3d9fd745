"""`task_runner="dask"`: the embeddings stage and batch prediction sharded over a 2-worker LocalCluster.

The cluster's workers are threads of the test process by default: two worker processes each spend
~12 s starting and importing torch on a 2-core machine, and ~4 s shutting down, per cluster (the
tests start three). Threads still run every shard as its own Prefect task run on a Dask worker, and
parts still travel only through files under the artifacts root. ``SETFIT_TEST_DASK_PROCESSES=1``
runs the same tests on worker processes, as `ScaleOut` builds them for users (they pass there too).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from setfit_pipeline.flows.predict import predict_flow
from setfit_pipeline.flows.train import train_pipeline
from setfit_pipeline.tasks.dask_runner import ScaleOut

from setfit_core.artifacts import ArtifactStore
from setfit_core.pipeline.embeddings_stage import EMBEDDINGS_FILE, ENCODE_CHUNK
from tests.conftest import TINY_WORDS
from tests.flows.test_train_flow import ARGS, statuses

# Local Dask clusters: ~5 s a test.
pytestmark = pytest.mark.slow

DASK = {"task_runner": "dask", "dask_workers": 2, "shards": 2}


@pytest.fixture(autouse=True)
def thread_workers(monkeypatch):
    """LocalCluster workers as threads unless SETFIT_TEST_DASK_PROCESSES=1 (see the module docstring)."""
    if os.environ.get("SETFIT_TEST_DASK_PROCESSES") == "1":
        return
    build = ScaleOut.task_runner_instance

    def threads(self):
        runner = build(self)
        runner.cluster_kwargs.update(processes=False, dashboard_address=None)
        return runner

    monkeypatch.setattr(ScaleOut, "task_runner_instance", threads)


def sentences(count: int, seed: int) -> list[str]:
    """`count` short texts of the tiny model's words; about one in ten repeats an earlier one."""
    rng = random.Random(seed)
    texts: list[str] = []
    for _ in range(count):
        repeat = texts and rng.random() < 0.1
        texts.append(rng.choice(texts) if repeat else " ".join(rng.choices(TINY_WORDS, k=rng.randint(2, 6))))
    return texts


@pytest.fixture(scope="module")
def big_test_split(tmp_path_factory) -> str:
    """A test split with more distinct texts than one encode chunk, so two shards both get work."""
    texts = sentences(ENCODE_CHUNK + 200, seed=1)
    path = tmp_path_factory.mktemp("dask-data") / "test.parquet"
    pd.DataFrame({"text": texts, "label": ["positive", "negative"] * (len(texts) // 2)}).to_parquet(path)
    return str(path)


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".tmp-*"))


def test_sharded_embeddings_match_the_default_run(tiny_model_dir, tiny_splits, big_test_split, tmp_path):
    root = tmp_path / "artifacts"
    params = {"train_data": tiny_splits["train"], "eval_data": tiny_splits["eval"], "test_data": big_test_split,
              "artifacts_root": str(root), "model": tiny_model_dir, "args": ARGS}
    sharded = train_pipeline(**params, **DASK)
    assert set(statuses(sharded).values()) == {"computed"} and leftovers(root) == []
    key = sharded["stages"]["embeddings"]["key"]
    sharded_table = pq.read_table(root / "embeddings" / key / EMBEDDINGS_FILE)

    assert set(statuses(train_pipeline(**params)).values()) == {"reused"}, "a default run reuses the sharded stage"

    store = ArtifactStore(root)
    for stage in ("embeddings", "head", "evaluation", "model"):
        store.delete_stage(stage, sharded["stages"][stage]["key"])
    default = train_pipeline(**params)
    assert {s for s, status in statuses(default).items() if status == "computed"} == {
        "embeddings", "head", "evaluation", "model"}
    assert default["stages"]["embeddings"]["key"] == key
    # Bitwise: the shards make exactly the default run's encode calls (same chunks of distinct texts).
    assert pq.read_table(root / "embeddings" / key / EMBEDDINGS_FILE).equals(sharded_table)
    assert store.find("embeddings", key).metrics["texts_encoded"] > ENCODE_CHUNK
    assert default["metrics"] == sharded["metrics"]


def test_sharded_prediction_matches_the_default_run(tiny_model_dir, tiny_splits, tmp_path):
    trained = train_pipeline(train_data=tiny_splits["train"], artifacts_root=str(tmp_path / "artifacts"),
                             model=tiny_model_dir, args=ARGS)
    data = tmp_path / "input.parquet"
    pd.DataFrame({"text": sentences(4096 + 300, seed=2)}).to_parquet(data)  # two batches of 4096 rows
    out = tmp_path / "out"
    default = predict_flow(trained["model_uri"], str(data), str(out / "default.parquet"))
    sharded = predict_flow(trained["model_uri"], str(data), str(out / "sharded.parquet"), **DASK)
    assert sharded["rows"] == default["rows"] == 4396
    assert pq.read_table(out / "sharded.parquet").equals(pq.read_table(out / "default.parquet"))
    assert sorted(p.name for p in out.iterdir()) == ["default.parquet", "sharded.parquet"], "no .tmp-* left"


def test_a_failed_shard_leaves_no_output_and_no_parts(tiny_model_dir, tiny_splits, tmp_path):
    trained = train_pipeline(train_data=tiny_splits["train"], artifacts_root=str(tmp_path / "artifacts"),
                             model=tiny_model_dir, args=ARGS)
    texts: list = sentences(4096 + 10, seed=3)
    texts[4100] = None  # in the second shard's batch
    pd.DataFrame({"text": texts}).to_parquet(tmp_path / "input.parquet")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match=r"row 4100 is None; every text must be a string"):
        predict_flow(trained["model_uri"], str(tmp_path / "input.parquet"), str(out / "p.parquet"), **DASK)
    assert list(out.iterdir()) == [], "neither output nor shard parts are left"


BAD = [
    ({"dask_address": "tcp://127.0.0.1:8786"}, r"dask_address='tcp://127.0.0.1:8786' only applies with "
                                               r"task_runner='dask'; pass task_runner='dask' or drop dask_address"),
    ({"shards": 2}, r"shards=2 only applies with task_runner='dask'"),
    ({"task_runner": "dask", "shards": 0}, r"shards must be an integer >= 1 \(or None for one per worker\); got 0"),
    ({"task_runner": "dask", "dask_workers": 2, "dask_address": "tcp://h:1"}, r"dask_workers=2 sizes a local cluster"),
    ({"task_runner": "dask", "dask_address": "not an address"}, r"dask_address must be a Dask scheduler address"),
]


@pytest.mark.parametrize(("changes", "message"), BAD)
def test_bad_scale_out_parameters_fail_before_any_work(tiny_model_dir, tiny_splits, tmp_path, changes, message):
    root = tmp_path / "artifacts"
    with pytest.raises(ValueError, match=message):
        train_pipeline(train_data=tiny_splits["train"], artifacts_root=str(root), model=tiny_model_dir, args=ARGS,
                       **changes)
    assert not root.exists()


@pytest.mark.parametrize(("changes", "message"), BAD[:1] + BAD[2:3])
def test_predict_flow_checks_the_same_parameters(tiny_model_dir, tiny_splits, tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        predict_flow(tiny_model_dir, tiny_splits["test"], str(tmp_path / "out.parquet"), **changes)
    assert list(tmp_path.iterdir()) == []
