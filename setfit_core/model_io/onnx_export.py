"""`SetFitModel.export_onnx`: the body as one ONNX graph, token ids in, sentence embeddings out.

The graph is the whole sentence-transformers body, traced by `torch.onnx.export`: the Transformer,
pooling, any Dense layers and the ``Normalize`` module, plus the model's own `normalize_embeddings`
(setfit's export drops ``Normalize``, so its ONNX embeddings differ from its torch ones; here they do not).
The head is not traced: it is saved as `save_pretrained` saves it and runs on the graph's output.

- **Exporter**: the TorchScript exporter (``dynamo=False``). The dynamo exporter, torch's default, needs
  onnxscript, which the `onnx` extra does not bring; the TorchScript one traces a BERT-like body exactly,
  and every export is checked against the torch body before it is written (`check_graph`), so a trace
  that baked in a shape would fail here, not in production.
- **int8** (`quantize="int8"`): onnxruntime's dynamic quantization of the weight MatMuls (int8 weights per
  output channel, activations quantized per batch at run time), after SmoothQuant-style smoothing of their
  inputs on a few built-in texts; the feed-forward down-projections stay float. `onnx_int8` says why.
- **Attention**: traced in its plain form (`eager_attention`), which onnxruntime runs faster than the trace of
  torch's fused attention.
- **Tokenising**: the runtime (`setfit_core.engine.onnx_body`) tokenises with the Hugging Face tokenizer
  alone. The export checks that this gives the torch body's exact inputs (`plain_preprocessing`) and
  refuses bodies whose preprocessing is more (prompts, chat templates, images).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import json
import logging
import os
import secrets
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from setfit_core.model_io.model_card_render import save_model_card
from setfit_core.model_io.onnx_format import (
    CONFIG_KEY,
    ONNX_FILES,
    OUTPUT_NAME,
    QUANTIZE_CHOICES,
    OnnxEntry,
    require_onnx,
)
from setfit_core.model_io.onnx_int8 import CALIBRATION_TEXTS, quantize_int8
from setfit_core.model_io.setfit_format import CONFIG_FILE, read_saved_config, save_model
from setfit_core.tokenization import tokenize

logger = logging.getLogger(__name__)

# Opset 17 has LayerNormalization as one op (onnxruntime runs it fused); 14 is the first with the ops a
# BERT-like trace needs; the TorchScript exporter writes at most 20.
DEFAULT_OPSET = 17
MIN_OPSET = 14
# Texts of different lengths, so the traced batch is padded and the checks see padded and unpadded rows.
PROBE_TEXTS = ("  Hello World  ", "The film was GREAT, I loved every minute of it.", "bad", "\tne pas\n",
               "Ünïcödé and émojis 🙂 in a somewhat longer sentence, with punctuation; and more words to pad.")
# Largest |onnx - torch| allowed in an fp32 embedding: float rounding is ~1e-6; a shape baked into the
# trace shows up as errors of 1e-2 and more.
FP32_TOLERANCE = 1e-4


def check_export_args(quantize: Any, opset: Any) -> int:
    """The opset to use; a bad `quantize` or `opset` is a ValueError naming the value, before any work."""
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"'quantize' must be None (fp32) or 'int8'; got {quantize!r}")
    from torch.onnx import _constants

    highest = _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    if opset is None:
        return DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= highest:
        raise ValueError(f"'opset' must be None (default {DEFAULT_OPSET}) or an int from {MIN_OPSET} to {highest}; "
                         f"got {opset!r}")
    return opset


def export_onnx(model, directory: str | os.PathLike, quantize: str | None = None, opset: int | None = None) -> str:
    """Write `model` as a directory `SetFitModel.from_pretrained(directory, backend="onnx")` loads: what
    `save_pretrained` writes, plus the ONNX graph and its ``"onnx"`` entry in ``config_setfit.json``.

    The directory appears complete or not at all: it is written beside its target and renamed into place. An
    existing target is replaced only if it is empty or an earlier ONNX export; returns its path."""
    opset = check_export_args(quantize, opset)
    require_onnx("export_onnx")
    if model.model_head is None:
        raise RuntimeError("cannot export a model whose head was never built; train it first")
    target = Path(directory).expanduser()
    check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        save_model(model, str(tmp))
        entry = write_onnx(model, tmp, quantize, opset)
        add_entry(tmp, entry)
        save_model_card(model, tmp)  # again, now that the card can say how to load the graph
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after the rename; left only by a failure
    return str(target)


def check_target(target: Path) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise FileExistsError(f"export_onnx directory {str(target)!r} is a file; pass a directory path")
    if any(target.iterdir()) and CONFIG_KEY not in _config_or_empty(target):
        raise FileExistsError(
            f"export_onnx directory {str(target)!r} exists and is not an ONNX export; pass a new directory (an "
            "earlier export there would be replaced, anything else is never overwritten)"
        )


def _config_or_empty(directory: Path) -> dict[str, Any]:
    try:
        return read_saved_config(str(directory))
    except ValueError:
        return {}


def replace_dir(tmp: Path, target: Path) -> None:
    """Rename `tmp` to `target`; an existing `target` is moved aside first and removed after, so readers see the
    old directory, none, or the new one, never a mix."""
    if not target.exists():
        os.rename(tmp, target)
        return
    old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def add_entry(directory: Path, entry: OnnxEntry) -> None:
    """Record `entry` in the directory's ``config_setfit.json`` (written by `save_model` or copied from a stage)."""
    config = read_saved_config(str(directory))
    config[CONFIG_KEY] = entry.to_dict()
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")


def write_onnx(model, directory: str | os.PathLike, quantize: str | None, opset: int) -> OnnxEntry:
    """Write the graph file of `quantize` under `directory` (``onnx/...``) and return its config entry."""
    require_onnx("export_onnx")
    body = model.model_body
    max_length, lowercase = plain_preprocessing(body)
    features = {k: v for k, v in tokenize(body, list(PROBE_TEXTS), device=torch.device("cpu")).items()
                if torch.is_tensor(v)}
    names = tuple(features)
    traced = SentenceEmbedding(body, names, model.normalize_embeddings)
    directory = Path(directory)
    fp32 = directory / ONNX_FILES[None]
    fp32.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():  # before the export: the traced copy is not reliable after it (it is dropped)
        expected = traced(*(features[n] for n in names)).numpy()
    with _quiet_tracing():
        torch.onnx.export(
            traced, tuple(features[n] for n in names), str(fp32), dynamo=False, opset_version=opset,
            input_names=list(names), output_names=[OUTPUT_NAME],
            dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, OUTPUT_NAME: {0: "batch"}},
        )
    inputs = check_graph(fp32, features, expected)
    if quantize == "int8":
        calibration = tokenize(body, list(CALIBRATION_TEXTS), device=torch.device("cpu"))
        quantize_int8(fp32, directory / ONNX_FILES["int8"], {n: calibration[n].numpy() for n in inputs}, OUTPUT_NAME)
        fp32.unlink()
    return OnnxEntry(
        file=ONNX_FILES[quantize], quantize=quantize, opset=opset, inputs=inputs, max_length=max_length,
        lowercase=lowercase, normalized=traced.normalized, dimension=int(expected.shape[1]), versions=_versions(),
    )


class SentenceEmbedding(torch.nn.Module):
    """What is traced: the body's modules in order (a CPU fp32 copy: the caller's model is not moved), then
    `normalize_embeddings`; positional tensors in, because the exporter names graph inputs by position."""

    def __init__(self, body, input_names: tuple[str, ...], normalize_embeddings: bool) -> None:
        super().__init__()
        self.body = copy.deepcopy(body).to("cpu").float().eval()
        eager_attention(self.body)
        self.input_names = input_names
        self.normalize = bool(normalize_embeddings)
        self.normalized = self.normalize or any(
            type(m).__name__ == "Normalize" for m in self.body.children())  # its module path moved in ST 6

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        features = dict(zip(self.input_names, tensors, strict=True))
        embeddings = self.body(features)["sentence_embedding"]
        return F.normalize(embeddings, p=2, dim=1) if self.normalize else embeddings


def eager_attention(body) -> None:
    """Switch the Hugging Face models in `body` to their plain ("eager") attention, where they have it. Traced,
    torch's fused attention (``sdpa``) becomes a longer chain of shape ops and mask arithmetic; the plain form
    ran ~7% more texts/s in onnxruntime, fp32 and int8 alike, with the same embeddings (MiniLM, sst2, 2 threads)."""
    from transformers import PreTrainedModel

    for module in body.modules():
        if isinstance(module, PreTrainedModel) and hasattr(module, "set_attn_implementation"):
            try:
                module.set_attn_implementation("eager")
            except (ValueError, ImportError) as exc:  # a model without it keeps its own; the trace is checked anyway
                logger.debug("kept %s's attention implementation: %s", type(module).__name__, exc)


def plain_preprocessing(body) -> tuple[int | None, bool]:
    """`(max_length, lowercase)` when the body's inputs are its tokenizer's output for the texts (lowercased
    where its Transformer says so), truncated to `max_seq_length`; else a ValueError saying why not."""
    from transformers import PreTrainedTokenizerBase

    if getattr(body, "default_prompt_name", None):
        raise ValueError("export_onnx does not support bodies with a default prompt (their texts get it prepended "
                         "inside sentence-transformers); set default_prompt_name=None first")
    tokenizer = getattr(body, "tokenizer", None)
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise ValueError(f"export_onnx needs a body with a Hugging Face tokenizer; this one has "
                         f"{type(tokenizer).__name__}")
    first = body[0]
    lowercase = bool(getattr(first, "do_lower_case", False))
    max_length = body.max_seq_length
    texts = [t.lower() for t in PROBE_TEXTS] if lowercase else list(PROBE_TEXTS)
    ours = tokenizer(texts, padding=True, truncation=max_length is not None, max_length=max_length,
                     return_tensors="pt")
    theirs = {k: v for k, v in tokenize(body, list(PROBE_TEXTS), device=torch.device("cpu")).items()
              if torch.is_tensor(v)}
    if set(ours) != set(theirs) or any(not torch.equal(ours[k], theirs[k]) for k in theirs):
        raise ValueError(
            f"export_onnx: the body's {type(first).__name__} prepares texts in a way its tokenizer alone does not "
            "reproduce (a chat template, extra inputs or another modality), so an ONNX runtime could not feed the "
            "graph what the torch body sees; this body cannot be exported"
        )
    return max_length, lowercase


def check_graph(path: Path, features: dict[str, torch.Tensor], expected: np.ndarray) -> tuple[str, ...]:
    """Run the written fp32 graph on the probe batch (padded), each probe text alone (unpadded, batch 1), and
    compare with the torch body; a mismatch is an error, not a file that predicts wrong. Returns the graph's
    inputs (the exporter drops a tokenizer output the body never reads)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    arrays = {k: v.numpy() for k, v in features.items() if k in wanted}
    worst = float(np.abs(session.run([OUTPUT_NAME], arrays)[0] - expected).max())
    mask = features["attention_mask"].numpy().astype(bool) if "attention_mask" in features else None
    for row in range(len(expected)):
        keep = mask[row] if mask is not None else slice(None)
        alone = {k: v[row : row + 1, keep] for k, v in arrays.items()}
        worst = max(worst, float(np.abs(session.run([OUTPUT_NAME], alone)[0] - expected[row : row + 1]).max()))
    if not worst <= FP32_TOLERANCE:
        raise RuntimeError(f"export_onnx: the ONNX graph's embeddings differ from the torch body's by {worst:.2e} "
                           f"(allowed {FP32_TOLERANCE:.0e}); the trace is not faithful for this body, so nothing "
                           "was written")
    return tuple(i.name for i in session.get_inputs())


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """The exporter warns that the TorchScript path is deprecated and that traced Python branches are fixed:
    `check_graph` tests the result on padded and unpadded batches instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx.*")
        yield


def _versions() -> dict[str, str]:
    return {dist: importlib.metadata.version(dist) for dist in ("torch", "onnx", "onnxruntime")}
