"""The SetFit training pipeline as plain library code: staged, content-addressed artifacts.

    pairs -> body -> embeddings -> head -> evaluation, and model (export)

Each stage is `run_<stage>(store, spec, ...) -> StageResult`: it reuses the stage named by
`spec.key` when the `ArtifactStore` holds a verified copy, and computes and publishes it otherwise.
`PipelineRun` wires the stages for one `PipelineJob`; Prefect tasks (``tasks/``) wrap its
`run_stage`, so reuse works the same with or without Prefect.
"""

from __future__ import annotations

from setfit_core.pipeline.batch_predict import predict_to_parquet
from setfit_core.pipeline.body_stage import run_body
from setfit_core.pipeline.data_io import SUPPORTED_FORMATS, content_hash, dataset_label, load_split, read_columns
from setfit_core.pipeline.embeddings_stage import run_embeddings
from setfit_core.pipeline.evaluation_stage import run_evaluation
from setfit_core.pipeline.export_stage import run_export
from setfit_core.pipeline.head_stage import run_head
from setfit_core.pipeline.inputs import PipelineData, Split, load_pipeline_data
from setfit_core.pipeline.job import DEFAULT_MODEL, PipelineJob
from setfit_core.pipeline.pairs_stage import run_pairs
from setfit_core.pipeline.plan import STAGES, StageSpec, plan_stages
from setfit_core.pipeline.results import ProgressFn, StageResult, find_or_compute
from setfit_core.pipeline.runner import PipelineRun
from setfit_core.pipeline.stage_config import model_identity
from setfit_core.pipeline.tracking import report_run

__all__ = [
    "DEFAULT_MODEL",
    "STAGES",
    "SUPPORTED_FORMATS",
    "PipelineData",
    "PipelineJob",
    "PipelineRun",
    "ProgressFn",
    "Split",
    "StageResult",
    "StageSpec",
    "content_hash",
    "dataset_label",
    "find_or_compute",
    "load_pipeline_data",
    "load_split",
    "model_identity",
    "plan_stages",
    "predict_to_parquet",
    "read_columns",
    "report_run",
    "run_body",
    "run_embeddings",
    "run_evaluation",
    "run_export",
    "run_head",
    "run_pairs",
]
