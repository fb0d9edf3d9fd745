"""`PipelineJob`: what one training run is asked to do, as plain JSON values.

A job is what a Prefect flow passes to its tasks (and what a UI form edits): paths and URIs,
`TrainingArguments` fields, head parameters, the metric. Everything that can be checked without
reading data is checked in `validate()`; data-dependent checks follow in `validate_for(data)`,
both before any stage runs.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from setfit_core.args import TrainingArguments
from setfit_core.artifacts import to_plain
from setfit_core.metrics import METRIC_NAMES, check_metric
from setfit_core.pipeline.inputs import PipelineData
from setfit_core.trackers import resolve_report_to

# The bundled offline all-MiniLM-L6-v2 answers to its hub id (see body_loading.resolve_model_location),
# which reads better in a UI form than a site-packages path.
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True)
class PipelineJob:
    train_data: str
    artifacts_root: str
    model: str = DEFAULT_MODEL
    args: dict[str, Any] = field(default_factory=dict)
    head_params: dict[str, Any] = field(default_factory=dict)
    use_differentiable_head: bool = False
    eval_data: str | None = None
    test_data: str | None = None
    column_mapping: dict[str, str] | None = None
    metric: str = "accuracy"
    metric_kwargs: dict[str, Any] = field(default_factory=dict)
    storage_options: dict[str, Any] | None = None
    # Data-quality findings (setfit_core.data_quality) fail the planning step instead of being logged.
    # Part of no stage key: it decides whether a run starts, never what a stage computes.
    strict: bool = False
    # The model stage copies the body's files instead of referencing the body stage (export_stage.py).
    self_contained: bool = False
    # The model stage also holds the body as an ONNX graph (fp32, or int8 with onnx_quantize="int8"), which
    # batch prediction with engine="onnx" runs. Keyed only when on: other models keep their keys.
    export_onnx: bool = False
    onnx_quantize: str | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PipelineJob:
        names = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(values) - names):
            raise ValueError(f"unknown pipeline job fields {unknown}; valid: {sorted(names)}")
        values = dict(values)
        for name in ("args", "head_params", "metric_kwargs"):  # a UI form may send null for "none given"
            if values.get(name) is None:
                values.pop(name, None)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(dataclasses.asdict(self))

    @cached_property
    def training_args(self) -> TrainingArguments:
        """`args` as `TrainingArguments`; JSON lists become the (embedding, classifier) tuples."""
        if not isinstance(self.args, dict):
            raise ValueError(f"'args' must be a dict of TrainingArguments fields; got {self.args!r}")
        return TrainingArguments.from_dict(dict(self.args))

    @property
    def end_to_end(self) -> bool:
        return self.use_differentiable_head and self.training_args.end_to_end

    def validate(self) -> PipelineJob:
        """Checks that need no data; returns self so it chains."""
        for name in ("train_data", "artifacts_root", "model"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name!r} must be a non-empty path or URI; got {getattr(self, name)!r}")
        if not isinstance(self.self_contained, bool):
            raise ValueError(f"'self_contained' must be true or false; got {self.self_contained!r}")
        for name in ("head_params", "metric_kwargs"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name!r} must be a dict; got {getattr(self, name)!r}")
        if not isinstance(self.strict, bool):
            raise ValueError(f"'strict' must be true or false; got {self.strict!r}")
        self._validate_onnx()
        to_plain(self.args, "args")  # JSON values only: they are hashed into stage keys
        to_plain(self.head_params, "head_params")
        args = self.training_args
        if args.end_to_end and not self.use_differentiable_head:
            raise ValueError(
                "args['end_to_end']=True trains the body with the differentiable head; set "
                "use_differentiable_head=True, or drop end_to_end for the scikit-learn head"
            )
        if not isinstance(self.metric, str):
            raise ValueError(f"'metric' must be one of {list(METRIC_NAMES)} (a name: callables cannot be hashed "
                             f"into a stage key); got {self.metric!r}")
        check_metric(self.metric)
        resolve_report_to(args.report_to)  # a tracker that is not installed fails now, not after training
        if not self.use_differentiable_head:
            _check_sklearn_head_params(self.head_params)
        return self

    def _validate_onnx(self) -> None:
        from setfit_core.model_io.onnx_format import QUANTIZE_CHOICES, require_onnx

        if not isinstance(self.export_onnx, bool):
            raise ValueError(f"'export_onnx' must be true or false; got {self.export_onnx!r}")
        if self.onnx_quantize not in QUANTIZE_CHOICES:
            raise ValueError(f"'onnx_quantize' must be null (fp32) or 'int8'; got {self.onnx_quantize!r}")
        if self.onnx_quantize is not None and not self.export_onnx:
            raise ValueError(f"onnx_quantize={self.onnx_quantize!r} applies to the ONNX export; set export_onnx=true "
                             "too, or drop onnx_quantize")
        if self.export_onnx:
            try:
                require_onnx("export_onnx=true")
            except ImportError as exc:  # a value the user can change, caught before stage 1
                raise ValueError(str(exc)) from exc

    @property
    def onnx(self) -> dict[str, Any] | None:
        """What the model stage exports ({"quantize": ...}), or None without `export_onnx`."""
        return {"quantize": self.onnx_quantize} if self.export_onnx else None

    def validate_for(self, data: PipelineData) -> None:
        """Checks that need the class count (the differentiable head's shape)."""
        if self.use_differentiable_head:
            from setfit_core.modeling import build_differentiable_head

            try:
                build_differentiable_head(self.head_params, in_features=1, num_classes=data.num_classes)
            except TypeError as exc:
                raise ValueError(
                    f"head_params {self.head_params!r} are not valid SetFitHead parameters ({exc}); valid: "
                    "out_features, temperature, eps, bias"
                ) from exc


def _check_sklearn_head_params(head_params: dict[str, Any]) -> None:
    """Fit the head on four dummy points: scikit-learn checks values and solver/penalty pairs only in
    fit(), and a bad C must not surface after minutes of body training."""
    import numpy as np

    from setfit_core.modeling import build_sklearn_head

    head = build_sklearn_head(head_params, None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            head.fit(np.array([[0.0], [1.0], [0.0], [1.0]]), np.array([0, 1, 0, 1]))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"head_params {head_params!r} are not valid LogisticRegression parameters: {exc}") from exc

