"""The run history beside an alias: one file per run, the newest 30, local and on S3, and its UI renderings."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.aliases import AliasStore
from setfit_core.pipeline.run_history import (
    RunEntry,
    RunHistory,
    history_rows,
    run_entry,
    sparkline,
    trend_markdown,
)

T0 = datetime(2025, 1, 1, 2, 0, tzinfo=timezone.utc)


def entry(night: int, value: float | None = 0.8, promoted: bool = True) -> RunEntry:
    return RunEntry(time=(T0 + timedelta(days=night)).isoformat(), dataset="sst2-train", alias="production",
                    model_uri=f"/r/model/{night:064x}", metric="accuracy", value=value, probe=0.6,
                    promoted=promoted, reason="promoted: ..." if promoted else "not promoted: ...")


@pytest.mark.parametrize("remote", [False, True], ids=["local", "s3"])
def test_append_then_read_the_newest_runs_oldest_first(remote, tmp_path, request):
    root = request.getfixturevalue("s3_root") if remote else str(tmp_path / "root")
    store = ArtifactStore(root)
    history = RunHistory(store, "production", "sst2-train")
    assert history.last() == []
    for night in range(5):
        history.append(entry(night, value=0.5 + night / 10))
    assert [e.value for e in history.last()] == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert [e.value for e in history.last(2)] == [0.8, 0.9]
    # Beside the alias's record and history, and never taken for an alias itself.
    assert history.uri == f"{store.root.rstrip('/')}/aliases/production.runs/sst2-train"
    assert AliasStore(store).aliases() == []
    # Another dataset, another alias: separate histories.
    assert RunHistory(store, "production", "other").last() == []
    assert RunHistory(store, "staging", "sst2-train").last() == []


def test_only_the_last_30_and_concurrent_runs_both_land(tmp_path):
    history = RunHistory(ArtifactStore(str(tmp_path)), "production", "sst2-train")
    for night in range(33):
        history.append(entry(night))
    same_time = [replace(entry(40), model_uri=f"/r/model/{i}") for i in range(8)]
    threads = [threading.Thread(target=history.append, args=(e,)) for e in same_time]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    last = history.last()
    assert len(last) == 30
    assert {e.model_uri for e in last[-8:]} == {e.model_uri for e in same_time}  # same instant, 8 files
    assert not list((tmp_path / "aliases" / "production.runs" / "sst2-train").glob(".tmp-*"))


def test_a_hand_edited_entry_is_skipped_with_a_warning(tmp_path, caplog):
    history = RunHistory(ArtifactStore(str(tmp_path)), "production", "sst2-train")
    history.append(entry(0))
    bad = tmp_path / "aliases" / "production.runs" / "sst2-train" / "20250105T000000000000Z-00000000.json"
    bad.write_text("{not json")
    assert len(history.last()) == 1
    assert "skipping run history entry" in caplog.text and bad.name in caplog.text


def test_bad_names_are_refused(tmp_path):
    store = ArtifactStore(str(tmp_path))
    with pytest.raises(ValueError, match=r"dataset must be a label .* got 'SST2/train'"):
        RunHistory(store, "production", "SST2/train")
    with pytest.raises(ValueError, match="alias must be 1-63 lowercase"):
        RunHistory(store, "Prod.v1", "sst2")
    with pytest.raises(ValueError, match="entry is for alias 'production', dataset 'sst2-train'"):
        RunHistory(store, "production", "other").append(entry(0))


def test_run_entry_takes_metric_and_probe_from_the_evaluation():
    promotion = {"alias": "production", "promoted": False, "reason": "not promoted: x", "model_uri": "/r/model/abc",
                 "metric": 0.7, "previous_metric": 0.75}
    eval_metrics = {"accuracy": 0.7, "macro_f1": 0.69, "probe": {"accuracy": 0.55, "macro_f1": 0.5}}
    e = run_entry("sst2-train", promotion, eval_metrics, "accuracy", "run-1", "nightly-retrain")
    assert (e.value, e.probe, e.previous_value, e.promoted, e.model_key) == (0.7, 0.55, 0.75, False, "abc")
    no_eval = run_entry("sst2-train", {**promotion, "metric": None}, None, "accuracy")
    assert (no_eval.value, no_eval.probe) == (None, None)


def test_rows_newest_first_and_the_trend_chart():
    entries = [entry(0, 0.5), entry(1, 0.75, promoted=False), entry(2, None, promoted=False), entry(3, 1.0)]
    rows = history_rows(entries)
    assert [r["accuracy"] for r in rows] == [1.0, None, 0.75, 0.5]
    assert rows[0] == {"date": "2025-01-04 02:00:00 UTC", "model": "000000000000", "accuracy": 1.0, "probe": 0.6,
                       "alias before": None, "promoted": "yes", "reason": "promoted: ...", "flow run": "",
                       "deployment": "adhoc"}
    assert sparkline([0.5, 0.75, None, 1.0]) == "▁▅ █"
    assert sparkline([0.8, 0.8]) == "██" and sparkline([None]) == ""
    chart = trend_markdown(entries)
    assert "Last 4 runs, oldest first: `▁▅ █`" in chart
    assert "| 2025-01-01 02:00 | `000000000000` | 0.5000 | `██████████` | 0.6000 | **yes** |" in chart
    assert "2 of 4 runs promoted" in chart
    assert trend_markdown([]) == ""
