"""setfit_core/checkpointing.py: phase 1 recomputes each layer's activations in the backward pass, same gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from setfit_core import EngineOptions, SetFitModel, TrainingArguments
from setfit_core.engine.gradient_checkpointing import checkpointed_layers, layer_stack
from setfit_core.tokenization import tokenize
from setfit_core.training.embedding_phase import train_body


def _body(tiny_model_dir):
    return SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body


def test_finds_the_transformer_layers(tiny_model_dir):
    body = _body(tiny_model_dir)
    stack = layer_stack(body)
    assert stack is body[0].auto_model.encoder.layer and len(stack) == 2


def _train(tiny_model_dir, tiny_data, checkpointing: bool, engine: EngineOptions | None = None):
    body = _body(tiny_model_dir)
    attention_calls = []
    for layer in layer_stack(body):
        layer.attention.register_forward_pre_hook(lambda module, inputs: attention_calls.append(module))
    args = TrainingArguments(max_steps=3, seed=5, batch_size=8, show_progress_bar=False,
                             gradient_checkpointing=checkpointing)
    result = train_body(body, tiny_data["text"], np.asarray(tiny_data["label"]), args, engine=engine)
    return body, result, len(attention_calls)


def test_same_training_bit_for_bit_with_each_layer_run_twice(tiny_model_dir, tiny_data):
    # Checkpointed steps run padded (cpu/packing.py); the plain run must too to be the same computation.
    plain, plain_result, plain_calls = _train(tiny_model_dir, tiny_data, checkpointing=False,
                                              engine=EngineOptions(packed_tokens=False))
    checkpointed, result, calls = _train(tiny_model_dir, tiny_data, checkpointing=True)
    assert calls == 2 * plain_calls  # every layer's forward ran again in the backward pass...
    assert result.train_loss == plain_result.train_loss  # ...with the same dropout masks, so the same run
    for (name, a), (_, b) in zip(plain.state_dict().items(), checkpointed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert not any("forward" in vars(layer) for layer in layer_stack(checkpointed))  # put back after training


def test_not_while_evaluating_and_undone_after_an_error(tiny_model_dir):
    body = _body(tiny_model_dir)
    layers = list(layer_stack(body))
    features = tokenize(body, ["a b c", "d e"], None)
    with pytest.raises(RuntimeError, match="boom"), checkpointed_layers(body) as count:
        assert count == 2 and all("forward" in vars(layer) for layer in layers)
        with torch.no_grad():
            body.eval()
            body(features)  # no backward to replay for: runs as is
        raise RuntimeError("boom")
    assert not any("forward" in vars(layer) for layer in layers)


def test_a_body_without_a_layer_stack_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"Set gradient_checkpointing=False"), checkpointed_layers(nn.Linear(3, 3)):
        pass
    with checkpointed_layers(nn.Linear(3, 3), enabled=False) as count:
        assert count == 0


def test_must_be_a_bool():
    with pytest.raises(ValueError, match=r"'gradient_checkpointing' must be True or False; got 'yes'"):
        TrainingArguments(gradient_checkpointing="yes")


def test_checkpointed_cpu_steps_use_small_micro_batches(tiny_model_dir, tiny_data):
    for checkpointing, cap in ((False, None), (True, 256), (True, 24)):
        body = _body(tiny_model_dir)
        padded: list[int] = []  # texts x padded length of every layer-0 forward pass (a replay too)
        layer_stack(body)[0].register_forward_pre_hook(
            lambda m, a, seen=padded: seen.append(a[0].shape[0] * a[0].shape[1]))
        args = TrainingArguments(max_steps=1, seed=5, batch_size=8, show_progress_bar=False,
                                 gradient_checkpointing=checkpointing)
        engine = EngineOptions(checkpointed_micro_batch_tokens=cap or 256)
        result = train_body(body, tiny_data["text"], np.asarray(tiny_data["label"]), args, engine=engine)
        assert result.engine.micro_batch_tokens == cap
        if cap == 24:
            assert len(padded) > 2 and max(padded) <= 24  # several micro-batches, none over the cap


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU machine)")
def test_on_a_gpu_eager_and_the_same_training(tiny_model_dir, tiny_data):
    def train(checkpointing: bool, engine: EngineOptions | None = None):
        body = SetFitModel.from_pretrained(tiny_model_dir, device="cuda").model_body
        args = TrainingArguments(max_steps=3, seed=5, batch_size=8, show_progress_bar=False,
                                 gradient_checkpointing=checkpointing)
        return body, train_body(body, tiny_data["text"], np.asarray(tiny_data["label"]), args, engine=engine)

    _, result = train(checkpointing=True)
    # Eager: a graph cannot hold a forward replayed in the backward pass.
    assert not result.engine.cuda_graphs and result.engine.graphed_steps == 0
    eager = EngineOptions(cuda_graphs=False)  # graph replays draw other dropout masks
    (plain, plain_result), (checkpointed, result) = train(False, eager), train(True, eager)
    assert result.train_loss == pytest.approx(plain_result.train_loss, rel=1e-5)
    for (name, a), (_, b) in zip(plain.state_dict().items(), checkpointed.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)  # embedding grads add atomically
