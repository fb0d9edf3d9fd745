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
    assert set(plan) == {"dataset", "hashes", "keys", "warnings", "phase1"} and plan["warnings"] == []
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


def test_stage_progress_logs_every_tenth_and_draws_a_bar_only_when_asked(caplog, capsys):
    from setfit_pipeline.tasks.common import TERMINAL_BARS, StageProgress

    def feed(progress: StageProgress) -> None:
        for step in range(1, 41):
            progress(step, 40, f"body training, loss {1 / step:.4f}")
        progress.finish("computed")

    with caplog.at_level("INFO", logger="setfit_pipeline.tasks"):
        feed(StageProgress("body", "0123456789abcdef", "step"))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("body 0123456789ab: ")]
    assert [line.split(":", 1)[1].split("%")[0].strip() for line in lines] == [str(p) for p in range(10, 101, 10)]
    assert "50% (20/40 steps), body training, loss 0.0500," in lines[4] and lines[4].endswith("s left")
    assert "body 0123456789ab" not in capsys.readouterr().err  # no terminal asked for: no bar
    token = TERMINAL_BARS.set(True)
    try:
        feed(StageProgress("body", "0123456789abcdef", "step"))
    finally:
        TERMINAL_BARS.reset(token)
    bar = capsys.readouterr().err
    assert "body 0123456789ab: 100%" in bar and "40/40" in bar and "loss 0.0250" in bar
