"""Sentence embeddings for prediction and the embedding stage.

Same arithmetic as sentence-transformers' `encode()` (tokenise a batch, run the body, normalise),
batched differently per device (`benchmarks/predict_probe.py`):

- CPU: `encode()` orders texts by character count, which follows token count only loosely, so its
  batches carry padding that the CPU pays for in full. Here texts are ordered by token count, and a
  batch is also capped at `CPU_TOKEN_BUDGET` tokens so that long texts do not make batches whose
  activations spill out of cache: encoding the sst2 and emotion test splits got 1.2-1.3x faster on
  2 Xeon cores (benchmarks/RESULTS.md).
- GPU: the forward pass is the small part (emotion's 2,000 test texts on an H200: ~160 ms of forward
  passes, ~330 ms of tokenising on the host). `encode()` copies each batch from pageable memory,
  which waits for the GPU, so the two add up. Here each batch goes up from pinned memory without
  waiting, and the host tokenises the next batch while the GPU runs this one. Texts are ordered by
  character count, as `encode()` does: counting tokens would cost another tokenising pass.
  With a fast (Rust) tokenizer, `GPU_TOKENIZE_THREADS` threads tokenise batches ahead: the Rust part
  of tokenising releases the GIL, so they run side by side.
- GPU defaults: `batch_size=None` is `GPU_BATCH_SIZE` texts (on a CPU, the caller's default): a GPU runs
  256 short texts in about the time of 32, so small batches pay its fixed cost per batch many times over.
- Half precision is asked for by name (`inference_dtype`: "float16", "bfloat16", "auto"): the forward runs
  on a copy of the body cast to that dtype (`HalfPrecisionBody`), and the embeddings come back as float32,
  normalised in float32. A cast copy rather than `torch.autocast`, so that the weights are cast once, not on
  every call. With MiniLM it gains nothing on an H200 (the GPU waits on the host's tokenising;
  docs/performance.md), so it is an option for larger bodies and longer texts. The default stays float32,
  so predictions do not change unless asked. A CPU refuses half precision: without half-precision matrix
  units (AMX) it would be slower there, not faster.
"""

from __future__ import annotations

import copy
import numbers
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from setfit_core.tokenization import tokenize

# Tokens (texts x padded length) per CPU batch: 2-3k was best or tied at batch_size 64, a flat optimum.
CPU_TOKEN_BUDGET = 2048
# Texts tokenised per call while counting tokens: bounds the token lists held at once.
_COUNT_CHUNK = 4096
# Texts per batch on a GPU when the caller gives no batch_size.
GPU_BATCH_SIZE = 256
# Threads tokenising ahead of the GPU (a fast tokenizer; one otherwise): the Rust part runs in parallel, the
# Python part (building tensors) takes turns with the thread that runs the body.
GPU_TOKENIZE_THREADS = 2
# inference_dtype values: None (or "float32") is float32, the default; "auto" is bfloat16 on a GPU that
# has it, else float16, and float32 on a CPU.
INFERENCE_DTYPES = ("float32", "float16", "bfloat16", "auto")
_HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def check_inference_dtype(value: Any) -> str | None:
    """`value` as one of `INFERENCE_DTYPES` (a torch dtype is taken by its name), or None."""
    if isinstance(value, torch.dtype):
        value = str(value).removeprefix("torch.")
    if value is not None and value not in INFERENCE_DTYPES:
        raise ValueError(f"'inference_dtype' must be None (float32) or one of {list(INFERENCE_DTYPES)}; got {value!r}")
    return value


def inference_torch_dtype(inference_dtype: Any, device: torch.device, backend: str = "torch") -> torch.dtype | None:
    """The dtype the body predicts in for `inference_dtype` on `device`; None: float32.

    Half precision runs on a CUDA device with the torch backend only: asking for it elsewhere is an error
    that says so ("auto" falls back to float32 there)."""
    value = check_inference_dtype(inference_dtype)
    if value in (None, "float32"):
        return None
    if backend != "torch" or device.type != "cuda":
        if value == "auto":
            return None
        where = f"backend={backend!r}" if backend != "torch" else f"device {device.type!r}"
        raise ValueError(
            f"inference_dtype={value!r} is for GPU prediction (a CUDA device, backend='torch'); this model has "
            f"{where}. Load it with device='cuda', or leave inference_dtype None (float32); 'auto' is half "
            "precision on a GPU and float32 elsewhere"
        )
    if value == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return _HALF[value]


def resolve_batch_size(batch_size: int | None, device: torch.device, cpu_default: int) -> int:
    """`batch_size`, or when None the default for `device`: `GPU_BATCH_SIZE` on a GPU, `cpu_default` elsewhere."""
    if batch_size is None:
        return GPU_BATCH_SIZE if device.type == "cuda" else cpu_default
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1 (or None: {GPU_BATCH_SIZE} on a GPU, {cpu_default} on a "
                         f"CPU); got {batch_size!r}")
    return int(batch_size)


def token_counts(body, texts: list[str]) -> np.ndarray:
    """Each text's token count as the body will see it (truncated); character counts for bodies without
    a Hugging Face tokenizer, where they are the best proxy at hand."""
    tokenizer = getattr(body, "tokenizer", None)
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        return np.array([len(text) for text in texts])
    limit = body.max_seq_length
    counts: list[int] = []
    for start in range(0, len(texts), _COUNT_CHUNK):
        ids = tokenizer(
            texts[start : start + _COUNT_CHUNK], add_special_tokens=True,
            truncation=limit is not None, max_length=limit, verbose=False,
        )["input_ids"]
        counts.extend(len(row) for row in ids)
    return np.array(counts)


def length_sorted_batches(counts: np.ndarray, batch_size: int, token_budget: int | None) -> list[np.ndarray]:
    """Indices of the texts, largest count first, cut into batches of at most `batch_size` texts and
    (when given) at most `token_budget` padded tokens; a text longer than the budget gets a batch alone."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = np.argsort(-np.asarray(counts), kind="stable")
    batches, start = [], 0
    while start < len(order):
        size = batch_size
        if token_budget is not None:  # the batch's first text is its longest: it sets the padded length
            size = max(1, min(batch_size, token_budget // max(int(counts[order[start]]), 1)))
        batches.append(order[start : start + size])
        start += size
    return batches


def embed(body, texts: list[str], batch_size: int, normalize: bool, show_progress_bar: bool = False,
          cpu_token_budget: int | None = CPU_TOKEN_BUDGET, dtype: torch.dtype | None = None) -> torch.Tensor:
    """float32 sentence embeddings of `texts`, in input order, on the body's device. On CPU a batch holds at
    most `cpu_token_budget` padded tokens (None: `batch_size` texts whatever their length). `dtype`
    (float16 / bfloat16, CUDA only; see `inference_torch_dtype`): the dtype `body` was cast to (`HalfPrecisionBody`);
    non-finite embeddings are then an error."""
    device = body.device
    if dtype is not None and device.type != "cuda":
        raise ValueError(f"half-precision inference ({dtype}) runs on a CUDA device only; the body is on {device}")
    if not texts or getattr(body, "default_prompt_name", None):
        # A default prompt is prepended by sentence-transformers' own encode(): keep its behaviour.
        embeddings = body.encode(
            texts, batch_size=batch_size, show_progress_bar=show_progress_bar, convert_to_tensor=True,
            normalize_embeddings=normalize,
        )
        return _checked(embeddings.float().clone(), dtype)  # clone: encode() returns inference tensors
    on_cpu = device.type == "cpu"
    counts = token_counts(body, texts) if on_cpu else np.array([len(text) for text in texts])
    batches = length_sorted_batches(counts, batch_size, cpu_token_budget if on_cpu else None)
    steps = batches
    if show_progress_bar:
        from tqdm.auto import tqdm

        steps = tqdm(batches, desc="Batches", unit="batch")
    if device.type == "cuda":
        # Threads share the tokenizer only where it is a fast (Rust) one, whose settings they merely read.
        threads = GPU_TOKENIZE_THREADS if isinstance(getattr(body, "tokenizer", None), PreTrainedTokenizerFast) else 1
        length_sorted = _embed_ahead(body, texts, batches, steps, normalize, pin=True, threads=threads)
    else:
        with torch.inference_mode():
            # On a CPU the body's threads have the cores, so tokenising is done in turn.
            length_sorted = torch.cat([_forward(body, tokenize(body, [texts[i] for i in batch]), normalize)
                                       for batch, _ in zip(batches, steps, strict=True)])
    # Put back in input order outside inference mode, so the result is a normal tensor, which a
    # differentiable head can train on (without a further copy).
    position = torch.as_tensor(np.argsort(np.concatenate(batches)), device=device)
    return _checked(length_sorted.index_select(0, position), dtype)


def _forward(body, features: dict, normalize: bool) -> torch.Tensor:
    embeddings = body(features)["sentence_embedding"].float()
    return F.normalize(embeddings, p=2, dim=1) if normalize else embeddings


def _checked(embeddings: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """`embeddings`, unless half precision made some non-finite (a body whose activations overflow float16)."""
    if dtype is not None and not bool(torch.isfinite(embeddings).all()):
        bad = int((~torch.isfinite(embeddings)).any(dim=1).sum())
        raise ValueError(f"inference_dtype {str(dtype).removeprefix('torch.')!r} gave non-finite embeddings for {bad} "
                         f"of {len(embeddings)} texts: this body overflows it. Use 'bfloat16' (the range of float32) "
                         "or None (float32)")
    return embeddings


def _embed_ahead(body, texts: list[str], batches: list[np.ndarray], steps, normalize: bool,
                 pin: bool, threads: int) -> torch.Tensor:
    """The length-sorted embeddings, the body running batch k while `threads` threads tokenise the batches after it.

    Each batch is tokenised on the host (into pinned memory with `pin`, so that the copy up does not wait
    for the GPU). The first is tokenised on this thread: that call settles the tokenizer's padding and
    truncation settings, which the later calls (all alike) only read, so that threads can share it.
    """
    device = body.device

    def host_inputs(batch: np.ndarray) -> dict:
        features = tokenize(body, [texts[i] for i in batch], device=torch.device("cpu"))
        return {k: v.pin_memory() if pin and torch.is_tensor(v) else v for k, v in features.items()}

    first, later = host_inputs(batches[0]), iter(batches[1:])
    parts, ahead = [], deque()
    with ThreadPoolExecutor(max_workers=threads) as pool, torch.inference_mode():
        try:
            ahead.extend(pool.submit(host_inputs, b) for b in islice(later, threads + 1))
            for k, _ in enumerate(steps):
                features = first if k == 0 else ahead.popleft().result()
                ahead.extend(pool.submit(host_inputs, b) for b in islice(later, 1))
                features = {key: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                            for key, v in features.items()}
                parts.append(_forward(body, features, normalize))
        finally:  # an error: do not tokenise batches no one will run
            _cancel(ahead)
        return torch.cat(parts)


def _cancel(futures: deque[Future]) -> None:
    for future in futures:
        future.cancel()


class HalfPrecisionBody:
    """A float16 / bfloat16 copy of a body for prediction, made once and made again only when the body's
    weights change: a new body, or any parameter updated in place (training steps and `load_state_dict`
    bump a tensor's version counter)."""

    def __init__(self) -> None:
        self._stamp: tuple | None = None
        self._copy = None

    def get(self, body, dtype: torch.dtype):
        stamp = (id(body), dtype, tuple((id(p), p._version) for p in body.parameters()))
        if stamp != self._stamp:
            self._copy = None  # free the old copy before making the new one
            self._copy = copy.deepcopy(body).to(dtype).eval()
            self._stamp = stamp
        return self._copy
