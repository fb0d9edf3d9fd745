"""`PipelineRun`: one training run: job, validated data, plan, and the stage functions in order.

    run = PipelineRun(PipelineJob(train_data="train.parquet", eval_data="test.parquet",
                                  artifacts_root="artifacts", args={"num_iterations": 20}))
    results = run.run_all()          # {"pairs": StageResult(status="computed", ...), ...}
    results["model"].uri             # SetFitModel.from_pretrained(...) loads it

No Prefect here: the Prefect tasks in ``tasks/`` call `run_stage` one stage at a time, and anyone
can run the same pipeline in a notebook. Reuse is decided by the store, so a head-only change
reuses pairs, body and embeddings either way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from setfit_core.artifacts import ArtifactStore
from setfit_core.data_quality import DataWarning, raise_if_any
from setfit_core.pipeline.body_stage import Checkpointing, run_body
from setfit_core.pipeline.card import run_card_data
from setfit_core.pipeline.data_io import dataset_label
from setfit_core.pipeline.embeddings_stage import run_embeddings
from setfit_core.pipeline.evaluation_stage import run_evaluation
from setfit_core.pipeline.export_stage import run_export
from setfit_core.pipeline.head_stage import run_head
from setfit_core.pipeline.inputs import PipelineData, load_pipeline_data, warn_long_texts
from setfit_core.pipeline.job import PipelineJob
from setfit_core.pipeline.lineage import lineage
from setfit_core.pipeline.pairs_stage import run_pairs
from setfit_core.pipeline.plan import StageSpec, plan_stages
from setfit_core.pipeline.results import ProgressFn, StageResult, check_parents
from setfit_core.training.batches import describe_phase1

logger = logging.getLogger(__name__)


class PipelineRun:
    """Validates the job at construction; data and plan load on first use (the plan needs the data).

    `pinned` is a `summary()` of an earlier `PipelineRun` of the same job (e.g. from a planning task):
    if the data or model changed since, the run fails instead of mixing keys of two versions.
    """

    def __init__(
        self,
        job: PipelineJob,
        store: ArtifactStore | None = None,
        pinned: Mapping[str, Any] | None = None,
        device: str | None = None,
    ) -> None:
        self.job = job.validate()
        self.store = store or ArtifactStore(job.artifacts_root, storage_options=job.storage_options)
        self.pinned = pinned
        self.device = device

    @cached_property
    def data(self) -> PipelineData:
        job = self.job
        data = load_pipeline_data(job.train_data, job.eval_data, job.test_data, job.column_mapping,
                                  job.storage_options, self.pinned["hashes"] if self.pinned else None,
                                  job.training_args)
        job.validate_for(data)
        if self.pinned is None:  # the planning pass (a flow's plan task): warn once, not in every task
            warn_long_texts(job.model, data, job.training_args.max_length)
            _report(data.warnings, job.strict)
        return data

    @cached_property
    def plan(self) -> dict[str, StageSpec]:
        plan = plan_stages(self.job, self.data)
        if self.pinned is None:  # the planning pass: an unwritable root fails now, not after the body trained
            self.store.check_writable()
        if self.pinned and {s: p.key for s, p in plan.items()} != self.pinned["keys"]:
            raise RuntimeError("stage keys differ from the planned ones (was the model directory edited?); rerun")
        return plan

    def summary(self) -> dict[str, Any]:
        """Plain values naming this run: dataset label, data hashes, every stage key, the data-quality
        findings (`DataWarning.to_dict()`) and what phase 1 trains on (`describe_phase1`: the `fast` preset's
        batches and length follow from the data). The last two are not pinned: they follow from the data."""
        return {
            "dataset": dataset_label(self.job.train_data),
            "hashes": self.data.hashes,
            "keys": {stage: spec.key for stage, spec in self.plan.items()},
            "warnings": [w.to_dict() for w in self.data.warnings],
            "phase1": describe_phase1(self.data.train.label_ids, self.job.training_args),
        }

    def run_stage(
        self, stage: str, progress: ProgressFn | None = None, parents: Mapping[str, str] | None = None
    ) -> StageResult:
        """Reuse or compute one stage; its parents must already be done (run stages in plan order). An error
        raised by the stage carries its name as `error.stage`, for reports that say where a run failed."""
        if stage not in self.plan:
            raise ValueError(f"stage {stage!r} is not part of this run; its stages are {list(self.plan)}")
        try:
            return self._run_stage(stage, progress, parents)
        except Exception as exc:
            exc.stage = stage  # type: ignore[attr-defined]
            raise

    def _run_stage(self, stage: str, progress: ProgressFn | None, parents: Mapping[str, str] | None) -> StageResult:
        spec = self.plan[stage]
        check_parents(spec, dict(parents or {}))
        store, data, device = self.store, self.data, self.device
        if stage == "pairs":
            return run_pairs(store, spec, data, progress)
        if stage == "body":
            return run_body(store, spec, self.job.model, data, progress, device, self._body_checkpoints(spec.key))
        if stage == "embeddings":
            return run_embeddings(store, spec, data, progress, device=device)
        if stage == "head":
            return run_head(store, spec, data, device)
        if stage == "evaluation":
            return run_evaluation(store, spec, data, device, base_model=self.job.model)
        return run_export(store, spec, lineage(self.job), lambda: run_card_data(self.job, data, store, self.plan))

    def _body_checkpoints(self, key: str) -> Checkpointing | None:
        """The job's `save_strategy` (setfit's default: every 500 steps), into the store's checkpoint directory
        of this body key, so that a rerun after an interruption resumes; "no" saves none."""
        args = self.job.training_args
        if args.save_strategy == "no":
            return None
        return Checkpointing(self.store.checkpoint_dir("body", key), args.save_strategy, args.save_steps)

    def run_all(self, progress: ProgressFn | None = None) -> dict[str, StageResult]:
        """Every stage in order; `progress` gets the long stages' updates."""
        return {stage: self.run_stage(stage, progress) for stage in self.plan}


def _report(warnings: tuple[DataWarning, ...], strict: bool) -> None:
    """Strict: every finding in one error, before stage 1 and before anything is written. Else a warning each."""
    if strict:
        raise_if_any(warnings)
    for warning in warnings:
        logger.warning("%s", warning.message)
