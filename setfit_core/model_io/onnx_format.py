"""What an ONNX export adds to a model directory, and the check that the `onnx` extra is installed.

A directory `SetFitModel.export_onnx` writes is a complete model directory (what `save_pretrained` writes:
body, tokenizer, head, ``config_setfit.json``) plus::

    onnx/sentence_embedding.onnx          texts' token ids -> sentence embeddings, fp32
    onnx/sentence_embedding_qint8.onnx    the same, int8 weights (quantize="int8"); one of the two per export

and an ``"onnx"`` entry in ``config_setfit.json`` (`OnnxEntry`) naming the file, its inputs and how texts
are tokenised for it. sentence-transformers keeps its ONNX files under ``onnx/`` too, but its
``onnx/model.onnx`` ends at the token embeddings and pools in torch; this graph ends at the sentence
embedding (pooling, the body's ``Normalize`` and ``normalize_embeddings`` included), so it has its own
file name and sentence-transformers never mistakes one for the other.

The head is not in the graph: the saved head (scikit-learn or `SetFitHead`) runs on the embeddings.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from typing import Any

ONNX_DIR = "onnx"
ONNX_FILES = {None: f"{ONNX_DIR}/sentence_embedding.onnx", "int8": f"{ONNX_DIR}/sentence_embedding_qint8.onnx"}
QUANTIZE_CHOICES = tuple(ONNX_FILES)
CONFIG_KEY = "onnx"
OUTPUT_NAME = "sentence_embedding"
ENTRY_VERSION = 1
BACKENDS = ("torch", "onnx")
INSTALL_HINT = "pip install 'setfit-pipeline[onnx]'"


@dataclass(frozen=True)
class OnnxEntry:
    """The ``"onnx"`` entry of ``config_setfit.json``: everything a runtime needs besides the graph."""

    file: str
    quantize: str | None
    opset: int
    inputs: tuple[str, ...]
    max_length: int | None  # texts are truncated to this many tokens, as the torch body does
    lowercase: bool  # the body's Transformer lowercases texts before tokenising (do_lower_case)
    normalized: bool  # the graph's output has unit length (a Normalize module or normalize_embeddings)
    dimension: int
    versions: dict[str, str]
    format_version: int = ENTRY_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "inputs": list(self.inputs)}

    @classmethod
    def from_config(cls, config: dict[str, Any], where: str) -> OnnxEntry:
        """The entry of a model directory's config, or a ValueError naming the directory and the fix."""
        entry = config.get(CONFIG_KEY)
        if entry is None:
            raise ValueError(
                f"model {where!r} has no ONNX export (no {CONFIG_KEY!r} entry in config_setfit.json); export one with "
                "SetFitModel.from_pretrained(...).export_onnx(directory) and load that directory, train with "
                "export_onnx=true in the pipeline, or load it with backend='torch'"
            )
        try:
            values = {**entry, "inputs": tuple(entry["inputs"])}
            parsed = cls(**values)
        except (TypeError, KeyError) as exc:
            raise ValueError(f"model {where!r}: the {CONFIG_KEY!r} entry of config_setfit.json is not valid ({exc}); "
                             "export the model again") from exc
        if parsed.format_version != ENTRY_VERSION or parsed.quantize not in QUANTIZE_CHOICES:
            raise ValueError(f"model {where!r}: ONNX export format {parsed.format_version} / quantize "
                             f"{parsed.quantize!r} is not one this version reads; export the model again")
        return parsed


def check_backend(backend: Any) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"'backend' must be one of {list(BACKENDS)}; got {backend!r}")
    return backend


def require_onnx(purpose: str) -> None:
    """Import onnx and onnxruntime, or raise an ImportError that names the extra to install."""
    missing = []
    for name in ("onnx", "onnxruntime"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"{purpose} needs {' and '.join(missing)}, which are not installed: {INSTALL_HINT} "
                          "(the onnx extra)")


__all__ = ["BACKENDS", "CONFIG_KEY", "INSTALL_HINT", "ONNX_DIR", "ONNX_FILES", "OUTPUT_NAME", "OnnxEntry",
           "QUANTIZE_CHOICES", "check_backend", "require_onnx"]
