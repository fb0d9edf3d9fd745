"""Run phase 1's engine directly on the tiny model, to look at what it did without patching any module."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest

from setfit_core import EngineOptions, SetFitModel, TrainingArguments
from setfit_core.engine import Engine, TokenCache, prepare_steps, start_engine
from setfit_core.losses import build_loss
from setfit_core.training.batches import batch_stream


class EngineRun:
    """An engine run of `steps` steps; `seen` holds what a check saw inside the engine before the first step."""

    def __init__(self, engine: Engine, body, seen: dict) -> None:
        self.engine, self.body, self.seen = engine, body, seen


@pytest.fixture
def run_engine(tiny_model_dir, tiny_data):
    def run(steps: int = 2, options: EngineOptions | None = None, before_first_step=None, **args) -> EngineRun:
        body = SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body
        args = TrainingArguments(**{"max_steps": steps, "seed": 5, "batch_size": 8, "show_progress_bar": False,
                                    "save_strategy": "no", **args})
        labels = np.asarray(tiny_data["label"])
        loss_fn = build_loss(args.loss, args.margin, args.distance_metric, args.loss_params)
        stream = batch_stream(labels, args, loss_fn.kind, args.max_steps)
        cache = TokenCache(body, tiny_data["text"], None)
        body.train()
        with start_engine(body, cache, loss_fn, args, options or EngineOptions()) as engine:
            seen = before_first_step(engine) if before_first_step else {}
            for step in islice(prepare_steps(stream.batches, stream.kind, labels, body.device), stream.total_steps):
                engine.step(step)
        return EngineRun(engine, body, seen)

    return run
