"""The Prefect flow on S3 never shows the AWS secret: not in logs, stage files, manifests, local copies,
flow-run parameters, task runs or UI artifacts (credentials come from the environment)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import fsspec
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from setfit_pipeline.flows.train import train_pipeline

# A full flow on S3 with its logs scanned: ~10 s.
pytestmark = pytest.mark.slow

ARGS = {"num_iterations": 2, "seed": 0, "num_epochs": [1, 2], "show_progress_bar": False}


def test_the_secret_appears_nowhere(tiny_model_dir, tiny_splits, s3_root, cache_home, monkeypatch, caplog):
    secret = f"sk-{secrets.token_hex(20)}"  # the moto server accepts any secret
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    data = {}
    for split in ("train", "eval"):
        data[f"{split}_data"] = f"{s3_root}/data/{split}.parquet"
        with fsspec.open(data[f"{split}_data"], "wb") as f:
            f.write(Path(tiny_splits[split]).read_bytes())
    root = f"{s3_root}/artifacts"
    with caplog.at_level("DEBUG"):
        state = train_pipeline(artifacts_root=root, model=tiny_model_dir, args=ARGS, **data, return_state=True)
    result, flow_run_id = state.result(), state.state_details.flow_run_id
    assert {r["status"] for r in result["stages"].values()} == {"computed"}

    assert secret not in caplog.text
    assert secret not in json.dumps(result)
    fs, _ = fsspec.core.url_to_fs(root)
    objects = fs.find(root)
    assert any(p.endswith("/manifest.json") for p in objects) and len(objects) > 10
    assert [p for p in objects if secret.encode() in fs.cat_file(p)] == [], "no stage file or manifest on S3"
    local = [p for p in cache_home.rglob("*") if p.is_file()]
    assert local and [p for p in local if secret.encode() in p.read_bytes()] == [], "nor their local copies"
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    assert flow_run.parameters["artifacts_root"] == root
    assert len(task_runs) >= 7 and len(artifacts) >= 8 and logs
    shown = [flow_run.model_dump_json(), *(t.model_dump_json() for t in task_runs),
             *(a.model_dump_json() for a in artifacts), *(entry.model_dump_json() for entry in logs)]
    assert [text[:200] for text in shown if secret in text] == []
