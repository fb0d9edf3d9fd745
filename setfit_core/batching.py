"""Model inputs for training steps: tokenise each text once, pad per micro-batch of similar lengths.

Few-shot training sees the same texts every step, so they are tokenised once up front. A step's
distinct texts are then split into a few micro-batches of similar length: padding a batch of short
sentences to its longest one wastes about half the compute (sst2: 50% of tokens are padding at
batch 28), and embeddings do not depend on how texts are grouped, so the loss is unchanged. On CPU the
micro-batches go through the body as one forward pass on packed tokens and group only attention
(packing.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from setfit_core import packing
from setfit_core.tokenization import tokenize

# On CPU one extra forward pass costs about as much as this many padded tokens (measured on MiniLM,
# 2 cores); with bf16 products (cpu_matmul.py) padding is cheaper and every new shape costs a setup;
# on GPU per-launch overhead dominates, so micro-batches only pay off for long texts.
SPLIT_COST_TOKENS = {"cpu": 48, "cpu_bf16": 96, "cuda": 4096}
# split_pairs tries part caps this many tokens apart (about one text).
PART_CAP_STEP = 16


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
    forward pass on the real tokens, the buckets grouping attention only (packing.py)."""
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


@dataclass
class Step:
    """One training step's indices: distinct text rows, where each occurrence finds its row, targets."""

    rows: np.ndarray
    rows_on_device: torch.Tensor
    inverse: torch.Tensor
    target: torch.Tensor
    num_pairs: int  # pair batches: the first half of `inverse` is sentence_1, the second sentence_2


def prepare_steps(
    batches: Iterable, kind: str, label_ids: np.ndarray, device: torch.device, deduplicate: bool = True,
    chunk: int = 256,
) -> Iterator[Step]:
    """Index tensors for each step, uploaded `chunk` steps at a time.

    On a GPU, copying small pageable arrays every step blocks the host until the device catches up,
    so the host could never queue the next step ahead; one copy per chunk keeps them overlapping.
    """
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []
    for batch in batches:
        if kind == "pair":
            first, second, target = batch
            occurrences = np.concatenate([first, second])
        else:
            occurrences, target = batch, label_ids[batch]
        if deduplicate:
            rows, inverse = np.unique(occurrences, return_inverse=True)
        else:  # one forward per occurrence, as setfit does (kept for A/B measurements)
            rows, inverse = occurrences, np.arange(len(occurrences))
        pending.append((rows, inverse, np.asarray(target), len(target) if kind == "pair" else 0))
        if len(pending) == chunk:
            yield from _upload(pending, device)
            pending = []
    yield from _upload(pending, device)


def _upload(pending: list, device: torch.device) -> Iterator[Step]:
    if not pending:
        return
    arrays = [np.concatenate([p[i] for p in pending]) for i in range(3)]
    rows_t, inverse_t = (torch.from_numpy(a.astype(np.int64)).to(device) for a in arrays[:2])
    target_t = torch.from_numpy(arrays[2]).to(device)
    offsets = [np.cumsum([0] + [len(p[i]) for p in pending]) for i in range(3)]
    for j, (rows, _, _, num_pairs) in enumerate(pending):
        yield Step(
            rows,
            rows_t[offsets[0][j] : offsets[0][j + 1]],
            inverse_t[offsets[1][j] : offsets[1][j + 1]],
            target_t[offsets[2][j] : offsets[2][j + 1]],
            num_pairs,
        )


def split_pairs(step: Step, lengths: np.ndarray, max_tokens: int) -> list[Step]:
    """`step` as parts whose distinct texts have at most `max_tokens` tokens in all (a pair longer than
    that goes alone), or `[step]` where it fits or is not a pair batch.

    A step's activations grow with the tokens of its distinct texts, and a larger dataset repeats fewer
    texts per batch (16 pairs: 14 texts at 2 classes x 8 shots, 31 at 5 x 64). Trained part by part, each
    part's activations are freed by its own backward before the next part's forward, so a step holds one
    part's at a time. A text in two parts is encoded twice, so pairs that share texts go to one part where
    they fit."""
    tokens = int(lengths[step.rows].sum())
    if not step.num_pairs or tokens <= max_tokens:
        return [step]
    inverse = step.inverse.cpu().numpy()
    first, second = inverse[: step.num_pairs], inverse[step.num_pairs :]
    row_tokens = lengths[step.rows]
    # As few parts as the cap allows, as even as they pack: the lowest cap from an even split upwards that
    # still gives the fewest parts (texts do not split, so an even split rarely packs exactly).
    fewest = -(-tokens // max_tokens)
    for cap in [*range(-(-tokens // fewest), max_tokens, PART_CAP_STEP), max_tokens]:
        groups = _pack(first, second, row_tokens, cap)
        if len(groups) <= fewest:
            break
    return [_pair_part(step, first, second, g) for g in groups]


def _pack(first: np.ndarray, second: np.ndarray, row_tokens: np.ndarray, cap: int) -> list[np.ndarray]:
    """Pair positions in groups whose distinct texts have at most `cap` tokens (a pair over it alone).

    Units are the linked sets of pairs (pairs sharing a text, transitively), or single pairs of a set too
    large for one group; largest first, each goes to the group with room that already has most of its
    texts, or to a new group (first-fit decreasing)."""
    units = []
    for pairs in _linked_pairs(first, second):
        texts = set(first[pairs].tolist()) | set(second[pairs].tolist())
        if int(row_tokens[list(texts)].sum()) <= cap:
            units.append(pairs)
        else:
            units.extend(pairs[i : i + 1] for i in range(len(pairs)))
    groups: list[tuple[list[int], set[int], list[int]]] = []  # (pair positions, texts, [their tokens])
    for pairs in sorted(units, key=lambda u: -int(row_tokens[np.union1d(first[u], second[u])].sum())):
        texts = set(first[pairs].tolist()) | set(second[pairs].tolist())
        best, best_new, best_shared = None, None, -1
        for group in groups:
            new = texts - group[1]
            shared = len(texts) - len(new)
            if group[2][0] + int(row_tokens[list(new)].sum()) <= cap and shared > best_shared:
                best, best_new, best_shared = group, new, shared
        if best is None:
            groups.append((list(pairs), texts, [int(row_tokens[list(texts)].sum())]))
        else:
            best[0].extend(pairs)
            best[1].update(best_new)
            best[2][0] += int(row_tokens[list(best_new)].sum())
    return [np.sort(np.asarray(g[0], dtype=np.int64)) for g in groups]


def _linked_pairs(first: np.ndarray, second: np.ndarray) -> list[np.ndarray]:
    """Pair positions grouped by the connected components of the graph whose edges are the pairs."""
    parent = list(range(int(max(first.max(), second.max())) + 1))

    def root(text: int) -> int:
        while parent[text] != text:
            parent[text] = parent[parent[text]]
            text = parent[text]
        return text

    for a, b in zip(first.tolist(), second.tolist(), strict=True):
        parent[root(a)] = root(b)
    components: dict[int, list[int]] = {}
    for position, a in enumerate(first.tolist()):
        components.setdefault(root(a), []).append(position)
    return [np.asarray(c, dtype=np.int64) for c in components.values()]


def _pair_part(step: Step, first: np.ndarray, second: np.ndarray, pairs: np.ndarray) -> Step:
    local, inverse = np.unique(np.concatenate([first[pairs], second[pairs]]), return_inverse=True)
    rows = step.rows[local]
    device = step.inverse.device
    return Step(rows, torch.from_numpy(rows.astype(np.int64)).to(device),
                torch.from_numpy(inverse.astype(np.int64)).to(device),
                step.target[torch.from_numpy(pairs).to(device)], len(pairs))
