"""`report_run` (setfit_core/pipeline/tracking.py): a finished pipeline run, reported to its `report_to`."""

from __future__ import annotations

import pytest

from setfit_core.pipeline import PipelineRun, report_run
from setfit_core.trackers import TRACKERS
from tests.setfit_core.pipeline.conftest import TINY_ARGS
from tests.setfit_core.test_trackers import scalars


def test_none_reports_nothing_and_reads_nothing(make_job):
    # no stage results are read: report_to="none" returns before touching them
    assert report_run(make_job(), {}, {}) == []


def test_a_missing_tracker_fails_the_job_before_any_stage(make_job, monkeypatch):
    monkeypatch.setitem(TRACKERS, "tensorboard", ("no_such_module_for_setfit_core", "tensorboard"))
    with pytest.raises(ImportError, match=r"report_to='tensorboard' needs .* 'setfit-pipeline\[tracking\]'"):
        make_job(args={**TINY_ARGS, "report_to": "tensorboard"}).validate()


@pytest.mark.slow
def test_tensorboard_gets_phase_1_log_and_the_metrics(make_job, tmp_path):
    logdir = tmp_path / "tb"
    job = make_job(args={**TINY_ARGS, "report_to": "tensorboard", "logging_dir": str(logdir)})
    run = PipelineRun(job)
    results = {stage: result.to_dict() for stage, result in run.run_all().items()}
    keys = {stage: spec.key for stage, spec in run.plan.items()}
    assert keys == {stage: result["key"] for stage, result in results.items()}
    assert report_run(job, keys, results) == ["tensorboard"]
    found = scalars(logdir)
    # the body stage's own log: logging_* are in no key, so the stage logs on setfit's defaults (step 1, every 50)
    assert [step for step, _ in found["train/embedding_loss"]] == [1]
    assert found["eval/accuracy"][0][1] == results["evaluation"]["metrics"]["eval"]["accuracy"]
    assert "eval/macro_f1" in found and "train/train_loss" in found
