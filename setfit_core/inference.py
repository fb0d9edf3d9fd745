"""Sentence embeddings for prediction and the embedding stage, batched by token count.

sentence-transformers' `encode()` orders texts by character count, which follows token count only
loosely, so its batches carry padding. Ordering by token count made encoding the sst2 and emotion
test splits 1.1-1.25x faster on 2 Xeon cores, with the same embeddings to float rounding
(`benchmarks/predict_probe.py`, `benchmarks/notes/cpu_intel_2core_predict/`). On a CPU a batch is also
capped at `CPU_TOKEN_BUDGET` tokens, so that long texts do not make batches whose activations spill
out of cache; on a GPU bigger batches only help, so there a batch is `batch_size` texts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from setfit_core.tokenization import tokenize

# Tokens (texts x padded length) per CPU batch: 2-3k was best or tied at batch_size 64, a flat optimum.
CPU_TOKEN_BUDGET = 2048
# Texts tokenised at once while counting tokens: bounds the token lists held for a large input.
_COUNT_CHUNK = 4096


def token_counts(body, texts: list[str]) -> list[int]:
    """Each text's token count as the body will see it (truncated); character counts for bodies without
    a Hugging Face tokenizer, where they are the best proxy at hand."""
    tokenizer = getattr(body, "tokenizer", None)
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        return [len(text) for text in texts]
    limit = body.max_seq_length
    counts: list[int] = []
    for start in range(0, len(texts), _COUNT_CHUNK):
        ids = tokenizer(
            texts[start : start + _COUNT_CHUNK], add_special_tokens=True,
            truncation=limit is not None, max_length=limit, verbose=False,
        )["input_ids"]
        counts.extend(len(row) for row in ids)
    return counts


def length_sorted_batches(counts: list[int], batch_size: int, token_budget: int | None) -> list[list[int]]:
    """Indices of the texts, longest first, cut into batches of at most `batch_size` texts and (when
    given) at most `token_budget` padded tokens; a text longer than the budget gets a batch of its own."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(counts)), key=counts.__getitem__, reverse=True)
    batches, start = [], 0
    while start < len(order):
        size = batch_size
        if token_budget is not None:  # the batch's first text is its longest: it sets the padded length
            size = max(1, min(batch_size, token_budget // max(counts[order[start]], 1)))
        batches.append(order[start : start + size])
        start += size
    return batches


def embed(body, texts: list[str], batch_size: int, normalize: bool, show_progress_bar: bool = False) -> torch.Tensor:
    """float32 sentence embeddings of `texts`, in input order, on the body's device."""
    if not texts or getattr(body, "default_prompt_name", None):
        # A default prompt is prepended by sentence-transformers' own encode(): keep its behaviour.
        return body.encode(
            texts, batch_size=batch_size, show_progress_bar=show_progress_bar, convert_to_tensor=True,
            normalize_embeddings=normalize,
        ).float()
    budget = CPU_TOKEN_BUDGET if body.device.type == "cpu" else None
    batches = length_sorted_batches(token_counts(body, texts), batch_size, budget)
    if show_progress_bar:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="Batches", unit="batch")
    out = None
    # no_grad, not inference_mode: a differentiable head may train on these embeddings.
    with torch.no_grad():
        for batch in batches:
            embeddings = body(tokenize(body, [texts[i] for i in batch]))["sentence_embedding"].float()
            if normalize:
                embeddings = F.normalize(embeddings, p=2, dim=1)
            if out is None:
                out = embeddings.new_empty((len(texts), embeddings.shape[1]))
            out[torch.as_tensor(batch, device=out.device)] = embeddings
    return out
