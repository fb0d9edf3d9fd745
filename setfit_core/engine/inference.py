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
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from setfit_core.tokenization import tokenize

# Tokens (texts x padded length) per CPU batch: 2-3k was best or tied at batch_size 64, a flat optimum.
CPU_TOKEN_BUDGET = 2048
# Texts tokenised per call while counting tokens: bounds the token lists held at once.
_COUNT_CHUNK = 4096


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
          cpu_token_budget: int | None = CPU_TOKEN_BUDGET) -> torch.Tensor:
    """float32 sentence embeddings of `texts`, in input order, on the body's device. On CPU a batch holds at
    most `cpu_token_budget` padded tokens (None: `batch_size` texts whatever their length)."""
    if not texts or getattr(body, "default_prompt_name", None):
        # A default prompt is prepended by sentence-transformers' own encode(): keep its behaviour.
        return body.encode(
            texts, batch_size=batch_size, show_progress_bar=show_progress_bar, convert_to_tensor=True,
            normalize_embeddings=normalize,
        ).float().clone()  # clone: encode() returns inference tensors, which a trainable head cannot use
    device = body.device
    on_cpu, on_cuda = device.type == "cpu", device.type == "cuda"
    counts = token_counts(body, texts) if on_cpu else np.array([len(text) for text in texts])
    batches = length_sorted_batches(counts, batch_size, cpu_token_budget if on_cpu else None)
    steps = batches
    if show_progress_bar:
        from tqdm.auto import tqdm

        steps = tqdm(batches, desc="Batches", unit="batch")

    def pinned_inputs(batch: np.ndarray) -> dict:
        """Tokenised on the host into pinned memory, so that the copy up does not wait for the GPU."""
        features = tokenize(body, [texts[i] for i in batch], device=torch.device("cpu"))
        return {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in features.items()}

    parts = []
    # On a GPU a second thread tokenises the next batch (the tokenizer releases the GIL) while this
    # thread runs the body; on a CPU the body's threads have the cores, so it is done in turn.
    with ThreadPoolExecutor(max_workers=1) as pool, torch.inference_mode():
        ahead = pool.submit(pinned_inputs, batches[0]) if on_cuda else None
        for k, batch in enumerate(steps):
            if not on_cuda:
                features = tokenize(body, [texts[i] for i in batch])
            else:
                features = ahead.result()
                if k + 1 < len(batches):
                    ahead = pool.submit(pinned_inputs, batches[k + 1])
                features = {key: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                            for key, v in features.items()}
            embeddings = body(features)["sentence_embedding"].float()
            parts.append(F.normalize(embeddings, p=2, dim=1) if normalize else embeddings)
        length_sorted = torch.cat(parts)
    # Put back in input order outside inference mode, so the result is a normal tensor, which a
    # differentiable head can train on (without a further copy).
    position = torch.as_tensor(np.argsort(np.concatenate(batches)), device=device)
    return length_sorted.index_select(0, position)
