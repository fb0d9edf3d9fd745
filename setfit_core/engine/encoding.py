"""Encoding a training step's texts: tokenise each text once, pad per micro-batch of similar lengths.

Few-shot training sees the same texts every step, so they are tokenised once up front. A step's
distinct texts are then split into a few micro-batches of similar length: padding a batch of short
sentences to its longest one wastes about half the compute (sst2: 50% of tokens are padding at
batch 28), and embeddings do not depend on how texts are grouped, so the loss is unchanged. On CPU the
micro-batches go through the body as one forward pass on packed tokens and group only attention
(cpu/packing.py).
"""

from __future__ import annotations

import numpy as np
import torch

from setfit_core.engine.cpu import packing
from setfit_core.tokenization import tokenize

# On CPU one extra forward pass costs about as much as this many padded tokens (measured on MiniLM,
# 2 cores); with bf16 products (cpu/matmul.py) padding is cheaper and every new shape costs a setup;
# on GPU per-launch overhead dominates, so micro-batches only pay off for long texts.
SPLIT_COST_TOKENS = {"cpu": 48, "cpu_bf16": 96, "cuda": 4096}


class TokenCache:
    """All texts tokenised once; `features(rows)` gives their padded inputs, trimmed to the longest."""

    def __init__(self, body, texts: list[str], max_length: int | None) -> None:
        self.body = body
        features = tokenize(body, texts, max_length) if texts else {}
        self.lengths = (
            features["attention_mask"].sum(dim=1).cpu().numpy() if "attention_mask" in features else np.zeros(0)
        )
        # Right padding lets rows be trimmed to any length; left-padding tokenizers fall back to per-step calls.
        tokenizer = getattr(body[0], "tokenizer", None) if len(body) else None
        self.sliceable = getattr(tokenizer, "padding_side", "right") == "right" and "attention_mask" in features
        self.features = features
        self.texts, self.max_length = texts, max_length

    def features_for(self, rows: np.ndarray, rows_on_device: torch.Tensor | None = None) -> dict:
        if not self.sliceable:
            return tokenize(self.body, [self.texts[i] for i in rows], self.max_length)
        if rows_on_device is None:
            rows_on_device = torch.as_tensor(rows, device=self.features["attention_mask"].device)
        return self.features_at(rows_on_device, int(self.lengths[rows].max()))

    def features_at(self, rows_on_device: torch.Tensor, width: int) -> dict:
        """Inputs of rows (a device tensor) trimmed to `width` tokens; reads nothing back to the host."""
        return {
            k: (v.index_select(0, rows_on_device)[:, :width] if torch.is_tensor(v) and v.dim() == 2 else v)
            for k, v in self.features.items()
        }


def length_buckets(lengths: np.ndarray, split_cost: int, max_buckets: int = 4) -> list[np.ndarray]:
    """Split positions 0..n-1 into groups of similar length minimising padded tokens + split_cost per group.

    Exact dynamic programme over the length-sorted order (n is a batch: tens of texts).
    """
    order = np.argsort(lengths, kind="stable")
    sorted_len = lengths[order]
    n = len(order)
    if n == 0:
        return []
    # best[k][j]: min cost covering the first j sorted items with k groups; a group (i, j] costs (j-i)*len[j-1].
    inf = float("inf")
    best = np.full((max_buckets + 1, n + 1), inf)
    cut = np.zeros((max_buckets + 1, n + 1), dtype=np.int64)
    best[0][0] = 0.0
    for k in range(1, max_buckets + 1):
        for j in range(1, n + 1):
            costs = best[k - 1][:j] + (j - np.arange(j)) * sorted_len[j - 1] + split_cost
            i = int(np.argmin(costs))
            best[k][j], cut[k][j] = costs[i], i
    k = int(np.argmin(best[:, n]))
    groups, j = [], n
    while k > 0:
        i = cut[k][j]
        groups.append(order[i:j])
        j, k = i, k - 1
    return groups[::-1]


def cap_tokens(groups: list[np.ndarray], lengths: np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """`groups` with each one split so that its texts times its longest length stay within `max_tokens`
    (a text longer than that goes alone)."""
    capped = []
    for group in groups:
        per = max(1, max_tokens // max(1, int(lengths[group].max())))
        capped.extend(group[i : i + per] for i in range(0, len(group), per))
    return capped


def encode_rows(
    body, cache: TokenCache, rows: np.ndarray, split_cost: int, rows_on_device: torch.Tensor | None = None,
    max_tokens: int | None = None, packed: bool = False,
) -> torch.Tensor:
    """Embeddings of texts `rows` (distinct), computed in length buckets (of at most `max_tokens` padded
    tokens each, if given), returned in `rows` order. `packed` (a body inside `packing.packed_layers`): one
    forward pass on the real tokens, the buckets grouping attention only (cpu/packing.py)."""
    if len(rows) == 0:
        raise ValueError("encode_rows needs at least one row")
    buckets = length_buckets(cache.lengths[rows], split_cost) if cache.sliceable else [np.arange(len(rows))]
    if packed and cache.sliceable and max_tokens is None:
        return _encode_packed(body, cache, rows, buckets, rows_on_device)
    if max_tokens is not None and cache.sliceable:
        buckets = cap_tokens(buckets, cache.lengths[rows], max_tokens)
    if len(buckets) == 1:
        return body(cache.features_for(rows, rows_on_device))["sentence_embedding"]
    parts = [body(cache.features_for(rows[b]))["sentence_embedding"] for b in buckets]
    return _in_rows_order(torch.cat(parts), np.concatenate(buckets))


def _in_rows_order(embeddings: torch.Tensor, order: np.ndarray) -> torch.Tensor:
    """Embeddings computed for rows in `order` (a permutation of positions), back in position order."""
    return embeddings.index_select(0, torch.as_tensor(np.argsort(order), device=embeddings.device))


def _encode_packed(body, cache: TokenCache, rows: np.ndarray, buckets: list[np.ndarray],
                   rows_on_device: torch.Tensor | None) -> torch.Tensor:
    if len(buckets) == 1:
        with packing.packed(cache.lengths[rows], [len(rows)], body.device):
            return body(cache.features_for(rows, rows_on_device))["sentence_embedding"]
    order = np.concatenate(buckets)  # the texts bucket by bucket: each attention group is a run of them
    with packing.packed(cache.lengths[rows[order]], [len(b) for b in buckets], body.device):
        embeddings = body(cache.features_for(rows[order]))["sentence_embedding"]
    return _in_rows_order(embeddings, order)


def gathered_loss(loss_fn, embeddings: torch.Tensor, inverse: torch.Tensor, target: torch.Tensor,
                  num_pairs: int) -> torch.Tensor:
    """The loss of a step whose distinct texts have `embeddings`; `inverse` maps occurrences to them."""
    if num_pairs:
        return loss_fn(embeddings[inverse[:num_pairs]], embeddings[inverse[num_pairs:]], target)
    return loss_fn(embeddings[inverse], target)


def step_loss(body, loss_fn, cache: TokenCache, step, split_cost: int | None = None,
              max_tokens: int | None = None, packed: bool = False) -> torch.Tensor:
    """The loss of a training `step` (`steps.Step`): each distinct text encoded once (see `encode_rows`),
    its embedding gathered wherever it occurs."""
    if split_cost is None:
        split_cost = SPLIT_COST_TOKENS.get(body.device.type, 0)
    embeddings = encode_rows(body, cache, step.rows, split_cost, step.rows_on_device, max_tokens, packed)
    return gathered_loss(loss_fn, embeddings, step.inverse, step.target, step.num_pairs)
