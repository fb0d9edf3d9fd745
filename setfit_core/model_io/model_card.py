"""`SetFitModelCardData`: what a model's card (its ``README.md``) says, under setfit 1.2.0's field names.

The user gives the Hub-facing fields (`language`, `license`, `model_id`, `dataset_id`, ...), through
``SetFitModel.from_pretrained(..., model_card_data=...)`` or ``SetFitModel(..., model_card_data=...)``.
`from_pretrained` fills in the base model (`st_id`); the `Trainer` the training data, hyperparameters, loss
log, frozen-probe baseline and evaluation results; the pipeline's export stage the same from its stages.
`save_pretrained` renders it (`model_card_render`). Nothing here touches the network: where setfit asks the
Hub whether an id exists, this trusts what it is given, and chooses widget examples without randomness, so
the same training writes the same card.

    data = SetFitModelCardData(language="en", license="apache-2.0", dataset_id="sst2")
    SetFitModelCardData.from_dict(data.to_dict()) == data    # plain JSON values, round trip
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import logging
import os
import platform
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

DEFAULT_TAGS = ("setfit", "sentence-transformers", "text-classification", "generated_from_setfit_trainer")
README_FILE = "README.md"
EXAMPLES_PER_LABEL = 3
WIDGET_EXAMPLES = 5
# setfit's Trainer leaves these out of the card's hyperparameters: paths, logging and saving settings.
IGNORED_ARGS = ("output_dir", "logging_dir", "logging_strategy", "logging_first_step", "logging_steps",
                "eval_strategy", "eval_steps", "eval_delay", "save_strategy", "save_steps", "save_total_limit",
                "metric_for_best_model", "greater_is_better", "report_to", "samples_per_label", "show_progress_bar",
                "run_name")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# distribution -> key in `version`, as setfit's card names them
_VERSIONED = {"sentence-transformers": "sentence_transformers", "transformers": "transformers", "torch": "torch",
              "scikit-learn": "scikit_learn", "tokenizers": "tokenizers"}


def framework_versions() -> dict[str, str]:
    """Python and the libraries that compute and load a model, as installed (a new dict each call)."""
    return dict(_installed_versions())


@functools.cache
def _installed_versions() -> dict[str, str]:
    # importlib.metadata scans site-packages (~7 ms a call), and every SetFitModel gets a card.
    from setfit_core import __version__

    found = {"python": platform.python_version(), "setfit_core": __version__}
    for dist, key in _VERSIONED.items():
        try:
            found[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


@dataclass
class SetFitModelCardData:
    """The model card's content. The first fields are given by the user, the rest filled as the model is
    loaded, trained and evaluated (`init=False`, as in setfit). All values are plain JSON values.

    Args:
        language: e.g. "en" or ["en", "de"].
        license: e.g. "apache-2.0", "mit".
        tags: Hub tags; setfit's four (`DEFAULT_TAGS`) are always written, these after them.
        model_name: the card's title, e.g. "SetFit with MiniLM on SST2" (default: built from `st_id` and the
            dataset).
        model_id: the Hub id the model is pushed to, "owner/name"; the card's loading snippet uses it.
        dataset_name, dataset_id, dataset_revision: the training dataset's pretty name, Hub id and revision.
        task_name: what the model does (default "Text Classification").
        st_id: the Hub id of the Sentence Transformer body it started from (default: inferred on load).
    """

    language: str | list[str] | None = None
    license: str | None = None
    tags: list[str] | None = field(default_factory=lambda: list(DEFAULT_TAGS))
    model_name: str | None = None
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_id: str | None = None
    dataset_revision: str | None = None
    task_name: str | None = None
    st_id: str | None = None

    # Filled by from_pretrained, the Trainer and the pipeline's export stage.
    hyperparameters: dict[str, Any] = field(default_factory=dict, init=False)
    eval_results_dict: dict[str, float] = field(default_factory=dict, init=False)  # "eval_accuracy": 0.9
    probe_results_dict: dict[str, float] = field(default_factory=dict, init=False)  # the frozen probe's, same keys
    eval_lines_list: list[dict[str, Any]] = field(default_factory=list, init=False)  # phase 1's loss log
    widget: list[dict[str, str]] = field(default_factory=list, init=False)
    predict_example: str | None = field(default=None, init=False)
    label_example_list: list[dict[str, Any]] = field(default_factory=list, init=False)
    train_set_metrics_list: list[dict[str, Any]] = field(default_factory=list, init=False)
    train_set_sentences_per_label_list: list[dict[str, Any]] = field(default_factory=list, init=False)
    dataset_hashes: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)  # split -> sha256, rows
    num_classes: int | None = field(default=None, init=False)
    best_model_step: int | None = field(default=None, init=False)
    metrics: list[str] = field(default_factory=lambda: ["accuracy"], init=False)
    pipeline_tag: str = field(default="text-classification", init=False)
    library_name: str = field(default="setfit", init=False)
    version: dict[str, str] = field(default_factory=framework_versions, init=False)

    def __post_init__(self) -> None:
        if self.language is not None and not _is_str_or_str_list(self.language):
            raise ValueError(f"'language' must be a language code or a list of them, e.g. 'en' or ['en', 'de']; "
                             f"got {self.language!r}")
        if self.tags is not None and not (isinstance(self.tags, list) and all(isinstance(t, str) for t in self.tags)):
            raise ValueError(f"'tags' must be a list of strings; got {self.tags!r}")
        for name in ("license", "model_name", "model_id", "dataset_name", "dataset_id", "dataset_revision",
                     "task_name", "st_id"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name!r} must be a string or None; got {value!r}")
        if self.model_id is not None and not _REPO_ID.match(self.model_id):
            raise ValueError(f"'model_id' must be a Hub model id with its owner, such as 'my-org/setfit-sst2'; "
                             f"got {self.model_id!r}")
        if self.dataset_id is not None and not _HUB_ID.match(self.dataset_id):
            raise ValueError(f"'dataset_id' must be a Hub dataset id such as 'sst2' or 'dair-ai/emotion'; "
                             f"got {self.dataset_id!r}")

    # ---- plain values ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SetFitModelCardData:
        """The inverse of `to_dict`; a key that is no field is an error naming it."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if unknown := sorted(set(values) - set(fields)):
            raise ValueError(f"unknown SetFitModelCardData fields {unknown}; valid: {sorted(fields)}")
        data = cls(**{k: v for k, v in values.items() if fields[k].init})
        for name, value in values.items():
            if not fields[name].init:
                setattr(data, name, value)
        return data

    @classmethod
    def from_front_matter(cls, meta: Mapping[str, Any]) -> SetFitModelCardData:
        """The Hub fields a saved card's front matter holds (those of a well-formed card; others are dropped)."""
        index = meta.get("model-index")
        entry = index[0] if isinstance(index, list) and index and isinstance(index[0], dict) else {}
        results = entry.get("results") if isinstance(entry.get("results"), list) else []
        dataset = results[0].get("dataset") if results and isinstance(results[0], dict) else None
        dataset = dataset if isinstance(dataset, dict) else {}
        datasets = meta.get("datasets")
        tags = meta.get("tags") if isinstance(meta.get("tags"), list) else []
        values = {
            "language": meta.get("language"),
            "license": meta.get("license"),
            "tags": [t for t in tags if isinstance(t, str)] or None,
            "dataset_id": datasets[0] if isinstance(datasets, list) and datasets else None,
            "dataset_name": dataset.get("name") if dataset.get("name") not in (None, "Unknown") else None,
            "st_id": meta.get("base_model"),
        }
        try:
            data = cls(**values)
        except ValueError as exc:
            logger.info("the saved model card's front matter is not reused: %s", exc)
            return cls()
        if isinstance(entry.get("name"), str) and entry["name"] != data.display_name:  # a name the user gave
            data.model_name = entry["name"]
        return data

    @property
    def display_name(self) -> str:
        """The card's title: `model_name`, else built from the base model and the dataset, as setfit does."""
        if self.model_name:
            return self.model_name
        if not self.st_id:
            return "SetFit Model for Text Classification"
        dataset = self.dataset_name or self.dataset_id
        return f"SetFit with {self.st_id}" + (f" on {dataset}" if dataset else "")

    @property
    def all_tags(self) -> list[str]:
        """setfit's four tags, then the user's, each once."""
        return list(dict.fromkeys([*DEFAULT_TAGS, *(self.tags or [])]))

    # ---- filled while training ---------------------------------------------------------------------------
    def record_train_data(self, texts: Sequence[str], label_ids: Any, labels: Sequence[Any] | None) -> None:
        """Label examples (the first `EXAMPLES_PER_LABEL` of each class), counts per label and word counts.

        `label_ids`: head indices (one per text), or multi-hot rows for multi-label; `labels`: what index i means
        (None: the index itself)."""
        rows = [list(row) if _is_row(row) else int(row) for row in label_ids]
        width = len(rows[0]) if rows and isinstance(rows[0], list) else None
        count = width or (len(labels) if labels is not None else (max(rows) + 1 if rows else 0))
        names = [str(labels[i]) if labels is not None else str(i) for i in range(count)]
        examples: dict[int, list[str]] = {i: [] for i in range(count)}
        totals = dict.fromkeys(range(count), 0)
        for text, row in zip(texts, rows, strict=True):
            for i in ([j for j, v in enumerate(row) if v] if width else [row]):
                totals[i] += 1
                if len(examples[i]) < EXAMPLES_PER_LABEL:
                    examples[i].append(str(text))
        self.num_classes = count
        self.label_example_list = [{"Label": names[i], "Examples": examples[i]} for i in range(count)]
        self.train_set_sentences_per_label_list = [{"Label": names[i], "Training Sample Count": totals[i]}
                                                   for i in range(count)]
        words = [len(str(t).split()) for t in texts] or [0]
        self.train_set_metrics_list = [{"Training set": "Word count", "Min": min(words),
                                        "Median": statistics.median(words), "Max": max(words)}]

    def set_widget_examples(self, texts: Sequence[str]) -> None:
        """Up to `WIDGET_EXAMPLES` texts spread evenly over `texts` (no randomness: the same data, the same
        card); the shortest is the loading snippet's example."""
        texts = [str(t) for t in texts if str(t).strip()]
        count = min(len(texts), WIDGET_EXAMPLES)
        picked = [texts[i * len(texts) // count] for i in range(count)]
        self.widget = [{"text": text} for text in picked]
        self.predict_example = min(picked, key=len) if picked else None

    def set_hyperparameters(self, args: Any, head_params: Mapping[str, Any] | None = None) -> None:
        """`TrainingArguments` (`to_dict()`), less `IGNORED_ARGS` and unset values; `head_params` when given."""
        values = {k: v for k, v in args.to_dict().items() if k not in IGNORED_ARGS and v is not None}
        if head_params:
            values["head_params"] = dict(head_params)
        self.hyperparameters = values

    def set_train_log(self, log: Sequence[Mapping[str, Any]], best_at_end: bool = False) -> None:
        """Phase 1's log rows (`{"step", "embedding_loss"}`, `{"step", "eval_embedding_loss"}`), one row a step.
        `best_at_end` (`load_best_model_at_end`): the first step with the lowest eval loss is the body kept."""
        rows: dict[int, dict[str, Any]] = {}
        for entry in log:
            if "step" not in entry:
                continue
            row = rows.setdefault(int(entry["step"]), {"Step": int(entry["step"]), "Training Loss": "-",
                                                       "Validation Loss": "-"})
            if "embedding_loss" in entry:
                row["Training Loss"] = float(entry["embedding_loss"])
            if "eval_embedding_loss" in entry:
                row["Validation Loss"] = float(entry["eval_embedding_loss"])
        self.eval_lines_list = [rows[step] for step in sorted(rows)]
        evaluated = [row for row in self.eval_lines_list if row["Validation Loss"] != "-"]
        if best_at_end and evaluated:
            self.best_model_step = min(evaluated, key=lambda row: row["Validation Loss"])["Step"]

    def set_best_model_step(self, step: int) -> None:
        self.best_model_step = step

    def post_training_eval_results(self, results: Mapping[str, Any]) -> None:
        """Add results keyed ``<split>_<metric>`` (e.g. ``eval_accuracy``); values that are no number are
        left out (a callable metric may return anything)."""
        self.eval_results_dict.update(_numbers(results))
        self.metrics = list(dict.fromkeys(key.split("_", 1)[1] for key in self.eval_results_dict if "_" in key))

    def set_probe_results(self, results: Mapping[str, Any], split: str = "eval") -> None:
        """The frozen-probe baseline's scores on `split` (`setfit_core.probe`)."""
        self.probe_results_dict.update(_numbers({f"{split}_{k}": v for k, v in results.items()}))

    def set_dataset_hashes(self, hashes: Mapping[str, str], rows: Mapping[str, int] | None = None) -> None:
        """Content hashes of the data splits the model was trained and evaluated on (the pipeline's)."""
        self.dataset_hashes = {split: {"sha256": digest, "rows": (rows or {}).get(split)}
                               for split, digest in hashes.items()}


# ---- loading ----------------------------------------------------------------------------------------------
def check_card_data(card_data: Any) -> SetFitModelCardData:
    """`card_data`, or a new empty one for None; anything else is an error."""
    if card_data is None:
        return SetFitModelCardData()
    if not isinstance(card_data, SetFitModelCardData):
        raise TypeError(f"'model_card_data' must be a setfit_core.SetFitModelCardData; got {type(card_data).__name__}")
    return card_data


def card_data_for_loaded_model(card_data: Any, model_id: str | None, location: str) -> SetFitModelCardData:
    """The card data of a model `from_pretrained` loads from `location` (the directory `model_id` named).

    The user's `card_data` wins; without it, a SetFit card in the directory gives back its Hub fields (so
    a saved and reloaded model keeps them). `st_id`, when not known yet, is inferred offline: the saved
    card's ``base_model``, else `model_id` itself when it names a plain sentence-transformers model."""
    saved = read_card_front_matter(location)
    data = check_card_data(card_data) if card_data is not None else SetFitModelCardData.from_front_matter(saved)
    if data.st_id is None:
        data.st_id = saved.get("base_model") if isinstance(saved.get("base_model"), str) else None
    if data.st_id is None and not _holds_a_head(location):
        data.st_id = base_model_id(model_id)
    return data


def read_card_front_matter(location: str | os.PathLike) -> dict[str, Any]:
    """The YAML front matter of a SetFit card in `location` (``library_name: setfit``); {} for none, another
    library's card (e.g. a sentence-transformers body's) or front matter that does not parse."""
    path = Path(location) / README_FILE
    if not path.is_file():
        return {}
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", path.read_text(encoding="utf-8"), re.DOTALL)
    try:
        meta = yaml.safe_load(match.group(1)) if match else None
    except yaml.YAMLError as exc:
        logger.info("ignoring the unreadable front matter of %s: %s", path, exc)
        return {}
    return meta if isinstance(meta, dict) and meta.get("library_name") == "setfit" else {}


def base_model_id(name_or_path: str | None) -> str | None:
    """The Hub id of a base sentence-transformers model as `from_pretrained` or a pipeline job names it: the
    bundled offline model's id for it (or None), a bare hub name under ``sentence-transformers/`` (as setfit
    does), None for any other local directory (its origin is unknown offline)."""
    from setfit_core.model_io.body_loading import OFFLINE_MODEL_HUB_IDS, default_model_path

    if name_or_path is None or str(name_or_path) in OFFLINE_MODEL_HUB_IDS:
        return OFFLINE_MODEL_HUB_IDS[0]
    text = os.path.expanduser(str(name_or_path))
    if os.path.isdir(text):
        try:
            bundled = Path(default_model_path()).resolve()
        except ModuleNotFoundError:
            return None
        return OFFLINE_MODEL_HUB_IDS[0] if Path(text).resolve() == bundled else None
    if text.startswith((".", "/", "~")) or not _HUB_ID.match(text):
        return None
    return text if "/" in text else f"sentence-transformers/{text}"


def _holds_a_head(location: str) -> bool:
    root = Path(location)
    return (root / "config_setfit.json").is_file() or any(root.glob("model_head.*"))


def _is_str_or_str_list(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _is_row(value: Any) -> bool:
    return hasattr(value, "__len__") and not isinstance(value, str)


def _numbers(results: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in results.items():
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[str(key)] = float(value)
    return out


__all__ = ["DEFAULT_TAGS", "SetFitModelCardData", "base_model_id", "card_data_for_loaded_model",
           "check_card_data", "framework_versions", "read_card_front_matter"]
