"""Aliases on local disk and on S3 (moto): records, the append-only history, compare-and-swap, rollback, gc."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path

import fsspec
import pytest

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.aliases import (
    AliasRecord,
    AliasStore,
    parse_record_uri,
    resolve_record_uri,
    validate_alias,
)
from setfit_core.artifacts.gc import GcPolicy, select_gc
from tests.artifacts.test_gc import fake_run


def record(model_uri: str, action: str = "promote", **fields) -> AliasRecord:
    return AliasRecord(alias="production", version=0, model_uri=model_uri, action=action, reason="test", **fields)


def files_under(store: ArtifactStore, path: str) -> list[str]:
    fs, base = fsspec.core.url_to_fs(store.root)
    try:
        return sorted(p.removeprefix(base.rstrip("/") + "/") for p in fs.find(f"{base}/{path}"))
    except FileNotFoundError:
        return []


def test_a_change_writes_the_record_and_one_history_event(store):
    aliases = AliasStore(store)
    assert aliases.current("production") is None and aliases.aliases() == []
    first = aliases.change(record("m/1", metric="accuracy", metrics={"accuracy": 0.75}, flow_run_id="run-1"), 0)
    assert first.won and first.current.version == 1 and first.current.time
    second = aliases.change(record("m/2", previous_model_uri="m/1"), 1)
    assert second.won and second.current.version == 2
    current = aliases.current("production")
    assert (current.model_uri, current.version, current.previous_model_uri) == ("m/2", 2, "m/1")
    assert [r.model_uri for r in aliases.history("production")] == ["m/1", "m/2"]
    assert aliases.history("production")[0].metrics == {"accuracy": 0.75}
    assert aliases.aliases() == ["production"]
    # The record and one file per event; no temp file is left behind.
    assert files_under(store, "aliases") == ["aliases/production.history/00000001.json",
                                             "aliases/production.history/00000002.json", "aliases/production.json"]
    with fsspec.open(aliases.record_uri("production"), "r") as fileobj:
        on_disk = json.load(fileobj)
    assert on_disk["model_uri"] == "m/2" and on_disk["version"] == 2 and on_disk["flow_run_id"] is None


def test_a_stale_version_loses_and_names_the_winner(store):
    aliases = AliasStore(store)
    aliases.change(record("m/1"), 0)
    won = aliases.change(record("m/2", flow_run_id="winner"), 1)
    lost = aliases.change(record("m/3", flow_run_id="loser"), 1)  # decided against version 1, too late
    assert won.won and not lost.won
    assert (lost.current.model_uri, lost.current.flow_run_id, lost.current.version) == ("m/2", "winner", 2)
    assert aliases.current("production").model_uri == "m/2"
    assert [r.model_uri for r in aliases.history("production")] == ["m/1", "m/2"]


@pytest.mark.slow
def test_concurrent_changes_of_one_version_have_exactly_one_winner(store):
    aliases = AliasStore(store)
    aliases.change(record("m/0"), 0)
    barrier, outcomes = threading.Barrier(8), {}

    def promote(i: int) -> None:
        barrier.wait()
        outcomes[i] = AliasStore(store).change(record(f"m/{i + 1}", flow_run_id=f"run-{i}"), 1)

    threads = [threading.Thread(target=promote, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [i for i, outcome in outcomes.items() if outcome.won]
    assert len(winners) == 1
    winner = f"m/{winners[0] + 1}"
    assert {outcome.current.model_uri for outcome in outcomes.values()} == {winner}
    assert aliases.current("production").model_uri == winner
    assert [r.model_uri for r in aliases.history("production")] == ["m/0", winner]


def test_a_writer_that_died_before_its_record_changes_nothing_readers_see(store):
    aliases = AliasStore(store)
    aliases.change(record("m/1"), 0)
    orphan = record("m/2", previous_model_uri="m/1")
    orphan = AliasRecord(**{**orphan.__dict__, "version": 2, "event_id": "dead"})
    assert aliases._create_event("production", orphan)  # the event, then the process died: no record write
    assert aliases.current("production").model_uri == "m/2"  # readers follow the history past the record
    third = aliases.change(record("m/3", previous_model_uri="m/2"), 2)
    assert third.won and aliases.current("production").version == 3
    assert AliasRecord.from_json(fsspec.open(aliases.record_uri("production"), "rb").open().read(), "x").version == 3


def test_rollback_walks_back_through_promotions(tmp_path):
    aliases = AliasStore(ArtifactStore(tmp_path))
    for version, (model, previous) in enumerate([("a", None), ("b", "a"), ("c", "b")]):
        aliases.change(record(model, previous_model_uri=previous), version)

    def rollback() -> str:
        current, target = aliases.rollback_target("production")
        aliases.change(record(target, "rollback", previous_model_uri=current.model_uri), current.version)
        return target

    assert [rollback(), rollback()] == ["b", "a"]
    with pytest.raises(ValueError, match=r"alias 'production' points to its first model \(a\); there is no earlier"):
        rollback()
    assert [r.action for r in aliases.history("production")] == ["promote"] * 3 + ["rollback"] * 2


def test_bad_names_and_records_are_errors_that_say_what_to_do(tmp_path):
    for bad in ("Production", "", "a/b", "prod.json", "x" * 64, None):
        with pytest.raises(ValueError, match=r"alias must be 1-63 lowercase letters"):
            validate_alias(bad)
    aliases = AliasStore(ArtifactStore(tmp_path))
    (tmp_path / "aliases").mkdir()
    (tmp_path / "aliases" / "production.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"alias record .*production.json is not valid .*restore it from its history "
                                         r"directory .*production.history/"):
        aliases.current("production")
    with pytest.raises(ValueError, match=r"nothing to roll back"):
        AliasStore(ArtifactStore(tmp_path / "empty")).rollback_target("staging")


def test_record_paths_resolve_to_the_current_model(store):
    AliasStore(store).change(record("m/1"), 0)
    uri = AliasStore(store).record_uri("production")
    assert parse_record_uri(uri) == (store.root, "production")
    assert parse_record_uri(f"{store.root}/model/abc") is None
    assert resolve_record_uri(uri).model_uri == "m/1"
    assert resolve_record_uri(f"{store.root}/model/abc") is None
    with pytest.raises(FileNotFoundError, match=r"no model was promoted to alias 'staging' under .* yet.*"
                                                r"setfit-pipeline models promote MODEL_URI --alias staging"):
        resolve_record_uri(f"{store.root}/aliases/staging.json")


def test_gc_keeps_the_alias_holder_the_previous_one_and_the_rollback_target(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    runs = [fake_run(store, seed=0, c=c, lineage="nightly") for c in (1.0, 2.0, 3.0, 4.0, 5.0)]
    uri = [store.stage_uri("model", run["model"]) for run in runs]
    aliases = AliasStore(store)
    # a -> b -> c, then a rollback to b: b holds it, c was the previous holder, a is the rollback target.
    for version, (model, previous) in enumerate([(uri[0], None), (uri[1], uri[0]), (uri[2], uri[1])]):
        aliases.change(record(model, previous_model_uri=previous), version)
    aliases.change(record(uri[1], "rollback", previous_model_uri=uri[2]), 3)
    selection = select_gc(store, GcPolicy(keep_last=1, older_than=timedelta(0)))
    kept = {k.info.key: k.reason for k in selection.kept if k.info.stage == "model"}
    assert kept == {
        runs[0]["model"]: "kept model: rollback target of alias production",
        runs[1]["model"]: "kept model: held by alias production",
        runs[2]["model"]: "kept model: previous holder of alias production",
        runs[4]["model"]: "kept model: newest of lineage nightly data [nightly] (--keep-last 1)",
    }
    assert {(i.stage, i.key) for i in selection.candidates if i.stage == "model"} == {("model", runs[3]["model"])}


def test_the_record_write_is_atomic_locally(tmp_path, monkeypatch):
    """A crash while the record is written leaves the old record whole (and no temp file to trust)."""
    aliases = AliasStore(ArtifactStore(tmp_path))
    aliases.change(record("m/1"), 0)

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("setfit_core.artifacts.aliases.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        aliases.change(record("m/2"), 1)
    monkeypatch.undo()
    saved = json.loads((tmp_path / "aliases" / "production.json").read_text())
    assert saved["model_uri"] == "m/1"
    assert sorted(p.name for p in (tmp_path / "aliases").iterdir()) == ["production.history", "production.json"]
    # The event was written: readers already see version 2, and the next writer repairs the record.
    assert aliases.current("production").model_uri == "m/2"
    aliases.change(record("m/3"), 2)
    assert json.loads(Path(tmp_path / "aliases" / "production.json").read_text())["model_uri"] == "m/3"
