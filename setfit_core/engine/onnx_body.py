"""`OnnxBody`: an exported body (`setfit_core.model_io.onnx_export`) run by onnxruntime, standing in for the
sentence-transformers body of a `SetFitModel` loaded with ``backend="onnx"``.

- **Tokenising once**: every text is tokenised once, unpadded; batches are then cut in order of token count
  (`length_sorted_batches`, the torch path's CPU rule: at most `CPU_TOKEN_BUDGET` padded tokens) and padded
  in numpy. The torch path tokenises twice (count, then pad); an int8 graph is fast enough for that to show.
- **Threads**: onnxruntime gets as many intra-op threads as torch has (`torch.get_num_threads()` when the
  model is loaded), so `torch.set_num_threads(n)` sets both engines' threads, or `threads=` at load.
- **Device**: the CPU provider; ``device="cuda"`` asks for onnxruntime's CUDA provider, which the
  ``onnxruntime-gpu`` build has. Embeddings come back as numpy float32 on the host either way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from setfit_core.engine.inference import CPU_TOKEN_BUDGET, length_sorted_batches
from setfit_core.model_io.onnx_format import OUTPUT_NAME, OnnxEntry, require_onnx

logger = logging.getLogger(__name__)


class OnnxBody:
    """Token ids -> sentence embeddings through onnxruntime; answers the parts of the sentence-transformers
    body interface that prediction uses (`device`, `max_seq_length`, `tokenizer`, the dimension)."""

    def __init__(self, session, tokenizer, entry: OnnxEntry, where: str) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.entry = entry
        self.where = where
        self._inputs = tuple(i.name for i in session.get_inputs())

    @classmethod
    def load(cls, model_dir: str, body_dir: str, config: dict[str, Any], device: str | None = None,
             threads: int | None = None) -> OnnxBody:
        """The graph named by `config`'s ``"onnx"`` entry in `model_dir`; the tokenizer from `body_dir` (the
        model directory itself, or the body stage a pipeline model references)."""
        require_onnx("backend='onnx'")
        import onnxruntime as ort

        from setfit_core.model_io.body_loading import local_tokenizer

        entry = OnnxEntry.from_config(config, model_dir)
        path = Path(model_dir) / entry.file
        if not path.is_file():
            raise FileNotFoundError(f"model {model_dir!r}: its ONNX graph {entry.file} is missing; the directory is "
                                    "incomplete. Export it again")
        found = local_tokenizer(body_dir)
        if found is None:
            raise FileNotFoundError(f"model {model_dir!r}: no tokenizer found in {body_dir!r}; export it again")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1  # one graph at a time: the intra-op threads have the cores
        session = ort.InferenceSession(str(path), options, providers=_providers(device, ort))
        logger.info("loaded %s (%s) with onnxruntime %s, %d threads", entry.file, entry.quantize or "fp32",
                    ort.__version__, options.intra_op_num_threads)
        return cls(session, found[0], entry, model_dir)

    # ---- what SetFitModel reads from a body ----------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # where the embeddings are, whichever provider computed them

    @property
    def max_seq_length(self) -> int | None:
        return self.entry.max_length

    @property
    def normalized(self) -> bool:
        return self.entry.normalized

    def get_embedding_dimension(self) -> int:
        return self.entry.dimension

    get_sentence_embedding_dimension = get_embedding_dimension

    def eval(self) -> OnnxBody:
        return self

    def to(self, device: str | torch.device) -> OnnxBody:
        if torch.device(device).type != "cpu":
            raise ValueError(f"a model loaded with backend='onnx' picks its device at load time; got .to({device!r}). "
                             "Load it with from_pretrained(..., backend='onnx', device=...)")
        return self

    def save(self, path: str, *args: Any, **kwargs: Any) -> None:
        raise ValueError(f"a model loaded with backend='onnx' is saved already (in {self.where!r}); copy that "
                         "directory, or load it with backend='torch' to save or train it")

    def __repr__(self) -> str:
        return f"OnnxBody({self.entry.file!r}, quantize={self.entry.quantize!r}, from {self.where!r})"

    # ---- embedding -----------------------------------------------------------------------------------
    def embed(self, texts: list[str], batch_size: int, show_progress_bar: bool = False,
              token_budget: int | None = CPU_TOKEN_BUDGET) -> np.ndarray:
        """float32 embeddings of `texts`, in input order."""
        if not texts:
            return np.zeros((0, self.entry.dimension), dtype=np.float32)
        encoded = self._tokenize(texts)
        lengths = np.array([len(ids) for ids in encoded["input_ids"]])
        batches = length_sorted_batches(lengths, batch_size, token_budget)
        steps = batches
        if show_progress_bar:
            from tqdm.auto import tqdm

            steps = tqdm(batches, desc="Batches", unit="batch")
        out = np.empty((len(texts), self.entry.dimension), dtype=np.float32)
        for batch in steps:
            feed = self._padded(encoded, lengths, batch)
            out[batch] = self.session.run([OUTPUT_NAME], feed)[0]
        return out

    def _tokenize(self, texts: list[str]) -> dict[str, list[list[int]]]:
        if self.entry.lowercase:
            texts = [text.lower() for text in texts]
        limit = self.entry.max_length
        return self.tokenizer(texts, truncation=limit is not None, max_length=limit, padding=False,
                              return_attention_mask=False, verbose=False)

    def _padded(self, encoded: dict[str, list[list[int]]], lengths: np.ndarray, batch: np.ndarray) -> dict:
        """The batch's inputs, padded to its longest text on the tokenizer's padding side."""
        width = int(lengths[batch].max())
        pad_id = self.tokenizer.pad_token_id or 0
        left = self.tokenizer.padding_side == "left"
        feed = {}
        for name in self._inputs:
            fill = pad_id if name == "input_ids" else 0
            array = np.full((len(batch), width), fill, dtype=np.int64)
            for row, i in enumerate(batch):
                n = int(lengths[i])
                values = 1 if name == "attention_mask" else encoded[name][i]
                if left:
                    array[row, width - n :] = values
                else:
                    array[row, :n] = values
            feed[name] = array
        return feed


def _providers(device: str | None, ort) -> list[str]:
    if device is None or str(device).startswith("cpu"):
        return ["CPUExecutionProvider"]
    if str(device).startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ValueError(f"device={device!r} with backend='onnx' needs onnxruntime's CUDA provider, which this "
                             "onnxruntime lacks (pip install onnxruntime-gpu); or pass device='cpu'")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ValueError(f"backend='onnx' runs on device 'cpu' or 'cuda'; got {device!r}")
