"""Stage 4, head: the classification head, fitted from the embeddings stage alone.

- scikit-learn head: `build_sklearn_head` + fit on the train rows of ``embeddings.parquet``.
- differentiable head: `SetFitHead` + `fit_differentiable_head` on the same cached embeddings (the
  body is frozen, so encoding again would give the same vectors).
- differentiable head with ``end_to_end=True``: body and head train together on the texts, so this
  variant loads the body stage (its config says ``"needs_body": true``) and writes a whole model.

The stage directory holds the head files and ``config_setfit.json`` (`model_io.save_head`):
beside a body's files they form a `SetFitModel.save_pretrained` directory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.stagedir import StageWriter
from setfit_core.differentiable_head import SetFitHead
from setfit_core.model_io.body_loading import default_device, load_body
from setfit_core.model_io.setfit_format import save_head
from setfit_core.modeling import SetFitModel, build_differentiable_head, build_sklearn_head
from setfit_core.pipeline.embeddings_stage import read_labels, read_split
from setfit_core.pipeline.inputs import PipelineData
from setfit_core.pipeline.plan import StageSpec
from setfit_core.pipeline.results import StageResult, find_or_compute, parent_dir
from setfit_core.pipeline.stage_config import stage_args
from setfit_core.seeding import set_seed
from setfit_core.training.classifier_phase import fit_differentiable_head, fit_end_to_end, fit_sklearn_head


def run_head(
    store: ArtifactStore, spec: StageSpec, data: PipelineData | None = None, device: str | None = None
) -> StageResult:
    """`data` is read only by the end-to-end variant (it trains on texts)."""

    def compute(writer: StageWriter) -> None:
        if spec.config["needs_body"]:
            writer.metrics.update(_fit_end_to_end(store, spec, _train_split(spec, data), writer, device))
            return
        embeddings_dir = parent_dir(store, spec, "embeddings")
        x, y = read_split(embeddings_dir, "train")
        labels = read_labels(embeddings_dir)
        if spec.config["type"] == "sklearn":
            head = fit_sklearn_head(build_sklearn_head(spec.config["head_params"], None), x, y)
            metrics: dict[str, Any] = {"train_accuracy": float(head.score(x, y))}
        else:
            head, metrics = _fit_differentiable(spec.config, x, y, labels["num_classes"], device)
        save_head(head, writer.dir, labels=labels["labels"])
        writer.metrics.update(metrics, train_rows=len(y), num_classes=labels["num_classes"])

    return find_or_compute(store, spec, compute)


def _fit_differentiable(
    config: dict[str, Any], x: np.ndarray, y: np.ndarray, num_classes: int, device: str | None
) -> tuple[SetFitHead, dict[str, Any]]:
    args = stage_args(config)
    set_seed(args.seed)  # the new head's initial weights follow the seed, as in Trainer.train_classifier
    head = build_differentiable_head(config["head_params"], x.shape[1], num_classes, device=device or default_device())
    losses = fit_differentiable_head(head, torch.from_numpy(x), y, args)
    return head, {"epoch_losses": losses}


def _train_split(spec: StageSpec, data: PipelineData | None) -> PipelineData:
    if data is None or data.train.content_hash != spec.inputs["train"]:
        raise RuntimeError("the end-to-end head stage needs the train data it was planned with; rerun the pipeline")
    return data


def _fit_end_to_end(
    store: ArtifactStore, spec: StageSpec, data: PipelineData, writer: StageWriter, device: str | None
) -> dict[str, Any]:
    args = stage_args(spec.config)
    body = load_body(str(parent_dir(store, spec, "body")), device=device)
    model = SetFitModel(body, use_differentiable_head=True, head_params=spec.config["head_params"],
                        labels=data.labels)
    set_seed(args.seed)
    model.model_head = model.new_differentiable_head(data.num_classes)
    model.model_head.requires_grad_(True)
    losses = fit_end_to_end(model, data.train.texts, data.train.label_ids, args)
    model.save_pretrained(str(writer.dir))
    return {"epoch_losses": losses, "train_rows": len(data.train), "num_classes": data.num_classes}
