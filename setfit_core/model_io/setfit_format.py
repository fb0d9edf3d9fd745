"""On-disk format: a sentence-transformers body directory + `config_setfit.json` + a safe head.

- `config_setfit.json`: `normalize_embeddings`, `labels` (what setfit 1.x reads) plus
  `multi_target_strategy` and `head` (type and, for the torch head, its shape).
- torch head: `model_head.safetensors`; scikit-learn head: `model_head.skops` (see `sklearn_head`;
  `model_head.json` + `model_head.safetensors` from earlier versions still load). Neither runs code on load.
- `model_head.pkl` (setfit 1.x) is read only with `trust_pickle=True`, and written only on request
  (`setfit_compatible=True`), in which case `config_setfit.json` holds only the keys setfit accepts.
- `README.md`: the SetFit model card (`model_card_render`), not the body's sentence-transformers card.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from setfit_core.differentiable_head import SetFitHead
from setfit_core.model_io.model_card_render import save_model_card
from setfit_core.model_io.sklearn_head import (
    HEAD_SPEC_FILE,
    HEAD_WEIGHTS_FILE,
    PICKLE_HEAD_FILE,
    SKOPS_HEAD_FILE,
    load_pickle_head,
    load_sklearn_head,
    save_pickle_head,
    save_sklearn_head,
)

logger = logging.getLogger(__name__)

CONFIG_FILE = "config_setfit.json"
TORCH_HEAD_FILE = "model_head.safetensors"
FORMAT_VERSION = 1
# What `save_head` can write: the head half of a model directory, beside the body's files.
HEAD_FILES = (CONFIG_FILE, TORCH_HEAD_FILE, SKOPS_HEAD_FILE, HEAD_WEIGHTS_FILE, HEAD_SPEC_FILE, PICKLE_HEAD_FILE)


def read_saved_config(location: str) -> dict[str, Any]:
    path = Path(location) / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object; got {type(config).__name__}")
    return config


def save_model(model, save_directory: str, setfit_compatible: bool = False) -> None:
    if model.model_head is None:
        raise RuntimeError("cannot save a model whose head was never built; train it first")
    directory = Path(save_directory)
    directory.mkdir(parents=True, exist_ok=True)
    # The body's own card would describe a feature-extraction model; the SetFit card replaces it.
    model.model_body.save(str(directory), create_model_card=False)
    save_head(
        model.model_head,
        directory,
        normalize_embeddings=model.normalize_embeddings,
        labels=model.labels,
        multi_target_strategy=model.multi_target_strategy,
        setfit_compatible=setfit_compatible,
    )
    save_model_card(model, directory, setfit_compatible=setfit_compatible)


def save_head(
    head,
    directory: str | os.PathLike,
    *,
    normalize_embeddings: bool = False,
    labels: list[Any] | None = None,
    multi_target_strategy: str | None = None,
    setfit_compatible: bool = False,
) -> None:
    """The head half of a model directory: head files + `config_setfit.json`, no body.

    Beside the files of a saved sentence-transformers body they make a complete model directory
    (the pipeline's head stage writes them without ever loading the body).
    """
    directory = Path(directory)
    config: dict[str, Any] = {"normalize_embeddings": normalize_embeddings, "labels": labels}
    if isinstance(head, SetFitHead):
        if head.in_features is None:
            raise ValueError("the differentiable head was built with in_features=None and has not seen an embedding "
                             "yet, so it has no weights to save; train it first")
        state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
        save_file(state, str(directory / TORCH_HEAD_FILE))
        head_config = {"type": "differentiable", **head.get_config_dict()}
    else:
        save_sklearn_head(head, directory)
        head_config = {"type": "sklearn"}
    if setfit_compatible:
        # setfit 1.x passes every config key to its model constructor, which rejects unknown ones.
        save_pickle_head(_setfit_head_object(head), directory)
    else:
        config.update(multi_target_strategy=multi_target_strategy, head=head_config, format_version=FORMAT_VERSION)
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")


def _setfit_head_object(head):
    if isinstance(head, SetFitHead):
        raise ValueError(
            "setfit_compatible=True supports the scikit-learn head only: setfit 1.x unpickles its own "
            "SetFitHead class. Save without setfit_compatible to keep the differentiable head"
        )
    return head


def head_files(location: str | os.PathLike) -> list[str]:
    """Names of the head files (`model_head.*`) in a model directory, sorted."""
    root = Path(location)
    return sorted(p.name for p in root.glob("model_head.*") if p.is_file()) if root.is_dir() else []


def load_saved_head(location: str, config: dict[str, Any], device: str, trust_pickle: bool,
                    trust_head_types: Sequence[str] = ()):
    """The saved head, or None for a plain sentence-transformers directory (no head files, no head config).

    Never silently headless: a head file that is there but cannot be read is an error naming it.
    `trust_head_types`: types a `model_head.skops` may hold beyond those trusted by default.
    """
    root = Path(location)
    if not root.is_dir():
        return None
    head_config = config.get("head")
    if head_config is None:  # setfit 1.x layout, or ours saved with setfit_compatible=True
        # The safe copy wins over the pickle beside it.
        if (root / SKOPS_HEAD_FILE).exists() or (root / HEAD_SPEC_FILE).exists():
            return load_sklearn_head(root, trust_head_types)
        if (root / PICKLE_HEAD_FILE).exists():
            return _load_setfit_pickle(root, device, trust_pickle)
        if found := head_files(root):
            config_state = "has no 'head' entry" if config else "is missing"
            raise ValueError(
                f"{root} holds head file(s) {found} but no {SKOPS_HEAD_FILE}, {HEAD_SPEC_FILE} or "
                f"{PICKLE_HEAD_FILE}, and "
                f"{CONFIG_FILE} {config_state}, so which head they hold is "
                f"unknown; the model directory is incomplete. Save it again with SetFitModel.save_pretrained"
            )
        return None
    kind = head_config.get("type") if isinstance(head_config, dict) else None
    if kind == "sklearn":
        return load_sklearn_head(root, trust_head_types)
    if kind == "differentiable":
        return _load_torch_head(root, head_config, device)
    raise ValueError(f"{root / CONFIG_FILE} has head type {kind!r}; expected 'sklearn' or 'differentiable'")


def _load_torch_head(root: Path, head_config: dict[str, Any], device: str) -> SetFitHead:
    params = {k: head_config[k] for k in ("in_features", "out_features", "temperature", "eps", "bias", "multitarget")
              if k in head_config}
    weights = root / TORCH_HEAD_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing; the model directory is incomplete")
    try:
        head = SetFitHead(**params)
        # Tensors saved from any device load on CPU first, then move where the caller wants them.
        head.load_state_dict(load_file(str(weights), device="cpu"))
    except Exception as exc:  # safetensors, torch and our own checks all fail differently: name the file
        raise ValueError(
            f"could not load the differentiable head {weights} with its config in {root / CONFIG_FILE} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); the file is damaged or does "
            f"not match its config. Download or save the model again"
        ) from exc
    return head.to(device)


def _load_setfit_pickle(root: Path, device: str, trust_pickle: bool):
    head = load_pickle_head(root, trust_pickle=trust_pickle)
    if isinstance(head, torch.nn.Module):  # setfit's own SetFitHead: copy its weights into ours
        linear = head.linear
        ours = SetFitHead(
            in_features=linear.in_features,
            out_features=linear.out_features,
            temperature=getattr(head, "temperature", 1.0),
            eps=getattr(head, "eps", 1e-5),
            bias=linear.bias is not None,
            multitarget=getattr(head, "multitarget", False),
        )
        ours.linear.load_state_dict({k: v.detach().cpu() for k, v in linear.state_dict().items()})
        return ours.to(device)
    logger.info("loaded a pickled scikit-learn head from %s (trust_pickle=True)", os.fspath(root))
    return head
