"""Phase 1 on CPU trains a compact copy of the used word-embedding rows (setfit_core/engine/cpu/vocabulary.py).

The tiny test BERT's vocabulary is below the size threshold, so the tests lower it
(`EngineOptions.sparse_vocabulary_min_rows`).
"""

from __future__ import annotations

import pytest
import torch
from sentence_transformers import SentenceTransformer

from setfit_core import EngineOptions, SetFitModel, Trainer
from setfit_core.engine.cpu.vocabulary import word_embedding_of


def _embedding(model) -> torch.nn.Embedding:
    return model.model_body[0].auto_model.get_input_embeddings()


SMALL = EngineOptions(sparse_vocabulary_min_rows=1)


def _train(tiny_model_dir, data, args, compact: bool, min_vocab: int = 1, eval_data=None):
    model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    engine = EngineOptions(compact_vocabulary=compact, sparse_vocabulary_min_rows=min_vocab)
    trainer = Trainer(model, args, train_dataset=data, eval_dataset=eval_data, engine=engine)
    trainer.train_embeddings()
    report = trainer.body_result.engine
    assert report.compact_vocabulary == compact and report.sparse_vocabulary_grads == (not compact and min_vocab == 1)
    return model, trainer


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.model_body.state_dict().items()}


def test_trains_the_same_body_as_the_full_embedding(tiny_model_dir, tiny_data, tiny_args):
    initial = _embedding(SetFitModel.from_pretrained(tiny_model_dir, device="cpu")).weight.detach().clone()
    compact, _ = _train(tiny_model_dir, tiny_data, tiny_args, compact=True)
    sparse, _ = _train(tiny_model_dir, tiny_data, tiny_args, compact=False)
    dense, _ = _train(tiny_model_dir, tiny_data, tiny_args, compact=False, min_vocab=10**9)
    for name, value in _state(dense).items():
        torch.testing.assert_close(_state(compact)[name], value, rtol=1e-4, atol=1e-6, msg=name)
        torch.testing.assert_close(_state(sparse)[name], value, rtol=1e-4, atol=1e-6, msg=name)
    # Rows of tokens the texts never use are untouched, bit for bit; the used ones did train.
    trained = _embedding(compact).weight.detach()
    moved = (trained != initial).any(dim=1)
    assert 0 < int(moved.sum()) < len(initial)
    assert torch.equal(trained[~moved], initial[~moved])


def test_the_full_embedding_is_back_after_training_and_after_an_error(tiny_model_dir, tiny_data, tiny_args):
    model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    embedding = _embedding(model)
    weight, shape, padding_idx = embedding.weight, tuple(embedding.weight.shape), embedding.padding_idx
    Trainer(model, tiny_args, train_dataset=tiny_data, engine=SMALL).train_embeddings()
    assert embedding.weight is weight and tuple(weight.shape) == shape
    assert embedding.num_embeddings == shape[0] and embedding.padding_idx == padding_idx

    def failing_progress(step, total, loss):
        assert embedding.weight.shape[0] < shape[0]  # the compact copy is training
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        Trainer(model, tiny_args, train_dataset=tiny_data, engine=SMALL).train_embeddings(progress=failing_progress)
    assert embedding.weight is weight and embedding.num_embeddings == shape[0]
    assert embedding.padding_idx == padding_idx
    assert model.encode(["good movie"]).shape[0] == 1  # the body runs on the full embedding again


def test_checkpoints_and_evaluation_see_the_whole_body(tiny_model_dir, tiny_data, tiny_args, tmp_path):
    args = tiny_args.replace(num_iterations=4, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=3,
                             save_total_limit=3, output_dir=str(tmp_path / "ckpt"), load_best_model_at_end=True)
    eval_data = {"text": ["good film", "awful plot", "i love this movie", "really bad actor"], "label": [1, 0, 1, 0]}
    compact, compact_trainer = _train(tiny_model_dir, tiny_data, args, compact=True, eval_data=eval_data)
    full, full_trainer = _train(tiny_model_dir, tiny_data, args, compact=False, eval_data=eval_data)
    losses = [[row["eval_embedding_loss"] for row in t.body_result.log if "eval_embedding_loss" in row]
              for t in (compact_trainer, full_trainer)]
    assert len(losses[0]) == 4 and losses[0] == pytest.approx(losses[1], rel=1e-4)
    checkpoint = SentenceTransformer(str(tmp_path / "ckpt" / "checkpoint-3"), device="cpu")
    vocab_size = _embedding(full).num_embeddings
    assert checkpoint[0].auto_model.get_input_embeddings().weight.shape[0] == vocab_size
    for name, value in _state(full).items():
        torch.testing.assert_close(_state(compact)[name], value, rtol=1e-4, atol=1e-6, msg=name)


def test_only_an_unshared_word_embedding_of_a_known_architecture_is_compacted(tiny_model_dir):
    body = SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body
    embedding = body[0].auto_model.get_input_embeddings()
    assert word_embedding_of(body, 1) is embedding
    assert word_embedding_of(body, embedding.num_embeddings + 1) is None  # below the size threshold
    body[0].auto_model.pooler.dense.weight = embedding.weight  # a second owner, like a tied output layer
    assert word_embedding_of(body, 1) is None
    body = SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body
    body[0].auto_model.config.model_type = "roberta"  # position ids derived from the padding id: not safe
    assert word_embedding_of(body, 1) is None
