"""One frozen, JSON-plain config per stage, derived from `TrainingArguments` and the head settings.

Each config holds exactly the values its stage computes from, and each stage rebuilds its
`TrainingArguments` from its config alone (`stage_args`), so a value that is not in a stage's key
cannot influence that stage's output. Head settings never reach the pairs/body/embeddings configs:
a head-only change cannot change their keys.

Values that make no difference are normalised away (e.g. the batch size of the pairs stage only
matters when `max_steps` caps the pair count), so such a change does not force recomputation.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import os
from pathlib import Path
from typing import Any

from setfit_core.args import TrainingArguments
from setfit_core.artifacts import canonical_json, sha256_file
from setfit_core.losses import LOSSES, build_loss
from setfit_core.model_io.body_loading import resolve_model_location

logger = logging.getLogger(__name__)

# Distributions whose code computes each stage's output: upgrading one recomputes only those stages.
_TORCH_STACK = ("torch", "transformers", "sentence-transformers")
STAGE_PACKAGES = {
    "pairs": ("numpy",),
    "body": _TORCH_STACK,
    "embeddings": _TORCH_STACK,
    "head_sklearn": ("numpy", "scikit-learn"),
    "head_differentiable": ("numpy", "torch"),
    "head_end_to_end": _TORCH_STACK,
    "evaluation_sklearn": ("numpy", "scikit-learn"),
    "evaluation_differentiable": ("numpy", "scikit-learn", "torch"),
    "evaluation_end_to_end": (*_TORCH_STACK, "scikit-learn"),
    "model": (),
    # A model stage with an ONNX export traces the body and quantizes it.
    "model_onnx": (*_TORCH_STACK, "onnx", "onnxruntime"),
}
# Which stage keys each TrainingArguments field can enter (a field reaches a key only where its stage
# uses it, e.g. `margin` only with a triplet loss). A test checks that every field is listed, so a new
# field cannot silently stay out of the keys.
ARGS_BY_STAGE = {
    "pairs": ("sampling_strategy", "num_iterations", "max_steps", "batch_size", "seed"),
    "body": ("batch_size", "num_epochs", "body_learning_rate", "loss", "loss_params", "margin", "distance_metric",
             "max_steps", "warmup_proportion", "max_length", "use_amp", "seed", "samples_per_label", "preset",
             "sampling_strategy",
             "eval_strategy", "eval_steps", "eval_delay", "eval_max_steps", "load_best_model_at_end",
             "gradient_checkpointing"),
    "head": ("head_learning_rate", "batch_size", "num_epochs", "l2_weight", "seed", "end_to_end",
             "body_learning_rate", "max_length"),
}
# Fields that change no artifact: output paths, logging, progress bars, intermediate checkpoints (the
# pipeline saves the body once, as its stage), and best-model selection settings the body loop does not read.
UNKEYED_ARGS = ("output_dir", "show_progress_bar", "report_to", "run_name", "logging_dir", "logging_strategy",
                "logging_first_step", "logging_steps", "save_strategy", "save_steps", "save_total_limit",
                "metric_for_best_model", "greater_is_better")
# setfit's defaults for the phase a rebuilt `TrainingArguments` does not use (never read by that stage).
_CLASSIFIER_PHASE_DEFAULTS = {"batch_size": 2, "num_epochs": 16, "body_learning_rate": 1e-5}


def versions(stage_kind: str) -> dict[str, str]:
    """Versions of the packages that compute a stage, plus setfit_core itself."""
    from setfit_core import __version__

    found = {"setfit_core": __version__}
    for dist in STAGE_PACKAGES[stage_kind]:
        found[dist] = _dist_version(dist)
    return found


@functools.cache
def _dist_version(dist: str) -> str:
    # importlib.metadata scans site-packages (~7 ms a call); installed versions do not change mid-process.
    return importlib.metadata.version(dist)


def loss_config(args: TrainingArguments) -> dict[str, Any]:
    """The loss by name plus every constructor value it really gets: `margin`/`distance_metric` only
    where the loss takes them, `loss_params` merged in (`build_loss` decides, so the key cannot drift)."""
    name = args.loss_name
    if name not in LOSSES or LOSSES[name] is not args.loss:
        raise ValueError(
            f"the pipeline needs a built-in loss (one of {list(LOSSES)}) so it can be named in a stage key; "
            f"got {args.loss!r}"
        )
    loss = build_loss(args.loss, args.margin, args.distance_metric, args.loss_params)
    return {"name": name, "kind": loss.kind, "params": loss.config()}


def pairs_config(args: TrainingArguments) -> dict[str, Any]:
    loss = loss_config(args)
    if loss["kind"] == "group":  # triplet/SupCon losses train on label-grouped rows: nothing to sample
        return {"kind": "group"}
    capped = args.max_steps > 0
    return {
        "kind": "pair",
        "sampling_strategy": args.sampling_strategy,
        "num_iterations": args.num_iterations,
        "max_steps": args.max_steps,
        "batch_size": args.embedding_batch_size if capped else None,  # only caps pairs with max_steps
        "seed": args.seed,
    }


def body_config(args: TrainingArguments, model_identity: dict[str, str], with_eval: bool) -> dict[str, Any]:
    loss = loss_config(args)
    config: dict[str, Any] = {
        "model": model_identity,
        "loss": loss,
        "batch_size": args.embedding_batch_size,
        "num_epochs": args.embedding_num_epochs,
        "body_learning_rate": args.body_embedding_learning_rate,
        "max_steps": args.max_steps,
        "warmup_proportion": args.warmup_proportion,
        "max_length": args.max_length,
        "use_amp": args.use_amp,
        "seed": args.seed,
        "samples_per_label": args.samples_per_label if loss["kind"] == "group" else None,
        # Group losses batch by label: setfit's groups, or label-balanced batches (the fast preset).
        "group_sampling": _group_sampling(args) if loss["kind"] == "group" else None,
        "eval": None,
    }
    if args.gradient_checkpointing:
        # The same training up to float rounding (engine/gradient_checkpointing.py), but the stage must know to run it;
        # keyed only when on, so the keys of bodies trained without it stay what they were.
        config["gradient_checkpointing"] = True
    if with_eval:  # phase-1 evaluation only changes the body when it picks the best checkpoint
        config["eval"] = {
            "eval_strategy": args.eval_strategy,
            "eval_steps": args.eval_steps,
            "eval_delay": args.eval_delay,
            "eval_max_steps": args.eval_max_steps,
            "load_best_model_at_end": args.load_best_model_at_end,
            "sampling_strategy": args.sampling_strategy,
            "num_iterations": args.num_iterations,
        }
    return config


def _group_sampling(args: TrainingArguments) -> str:
    # Only "label_balanced" changes how group losses batch; the pair strategies do not apply to them.
    return "label_balanced" if args.sampling_strategy == "label_balanced" else "grouped"


def body_uses_eval(args: TrainingArguments, has_eval_data: bool) -> bool:
    return has_eval_data and args.eval_strategy != "no"


def embeddings_config(splits: list[str]) -> dict[str, Any]:
    # Raw (unnormalised) embeddings, as SetFitModel.encode with normalize_embeddings=False gives them.
    return {"splits": list(splits), "normalize_embeddings": False}


def head_config(args: TrainingArguments, head_params: dict[str, Any], differentiable: bool) -> dict[str, Any]:
    if not differentiable:
        return {"type": "sklearn", "head_params": dict(head_params), "needs_body": False}
    end_to_end = bool(args.end_to_end)
    config: dict[str, Any] = {
        "type": "differentiable",
        "head_params": dict(head_params),
        "end_to_end": end_to_end,
        "needs_body": end_to_end,  # end_to_end fine-tunes the body too, so it cannot train on cached embeddings
        "head_learning_rate": args.head_learning_rate,
        "batch_size": args.classifier_batch_size,
        "num_epochs": args.classifier_num_epochs,
        "l2_weight": args.l2_weight,
        "seed": args.seed,
    }
    if end_to_end:
        config.update(body_learning_rate=args.body_classifier_learning_rate, max_length=args.max_length)
    return config


def evaluation_config(metric: str, metric_kwargs: dict[str, Any], splits: list[str], end_to_end: bool) -> dict:
    # "probe": the stage also scores the frozen-probe baseline (evaluation_stage.py); stages from before it
    # lack that score, so the flag is keyed and they are recomputed rather than reused.
    return {"metric": metric, "metric_kwargs": dict(metric_kwargs), "splits": list(splits), "needs_body": end_to_end,
            "probe": True}


def model_config(self_contained: bool = False, onnx: dict[str, Any] | None = None) -> dict[str, Any]:
    """`self_contained`: the body's files are copied in, instead of referenced (`export_stage`). `onnx`:
    ``{"quantize": None | "int8"}`` to also export the body as an ONNX graph; keyed only when given, so the
    keys of models without one stay what they were."""
    from setfit_core.model_io.onnx_export import DEFAULT_OPSET
    from setfit_core.model_io.setfit_format import FORMAT_VERSION

    config: dict[str, Any] = {"format_version": FORMAT_VERSION, "normalize_embeddings": False,
                              "self_contained": bool(self_contained)}
    if onnx is not None:
        config["onnx"] = {"quantize": onnx.get("quantize"), "opset": DEFAULT_OPSET}
    return config


def stage_args(config: dict[str, Any]) -> TrainingArguments:
    """`TrainingArguments` holding only what a body/head config says (everything else at its default).

    A phase-1 value goes into the embedding phase, a phase-2 value into the classifier phase;
    the other phase keeps its setfit default, which this stage never reads.
    """
    values: dict[str, Any] = {"show_progress_bar": False, "save_strategy": "no"}
    if "loss" in config:  # body
        values.update(
            loss=config["loss"]["name"],
            loss_params=config["loss"]["params"],  # every constructor value, so build_loss rebuilds the same loss
            batch_size=(config["batch_size"], _CLASSIFIER_PHASE_DEFAULTS["batch_size"]),
            num_epochs=(config["num_epochs"], _CLASSIFIER_PHASE_DEFAULTS["num_epochs"]),
            body_learning_rate=(config["body_learning_rate"], _CLASSIFIER_PHASE_DEFAULTS["body_learning_rate"]),
            **{k: config[k] for k in ("max_steps", "warmup_proportion", "max_length", "use_amp", "seed")},
            gradient_checkpointing=config.get("gradient_checkpointing", False),
        )
        if config["samples_per_label"] is not None:
            values["samples_per_label"] = config["samples_per_label"]
        if config["group_sampling"] == "label_balanced":
            values["sampling_strategy"] = "label_balanced"
        if config["eval"] is not None:
            values.update(config["eval"])
        return TrainingArguments(**values)
    values.update(  # differentiable head
        head_learning_rate=config["head_learning_rate"],
        batch_size=(16, config["batch_size"]),
        num_epochs=(1, config["num_epochs"]),
        l2_weight=config["l2_weight"],
        seed=config["seed"],
        end_to_end=config["end_to_end"],
    )
    if config["end_to_end"]:
        values.update(body_learning_rate=(2e-5, config["body_learning_rate"]), max_length=config["max_length"])
    return TrainingArguments(**values)


def pairs_args(config: dict[str, Any]) -> TrainingArguments:
    """`TrainingArguments` for `sample_pairs` from a pair-kind pairs config."""
    values = {k: config[k] for k in ("sampling_strategy", "num_iterations", "max_steps", "seed")}
    if config["batch_size"] is not None:
        values["batch_size"] = (config["batch_size"], _CLASSIFIER_PHASE_DEFAULTS["batch_size"])
    return TrainingArguments(**values)


# ---- base model identity ----------------------------------------------------------------------

_IDENTITY_CACHE: dict[str, dict[str, str]] = {}


def model_identity(name_or_path: str, cache_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """``{"sha256": ...}`` over a model directory's files, or ``{"name": ...}`` for a hub id.

    Hashing the 90 MB MiniLM takes ~0.2 s, so results are cached in memory and on disk, keyed by
    every file's path, size and mtime: an edited file changes the fingerprint and is hashed again.
    """
    location = resolve_model_location(name_or_path)
    root = Path(location)
    if not root.is_dir():  # a hub id that is not stored locally: its name is all we can know
        return {"name": location}
    files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    stats = [(p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    fingerprint = hashlib.sha256(json.dumps([str(root.resolve()), stats]).encode()).hexdigest()
    if fingerprint in _IDENTITY_CACHE:
        return _IDENTITY_CACHE[fingerprint]
    disk = _identity_cache_file(cache_dir)
    stored = _read_json(disk)
    if fingerprint not in stored:
        listing = [[rel, sha256_file(root / rel)] for rel, _, _ in stats]
        stored[fingerprint] = {"sha256": hashlib.sha256(canonical_json(listing).encode()).hexdigest()}
        _write_json(disk, stored)
    _IDENTITY_CACHE[fingerprint] = stored[fingerprint]
    return stored[fingerprint]


def _identity_cache_file(cache_dir: str | os.PathLike[str] | None) -> Path:
    base = Path(cache_dir) if cache_dir else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "setfit_core" / "model_identity.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}  # a missing or torn cache only costs a re-hash
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)  # atomic: concurrent runs never read half a file
    except OSError as exc:  # a read-only home only costs a re-hash next time
        logger.warning("could not write the model identity cache %s: %s", path, exc)
