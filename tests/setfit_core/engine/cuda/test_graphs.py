"""Body training from CUDA graphs (setfit_core/engine/cuda/graphs.py) trains the same model as the eager loop.

GPU only: CI has no CUDA device, so these run on the GPU machine
(`python -m pytest tests/setfit_core/engine/cuda/test_graphs.py`).
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pytest
import torch

from setfit_core import EngineOptions, SetFitModel, TrainingArguments
from setfit_core.engine.cuda.graphs import GraphedSteps
from setfit_core.engine.encoding import TokenCache, step_loss
from setfit_core.engine.optimizer import make_optimizer
from setfit_core.engine.steps import prepare_steps
from setfit_core.losses import CosineSimilarityLoss
from setfit_core.training.embedding_phase import train_body

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU machine)")


def _body_without_dropout(model_dir: str):
    body = SetFitModel.from_pretrained(model_dir, device="cuda").model_body
    for module in body.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # replays and eager steps then compute the same function
    return body


def _train(model_dir, data, args, graphs: bool):
    body = _body_without_dropout(model_dir)
    result = train_body(body, data["text"], np.asarray(data["label"]), args, engine=EngineOptions(cuda_graphs=graphs))
    return body, result


def test_replayed_steps_train_the_same_weights_as_eager_steps(tiny_model_dir, tiny_data):
    # 3 epochs of 36 pairs at batch 16: full batches and a partial last batch of 4 pairs, texts of
    # several lengths, so several step shapes get recorded and some steps still run eagerly.
    args = TrainingArguments(num_iterations=1, num_epochs=(3, 1), batch_size=(16, 2), seed=0,
                             show_progress_bar=False, save_strategy="no", sampling_strategy="oversampling")
    eager_body, eager = _train(tiny_model_dir, tiny_data, args, False)
    graph_body, graphed = _train(tiny_model_dir, tiny_data, args, True)
    assert eager.engine.graphed_steps == 0
    assert graphed.steps == eager.steps
    assert 0 < graphed.engine.graphed_steps < graphed.steps
    assert graphed.train_loss == pytest.approx(eager.train_loss, rel=1e-3)
    assert all(p.grad is None for p in graph_body.parameters())  # no stale gradients for the head phase
    for (name, a), b in zip(eager_body.named_parameters(), graph_body.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=f"parameter {name} differs")


def test_fast_preset_label_balanced_steps_are_replayed(tiny_model_dir, tiny_data):
    args = TrainingArguments(preset="fast", seed=0, show_progress_bar=False, save_strategy="no")
    eager_body, eager = _train(tiny_model_dir, tiny_data, args, False)
    graph_body, graphed = _train(tiny_model_dir, tiny_data, args, True)
    assert graphed.engine.graphed_steps > graphed.steps // 2
    assert graphed.train_loss == pytest.approx(eager.train_loss, rel=1e-3)
    for a, b in zip(eager_body.parameters(), graph_body.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


class HostReadingLoss(CosineSimilarityLoss):
    """Reads a value back to the host in forward: allowed eagerly, impossible inside a CUDA graph."""

    def forward(self, emb_1, emb_2, labels):
        if float(labels.sum()) < 0:
            raise AssertionError("unreachable")
        return super().forward(emb_1, emb_2, labels)


def test_a_step_that_cannot_be_recorded_trains_eagerly(tiny_model_dir, tiny_data, caplog):
    args = TrainingArguments(num_iterations=2, loss=HostReadingLoss, seed=0, show_progress_bar=False,
                             save_strategy="no")
    with caplog.at_level(logging.WARNING, logger="setfit_core.engine.cuda.graphs"):
        _, graphed = _train(tiny_model_dir, tiny_data, args, True)
        _, eager = _train(tiny_model_dir, tiny_data, args, False)
    assert graphed.engine.graphed_steps == 0
    assert "could not record the training step as a CUDA graph" in caplog.text
    assert graphed.train_loss == pytest.approx(eager.train_loss, rel=1e-3)


# Two pair batches of different shapes (4 pairs over 6 texts; 2 pairs over 4 texts).
BATCH_A = (np.array([0, 1, 2, 3]), np.array([1, 8, 9, 0]), np.array([1.0, 0.0, 0.0, 1.0], dtype=np.float32))
BATCH_B = (np.array([4, 5]), np.array([6, 7]), np.array([0.0, 1.0], dtype=np.float32))


def _replay_losses(body, texts: list[str], schedule: str) -> tuple[list[float], GraphedSteps]:
    """The losses of fixed pair batches stepped in `schedule` order ("AAB..."), at learning rate 0
    (weights never change)."""
    body.train()
    cache = TokenCache(body, texts, None)
    loss_fn = CosineSimilarityLoss().to(body.device)
    optimizer = make_optimizer(body.parameters(), 0.0, 0.0, graph_device=body.device)

    def eager(step):
        loss = step_loss(body, loss_fn, cache, step)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach().float()

    runner = GraphedSteps(body, loss_fn, cache, optimizer, contextlib.nullcontext, eager)
    steps = dict(zip("AB", prepare_steps([BATCH_A, BATCH_B], "pair", np.zeros(len(texts)), body.device), strict=True))
    return [float(runner.step(steps[name])) for name in schedule], runner


def test_a_replay_computes_what_the_eager_step_computes(tiny_model_dir, tiny_data):
    losses, runner = _replay_losses(_body_without_dropout(tiny_model_dir), tiny_data["text"], "AAAA")
    assert runner.eager_steps == 1 and runner.replays == 3
    assert losses == pytest.approx([losses[0]] * 4, rel=1e-5)
    # The recorded gradients are not left on the parameters: an eager step's backward starts from none.
    assert all(p.grad is None for p in runner.params)


def test_graphs_share_one_memory_pool_and_replays_do_not_disturb_each_other(tiny_model_dir, tiny_data):
    # A, then B, recorded into one pool (B may reuse A's scratch memory); interleaved replays must still
    # each compute their own step's loss, equal to that step's eager loss.
    losses, runner = _replay_losses(_body_without_dropout(tiny_model_dir), tiny_data["text"], "ABABABAB")
    assert len(runner.graphs) == 2 and runner.replays == 6
    assert len({graph.graph.pool() for graph in runner.graphs.values()}) == 1
    assert losses[0::2] == pytest.approx([losses[0]] * 4, rel=1e-5)
    assert losses[1::2] == pytest.approx([losses[1]] * 4, rel=1e-5)
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


def test_dropout_draws_a_fresh_mask_on_every_replay(tiny_model_dir, tiny_data):
    body = SetFitModel.from_pretrained(tiny_model_dir, device="cuda").model_body  # dropout 0.1
    losses, runner = _replay_losses(body, tiny_data["text"], "AAAAAA")
    assert runner.replays == 5
    assert len(set(losses[1:])) == 5  # one recorded mask would give five equal losses
