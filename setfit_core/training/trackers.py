"""The trackers `report_to` names, as transformers `TrainerCallback`s: a `Trainer` adds one per tracker to its
callbacks (where `pop_callback(MLflowTracker)` finds it), and the pipeline reports through the same objects.

A tracker run starts at the first `on_train_begin` (or the first `on_log`, for metrics logged before any
training) and holds everything one `Trainer.train()` reports: the arguments, each log row at its step, both
phases, and the metrics `Trainer.evaluate()` logs afterwards. `close(model)`, called by the Trainer once phase 2
is done, adds the trained model (MLflow) and ends the run; a run that raised is closed as failed.

TensorBoard: `torch.utils.tensorboard.SummaryWriter` under `logging_dir` (default `runs/<date>_<host>`, as
setfit's), with transformers' tag names (`train/embedding_loss`, `eval/embedding_loss`). MLflow: through
`MlflowClient`, which mlflow-skinny provides; the tracking URI and experiment come from MLflow's own settings
(`MLFLOW_TRACKING_URI`, `MLFLOW_EXPERIMENT_NAME`) unless given; a run the caller already started with
`mlflow.start_run()` is reported into and left open.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from setfit_core.args import TrainingArguments

logger = logging.getLogger(__name__)

# MLflow's limits: a param value's length, and how many params or metrics one log_batch call takes.
_MLFLOW_PARAM_CHARS = 6000
_MLFLOW_BATCH = 100


class Tracker(TrainerCallback):
    """Base of the trackers: turns callback events into `start` / `log_metrics` / `log_model` / `finish`."""

    name = ""

    def __init__(self) -> None:
        self.run_open = False  # between start (or reopen) and close
        self.has_run = False  # a run exists that later metrics can be added to

    # ---- what a tracker implements -------------------------------------------------------------------
    def start(self, args: TrainingArguments, params: dict[str, Any]) -> None:
        """Begin a new run with these params."""
        raise NotImplementedError

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def log_model(self, path: Path) -> None:
        """Record the saved model directory at `path` (a tracker that stores no files does nothing)."""

    def finish(self, failed: bool) -> None:
        raise NotImplementedError

    # ---- the callback protocol -----------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not self.run_open:  # phase 2 of the same train() goes on in phase 1's run
            self._start(args, model)

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        if not self.run_open:
            if self.has_run:  # e.g. Trainer.evaluate() after train(): the metrics join that run
                self.run_open = True
            else:
                self._start(args, model)
        numbers_only = {k: float(v) for k, v in (logs or {}).items()
                        if isinstance(v, numbers.Real) and not isinstance(v, bool)}
        if numbers_only:
            self.log_metrics(numbers_only, state.global_step)

    def close(self, model: Any = None, failed: bool = False) -> None:
        """End the run: the trained `model` (a `SetFitModel`) is saved into it first, unless the run failed."""
        if not self.run_open:
            return
        try:
            if model is not None and not failed and type(self).log_model is not Tracker.log_model:
                with tempfile.TemporaryDirectory(prefix="setfit-model-") as tmp:
                    model.save_pretrained(tmp)
                    self.log_model(Path(tmp))
        finally:
            self.run_open = False
            self.finish(failed)

    def begin(self, args: TrainingArguments, params: dict[str, Any]) -> None:
        """Start a new run, open until `close`."""
        self.start(args, params)
        self.run_open = self.has_run = True

    def _start(self, args: TrainingArguments, model: Any) -> None:
        self.begin(args, run_params(args, model))


def run_params(args: TrainingArguments, model: Any = None) -> dict[str, Any]:
    """What a run is configured with: every `TrainingArguments` field, and the model's head and labels."""
    params = dict(args.to_dict())
    if model is not None and hasattr(model, "model_head"):
        params["model_head"] = type(model.model_head).__name__ if model.model_head is not None else "SetFitHead"
        params["labels"] = getattr(model, "labels", None)
        params["multi_target_strategy"] = getattr(model, "multi_target_strategy", None)
    return params


class TensorBoardTracker(Tracker):
    """Event files under `logging_dir` (the argument, else `args.logging_dir`, else `runs/<date>_<host>`)."""

    name = "tensorboard"

    def __init__(self, logging_dir: str | None = None) -> None:
        super().__init__()
        self.logging_dir, self.writer = logging_dir, None

    def start(self, args: TrainingArguments, params: dict[str, Any]) -> None:
        self.logging_dir = self.logging_dir or args.logging_dir or default_logdir()
        self._writer().add_text("args", f"```json\n{json.dumps(params, indent=2, default=str)}\n```")
        logger.info("reporting to TensorBoard under %s", self.logging_dir)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        writer = self._writer()
        for key, value in metrics.items():
            writer.add_scalar(tensorboard_tag(key), value, step)
        writer.flush()  # a few rows a run: readable while training, and nothing lost if the process dies

    def finish(self, failed: bool) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _writer(self):
        if self.writer is None:  # reopened for metrics logged after the run closed: a second file, same directory
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=self.logging_dir)
        return self.writer


def tensorboard_tag(key: str) -> str:
    """transformers' TensorBoard names: `eval_x` -> `eval/x`, `test_x` -> `test/x`, anything else `train/x`."""
    for prefix in ("eval_", "test_"):
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix):]}"
    return f"train/{key}"


def default_logdir() -> str:
    """setfit's default `logging_dir` (PyTorch's): `runs/<Mon DD_HH-MM-SS>_<host>`."""
    import socket
    from datetime import datetime

    return os.path.join("runs", datetime.now().strftime("%b%d_%H-%M-%S") + "_" + socket.gethostname())


class MLflowTracker(Tracker):
    """One MLflow run per `Trainer.train()`: params, every log row as metrics at its step, the model as the
    `model` artifact directory (`log_model=False` leaves it out)."""

    name = "mlflow"

    def __init__(self, tracking_uri: str | None = None, experiment_name: str | None = None,
                 log_model: bool = True) -> None:
        super().__init__()
        self.tracking_uri, self.experiment_name, self.save_model = tracking_uri, experiment_name, log_model
        self.client, self.run_id, self.owns_run = None, None, False

    def start(self, args: TrainingArguments, params: dict[str, Any]) -> None:
        import mlflow
        from mlflow.entities import Param

        active = mlflow.active_run()
        if active is not None and self.tracking_uri is None:
            self.client, self.run_id, self.owns_run = mlflow.MlflowClient(), active.info.run_id, False
        else:
            self.client = mlflow.MlflowClient(self.tracking_uri)
            run = self.client.create_run(self._experiment_id(), run_name=args.run_name,
                                         tags={"mlflow.source.name": "setfit_core"})
            self.run_id, self.owns_run = run.info.run_id, True
        values = [Param(k, _param_value(v)) for k, v in sorted(params.items())]
        for i in range(0, len(values), _MLFLOW_BATCH):
            self.client.log_batch(self.run_id, params=values[i : i + _MLFLOW_BATCH])
        logger.info("reporting to MLflow run %s at %s", self.run_id, self.client.tracking_uri)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = [Metric(k, v, now, step) for k, v in metrics.items()]
        for i in range(0, len(values), _MLFLOW_BATCH):
            self.client.log_batch(self.run_id, metrics=values[i : i + _MLFLOW_BATCH])

    def log_model(self, path: Path) -> None:
        if self.save_model:
            self.client.log_artifacts(self.run_id, str(path), artifact_path="model")

    def finish(self, failed: bool) -> None:
        if self.owns_run:
            self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")

    def _experiment_id(self) -> str:
        name = self.experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME")
        if not name:
            return os.environ.get("MLFLOW_EXPERIMENT_ID", "0")  # MLflow's "Default" experiment
        found = self.client.get_experiment_by_name(name)
        return found.experiment_id if found is not None else self.client.create_experiment(name)


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:_MLFLOW_PARAM_CHARS]


TRACKER_CLASSES: dict[str, type[Tracker]] = {"mlflow": MLflowTracker, "tensorboard": TensorBoardTracker}


def build_trackers(names: list[str]) -> list[Tracker]:
    """One tracker per name `trackers.resolve_report_to` returned."""
    return [TRACKER_CLASSES[name]() for name in names]
