"""transformers' TrainerCallback protocol in both phases (setfit_core/training/callbacks.py), with setfit's call
shapes: `Trainer(callbacks=[...])`, `add/pop/remove_callback`, `EarlyStoppingCallback`."""

from __future__ import annotations

import pytest
import torch
from transformers import EarlyStoppingCallback, PrinterCallback, TrainerCallback, TrainerControl, TrainerState

from setfit_core import SetFitModel, Trainer, TrainingArguments


class Recorder(TrainerCallback):
    """Every event as (name, global_step, logs or metrics), and the types it was called with."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, dict | None]] = []
        self.seen: set[tuple[type, type, type, type]] = set()

    def __getattribute__(self, name: str):
        if not name.startswith("on_"):
            return object.__getattribute__(self, name)

        def record(args, state, control, **kwargs):
            self.seen.add((type(args), type(state), type(control), type(kwargs.get("model"))))
            self.events.append((name, state.global_step, kwargs.get("logs") or kwargs.get("metrics")))

        return record

    def names(self, *only: str) -> list[str]:
        return [name for name, _, _ in self.events if not only or name in only]

    def steps(self, name: str) -> list[int]:
        return [step for event, step, _ in self.events if event == name]


class StopAt(TrainerCallback):
    def __init__(self, step: int, event: str = "on_step_end") -> None:
        self.step, self.event = step, event

    def on_step_end(self, args, state, control, **kwargs):
        if self.event == "on_step_end" and state.global_step == self.step:
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.event == "on_log" and "classifier_loss" in logs and state.global_step >= self.step:
            control.should_training_stop = True  # returns None: the control passed in is the one changed


class SaveAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_save = True


@pytest.fixture
def model(tiny_model_dir):
    return SetFitModel.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture
def args(tiny_args):
    # 16 texts, num_iterations=2: 64 pairs, 4 steps of 16
    return tiny_args.replace(logging_steps=2)


def test_phase_1_events_in_transformers_order(model, tiny_data, args):
    recorder = Recorder()
    trainer = Trainer(model, args.replace(eval_strategy="steps", eval_steps=2), train_dataset=tiny_data,
                      eval_dataset=tiny_data, callbacks=[recorder])
    trainer.train()
    total = trainer.body_result.steps
    assert recorder.names()[:4] == ["on_init_end", "on_train_begin", "on_epoch_begin", "on_step_begin"]
    assert recorder.steps("on_step_end") == list(range(1, total + 1))
    assert len(recorder.steps("on_step_begin")) == total
    assert recorder.steps("on_evaluate") == list(range(2, total + 1, 2))
    assert recorder.names()[-3:] == ["on_epoch_end", "on_log", "on_train_end"]
    logs = [logs for name, _, logs in recorder.events if name == "on_log"]
    assert [set(row) for row in logs[:2]] == [{"embedding_loss", "learning_rate", "epoch"}] * 2  # steps 1, 2
    assert {"eval_embedding_loss", "epoch"} == set(logs[2])
    assert {"train_runtime", "train_steps_per_second", "train_loss", "epoch"} == set(logs[-1])
    # setfit's call shape: setfit's args, transformers' state and control, the SetFitModel as model=
    assert recorder.seen == {(TrainingArguments, TrainerState, TrainerControl, SetFitModel)}
    assert trainer.state.global_step == total and trainer.state.log_history[-1]["train_loss"] > 0


def test_every_epoch_has_its_events(model, tiny_data, args):
    recorder = Recorder()
    trainer = Trainer(model, args.replace(num_epochs=(2, 16)), train_dataset=tiny_data, callbacks=[recorder])
    trainer.train()
    total = trainer.body_result.steps
    assert recorder.steps("on_epoch_begin") == [0, total // 2]
    assert recorder.steps("on_epoch_end") == [total // 2, total]


def test_should_training_stop_ends_phase_1_and_phase_2_still_runs(model, tiny_data, args):
    trainer = Trainer(model, args.replace(num_iterations=4), train_dataset=tiny_data, callbacks=[StopAt(3)])
    trainer.train()
    assert trainer.body_result.steps == 3
    assert hasattr(model.model_head, "coef_")


def test_should_save_writes_a_checkpoint_and_fires_on_save(model, tiny_data, args, tmp_path):
    recorder = Recorder()
    trainer = Trainer(model, args.replace(output_dir=str(tmp_path)), train_dataset=tiny_data,
                      callbacks=[SaveAt(3), recorder])
    trainer.train()
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-3"]
    assert recorder.steps("on_save") == [3]


def test_early_stopping_stops_phase_1_and_loads_the_best_body(model, tiny_data, args):
    # No evaluation can improve by 1e9: the first sets the best, the second runs out of patience.
    args = args.replace(num_iterations=4, eval_strategy="steps", eval_steps=2, load_best_model_at_end=True)
    stopper = EarlyStoppingCallback(early_stopping_patience=1, early_stopping_threshold=1e9)
    recorder = Recorder()
    trainer = Trainer(model, args, train_dataset=tiny_data, eval_dataset=tiny_data, callbacks=[stopper, recorder])
    trainer.train()
    assert trainer.body_result.steps == 4  # of 8
    evals = [row["eval_embedding_loss"] for row in trainer.body_result.log if "eval_embedding_loss" in row]
    assert len(evals) == 2 and trainer.state.best_metric == min(evals)
    assert recorder.names()[-2:] == ["on_log", "on_train_end"] and hasattr(model.model_head, "coef_")


def test_early_stopping_patience_lets_improving_runs_finish(model, tiny_data, args):
    args = args.replace(eval_strategy="steps", eval_steps=1, load_best_model_at_end=True)
    trainer = Trainer(model, args, train_dataset=tiny_data, eval_dataset=tiny_data,
                      callbacks=[EarlyStoppingCallback(early_stopping_patience=100)])
    trainer.train()
    assert trainer.body_result.steps == 4


def test_add_pop_and_remove_callback_as_transformers(model, tiny_data, args):
    recorder = Recorder()
    trainer = Trainer(model, args, train_dataset=tiny_data, callbacks=[PrinterCallback])
    trainer.add_callback(recorder)
    trainer.add_callback(EarlyStoppingCallback)
    assert [type(c) for c in trainer.callback_handler.callbacks] == [PrinterCallback, Recorder, EarlyStoppingCallback]
    assert trainer.pop_callback(Recorder) is recorder and trainer.pop_callback(Recorder) is None
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(PrinterCallback)  # a class that is not there: nothing happens, as in transformers
    with pytest.raises(ValueError, match="is not one of this Trainer's callbacks"):
        trainer.remove_callback(recorder)
    assert [type(c) for c in trainer.callback_handler.callbacks] == [EarlyStoppingCallback]
    with pytest.raises(TypeError, match="must be transformers.TrainerCallback"):
        trainer.add_callback(lambda *a: None)


def test_no_callbacks_no_state(model, tiny_data, args):
    trainer = Trainer(model, args, train_dataset=tiny_data)
    trainer.train()
    assert trainer.state is None and trainer.body_result.state is None


def test_differentiable_head_fires_phase_2_events(tiny_model_dir, tiny_data, args):
    model = SetFitModel.from_pretrained(tiny_model_dir, use_differentiable_head=True, device="cpu")
    recorder = Recorder()
    trainer = Trainer(model, args.replace(num_epochs=(1, 3), batch_size=(16, 4)), train_dataset=tiny_data,
                      callbacks=[recorder])
    trainer.train()
    phase_2 = recorder.events[recorder.names().index("on_train_end") + 1:]
    names = [name for name, _, _ in phase_2]
    assert names == ["on_train_begin", "on_epoch_begin"] + ["on_log", "on_epoch_end", "on_epoch_begin"] * 2 + [
        "on_log", "on_epoch_end", "on_train_end"]
    losses = [logs["classifier_loss"] for name, _, logs in phase_2 if name == "on_log"]
    assert len(losses) == 3 and all(loss > 0 for loss in losses)
    assert [step for name, step, _ in phase_2 if name == "on_log"] == [4, 8, 12]  # 16 texts in batches of 4


def test_should_training_stop_ends_phase_2(tiny_model_dir, tiny_data, args):
    model = SetFitModel.from_pretrained(tiny_model_dir, use_differentiable_head=True, device="cpu")
    trainer = Trainer(model, args.replace(num_epochs=(1, 5), batch_size=(16, 4)), train_dataset=tiny_data,
                      callbacks=[StopAt(8, event="on_log")])
    trainer.train()
    assert trainer.state.global_step == 8  # two of five epochs


def test_evaluate_logs_its_metrics_to_callbacks(model, tiny_data, args):
    recorder = Recorder()
    trainer = Trainer(model, args, train_dataset=tiny_data, eval_dataset=tiny_data, callbacks=[recorder])
    trainer.train()
    result = trainer.evaluate()
    assert recorder.events[-1] == ("on_log", trainer.body_result.steps, {"eval_accuracy": result["accuracy"]})
    trainer.evaluate(tiny_data, metric_key_prefix="test")
    assert set(recorder.events[-1][2]) == {"test_accuracy"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU machine)")
def test_callbacks_fire_every_step_with_cuda_graphs(tiny_model_dir, tiny_data, args):
    """On a GPU, steps replay from CUDA graphs and the loss is read every few steps; callbacks still see every
    step, and stopping works."""
    model = SetFitModel.from_pretrained(tiny_model_dir, device="cuda")
    recorder = Recorder()
    trainer = Trainer(model, args.replace(num_iterations=8), train_dataset=tiny_data,
                      callbacks=[recorder, StopAt(9)])
    trainer.train()
    assert trainer.body_result.engine.cuda_graphs and trainer.body_result.engine.graphed_steps > 0
    assert trainer.body_result.steps == 9 and recorder.steps("on_step_end") == list(range(1, 10))
    assert recorder.steps("on_log")[:-1] == [1, 2, 4, 6, 8]
