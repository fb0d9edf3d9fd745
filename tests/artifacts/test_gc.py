"""Garbage collection over real pipeline runs (tiny model) and synthetic stages: what goes, what stays, why."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from setfit_core.artifacts import ArtifactStore, stage_key
from setfit_core.artifacts.gc import GcPolicy, apply_gc, select_gc
from setfit_core.artifacts.listing import list_artifacts, parse_duration, resolve_key, show_stage
from tests.conftest import TINY_SPLITS, tree_snapshot

TINY_ARGS = {"num_iterations": 2, "seed": 0, "num_epochs": [1, 2], "show_progress_bar": False}
VERSIONS = {"setfit_core": "test"}
NO_AGE = timedelta(0)  # cutoff = now: age protects nothing, so only the model rule decides


# -- helpers ----------------------------------------------------------------------


def put(
    store: ArtifactStore, stage: str, parents: dict[str, str], config: dict, size: int = 100,
    metrics: dict | None = None,
) -> str:
    """Publish a synthetic stage with one file of ``size`` bytes (or reuse it, like the pipeline)."""
    key = stage_key(stage, config, parents, {}, VERSIONS)
    if store.find(stage, key) is None:
        with store.write_stage(stage, key, parents=parents, config=config, inputs={}, versions=VERSIONS,
                               metrics=metrics) as writer:
            (writer.dir / "data.bin").write_bytes(b"x" * size)
    return key


def fake_run(store: ArtifactStore, seed: int = 0, c: float = 1.0, lineage: str | None = None) -> dict[str, str]:
    """The pipeline's stage graph with synthetic files: same seed -> shared pairs, body and embeddings.

    `lineage`: the model manifest records ``{"id": lineage, "label": "<lineage> data"}``, as the export
    stage does; without it the model is one published before lineages were recorded."""
    keys = {"pairs": put(store, "pairs", {}, {"seed": seed})}
    keys["body"] = put(store, "body", {"pairs": keys["pairs"]}, {"seed": seed}, size=1000)
    keys["embeddings"] = put(store, "embeddings", {"body": keys["body"]}, {})
    keys["head"] = put(store, "head", {"embeddings": keys["embeddings"]}, {"C": c})
    keys["evaluation"] = put(store, "evaluation", {"head": keys["head"], "embeddings": keys["embeddings"]}, {})
    metrics = {"lineage": {"id": lineage, "label": f"{lineage} data"}} if lineage else None
    keys["model"] = put(store, "model", {"head": keys["head"], "body": keys["body"]}, {}, size=1100, metrics=metrics)
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
def nightly_data(tmp_path) -> Callable[[int], str]:
    """``nightly_data(day)``: write that day's training data to one fixed path (a nightly job's input) and
    return the path. Each day adds rows, so its content (and every stage key) changes; the path does not."""
    path = tmp_path / "nightly" / "train.parquet"
    path.parent.mkdir(exist_ok=True)

    def write(day: int) -> str:
        extra = {"text": ["good film", "bad film"] * day, "label": ["positive", "negative"] * day}
        rows = {name: TINY_SPLITS["train"][name] + extra[name] for name in ("text", "label")}
        pd.DataFrame(rows).to_parquet(path, index=False)
        return str(path)

    return write


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


def four_runs(pipeline, nightly_data, root: str) -> dict[str, dict[str, str]]:
    """Two lineages, two models each, oldest first: the nightly job (a: day 1, c: day 2, new data at the same
    path) and a head-only experiment (b: C=0.5 on day 1's data, reusing a's pairs, body and embeddings; d: the
    same on day 2's data, reusing c's)."""
    runs = {"a": pipeline(root, train_data=nightly_data(1))}
    runs["b"] = pipeline(root, train_data=nightly_data(1), head_params={"C": 0.5})
    runs["c"] = pipeline(root, train_data=nightly_data(2))
    runs["d"] = pipeline(root, train_data=nightly_data(2), head_params={"C": 0.5})
    return runs


# -- real pipeline runs -----------------------------------------------------------


def test_gc_keeps_the_newest_models_of_each_lineage_and_everything_they_were_built_from(
    pipeline, nightly_data, tmp_path
):
    root = str(tmp_path / "artifacts")
    runs = four_runs(pipeline, nightly_data, root)
    store = ArtifactStore(root)
    assert select_gc(store, GcPolicy(keep_last=2, older_than=NO_AGE)).candidates == ()
    plan = select_gc(store, GcPolicy(keep_last=1, older_than=NO_AGE))

    expected = ids(runs["a"], *runs["a"]) | ids(runs["b"], *RUN_OUTPUTS)  # day 1's stages
    assert {info.id for info in plan.candidates} == expected
    nightly, experiment = (_lineage(store, runs[name]["model"]) for name in ("c", "d"))
    assert nightly["id"] != experiment["id"]
    assert nightly["label"] == "nightly-train · LogisticRegression"
    assert experiment["label"] == "nightly-train · LogisticRegression(C=0.5)"
    reasons = {k.info.id: k.reason for k in plan.kept}
    assert reasons[("model", runs["c"]["model"])] == (
        f"kept model: newest of lineage {nightly['label']} [{nightly['id'][:8]}] (--keep-last 1)")
    d_model = runs["d"]["model"][:8]
    assert reasons[("body", runs["d"]["body"])] in {f"ancestor of kept model {d_model}",
                                                   f"ancestor of kept model {runs['c']['model'][:8]}"}
    assert reasons[("evaluation", runs["d"]["evaluation"])] == f"evaluation of kept model {d_model}"
    why = {info.id: plan.reason_to_delete(info) for info in plan.candidates}
    assert why[("model", runs["a"]["model"])] == (
        f"2nd newest model of lineage {nightly['label']} [{nightly['id'][:8]}] (--keep-last 1)")
    a_and_b = ", ".join(sorted(runs[name]["model"][:8] for name in "ab"))
    assert why[("body", runs["a"]["body"])] == f"only used by deleted models {a_and_b}"
    assert why[("head", runs["b"]["head"])] == f"only used by deleted model {runs['b']['model'][:8]}"
    assert [(lin.id, lin.models, lin.kept) for lin in plan.lineages] == [
        (experiment["id"], (runs["d"]["model"], runs["b"]["model"]), 1),
        (nightly["id"], (runs["c"]["model"], runs["a"]["model"]), 1),
    ]
    assert plan.bytes_freed == sum(info.size for info in plan.candidates) > 0


def test_a_newer_head_only_model_does_not_push_out_the_nightly_one(pipeline, tmp_path):
    root = str(tmp_path / "artifacts")
    nightly = pipeline(root)
    experiment = pipeline(root, head_params={"C": 0.5})  # newer, its own lineage
    plan = select_gc(ArtifactStore(root), GcPolicy(keep_last=1, older_than=NO_AGE))
    assert plan.candidates == ()
    reasons = {k.info.id: k.reason for k in plan.kept}
    labels = {reasons[("model", run["model"])] for run in (nightly, experiment)}
    assert {label.split(" [")[0] for label in labels} == {
        "kept model: newest of lineage tiny-splits0-train · LogisticRegression",
        "kept model: newest of lineage tiny-splits0-train · LogisticRegression(C=0.5)",
    }
    # The lineage is recorded beside the key, never in it: the same job gives the same key and lineage again.
    statuses: dict[str, str] = {}
    assert pipeline(root, statuses) == nightly and set(statuses.values()) == {"reused"}


def test_dry_run_touches_nothing_and_apply_deletes_exactly_the_candidates(pipeline, nightly_data, tmp_path):
    root = str(tmp_path / "artifacts")
    runs = four_runs(pipeline, nightly_data, root)
    store = ArtifactStore(root)
    before = tree_snapshot(Path(root))
    plan = select_gc(store, GcPolicy(keep_last=1, older_than=NO_AGE))
    assert tree_snapshot(Path(root)) == before, "planning reads manifests only"

    result = apply_gc(store, plan)
    assert [i.id for i in result.deleted] == [i.id for i in plan.candidates] and not result.skipped
    assert stored(store) == {k.info.id for k in plan.kept}
    assert_lineage_closed(store)
    for name in ("c", "d"):
        _assert_model_loads(store, runs[name]["model"])
    statuses: dict[str, str] = {}
    assert pipeline(root, statuses, train_data=nightly_data(2), head_params={"C": 0.5}) == runs["d"]
    assert set(statuses.values()) == {"reused"}, statuses
    pipeline(root, statuses, train_data=nightly_data(2))
    assert set(statuses.values()) == {"reused"}, statuses


def test_stages_a_newer_run_references_are_protected(pipeline, tmp_path):
    root = str(tmp_path / "artifacts")
    old = {"a": pipeline(root), "c": pipeline(root, args={**TINY_ARGS, "seed": 1})}
    cutoff = datetime.now(timezone.utc)
    time.sleep(0.01)
    new = pipeline(root, head_params={"C": 0.5})  # reuses a's pairs, body and embeddings
    plan = select_gc(ArtifactStore(root), GcPolicy(keep_last=0, older_than=NO_AGE), now=cutoff)

    reasons = {k.info.id: k.reason for k in plan.kept}
    assert reasons[("model", new["model"])] == "created after the cutoff"
    assert reasons[("body", old["a"]["body"])] == f"referenced by newer model {new['model'][:8]}"
    assert set(reasons) == ids(new, *new)
    assert {i.id for i in plan.candidates} == ids(old["a"], *RUN_OUTPUTS) | ids(old["c"], *old["c"])
    # An explicitly kept model protects its own lineage too.
    keep = select_gc(
        ArtifactStore(root), GcPolicy(keep_last=0, keep=(old["c"]["model"][:10],), older_than=NO_AGE), now=cutoff
    )
    assert {i.id for i in keep.candidates} == ids(old["a"], *RUN_OUTPUTS)
    assert {k.reason for k in keep.kept if k.info.stage == "model"} == {"kept model (--keep)",
                                                                         "created after the cutoff"}


def test_gc_on_s3_keeps_a_loadable_model_and_its_stages(pipeline, s3_root, tmp_path):
    first = pipeline(s3_root)
    second = pipeline(s3_root, head_params={"C": 0.5})
    store = ArtifactStore(s3_root)
    assert select_gc(store, GcPolicy(keep_last=1, older_than=NO_AGE)).candidates == (), "two lineages, 1 each"
    plan = select_gc(store, GcPolicy(keep_last=0, keep=(second["model"],), older_than=NO_AGE))
    assert {i.id for i in plan.candidates} == ids(first, *RUN_OUTPUTS)
    result = apply_gc(store, plan)
    assert {i.id for i in result.deleted} == ids(first, *RUN_OUTPUTS)
    assert stored(store) == ids(second, *second)
    # Loads through a fresh cache: the model stage and the body stage it references come from S3.
    _assert_model_loads(ArtifactStore(s3_root, cache_dir=tmp_path / "fresh-cache"), second["model"])
    statuses: dict[str, str] = {}
    pipeline(s3_root, statuses, head_params={"C": 0.5})
    assert set(statuses.values()) == {"reused"}, statuses


def _assert_model_loads(store: ArtifactStore, key: str) -> None:
    from setfit_core import SetFitModel
    from setfit_core.pipeline.batch_predict import fetch_model

    with fetch_model(store.stage_uri("model", key)) as location:
        model = SetFitModel.from_pretrained(location, device="cpu")
    assert len(model.predict(["good movie", "awful film"])) == 2


def _lineage(store: ArtifactStore, model_key: str) -> dict[str, str]:
    return store.find("model", model_key).metrics["lineage"]


# -- synthetic stages: order, races, crashes, edge cases ---------------------------


def test_keep_last_counts_per_lineage_and_models_without_one_form_one_group(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    unknown = [fake_run(store, seed=0), fake_run(store, seed=1)]  # published before lineages were recorded
    nightly = [fake_run(store, seed=2, lineage="nightly0"), fake_run(store, seed=3, lineage="nightly0")]
    experiment = fake_run(store, seed=3, c=0.5, lineage="headonly")  # newest, reuses nightly[1]'s body
    plan = select_gc(store, GcPolicy(keep_last=1, older_than=NO_AGE))

    assert {i.id for i in plan.candidates} == ids(unknown[0], *unknown[0]) | ids(nightly[0], *nightly[0])
    assert [(lin.id, lin.label, len(lin.models)) for lin in plan.lineages] == [
        ("headonly", "headonly data", 1), ("nightly0", "nightly0 data", 2), (None, "", 2)]
    why = {info.id: plan.reason_to_delete(info) for info in plan.candidates}
    assert why[("model", unknown[0]["model"])] == "2nd newest model of unknown lineage (--keep-last 1)"
    assert why[("model", nightly[0]["model"])] == "2nd newest model of lineage nightly0 data [nightly0] (--keep-last 1)"
    assert why[("body", nightly[0]["body"])] == f"only used by deleted model {nightly[0]['model'][:8]}"
    assert why[("evaluation", nightly[0]["evaluation"])] == f"only used by deleted model {nightly[0]['model'][:8]}"
    reasons = {k.info.id: k.reason for k in plan.kept}
    assert reasons[("model", unknown[1]["model"])] == "kept model: newest of unknown lineage (--keep-last 1)"
    assert reasons[("model", experiment["model"])] == (
        "kept model: newest of lineage headonly data [headonly] (--keep-last 1)")
    three = select_gc(store, GcPolicy(keep_last=3, older_than=NO_AGE))
    assert three.candidates == () and {k.reason for k in three.kept} >= {
        "kept model: 2nd newest of lineage nightly0 data [nightly0] (--keep-last 3)"}


def test_a_stage_no_model_uses_says_so(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    keys = fake_run(store, lineage="nightly0")
    orphan = put(store, "head", {"embeddings": keys["embeddings"]}, {"C": 7.0})  # a run that died before export
    plan = select_gc(store, GcPolicy(keep_last=1, older_than=NO_AGE))
    assert [(i.id, plan.reason_to_delete(i)) for i in plan.candidates] == [(("head", orphan), "used by no model")]


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
    assert not plan.candidates and {k.reason for k in plan.kept} >= {"newer than 7d"}
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
