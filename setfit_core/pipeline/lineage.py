"""A model's lineage: the training setup it belongs to, so `artifacts gc --keep-last N` keeps N per setup.

A lineage groups the models one setup produces over time, e.g. a nightly deployment that retrains on
new data at the same path. Its canonical JSON holds:

- ``train_data``: the training data's *location* as the job gives it (and ``column_mapping``), not its
  content hash: new content at the same path is the same lineage;
- ``model``: the base model as the job names it;
- ``args``: the `TrainingArguments` fields that differ from their defaults, leaving out the ones that
  change no artifact (`stage_config.UNKEYED_ARGS`: output paths, logging, progress bars), so a new field
  with a default does not move every lineage;
- ``head``: ``head_params`` and ``use_differentiable_head``: a head-only experiment is its own lineage.

Evaluation data, the metric, storage options and ``self_contained`` are not part of it. The id is the
first 12 hex characters of the sha256 of that JSON. The export stage records ``{"id", "label"}`` in the
model manifest's ``metrics``, which are not part of the key: the lineage never changes a model's key, and
a model stage two setups happen to share keeps the lineage of the run that published it first.
"""

from __future__ import annotations

from typing import Any

from setfit_core.args import TrainingArguments
from setfit_core.artifacts import canonical_json, sha256_bytes, to_plain
from setfit_core.pipeline.data_io import dataset_label
from setfit_core.pipeline.job import PipelineJob
from setfit_core.pipeline.stage_config import UNKEYED_ARGS

ID_LENGTH = 12
_LABEL_PARAMS = 40  # characters of head parameters shown in a label; the id tells lineages apart anyway


def lineage_setup(job: PipelineJob) -> dict[str, Any]:
    """The plain values that define `job`'s lineage (see the module docstring)."""
    return to_plain({
        "train_data": job.train_data,
        "column_mapping": dict(job.column_mapping) if job.column_mapping else None,
        "model": job.model,
        "args": _changed_args(job.training_args),
        "head": {"head_params": dict(job.head_params), "use_differentiable_head": job.use_differentiable_head},
    }, "lineage")


def lineage(job: PipelineJob) -> dict[str, str]:
    """``{"id": <12 hex>, "label": "<dataset> · <head>"}`` for the model manifest."""
    digest = sha256_bytes(canonical_json(lineage_setup(job)).encode("utf-8"))
    return {"id": digest[:ID_LENGTH], "label": f"{dataset_label(job.train_data)} · {_head_label(job)}"}


def _changed_args(args: TrainingArguments) -> dict[str, Any]:
    defaults = TrainingArguments().to_dict()
    return {name: value for name, value in args.to_dict().items()
            if name not in UNKEYED_ARGS and value != defaults.get(name)}


def _head_label(job: PipelineJob) -> str:
    if job.use_differentiable_head:
        name = "SetFitHead end-to-end" if job.end_to_end else "SetFitHead"
    else:
        name = "LogisticRegression"
    params = ", ".join(f"{k}={v}" for k, v in sorted(job.head_params.items()))
    if len(params) > _LABEL_PARAMS:
        params = params[: _LABEL_PARAMS - 1] + "…"
    return f"{name}({params})" if params else name


__all__ = ["lineage", "lineage_setup"]
