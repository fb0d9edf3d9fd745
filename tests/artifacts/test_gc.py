"""Garbage collection over real pipeline runs (tiny model) and synthetic stages: what goes, what stays, why."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from setfit_core.artifacts import ArtifactStore, stage_key
from setfit_core.artifacts.gc import (
    GcPolicy,
    apply_gc,
    list_artifacts,
    parse_duration,
    resolve_key,
    select_gc,
    show_stage,
)
from tests.conftest import tree_snapshot

TINY_ARGS = {"num_iterations": 2, "seed": 0, "num_epochs": [1, 2], "show_progress_bar": False}
VERSIONS = {"setfit_core": "test"}
NO_AGE = timedelta(0)  # cutoff = now: age protects nothing, so only the model rule decides


# -- helpers ----------------------------------------------------------------------


def put(store: ArtifactStore, stage: str, parents: dict[str, str], config: dict, size: int = 100) -> str:
    """Publish a synthetic stage with one file of ``size`` bytes (or reuse it, like the pipeline)."""
    key = stage_key(stage, config, parents, {}, VERSIONS)
    if store.find(stage, key) is None:
        with store.write_stage(stage, key, parents=parents, config=config, inputs={}, versions=VERSIONS) as writer:
            (writer.dir / "data.bin").write_bytes(b"x" * size)
    return key


def fake_run(store: ArtifactStore, seed: int = 0, c: float = 1.0) -> dict[str, str]:
    """The pipeline's stage graph with synthetic files: same seed -> shared pairs, body and embeddings."""
    keys = {"pairs": put(store, "pairs", {}, {"seed": seed})}
    keys["body"] = put(store, "body", {"pairs": keys["pairs"]}, {"seed": seed}, size=1000)
    keys["embeddings"] = put(store, "embeddings", {"body": keys["body"]}, {})
    keys["head"] = put(store, "head", {"embeddings": keys["embeddings"]}, {"C": c})
    keys["evaluation"] = put(store, "evaluation", {"head": keys["head"], "embeddings": keys["embeddings"]}, {})
    keys["model"] = put(store, "model", {"head": keys["head"], "body": keys["body"]}, {}, size=1100)
    return keys


def ids(keys: dict[str, str], *stages: str) -> set[tuple[str, str]]:
    return {(stage, keys[stage]) for stage in stages}


RUN_OUTPUTS = ("head", "evaluation", "model")  # what a head-only change adds


def stored(store: ArtifactStore) -> set[tuple[str, str]]:
    return {(m.stage, m.key) for m in store.list_stages()}


def assert_lineage_closed(store: ArtifactStore) -> None:
    """Every stored stage's parents are stored too: nothing points at a deleted stage."""
    present = stored(store)
    dangling = [(m.stage, m.key[:8], p) for m in store.list_stages() for p in m.parents.items() if p not in present]
    assert not dangling, dangling


@pytest.fixture
def pipeline(tiny_model_dir, tiny_splits, single_torch_thread, cache_home):
    """``pipeline(root, **job changes)``: run the real pipeline on the tiny model; returns stage -> key."""
    from setfit_core.pipeline import PipelineJob, PipelineRun

    def run(root: str, statuses: dict | None = None, **changes) -> dict[str, str]:
        base = {
            "train_data": tiny_splits["train"],
            "eval_data": tiny_splits["eval"],
            "artifacts_root": root,
            "model": tiny_model_dir,
            "args": TINY_ARGS,
        }
        results = PipelineRun(PipelineJob(**{**base, **changes})).run_all()
        if statuses is not None:
            statuses.update({stage: r.status for stage, r in results.items()})
        return {stage: r.key for stage, r in results.items()}

    return run


def four_runs(pipeline, root: str) -> dict[str, dict[str, str]]:
    """a, b, d share pairs/body/embeddings (head-only changes); c has another seed, so its own body."""
    runs = {"a": pipeline(root), "b": pipeline(root, head_params={"C": 0.5})}
    runs["c"] = pipeline(root, args={**TINY_ARGS, "seed": 1})
    runs["d"] = pipeline(root, head_params={"C": 0.25})
    return runs


# -- real pipeline runs -----------------------------------------------------------


def test_gc_keeps_the_newest_models_and_everything_they_were_built_from(pipeline, tmp_path):
    root = str(tmp_path / "artifacts")
    runs = four_runs(pipeline, root)
    store = ArtifactStore(root)
    plan = select_gc(store, GcPolicy(keep_last=2, older_than=NO_AGE))

    expected = ids(runs["a"], *RUN_OUTPUTS) | ids(runs["b"], *RUN_OUTPUTS)
    assert {info.id for info in plan.candidates} == expected
    reasons = {(k.info.stage, k.info.key): k.reason for k in plan.kept}
    d_model = runs["d"]["model"][:8]
    assert reasons[("model", runs["d"]["model"])] == "kept model (newest 2)"
    assert reasons[("body", runs["d"]["body"])] in {
        f"ancestor of kept model {d_model}",
        f"ancestor of kept model {runs['c']['model'][:8]}",
    }
    assert reasons[("evaluation", runs["d"]["evaluation"])] == f"evaluation of kept model {d_model}"
    assert plan.bytes_freed == sum(info.size for info in plan.candidates) > 0


def test_dry_run_touches_nothing_and_apply_deletes_exactly_the_candidates(pipeline, tmp_path):
    root = str(tmp_path / "artifacts")
    runs = four_runs(pipeline, root)
    store = ArtifactStore(root)
    before = tree_snapshot(Path(root))
    plan = select_gc(store, GcPolicy(keep_last=2, older_than=NO_AGE))
    assert tree_snapshot(Path(root)) == before, "planning reads manifests only"

    result = apply_gc(store, plan)
    assert [i.id for i in result.deleted] == [i.id for i in plan.candidates] and not result.skipped
    assert stored(store) == {k.info.id for k in plan.kept}
    assert_lineage_closed(store)
    for name in ("c", "d"):
        _assert_model_loads(store, runs[name]["model"])
    statuses: dict[str, str] = {}
    assert pipeline(root, statuses, head_params={"C": 0.25}) == runs["d"]
    assert set(statuses.values()) == {"reused"}, statuses
    pipeline(root, statuses, args={**TINY_ARGS, "seed": 1})
    assert set(statuses.values()) == {"reused"}, statuses


def test_stages_a_newer_run_references_are_protected(pipeline, tmp_path):
    root = str(tmp_path / "artifacts")
    old = {"a": pipeline(root), "c": pipeline(root, args={**TINY_ARGS, "seed": 1})}
    cutoff = datetime.now(timezone.utc)
    time.sleep(0.01)
    new = pipeline(root, head_params={"C": 0.5})  # reuses a's pairs, body and embeddings
    plan = select_gc(ArtifactStore(root), GcPolicy(keep_last=0, older_than=NO_AGE), now=cutoff)

    reasons = {k.info.id: k.reason for k in plan.kept}
    assert reasons[("model", new["model"])] == "newer than cutoff"
    assert reasons[("body", old["a"]["body"])] == f"referenced by newer model {new['model'][:8]}"
    assert set(reasons) == ids(new, *new)
    assert {i.id for i in plan.candidates} == ids(old["a"], *RUN_OUTPUTS) | ids(old["c"], *old["c"])
    # An explicitly kept model protects its own lineage too.
    keep = select_gc(
        ArtifactStore(root), GcPolicy(keep_last=0, keep=(old["c"]["model"][:10],), older_than=NO_AGE), now=cutoff
    )
    assert {i.id for i in keep.candidates} == ids(old["a"], *RUN_OUTPUTS)
    assert {k.reason for k in keep.kept if k.info.stage == "model"} == {"kept model (--keep)", "newer than cutoff"}


def test_gc_on_s3_keeps_a_loadable_model_and_its_stages(pipeline, s3_root):
    first = pipeline(s3_root)
    second = pipeline(s3_root, head_params={"C": 0.5})
    store = ArtifactStore(s3_root)
    plan = select_gc(store, GcPolicy(keep_last=1, older_than=NO_AGE))
    assert {i.id for i in plan.candidates} == ids(first, *RUN_OUTPUTS)
    result = apply_gc(store, plan)
    assert {i.id for i in result.deleted} == ids(first, *RUN_OUTPUTS)
    assert stored(store) == ids(second, *second)
    _assert_model_loads(store, second["model"])
    statuses: dict[str, str] = {}
    pipeline(s3_root, statuses, head_params={"C": 0.5})
    assert set(statuses.values()) == {"reused"}, statuses


def _assert_model_loads(store: ArtifactStore, key: str) -> None:
    from setfit_core import SetFitModel

    model = SetFitModel.from_pretrained(str(store.local_path("model", key)), device="cpu")
    assert len(model.predict(["good movie", "awful film"])) == 2


# -- synthetic stages: order, races, crashes, edge cases ---------------------------


def test_candidates_come_children_first_and_a_crash_leaves_no_orphans(tmp_path, monkeypatch):
    store = ArtifactStore(tmp_path / "artifacts")
    fake_run(store, seed=0)
    fake_run(store, seed=1)
    plan = select_gc(store, GcPolicy(keep_last=0, older_than=NO_AGE))
    order = [info.id for info in plan.candidates]
    assert len(order) == 12
    for position, info in enumerate(plan.candidates):
        assert all(order.index(p) > position for p in info.parents.items()), f"{info.id} after a parent"

    real_delete, calls = store.delete_stage, []

    def crash_on_fifth(stage: str, key: str) -> None:
        if len(calls) == 4:
            raise OSError("disk went away")
        calls.append((stage, key))
        real_delete(stage, key)

    monkeypatch.setattr(store, "delete_stage", crash_on_fifth)
    with pytest.raises(OSError, match="disk went away"):
        apply_gc(store, plan)
    assert len(stored(store)) == 8
    assert_lineage_closed(store)


def test_apply_skips_candidates_that_a_stage_published_since_the_plan_references(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    old = fake_run(store, seed=0)
    plan = select_gc(store, GcPolicy(keep_last=0, older_than=NO_AGE))
    assert len(plan.candidates) == 6
    time.sleep(0.01)
    head = put(store, "head", {"embeddings": old["embeddings"]}, {"C": 9.0})  # a run reusing old embeddings

    result = apply_gc(store, plan)
    assert {i.id for i in result.skipped} == ids(old, "pairs", "body", "embeddings")
    assert {i.id for i in result.deleted} == ids(old, *RUN_OUTPUTS)
    assert stored(store) == ids(old, "pairs", "body", "embeddings") | {("head", head)}


def test_stale_temp_dirs_go_only_on_apply(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    fake_run(store)
    stale, fresh = (tmp_path / "artifacts" / "body" / name for name in (".tmp-crashed", ".tmp-running"))
    for path in (stale, fresh):
        path.mkdir()
        (path / "weights.bin").write_bytes(b"w")
    day_ago = time.time() - 86400
    for path in (stale / "weights.bin", stale):
        os.utime(path, (day_ago, day_ago))
    plan = select_gc(store, GcPolicy(keep_last=1, older_than=NO_AGE))
    assert stale.exists() and plan.temp_older_than == timedelta(hours=1), "older_than=0 must not hit live writers"
    result = apply_gc(store, plan)
    assert list(result.temp_removed) == [str(stale)] and fresh.exists() and not result.deleted


def test_gc_with_the_default_age_keeps_fresh_stages(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    fake_run(store, seed=0)
    fake_run(store, seed=1)
    plan = select_gc(store, GcPolicy(keep_last=0))
    assert not plan.candidates and {k.reason for k in plan.kept} >= {"newer than cutoff"}
    later = select_gc(store, GcPolicy(keep_last=0), now=datetime.now(timezone.utc) + timedelta(days=8))
    assert len(later.candidates) == 12


def test_unreadable_created_at_is_kept(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    keys = fake_run(store)
    manifest_path = tmp_path / "artifacts" / "head" / keys["head"] / "manifest.json"
    data = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**data, "created_at": "last tuesday"}))
    plan = select_gc(store, GcPolicy(keep_last=0, older_than=NO_AGE))
    reasons = {k.info.id: k.reason for k in plan.kept}
    assert reasons[("head", keys["head"])] == "unreadable created_at 'last tuesday'"
    assert {i.id for i in plan.candidates} == ids(keys, "evaluation", "model")


def test_keep_names_unknown_short_and_ambiguous_prefixes(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    keys = fake_run(store)
    with pytest.raises(ValueError, match=r"no model stage has a key starting with 'deadbeef'; list them with"):
        select_gc(store, GcPolicy(keep=("deadbeef",)))
    with pytest.raises(ValueError, match=r"a model key must be 8 to 64 hex characters .*; got 'abc'"):
        select_gc(store, GcPolicy(keep=("abc",)))
    with pytest.raises(ValueError, match=r"'abcdef01' matches 2 model stages \(abcdef01aa.*give more characters"):
        resolve_key(["abcdef01" + "a" * 56, "abcdef01" + "b" * 56], "abcdef01", "model")
    assert select_gc(store, GcPolicy(keep_last=0, keep=(keys["model"][:8].upper(),))).policy.keep == (keys["model"],)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("0", timedelta(0)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["3x", "", "-1d", "7 days", "d"])
def test_parse_duration_names_the_bad_value(bad):
    with pytest.raises(ValueError, match=rf"--older-than must be a number followed by d, h, m or s .*; got {bad!r}"):
        parse_duration(bad, "--older-than")


def test_policy_rejects_negative_values():
    with pytest.raises(ValueError, match=r"keep_last must be an int >= 0; got -1"):
        GcPolicy(keep_last=-1)
    with pytest.raises(ValueError, match=r"older_than must be a timedelta >= 0"):
        GcPolicy(older_than=timedelta(hours=-1))


def test_list_and_show(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    keys = fake_run(store)
    infos = list_artifacts(store)
    assert [i.stage for i in infos] == ["pairs", "body", "embeddings", "head", "evaluation", "model"]
    model = infos[-1]
    assert (model.key, model.size, model.n_files, model.parents) == (
        keys["model"],
        1100,
        1,
        {"head": keys["head"], "body": keys["body"]},
    )
    assert [i.stage for i in list_artifacts(store, "body")] == ["body"]
    details = show_stage(store, "body", keys["body"][:8])
    assert details.manifest.key == keys["body"] and details.verified
    (tmp_path / "artifacts" / "body" / keys["body"] / "data.bin").write_bytes(b"y" * 1000)
    assert "sha256" in show_stage(store, "body", keys["body"]).problems[0]
