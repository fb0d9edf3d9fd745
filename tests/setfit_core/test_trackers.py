"""`report_to` (setfit_core/trackers.py) and the trackers it builds (setfit_core/training/trackers.py): TensorBoard
event files under `logging_dir`, an MLflow run in a local file store."""

from __future__ import annotations

import pytest
from transformers import TrainerCallback

from setfit_core import SetFitModel, Trainer, TrainingArguments
from setfit_core.trackers import TRACKERS, resolve_report_to
from setfit_core.training.trackers import MLflowTracker, TensorBoardTracker


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch) -> str:
    """A local file store; MLflow 3 refuses one unless asked (its file store is in maintenance mode)."""
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    return uri


def runs(uri: str):
    import mlflow

    client = mlflow.MlflowClient(uri)
    return client, client.search_runs(["0"], order_by=["attributes.start_time ASC"])


def scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    found: dict[str, list[tuple[int, float]]] = {}
    multiplexer = EventMultiplexer().AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    for run in multiplexer.Runs():
        accumulator = multiplexer.GetAccumulator(run)
        for tag in accumulator.Tags()["scalars"]:
            found.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    return found


@pytest.fixture
def model(tiny_model_dir):
    return SetFitModel.from_pretrained(tiny_model_dir, device="cpu")


# ---- report_to ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["none", None, [], ["none"]])
def test_none_reports_nowhere(value):
    assert resolve_report_to(value) == []
    assert TrainingArguments().report_to == "none"


def test_all_means_every_installed_tracker(monkeypatch):
    assert resolve_report_to("all") == ["mlflow", "tensorboard"]
    monkeypatch.setitem(TRACKERS, "mlflow", ("no_such_module_for_setfit_core", "mlflow-skinny"))
    assert resolve_report_to(["all"]) == ["tensorboard"]


def test_names_and_lists_keep_their_order_once_each():
    assert resolve_report_to("mlflow") == ["mlflow"]
    assert resolve_report_to(["tensorboard", "mlflow", "tensorboard"]) == ["tensorboard", "mlflow"]


@pytest.mark.parametrize("value", ["wandb", ["mlflow", "tensorbord"], "MLflow"])
def test_an_unknown_name_is_an_error_when_arguments_are_built(value):
    with pytest.raises(ValueError, match=r"'report_to' must be one of \['none', 'all', 'mlflow', 'tensorboard'\]"):
        TrainingArguments(report_to=value)


def test_all_with_other_names_and_non_strings_are_errors():
    with pytest.raises(ValueError, match="'all' already means every installed tracker"):
        TrainingArguments(report_to=["all", "mlflow"])
    with pytest.raises(ValueError, match="must be a tracker name or a list of them; got 3"):
        TrainingArguments(report_to=3)


def test_a_missing_package_names_the_extra(model, tiny_data, monkeypatch):
    monkeypatch.setitem(TRACKERS, "mlflow", ("no_such_module_for_setfit_core", "mlflow-skinny"))
    args = TrainingArguments(report_to="mlflow")  # names are checked here, packages where training starts
    with pytest.raises(ImportError, match=r"pip install 'setfit-pipeline\[tracking\]' \(or pip install mlflow-skinny"):
        Trainer(model, args, train_dataset=tiny_data)


# ---- TensorBoard -------------------------------------------------------------------------------------
def test_tensorboard_writes_event_files_under_logging_dir(model, tiny_data, tiny_args, tmp_path):
    logdir = tmp_path / "tb"
    args = tiny_args.replace(report_to="tensorboard", logging_dir=str(logdir), logging_steps=2)
    trainer = Trainer(model, args, train_dataset=tiny_data, eval_dataset=tiny_data)
    assert [type(c) for c in trainer.callback_handler.callbacks] == [TensorBoardTracker]
    trainer.train()
    trainer.evaluate()
    assert list(logdir.glob("events.out.tfevents.*"))
    found = scalars(logdir)
    assert [step for step, _ in found["train/embedding_loss"]] == [1, 2, 4]
    assert {"train/learning_rate", "train/train_loss", "eval/accuracy"} <= set(found)


# ---- MLflow ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_mlflow_records_params_metrics_and_the_model(model, tiny_data, tiny_args, mlflow_uri):
    args = tiny_args.replace(report_to="mlflow", run_name="nightly", logging_steps=1)
    trainer = Trainer(model, args, train_dataset=tiny_data, eval_dataset=tiny_data)
    trainer.train()
    metrics = trainer.evaluate()
    client, found = runs(mlflow_uri)
    (run,) = found
    assert run.info.run_name == "nightly" and run.info.status == "FINISHED"
    assert run.data.params["seed"] == "0" and run.data.params["loss"] == "CosineSimilarityLoss"
    assert run.data.params["num_epochs"] == "[1, 2]" and run.data.params["model_head"] == "LogisticRegression"
    history = client.get_metric_history(run.info.run_id, "embedding_loss")
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert run.data.metrics["eval_accuracy"] == metrics["accuracy"] and "train_loss" in run.data.metrics
    saved = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert "model/config_setfit.json" in saved
    # the logged model loads and predicts as the trained one
    local = client.download_artifacts(run.info.run_id, "model")
    assert list(SetFitModel.from_pretrained(local).predict(["great film"])) == list(model.predict(["great film"]))


@pytest.mark.slow
def test_mlflow_one_run_per_train_and_a_failed_run_says_so(model, tiny_data, tiny_args, mlflow_uri):
    class Boom(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise RuntimeError("boom")

    args = tiny_args.replace(report_to="mlflow")
    trainer = Trainer(model, args, train_dataset=tiny_data)
    trainer.train()
    trainer.add_callback(Boom)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train()
    _, found = runs(mlflow_uri)
    assert [r.info.status for r in found] == ["FINISHED", "FAILED"]


@pytest.mark.slow
def test_mlflow_reports_into_a_run_the_caller_started(model, tiny_data, tiny_args, mlflow_uri):
    import mlflow

    trainer = Trainer(model, tiny_args.replace(report_to="mlflow"), train_dataset=tiny_data)
    tracker = trainer.pop_callback(MLflowTracker)
    trainer.add_callback(MLflowTracker(log_model=False))
    with mlflow.start_run(run_name="mine") as outer:
        trainer.train()
        assert mlflow.active_run().info.run_id == outer.info.run_id  # left open for the caller
    client, found = runs(mlflow_uri)
    assert [r.info.run_id for r in found] == [outer.info.run_id] and tracker.run_id is None
    assert client.get_run(outer.info.run_id).data.params["seed"] == "0"
    assert not client.list_artifacts(outer.info.run_id, "model")
