"""Task bodies called directly (`task.fn`): thin wrappers that return plain, small dicts."""

from __future__ import annotations

import json

import pytest
from setfit_pipeline.tasks.body import body_task
from setfit_pipeline.tasks.pairs import pairs_task
from setfit_pipeline.tasks.plan import plan_task

from setfit_core.pipeline import PipelineJob
from tests.flows.test_train_flow import ARGS


@pytest.fixture
def job(tiny_model_dir, tiny_splits, tmp_path) -> dict:
    return PipelineJob(train_data=tiny_splits["train"], artifacts_root=str(tmp_path / "artifacts"),
                       model=tiny_model_dir, args=ARGS).validate().to_dict()


def test_plan_then_stage_tasks_return_plain_results(job):
    plan = plan_task.fn(job)
    assert set(plan) == {"dataset", "hashes", "keys", "warnings"} and plan["warnings"] == []
    assert list(plan["keys"]) == ["pairs", "body", "embeddings", "head", "model"]
    pairs = pairs_task.fn(job, plan)
    body = body_task.fn(job, plan, pairs)
    assert body["key"] == plan["keys"]["body"] and body["status"] == "computed"
    assert json.loads(json.dumps(body)) == body, "results are plain JSON values: no models, no frames"
    assert body_task.fn(job, plan, pairs)["status"] == "reused"


def test_a_stage_refuses_parents_that_are_not_in_its_key(job):
    plan = plan_task.fn(job)
    with pytest.raises(RuntimeError, match=r"stage 'body' expects parent pairs .* but was given 'f{64}'"):
        body_task.fn(job, plan, {"stage": "pairs", "key": "f" * 64})
