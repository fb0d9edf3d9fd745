"""A CPU pair step over more tokens than `EngineOptions.part_max_tokens` trains in parts (step_parts.split_pairs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from setfit_core import EngineOptions, TrainingArguments
from setfit_core.engine.encoding import TokenCache, step_loss
from setfit_core.engine.step_parts import split_pairs
from setfit_core.engine.steps import Step, prepare_steps
from setfit_core.losses import ContrastiveLoss, CosineSimilarityLoss, PairLoss, SupConLoss
from setfit_core.model_io.body_loading import load_body
from setfit_core.training.embedding_phase import train_body


def _pair_step(first, second, target) -> Step:
    batch = (np.asarray(first), np.asarray(second), np.asarray(target, dtype=np.float32))
    return next(prepare_steps([batch], "pair", np.zeros(0), torch.device("cpu")))


def _triples(step: Step) -> list[tuple[int, int, float]]:
    """(text, text, target) of every pair of a step, in texts' row numbers."""
    inverse = step.inverse.numpy()
    first, second = step.rows[inverse[: step.num_pairs]], step.rows[inverse[step.num_pairs :]]
    return sorted(zip(first.tolist(), second.tolist(), step.target.tolist(), strict=True))


def test_parts_keep_every_pair_once_within_the_cap():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 40, size=60)
    first, second = rng.integers(0, 60, size=16), rng.integers(0, 60, size=16)
    step = _pair_step(first, second, rng.integers(0, 2, size=16))
    parts = split_pairs(step, lengths, max_tokens=120)
    assert len(parts) > 1
    assert sorted(t for part in parts for t in _triples(part)) == _triples(step)
    for part in parts:
        assert part.num_pairs == len(part.target) and len(np.unique(part.rows)) == len(part.rows)
        assert int(lengths[part.rows].sum()) <= 120 or part.num_pairs == 1  # a pair over the cap goes alone
    # No more parts than needed: the step's tokens, plus those of texts encoded in two parts, over the cap.
    encoded = sum(int(lengths[part.rows].sum()) for part in parts)
    assert len(parts) <= -(-encoded // 120) + 1


def test_a_step_within_the_cap_or_of_labels_stays_whole():
    lengths = np.full(8, 10)
    step = _pair_step([0, 1, 2], [3, 4, 5], [1, 0, 1])
    assert split_pairs(step, lengths, max_tokens=60) == [step]  # 6 texts x 10 tokens
    group = next(prepare_steps([np.arange(8)], "group", np.arange(8) % 2, torch.device("cpu")))
    assert split_pairs(group, lengths, max_tokens=10) == [group]


def test_pairs_sharing_texts_are_kept_together():
    # Two stars of 4 pairs each (texts 0 and 5 at their centres): each star fits a part, so no text is
    # encoded twice, although the pairs come interleaved.
    lengths = np.full(10, 10)
    step = _pair_step([0, 5, 0, 5, 0, 5, 0, 5], [1, 6, 2, 7, 3, 8, 4, 9], [1] * 8)
    parts = split_pairs(step, lengths, max_tokens=50)
    assert sorted(sorted(part.rows.tolist()) for part in parts) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def test_part_weights_add_up_to_the_whole_loss():
    rng = torch.Generator().manual_seed(0)
    a, b = torch.randn(10, 8, generator=rng), torch.randn(10, 8, generator=rng)
    target = (torch.rand(10, generator=rng) > 0.5).float()
    for loss in (CosineSimilarityLoss(), ContrastiveLoss(), ContrastiveLoss(size_average=False)):
        parts = sum(loss(a[s], b[s], target[s]) * loss.part_weight(len(range(10)[s]), 10)
                    for s in (slice(0, 3), slice(3, 10)))
        torch.testing.assert_close(parts, loss(a, b, target))
    # A loss declares whether it is additive over its examples; only those are split.
    assert CosineSimilarityLoss.additive and ContrastiveLoss.additive
    assert not _WholeBatchLoss.additive and not SupConLoss.additive
    with pytest.raises(TypeError, match="_WholeBatchLoss is not additive"):
        _WholeBatchLoss().part_weight(3, 10)


class _WholeBatchLoss(PairLoss):
    """A custom pair loss over the batch as a whole: the mean error of each kind of pair, then their mean."""

    def forward(self, emb_1, emb_2, labels):
        error = (torch.cosine_similarity(emb_1, emb_2) - labels) ** 2
        return (error[labels > 0.5].mean() + error[labels <= 0.5].mean()) / 2


def _no_dropout(body: nn.Module) -> nn.Module:
    for module in body.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if hasattr(module, "dropout_prob"):  # transformers' attention reads its own attribute
            module.dropout_prob = 0.0
    return body


def test_a_step_in_parts_has_the_whole_steps_gradient(tiny_model_dir, tiny_data):
    body = _no_dropout(load_body(tiny_model_dir, device="cpu")).train()
    cache = TokenCache(body, tiny_data["text"], None)
    loss_fn = CosineSimilarityLoss()
    step = _pair_step([0, 1, 2, 3, 8, 9, 10], [4, 5, 6, 11, 12, 13, 14], [1, 1, 1, 0, 1, 1, 1])

    def gradients(parts: list[Step]) -> dict[str, torch.Tensor]:
        body.zero_grad(set_to_none=True)
        for part in parts:
            loss = step_loss(body, loss_fn, cache, part) * loss_fn.part_weight(part.num_pairs, step.num_pairs)
            loss.backward()
        return {name: p.grad.clone() for name, p in body.named_parameters() if p.grad is not None}

    parts = split_pairs(step, cache.lengths, max_tokens=12)
    assert len(parts) >= 3
    whole, split = gradients([step]), gradients(parts)
    assert whole.keys() == split.keys()
    for name in whole:
        torch.testing.assert_close(split[name], whole[name], rtol=1e-4, atol=1e-6, msg=name)


def _train(tiny_model_dir, tiny_data, max_tokens, loss="CosineSimilarityLoss", **args):
    body = _no_dropout(load_body(tiny_model_dir, device="cpu"))
    forwards = []
    body[0].register_forward_pre_hook(lambda module, inputs: forwards.append(1))
    args = TrainingArguments(max_steps=4, seed=3, batch_size=8, loss=loss, show_progress_bar=False,
                             save_strategy="no", **args)
    engine = EngineOptions(part_max_tokens=max_tokens)
    result = train_body(body, tiny_data["text"], np.asarray(tiny_data["label"]), args, engine=engine)
    return body, result, len(forwards)


def test_training_in_parts_trains_the_same_body(tiny_model_dir, tiny_data):
    whole, whole_result, whole_forwards = _train(tiny_model_dir, tiny_data, None)
    parts, parts_result, parts_forwards = _train(tiny_model_dir, tiny_data, 12)
    assert whole_forwards == 4 and parts_forwards > 8  # every step ran in parts
    assert whole_result.engine.steps_in_parts == 0 and parts_result.engine.steps_in_parts == 4
    assert parts_result.train_loss == pytest.approx(whole_result.train_loss, rel=1e-4)
    for (name, a), (_, b) in zip(whole.state_dict().items(), parts.state_dict().items(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)


def test_losses_that_couple_their_pairs_train_whole(tiny_model_dir, tiny_data):
    _, result, forwards = _train(tiny_model_dir, tiny_data, 12, loss=_WholeBatchLoss)
    assert forwards == 4 and result.engine.part_max_tokens is None


def test_not_with_gradient_checkpointing(tiny_model_dir, tiny_data):
    # Checkpointed layers already hold one micro-batch at a time; parts would only encode texts twice.
    _, result, _ = _train(tiny_model_dir, tiny_data, 12, gradient_checkpointing=True)
    assert result.engine.part_max_tokens is None and result.engine.steps_in_parts == 0
