"""A model's ``README.md``: a Hub model card (YAML front matter + markdown) rendered from `SetFitModelCardData`
and the facts of the saved directory (`ModelFacts`), offline and deterministically.

The front matter is what the Hub reads: ``library_name: setfit``, ``pipeline_tag: text-classification``,
setfit's tags, ``base_model``, ``datasets``, ``metrics``, ``language``, ``license`` and, once the model was
evaluated, a ``model-index`` with the results per split. The body follows setfit 1.2.0's card: labels with
examples, evaluation (and the frozen-probe baseline), how to load the model, training set, data hashes,
hyperparameters, phase 1's loss log, library versions. No date or time goes in: the same model and card data
give the same bytes, which the pipeline's content-addressed model stage relies on.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from setfit_core.model_io.model_card import README_FILE, SetFitModelCardData

_EXAMPLE_CHARS = 200  # a label example longer than this is cut in the card
_SETFIT_PAPER = """```bibtex
@article{https://doi.org/10.48550/arxiv.2209.11055,
    doi = {10.48550/ARXIV.2209.11055},
    url = {https://arxiv.org/abs/2209.11055},
    author = {Tunstall, Lewis and Reimers, Nils and Jo, Unso Eun Seo and Bates, Luke and Korat, Daniel and Wasserblat, Moshe and Pereg, Oren},
    keywords = {Computation and Language (cs.CL), FOS: Computer and information sciences, FOS: Computer and information sciences},
    title = {Efficient Few-Shot Learning Without Prompts},
    publisher = {arXiv},
    year = {2022},
    copyright = {Creative Commons Attribution 4.0 International}
}
```"""  # noqa: E501


@dataclass(frozen=True)
class ModelFacts:
    """What the saved directory holds, as far as the card tells: read from the model or from the files."""

    labels: list[str] | None = None
    head_class: str | None = None  # e.g. "LogisticRegression", "OneVsRestClassifier(LogisticRegression)"
    multi_target_strategy: str | None = None
    max_seq_length: int | None = None
    setfit_compatible: bool = False  # the directory holds setfit 1.x's model_head.pkl
    onnx_file: str | None = None  # e.g. "onnx/sentence_embedding.onnx"
    body_ref: str | None = None  # where a pipeline model's body lives, relative to the directory


def facts_of_model(model: Any, setfit_compatible: bool = False, onnx_file: str | None = None) -> ModelFacts:
    """The facts of an in-memory `SetFitModel` saved with `setfit_compatible`."""
    return ModelFacts(
        labels=[str(label) for label in model.labels] if model.labels is not None else None,
        head_class=_estimator_name(model.model_head),
        multi_target_strategy=model.multi_target_strategy,
        max_seq_length=getattr(model.model_body, "max_seq_length", None),
        setfit_compatible=setfit_compatible,
        onnx_file=onnx_file,
    )


def facts_of_directory(model_dir: str | os.PathLike, max_seq_length: int | None = None) -> ModelFacts:
    """The facts of a model directory, read from its ``config_setfit.json``, ``model_head.json`` and
    ``body_ref.json``; nothing is loaded. `max_seq_length`: the body's (in its ``sentence_bert_config.json``)."""
    from setfit_core.model_io.body_ref import read_body_ref

    config = _read_json(Path(model_dir) / "config_setfit.json")
    head = config.get("head") if isinstance(config.get("head"), dict) else {}
    if head.get("type") == "differentiable":
        head_class = "SetFitHead"
    else:
        spec = _read_json(Path(model_dir) / "model_head.json").get("estimator") or {}
        inner = spec.get("estimator") if isinstance(spec.get("estimator"), dict) else None
        head_class = f"{spec.get('type')}({inner.get('type')})" if inner else spec.get("type")
    ref = read_body_ref(model_dir)
    onnx = config.get("onnx") if isinstance(config.get("onnx"), dict) else {}
    labels = config.get("labels")
    return ModelFacts(
        labels=[str(label) for label in labels] if isinstance(labels, list) else None,
        head_class=head_class,
        multi_target_strategy=config.get("multi_target_strategy"),
        max_seq_length=max_seq_length,
        onnx_file=onnx.get("file"),
        body_ref=ref.path if ref is not None else None,
    )


def save_model_card(model: Any, directory: str | os.PathLike, setfit_compatible: bool = False) -> Path:
    """Write the card of `model`, just saved into `directory` (its ONNX graph too, if the directory's
    ``config_setfit.json`` records one)."""
    onnx = _read_json(Path(directory) / "config_setfit.json").get("onnx")
    data = getattr(model, "model_card_data", None) or SetFitModelCardData()
    facts = facts_of_model(model, setfit_compatible, onnx.get("file") if isinstance(onnx, dict) else None)
    return write_model_card(directory, data, facts)


def write_model_card(directory: str | os.PathLike, data: SetFitModelCardData, facts: ModelFacts) -> Path:
    """Write (or replace) ``README.md`` in `directory`; returns its path."""
    path = Path(directory) / README_FILE
    path.write_text(render_model_card(data, facts), encoding="utf-8")
    return path


def render_model_card(data: SetFitModelCardData, facts: ModelFacts) -> str:
    meta = yaml.safe_dump(front_matter(data, facts), sort_keys=False, allow_unicode=True, width=100).strip()
    sections = [f"# {data.display_name}", _intro(data, facts), _details(data, facts), _labels(data, facts),
                _evaluation(data), _uses(data, facts), _training(data), "## Citation\n\n### BibTeX\n" + _SETFIT_PAPER]
    return f"---\n{meta}\n---\n\n" + "\n\n".join(s for s in sections if s) + "\n"


# ---- front matter -------------------------------------------------------------------------------------------
def front_matter(data: SetFitModelCardData, facts: ModelFacts) -> dict[str, Any]:
    """The card's metadata, in setfit's order; fields without a value are left out."""
    meta: dict[str, Any] = {}
    if data.language:
        meta["language"] = data.language
    if data.license:
        meta["license"] = data.license
    meta.update(library_name=data.library_name, tags=data.all_tags)
    if data.dataset_id:
        meta["datasets"] = [data.dataset_id]
    meta.update(metrics=list(data.metrics), pipeline_tag=data.pipeline_tag)
    if data.widget:
        meta["widget"] = [dict(w) for w in data.widget]
    if data.eval_results_dict:
        meta["model-index"] = model_index(data)
    if data.st_id:
        meta["base_model"] = data.st_id
    meta["inference"] = facts.multi_target_strategy is None  # the Hub widget shows one label per text
    return meta


def model_index(data: SetFitModelCardData) -> list[dict[str, Any]]:
    """The Hub's ``model-index``: one result per evaluated split, its metrics as recorded."""
    dataset = {"name": data.dataset_name or data.dataset_id or "Unknown", "type": data.dataset_id or "unknown"}
    if data.dataset_revision:
        dataset["revision"] = data.dataset_revision
    results = []
    for split, scores in _by_split(data.eval_results_dict).items():
        results.append({
            "task": {"type": "text-classification", "name": data.task_name or "Text Classification"},
            "dataset": {**dataset, "split": split},
            "metrics": [{"type": name, "value": value, "name": _metric_title(name)} for name, value in scores.items()],
        })
    return [{"name": data.display_name, "results": results}]


# ---- sections -----------------------------------------------------------------------------------------------
def _intro(data: SetFitModelCardData, facts: ModelFacts) -> str:
    text = "This is a [SetFit](https://github.com/huggingface/setfit) model"
    if dataset := _dataset_link(data):
        text += f" trained on the {dataset} dataset"
    text += f" that can be used for {data.task_name or 'Text Classification'}, trained with setfit_core."
    if data.st_id:
        text += (f" It uses [{data.st_id}](https://huggingface.co/{data.st_id}) as the Sentence Transformer "
                 "embedding model.")
    if facts.head_class:
        text += f" A {facts.head_class} instance is used for classification."
    return text + (
        "\n\nThe model has been trained using an efficient few-shot learning technique that involves:\n\n"
        "1. Fine-tuning a [Sentence Transformer](https://www.sbert.net) with contrastive learning.\n"
        "2. Training a classification head with features from the fine-tuned Sentence Transformer."
    )


def _details(data: SetFitModelCardData, facts: ModelFacts) -> str:
    items = {"Model Type": "SetFit"}
    if data.st_id:
        items["Sentence Transformer body"] = f"[{data.st_id}](https://huggingface.co/{data.st_id})"
    if facts.head_class:
        items["Classification head"] = f"a {facts.head_class} instance"
    if facts.multi_target_strategy:
        items["Multi-label strategy"] = facts.multi_target_strategy
    if facts.max_seq_length:
        items["Maximum Sequence Length"] = f"{facts.max_seq_length} tokens"
    if num_classes := data.num_classes or (len(facts.labels) if facts.labels else None):
        items["Number of Classes"] = f"{num_classes} classes"
    if dataset := _dataset_link(data):
        items["Training Dataset"] = dataset
    if data.language:
        languages = [data.language] if isinstance(data.language, str) else data.language
        items["Language" + ("s" if len(languages) > 1 else "")] = ", ".join(languages)
    if data.license:
        items["License"] = data.license
    lines = "\n".join(f"- **{name}:** {value}" for name, value in items.items())
    return (f"## Model Details\n\n### Model Description\n{lines}\n\n### Model Sources\n\n"
            "- **Repository:** [SetFit on GitHub](https://github.com/huggingface/setfit)\n"
            "- **Paper:** [Efficient Few-Shot Learning Without Prompts](https://arxiv.org/abs/2209.11055)\n"
            "- **Blogpost:** [SetFit: Efficient Few-Shot Learning Without Prompts](https://huggingface.co/blog/setfit)")


def _labels(data: SetFitModelCardData, facts: ModelFacts) -> str:
    if data.label_example_list:
        rows = [{"Label": row["Label"], "Examples": _examples(row["Examples"])} for row in data.label_example_list]
    elif facts.labels:
        rows = [{"Label": label} for label in facts.labels]
    else:
        return ""
    return "### Model Labels\n" + _table(rows)


def _evaluation(data: SetFitModelCardData) -> str:
    if not data.eval_results_dict:
        return ""
    rows = [{"Split": split, **{_metric_title(k): v for k, v in scores.items()}}
            for split, scores in _by_split(data.eval_results_dict).items()]
    text = "## Evaluation\n\n### Metrics\n" + _table(rows)
    probe = _by_split(data.probe_results_dict)
    compared = [{"Split": split, "Metric": _metric_title(name), "This model": value, "Frozen probe": probe[split][name],
                 "Difference": value - probe[split][name]}
                for split, scores in _by_split(data.eval_results_dict).items()
                for name, value in scores.items() if name in probe.get(split, {})]
    if compared:
        text += ("\n\n### Frozen-probe baseline\nThe untouched base body with a LogisticRegression head, trained and "
                 "scored on the same data: what the body knew before contrastive fine-tuning.\n\n" + _table(compared))
    return text


def _uses(data: SetFitModelCardData, facts: ModelFacts) -> str:
    where = json.dumps(data.model_id or "path/to/this/model")
    example = json.dumps((data.predict_example or "I loved the spiderman movie!").replace("`", "'"),
                         ensure_ascii=False)
    text = ("## Uses\n\n### Direct Use for Inference\n\nWith setfit_core (`pip install setfit-pipeline`):\n\n"
            f"```python\nfrom setfit_core import SetFitModel\n\nmodel = SetFitModel.from_pretrained({where})\n"
            f"preds = model({example})\n```")
    if facts.onnx_file:
        text += (f"\n\nThe body is also exported to ONNX (`{facts.onnx_file}`); to predict through onnxruntime, "
                 f"without torch weights:\n\n```python\nmodel = SetFitModel.from_pretrained({where}, "
                 f"backend=\"onnx\")\n```")
    if facts.body_ref:
        text += (f"\n\nThe body's weights are not in this directory: `body_ref.json` points at `{facts.body_ref}`, "
                 "so the model loads in place, inside its artifacts root.")
    if facts.setfit_compatible:
        text += ("\n\n### With setfit 1.x\n\nThis directory also holds `model_head.pkl`, which setfit reads "
                 "(a pickle: load it only from a source you trust):\n\n```bash\npip install setfit\n```\n\n"
                 f"```python\nfrom setfit import SetFitModel\n\nmodel = SetFitModel.from_pretrained({where})\n"
                 f"preds = model({example})\n```")
    return text


def _training(data: SetFitModelCardData) -> str:
    parts = ["## Training Details"]
    if data.train_set_metrics_list:
        parts.append("### Training Set Metrics\n" + _table(data.train_set_metrics_list)
                     + ("\n\n" + _table(data.train_set_sentences_per_label_list)
                        if data.train_set_sentences_per_label_list else ""))
    if data.dataset_hashes:
        rows = [{"Split": split, "Rows": info.get("rows") if info.get("rows") is not None else "-",
                 "Content sha256": f"`{info['sha256']}`"} for split, info in data.dataset_hashes.items()]
        parts.append("### Training and Evaluation Data\n" + _table(rows))
    if data.hyperparameters:
        parts.append("### Training Hyperparameters\n" + "\n".join(
            f"- {name}: {_value(value)}" for name, value in data.hyperparameters.items()))
    if data.eval_lines_list:
        rows = [{k: f"**{_value(v)}**" if row.get("Step") == data.best_model_step else v for k, v in row.items()}
                for row in data.eval_lines_list]
        bold = "\n* The bold row denotes the saved checkpoint." if data.best_model_step is not None else ""
        parts.append("### Training Results\n" + _table(rows) + bold)
    parts.append("### Framework Versions\n" + "\n".join(
        f"- {_LIBRARY_NAMES.get(k, k)}: {v}" for k, v in data.version.items()))
    return "\n\n".join(parts)


_LIBRARY_NAMES = {"python": "Python", "setfit_core": "setfit_core", "sentence_transformers": "Sentence Transformers",
                  "transformers": "Transformers", "torch": "PyTorch", "scikit_learn": "scikit-learn",
                  "tokenizers": "Tokenizers"}


# ---- formatting ---------------------------------------------------------------------------------------------
def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    headers = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(":---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(h, "")) for h in headers) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return " ".join(_value(value).split()).replace("|", "\\|")


def _value(value: Any) -> str:
    if isinstance(value, float):  # as setfit's card: at most 4 decimals, small learning rates as they are
        text = repr(value)
        return f"{value:.4f}" if "e" not in text and len(text.partition(".")[2]) > 4 else text
    if isinstance(value, list) and len(value) == 2 and not any(isinstance(v, (list, dict)) for v in value):
        return f"({_value(value[0])}, {_value(value[1])})"  # a (phase 1, phase 2) TrainingArguments tuple
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _examples(texts: Sequence[str]) -> str:
    cut = [t if len(t) <= _EXAMPLE_CHARS else t[: _EXAMPLE_CHARS - 1] + "…" for t in texts]
    return "<ul>" + "".join(f"<li>{html.escape(repr(t), quote=False)}</li>" for t in cut) + "</ul>"


def _by_split(results: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """``{"eval_accuracy": .9, "test_macro_f1": .8}`` -> ``{"eval": {"accuracy": .9}, "test": {"macro_f1": .8}}``."""
    out: dict[str, dict[str, float]] = {}
    for key, value in results.items():
        split, _, name = key.partition("_")
        out.setdefault(split, {})[name or split] = value
    return out


def _dataset_link(data: SetFitModelCardData) -> str | None:
    name = data.dataset_name or data.dataset_id
    return f"[{name}](https://huggingface.co/datasets/{data.dataset_id})" if data.dataset_id else name


def _metric_title(name: str) -> str:
    return {"macro_f1": "Macro F1", "f1": "F1"}.get(name, name.replace("_", " ").title())


def _estimator_name(head: Any) -> str | None:
    if head is None:
        return None
    inner = getattr(head, "estimator", None) or getattr(head, "base_estimator", None)
    name = type(head).__name__
    return f"{name}({type(inner).__name__})" if inner is not None and not isinstance(inner, str) else name


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


__all__ = ["ModelFacts", "facts_of_directory", "facts_of_model", "front_matter", "model_index", "render_model_card",
           "save_model_card", "write_model_card"]
