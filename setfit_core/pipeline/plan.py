"""The stage graph of a training run and every stage's key, computed before any stage runs.

    pairs -> body -> embeddings -> head -> evaluation
                  \\______________________/-> model (export)

A key is `stage_key(stage, config, parents, inputs, versions)`: parents are the keys of the stages
whose files this stage reads, inputs the content hashes of the data splits it reads directly.
Because keys only need configs and data hashes, the whole plan is known up front: a run can name
its task runs by key and say which stages will be reused before doing any work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from setfit_core.artifacts import ArtifactStore, stage_key, to_plain
from setfit_core.pipeline import stage_config as sc
from setfit_core.pipeline.inputs import PipelineData
from setfit_core.pipeline.job import PipelineJob

STAGES = ("pairs", "body", "embeddings", "head", "evaluation", "model")


@dataclass(frozen=True)
class StageSpec:
    """Everything that determines a stage's output; `key` is derived from it."""

    stage: str
    config: dict[str, Any]
    parents: dict[str, str]
    inputs: dict[str, str]
    versions: dict[str, str]
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", to_plain(self.config, f"{self.stage}.config"))
        object.__setattr__(self, "key", stage_key(self.stage, self.config, self.parents, self.inputs, self.versions))

    def write(self, store: ArtifactStore, metrics: dict[str, Any] | None = None) -> Any:
        """`store.write_stage` for this spec (a context manager yielding a `StageWriter`)."""
        return store.write_stage(
            self.stage, self.key, parents=self.parents, config=self.config, inputs=self.inputs,
            versions=self.versions, metrics=metrics,
        )


def plan_stages(job: PipelineJob, data: PipelineData, cache_dir: str | None = None) -> dict[str, StageSpec]:
    """Specs of every stage this job runs, in run order ("evaluation" only with eval/test data)."""
    args = job.training_args
    hashes = data.hashes
    pairs = StageSpec("pairs", sc.pairs_config(args), {}, {"train": hashes["train"]}, sc.versions("pairs"))
    with_eval = sc.body_uses_eval(args, "eval" in hashes)
    body = StageSpec(
        "body",
        sc.body_config(args, sc.model_identity(job.model, cache_dir), with_eval),
        {"pairs": pairs.key},
        {"eval": hashes["eval"]} if with_eval else {},
        sc.versions("body"),
    )
    embeddings = StageSpec("embeddings", sc.embeddings_config(list(hashes)), {"body": body.key}, dict(hashes),
                           sc.versions("embeddings"))
    head = _head_spec(job, body, embeddings, hashes)
    specs = {"pairs": pairs, "body": body, "embeddings": embeddings, "head": head}
    eval_splits = [name for name in ("eval", "test") if name in hashes]
    if eval_splits:
        specs["evaluation"] = _evaluation_spec(job, head, embeddings, {n: hashes[n] for n in eval_splits})
    parents = {"head": head.key} if job.end_to_end else {"head": head.key, "body": body.key}
    specs["model"] = StageSpec("model", sc.model_config(job.self_contained, job.onnx), parents, {},
                               sc.versions("model_onnx" if job.export_onnx else "model"))
    return specs


def _head_spec(job: PipelineJob, body: StageSpec, embeddings: StageSpec, hashes: dict[str, str]) -> StageSpec:
    config = sc.head_config(job.training_args, job.head_params, job.use_differentiable_head)
    if job.end_to_end:  # trains body and head on texts: reads the body and the train split, not embeddings
        return StageSpec("head", config, {"body": body.key}, {"train": hashes["train"]},
                         sc.versions("head_end_to_end"))
    kind = "head_differentiable" if job.use_differentiable_head else "head_sklearn"
    return StageSpec("head", config, {"embeddings": embeddings.key}, {}, sc.versions(kind))


def _evaluation_spec(job: PipelineJob, head: StageSpec, embeddings: StageSpec, hashes: dict[str, str]) -> StageSpec:
    config = sc.evaluation_config(job.metric, job.metric_kwargs, list(hashes), job.end_to_end)
    if job.end_to_end:  # the fine-tuned body lives in the head stage: encode the texts again
        return StageSpec("evaluation", config, {"head": head.key}, hashes, sc.versions("evaluation_end_to_end"))
    kind = "evaluation_differentiable" if job.use_differentiable_head else "evaluation_sklearn"
    return StageSpec("evaluation", config, {"head": head.key, "embeddings": embeddings.key}, {}, sc.versions(kind))


__all__ = ["STAGES", "StageSpec", "plan_stages"]
