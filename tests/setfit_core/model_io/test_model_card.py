"""Model cards: `SetFitModelCardData`, what the Trainer records in it and the `README.md` save_pretrained writes."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from setfit_core import SetFitModel, SetFitModelCardData, Trainer
from setfit_core.model_io.body_loading import default_model_path
from setfit_core.model_io.model_card import DEFAULT_TAGS, base_model_id, card_data_for_loaded_model
from setfit_core.model_io.model_card_render import ModelFacts, render_model_card
from tests.conftest import TINY_SPLITS

HUB_CARD = {"language": "en", "license": "apache-2.0", "dataset_id": "sst2", "dataset_name": "SST2"}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(single_torch_thread):
    """The tiny model gains nothing from threads (see `single_torch_thread`)."""


@pytest.fixture(scope="module")
def trained(tiny_model_dir):
    """(model, trainer, eval metrics): trained once with an eval set, so the probe baseline is scored too."""
    from setfit_core import TrainingArguments

    model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu",
                                        model_card_data=SetFitModelCardData(**HUB_CARD, model_id="me/tiny-sst2"))
    args = TrainingArguments(num_iterations=2, show_progress_bar=False, seed=0, num_epochs=(1, 2),
                             save_strategy="no", logging_steps=1)
    trainer = Trainer(model, args, train_dataset=TINY_SPLITS["train"], eval_dataset=TINY_SPLITS["eval"])
    trainer.train()
    return model, trainer, trainer.evaluate()


def split_card(text: str) -> tuple[dict, str]:
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.DOTALL)
    assert match, "the card starts with YAML front matter"
    return yaml.safe_load(match.group(1)), match.group(2)


def saved_card(model, directory, **kwargs) -> tuple[dict, str]:
    model.save_pretrained(str(directory), **kwargs)
    return split_card((directory / "README.md").read_text(encoding="utf-8"))


def test_a_trained_model_card_is_a_setfit_hub_card_with_labels_metrics_and_probe(trained, tmp_path):
    model, trainer, metrics = trained
    meta, body = saved_card(model, tmp_path / "m")
    assert meta["library_name"] == "setfit" and meta["pipeline_tag"] == "text-classification"
    assert meta["tags"] == list(DEFAULT_TAGS)
    assert {k: meta[k] for k in ("language", "license", "datasets", "metrics")} == {
        "language": "en", "license": "apache-2.0", "datasets": ["sst2"], "metrics": ["accuracy"]}
    assert "feature-extraction" not in meta.values(), "not the body's sentence-transformers card"
    assert meta["widget"] and all(w["text"] in TINY_SPLITS["eval"]["text"] for w in meta["widget"])
    [result] = meta["model-index"][0]["results"]
    assert result["dataset"] == {"name": "SST2", "type": "sst2", "split": "eval"}
    assert result["metrics"] == [{"type": "accuracy", "value": metrics["accuracy"], "name": "Accuracy"}]

    assert "| negative | <ul><li>'bad movie'</li><li>'awful film'</li><li>'poor plot'</li></ul> |" in body
    assert "| positive | <ul><li>'good movie'</li>" in body
    assert "### Frozen-probe baseline" in body
    probe = trainer.probe_metrics["accuracy"]
    assert model.model_card_data.probe_results_dict == {"eval_accuracy": probe}
    assert re.search(rf"\| eval \| Accuracy \| {metrics['accuracy']:g}\S* \| {probe:g}\S* \|", body)
    assert "- num_iterations: 2" in body and "- batch_size: (16, 2)" in body and "output_dir" not in body
    assert "| Step | Training Loss | Validation Loss |" in body  # phase 1's loss log, one row per logged step
    assert 'SetFitModel.from_pretrained("me/tiny-sst2")' in body and "from setfit import" not in body
    assert re.search(r"- Sentence Transformers: \d", body) and "- setfit_core: " in body


def test_the_model_index_is_one_the_hub_reads(trained, tmp_path):
    from huggingface_hub import ModelCard

    model, _, metrics = trained
    model.save_pretrained(str(tmp_path / "m"))
    card = ModelCard.load(tmp_path / "m" / "README.md")
    [result] = card.data.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_split) == ("accuracy", metrics["accuracy"], "eval")
    assert card.data.library_name == "setfit" and card.data.pipeline_tag == "text-classification"


def test_the_setfit_section_only_with_setfit_compatible(trained, tmp_path):
    model, _, _ = trained
    _, plain = saved_card(model, tmp_path / "plain")
    _, compatible = saved_card(model, tmp_path / "compatible", setfit_compatible=True)
    assert "from setfit import SetFitModel" not in plain
    assert "from setfit import SetFitModel" in compatible and "model_head.pkl" in compatible
    assert "from setfit_core import SetFitModel" in plain and "from setfit_core import SetFitModel" in compatible


def test_create_model_card_writes_the_card_with_its_title(tiny_model_dir, tmp_path):
    model = SetFitModel.from_pretrained(tiny_model_dir)
    model.create_model_card(tmp_path / "new" / "dir", model_name="My SetFit model")
    card = (tmp_path / "new" / "dir" / "README.md").read_text()
    assert card.startswith("---\n") and "My SetFit model" in card
    assert card == model.generate_model_card()


def test_the_same_model_writes_the_same_card(trained, tmp_path):
    model, _, _ = trained
    model.save_pretrained(str(tmp_path / "a"))
    model.save_pretrained(str(tmp_path / "b"))
    assert (tmp_path / "a" / "README.md").read_bytes() == (tmp_path / "b" / "README.md").read_bytes()


def test_evaluating_another_dataset_adds_its_split(trained):
    model, trainer, _ = trained
    before = dict(model.model_card_data.eval_results_dict)
    test = trainer.evaluate(TINY_SPLITS["test"])
    assert model.model_card_data.eval_results_dict == {**before, "test_accuracy": test["accuracy"]}
    trainer.evaluate(TINY_SPLITS["test"], metric_key_prefix="holdout")
    assert "holdout_accuracy" in model.model_card_data.eval_results_dict


def test_a_model_without_training_saves_a_valid_card(tiny_model_dir, tmp_path):
    model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    meta, body = saved_card(model, tmp_path / "m")
    assert meta["library_name"] == "setfit" and meta["tags"] == list(DEFAULT_TAGS) and "model-index" not in meta
    assert "base_model" not in meta, "a local directory's origin is unknown offline"
    assert body.startswith("\n# SetFit Model for Text Classification")
    assert "## Evaluation" not in body and "### Model Labels" not in body and "### Training Hyperparameters" not in body


def test_a_head_fitted_with_fit_lists_its_labels(tiny_model_dir, tmp_path):
    model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    model.fit(TINY_SPLITS["train"]["text"], TINY_SPLITS["train"]["label"], num_epochs=1)
    _, body = saved_card(model, tmp_path / "m")
    assert "### Model Labels\n| Label |\n|:---|\n| negative |\n| positive |" in body


def test_card_data_round_trips_as_json_and_through_save_and_load(trained, tmp_path):
    model, _, _ = trained
    data = model.model_card_data
    assert SetFitModelCardData.from_dict(json.loads(json.dumps(data.to_dict()))) == data
    custom = SetFitModelCardData(**HUB_CARD, model_name="My tiny model", tags=["sentiment"], st_id="org/base")
    custom.post_training_eval_results({"eval_accuracy": 0.5})  # names come back from the model-index
    model.model_card_data = custom
    try:
        model.save_pretrained(str(tmp_path / "m"))
    finally:
        model.model_card_data = data
    loaded = SetFitModel.from_pretrained(str(tmp_path / "m"), device="cpu").model_card_data
    given = ("language", "license", "dataset_id", "dataset_name", "model_name", "st_id")
    assert {k: getattr(loaded, k) for k in given} == {k: getattr(custom, k) for k in given}
    assert loaded.all_tags == [*DEFAULT_TAGS, "sentiment"]
    override = SetFitModelCardData(language="de")
    assert SetFitModel.from_pretrained(str(tmp_path / "m"), device="cpu",
                                       model_card_data=override).model_card_data is override


def test_base_model_is_inferred_offline(tiny_model_dir):
    assert base_model_id(None) == "sentence-transformers/all-MiniLM-L6-v2"
    assert base_model_id(default_model_path()) == "sentence-transformers/all-MiniLM-L6-v2"
    assert base_model_id("paraphrase-mpnet-base-v2") == "sentence-transformers/paraphrase-mpnet-base-v2"
    assert base_model_id("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    assert base_model_id(tiny_model_dir) is None
    bundled = card_data_for_loaded_model(None, None, default_model_path())
    assert bundled.st_id == "sentence-transformers/all-MiniLM-L6-v2"
    given = SetFitModelCardData(st_id="org/mine")
    assert card_data_for_loaded_model(given, None, default_model_path()).st_id == "org/mine"


@pytest.mark.parametrize(("values", "match"), [
    ({"model_id": "no-owner"}, r"'model_id' must be a Hub model id with its owner.*got 'no-owner'"),
    ({"language": 3}, r"'language' must be a language code or a list of them.*got 3"),
    ({"tags": "setfit"}, r"'tags' must be a list of strings; got 'setfit'"),
    ({"dataset_id": "a/b/c"}, r"'dataset_id' must be a Hub dataset id.*got 'a/b/c'"),
    ({"license": ["mit"]}, r"'license' must be a string or None; got \['mit'\]"),
])
def test_bad_card_data_names_the_value(values, match):
    with pytest.raises(ValueError, match=match):
        SetFitModelCardData(**values)


def test_bad_card_data_arguments(tiny_model_dir):
    with pytest.raises(ValueError, match=r"unknown SetFitModelCardData fields \['colour'\]"):
        SetFitModelCardData.from_dict({"colour": "red"})
    with pytest.raises(TypeError, match="'model_card_data' must be a setfit_core.SetFitModelCardData; got dict"):
        SetFitModel.from_pretrained(tiny_model_dir, device="cpu", model_card_data={"language": "en"})


def test_multi_label_rows_and_awkward_texts_render_safely():
    data = SetFitModelCardData()
    texts = ["a | b", "<b>bold</b>", "line\nbreak", "x" * 300]
    data.record_train_data(texts, np.array([[1, 0], [1, 1], [0, 1], [0, 1]]), ["news", "sport"])
    assert data.train_set_sentences_per_label_list == [{"Label": "news", "Training Sample Count": 2},
                                                       {"Label": "sport", "Training Sample Count": 3}]
    data.set_widget_examples(texts)
    facts = ModelFacts(labels=["news", "sport"], head_class="OneVsRestClassifier(LogisticRegression)",
                       multi_target_strategy="one-vs-rest")
    card = render_model_card(data, facts)
    meta, body = split_card(card)
    assert meta["inference"] is False and meta["widget"][2] == {"text": "line\nbreak"}
    labels = body.split("### Model Labels\n")[1].split("\n\n")[0].splitlines()
    assert len(labels) == 4, "one table row per label: no raw newline or pipe breaks the table"
    assert "'a \\| b'" in labels[2] and "&lt;b&gt;bold&lt;/b&gt;" in labels[2] and "'line\\nbreak'" in labels[3]
    assert "x" * 198 + "…" in labels[3] and "x" * 200 not in labels[3]
    assert "- **Multi-label strategy:** one-vs-rest" in body


def test_the_loss_log_is_one_row_a_step_and_marks_the_body_kept():
    data = SetFitModelCardData()
    data.set_train_log([{"step": 1, "embedding_loss": 0.5, "learning_rate": 1e-5},
                        {"step": 2, "eval_embedding_loss": 0.3}, {"step": 4, "embedding_loss": 0.1},
                        {"step": 4, "eval_embedding_loss": 0.2}, {"step": 6, "eval_embedding_loss": 0.2}],
                       best_at_end=True)
    assert data.eval_lines_list[2] == {"Step": 4, "Training Loss": 0.1, "Validation Loss": 0.2}
    assert data.best_model_step == 4, "the first step with the lowest eval loss"
    _, body = split_card(render_model_card(data, ModelFacts()))
    assert "| **4** | **0.1** | **0.2** |" in body and "| 1 | 0.5 | - |" in body
    assert "The bold row denotes the saved checkpoint." in body
