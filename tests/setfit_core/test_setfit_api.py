"""setfit 1.2.0's smaller names, in its documented call shapes (issue 24, item 8): `id2label`/`label2id`,
`evaluation_strategy`, `TrainingArguments.update/copy/from_dict(ignore_extra=)`, `Trainer.freeze/unfreeze`,
`SetFitModel.fit`, the lazy `SetFitHead` and `forward(temperature=)`, and `encode`'s return type."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import torch

from setfit_core import SetFitHead, SetFitModel, Trainer, TrainingArguments

TEXTS = ["good movie", "awful film", "i love it", "so sad"]
X = ["good movie", "great film", "nice plot", "i love it", "bad movie", "awful film", "poor plot", "i hate it"]
Y = ["positive"] * 4 + ["negative"] * 4


# ---- signatures: the same parameter names, in the same order, as setfit 1.2.0 ------------------------------


@pytest.mark.parametrize("ours, theirs", [
    ("SetFitModel.fit", "SetFitModel.fit"),
    ("SetFitHead.__init__", "SetFitHead.__init__"),
    ("SetFitHead.forward", "SetFitHead.forward"),
    ("TrainingArguments.from_dict", "TrainingArguments.from_dict"),
    ("TrainingArguments.update", "TrainingArguments.update"),
    ("TrainingArguments.copy", "TrainingArguments.copy"),
    ("Trainer.freeze", "Trainer.freeze"),
    ("Trainer.add_callback", "Trainer.add_callback"),
    ("Trainer.pop_callback", "Trainer.pop_callback"),
    ("Trainer.remove_callback", "Trainer.remove_callback"),
    ("Trainer.unfreeze", "Trainer.unfreeze"),
    ("SetFitModel.freeze", "SetFitModel.freeze"),
    ("SetFitModel.unfreeze", "SetFitModel.unfreeze"),
])
def test_signature_matches_setfit(ours, theirs):
    setfit = pytest.importorskip("setfit", reason="setfit 1.2.0 (the bench extra) is not installed")
    import setfit_core

    def resolve(module, path):
        owner, name = path.split(".")
        return getattr(getattr(module, owner), name)

    def names(fn):
        return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]

    assert names(resolve(setfit_core, ours)) == names(resolve(setfit, theirs))


@pytest.mark.parametrize("path", ["Trainer.train_embeddings", "Trainer.train_classifier", "Trainer.evaluate",
                                  "Trainer.push_to_hub", "TrainingArguments.to_json_string",
                                  "TrainingArguments.to_sanitized_dict"])
def test_parameters_start_with_setfits(path):
    """setfit's parameter names in setfit's order, so its positional calls work; then ours (`progress`)."""
    setfit = pytest.importorskip("setfit", reason="setfit 1.2.0 (the bench extra) is not installed")
    import setfit_core

    owner, name = path.split(".")
    theirs = list(inspect.signature(getattr(getattr(setfit, owner), name)).parameters)
    assert list(inspect.signature(getattr(getattr(setfit_core, owner), name)).parameters)[: len(theirs)] == theirs


def test_trainer_signature_extends_setfits():
    """setfit's parameters in setfit's order (`callbacks` before `column_mapping`), then ours (`engine`)."""
    setfit = pytest.importorskip("setfit", reason="setfit 1.2.0 (the bench extra) is not installed")
    theirs = list(inspect.signature(setfit.Trainer.__init__).parameters)
    assert list(inspect.signature(Trainer.__init__).parameters)[: len(theirs)] == theirs


def test_encode_signature_extends_setfits():
    setfit = pytest.importorskip("setfit", reason="setfit 1.2.0 (the bench extra) is not installed")
    theirs = list(inspect.signature(setfit.SetFitModel.encode).parameters)
    assert list(inspect.signature(SetFitModel.encode).parameters)[: len(theirs)] == theirs


# ---- id2label / label2id -----------------------------------------------------------------------------


def test_id2label_and_label2id(tiny_model_dir):
    model = SetFitModel.from_pretrained(tiny_model_dir, labels=["negative", "positive"], device="cpu")
    assert model.id2label == {0: "negative", 1: "positive"}
    assert model.label2id == {"negative": 0, "positive": 1}
    bare = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    assert bare.id2label == {} and bare.label2id == {}


# ---- TrainingArguments -------------------------------------------------------------------------------


def test_evaluation_strategy_is_a_deprecated_alias():
    with pytest.warns(DeprecationWarning, match=r"'evaluation_strategy' is deprecated; use eval_strategy='steps'"):
        args = TrainingArguments(evaluation_strategy="steps", eval_steps=10)
    assert (args.eval_strategy, args.evaluation_strategy) == ("steps", None)
    assert "evaluation_strategy" not in args.to_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the alias is consumed: copies and updates do not warn again
        assert args.copy().eval_strategy == "steps" and args.update({"seed": 1}).eval_strategy == "steps"


def test_evaluation_strategy_in_from_dict_and_a_conflict():
    with pytest.warns(DeprecationWarning):
        assert TrainingArguments.from_dict({"evaluation_strategy": "epoch"}).eval_strategy == "epoch"
    with pytest.warns(DeprecationWarning), pytest.raises(
            ValueError, match=r"'evaluation_strategy' \(deprecated\) is 'epoch' but 'eval_strategy' is 'steps'"):
        TrainingArguments(eval_strategy="steps", evaluation_strategy="epoch")
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match=r"'eval_strategy' must be one of"):
        TrainingArguments(evaluation_strategy="sometimes")


def test_from_dict_ignore_extra():
    values = {"num_iterations": 5, "learning_rate": 1e-3, "per_device_train_batch_size": 8}
    with pytest.raises(ValueError, match=r"'learning_rate' is not a TrainingArguments field"):
        TrainingArguments.from_dict(values)
    assert TrainingArguments.from_dict(values, ignore_extra=True).num_iterations == 5


def test_update_returns_a_new_instance_and_keeps_the_loss_class():
    from setfit_core.losses import SupConLoss

    args = TrainingArguments(num_iterations=5, batch_size=8, loss=SupConLoss, loss_params={"temperature": 0.1})
    updated = args.update({"num_epochs": 3, "unknown": 1}, ignore_extra=True)
    assert updated is not args and args.num_epochs == (1, 16)
    assert (updated.num_epochs, updated.batch_size, updated.num_iterations) == ((3, 3), (8, 8), 5)
    assert updated.loss is SupConLoss and updated.loss_params == {"temperature": 0.1}
    with pytest.raises(ValueError, match=r"'unknown' is not a TrainingArguments field"):
        args.update({"unknown": 1})


def test_copy_is_shallow_and_equal():
    args = TrainingArguments(num_iterations=5, loss_params={"margin": 0.5}, loss="ContrastiveLoss")
    copied = args.copy()
    assert copied == args and copied is not args and copied.loss_params is args.loss_params
    assert TrainingArguments.from_dict(args.to_dict()) == args  # and to_dict round-trips


# ---- Trainer.freeze / unfreeze -------------------------------------------------------------------------


def test_trainer_freeze_and_unfreeze_are_deprecated_shims(tiny_model_dir):
    model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    trainer = Trainer(model, TrainingArguments(show_progress_bar=False), train_dataset={"text": X, "label": Y})
    with pytest.warns(DeprecationWarning, match=r"Trainer.freeze is deprecated; call trainer.model.freeze"):
        trainer.freeze("body")
    assert not any(p.requires_grad for p in model.model_body.parameters())
    with pytest.warns(DeprecationWarning, match=r"Trainer.unfreeze is deprecated"):
        trainer.unfreeze()
    assert all(p.requires_grad for p in model.model_body.parameters())
    with pytest.warns(DeprecationWarning, match=r"keep_body_frozen=...\) is deprecated; pass \"head\""):
        model.unfreeze(keep_body_frozen=True)


# ---- SetFitModel.fit -------------------------------------------------------------------------------------


def test_fit_trains_an_sklearn_head_with_string_labels(tiny_model_dir):
    model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    model.fit(X, Y, num_epochs=1, show_progress_bar=False)
    assert model.labels == ["negative", "positive"]
    assert model.predict(X) == Y  # the tiny body separates its own training words


def test_fit_trains_a_differentiable_head_and_leaves_the_body(tiny_model_dir):
    model = SetFitModel.from_pretrained(tiny_model_dir, use_differentiable_head=True, device="cpu")
    before = [p.detach().clone() for p in model.model_body.parameters()]
    model.fit(X, [1] * 4 + [0] * 4, num_epochs=20, batch_size=4, head_learning_rate=5e-2, show_progress_bar=False)
    assert isinstance(model.model_head, SetFitHead)
    assert all(torch.equal(a, b) for a, b in zip(before, model.model_body.parameters(), strict=True))
    assert model.predict(X).tolist() == [1] * 4 + [0] * 4


def test_fit_end_to_end_moves_the_body(tiny_model_dir):
    model = SetFitModel.from_pretrained(tiny_model_dir, use_differentiable_head=True, device="cpu")
    before = [p.detach().clone() for p in model.model_body.parameters()]
    model.fit(X, Y, num_epochs=1, end_to_end=True, body_learning_rate=1e-3, show_progress_bar=False)
    assert not all(torch.equal(a, b) for a, b in zip(before, model.model_body.parameters(), strict=True))


def test_fit_bad_input(tiny_model_dir):
    model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    with pytest.raises(ValueError, match=r"x_train has 8 texts but y_train 3 labels"):
        model.fit(X, [0, 1, 0], num_epochs=1)
    with pytest.raises(TypeError, match=r"'x_train' must be a list"):
        model.fit("good movie", [0], num_epochs=1)
    with pytest.raises(ValueError, match=r"'num_epochs' must be positive ints"):
        model.fit(X, Y, num_epochs=0)


# ---- SetFitHead ----------------------------------------------------------------------------------------


def test_lazy_head_takes_its_width_from_the_first_input():
    torch.manual_seed(0)
    head = SetFitHead(out_features=3)
    assert head.in_features is None
    logits, probs = head(torch.randn(4, 16))
    assert head.in_features == 16 and logits.shape == (4, 3) and type(head.linear) is torch.nn.Linear
    np.testing.assert_allclose(probs.sum(-1).detach().numpy(), 1.0, rtol=1e-6)
    assert head.linear.bias.detach().tolist() == pytest.approx([0.01] * 3)  # setfit's initialisation


def test_lazy_head_trains_and_saves_in_a_model(tiny_model_dir, tmp_path):
    model = SetFitModel(SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body,
                        SetFitHead(in_features=None, out_features=2))
    with pytest.raises(ValueError, match=r"in_features=None and has not seen an embedding yet"):
        model.save_pretrained(str(tmp_path / "early"))
    model.fit(X, [1] * 4 + [0] * 4, num_epochs=2, show_progress_bar=False)
    assert model.model_head.in_features == 32
    model.save_pretrained(str(tmp_path / "lazy"))
    loaded = SetFitModel.from_pretrained(str(tmp_path / "lazy"), device="cpu")
    torch.testing.assert_close(loaded.predict_proba(TEXTS), model.predict_proba(TEXTS))


def test_head_width_mismatch_is_clear():
    with pytest.raises(ValueError, match=r"takes 8-wide embeddings but the body gives 32"):
        SetFitHead(in_features=8).build(32)
    with pytest.raises(ValueError, match=r"'in_features' must be None .* or a positive int; got 0"):
        SetFitHead(in_features=0)


def test_forward_temperature_overrides_and_dict_input():
    head = SetFitHead(in_features=4, out_features=2)
    x = torch.randn(3, 4)
    logits, _ = head(x)
    hot, _ = head(x, temperature=0.5)
    torch.testing.assert_close(hot, logits * (1.0 + head.eps) / (0.5 + head.eps))
    out = head({"sentence_embedding": x})
    assert set(out) == {"sentence_embedding", "logits", "probs"}  # setfit returns the features dict
    torch.testing.assert_close(out["logits"], logits)
    with pytest.raises(ValueError, match=r"'temperature' must be a number > 0; got -1"):
        head(x, temperature=-1)


def test_head_matches_setfits_on_the_same_weights():
    setfit = pytest.importorskip("setfit", reason="setfit 1.2.0 (the bench extra) is not installed")
    ours, theirs = SetFitHead(in_features=4, out_features=3), setfit.SetFitHead(4, 3, device="cpu")
    theirs.linear.load_state_dict(ours.linear.state_dict())
    x = torch.randn(5, 4)
    for temperature in (None, 0.3):
        for a, b in zip(ours(x, temperature=temperature), theirs(x, temperature=temperature), strict=True):
            torch.testing.assert_close(a, b)


# ---- encode ------------------------------------------------------------------------------------------


def test_encode_returns_a_tensor_for_a_differentiable_head(tiny_model_dir):
    torch_model = SetFitModel.from_pretrained(tiny_model_dir, use_differentiable_head=True, device="cpu")
    sklearn_model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    assert isinstance(torch_model.encode(TEXTS), torch.Tensor)
    assert isinstance(sklearn_model.encode(TEXTS), np.ndarray)
    assert isinstance(torch_model.encode(TEXTS, as_numpy=True), np.ndarray)
    np.testing.assert_allclose(torch_model.encode(TEXTS).numpy(), sklearn_model.encode(TEXTS), rtol=1e-5)
