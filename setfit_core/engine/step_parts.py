"""Pair steps trained in parts on CPU, so a step holds one part's activations at a time.

A step's activations grow with the tokens of its distinct texts, and a larger dataset repeats fewer
texts per batch (16 pairs: 14 texts at 2 classes x 8 shots, 31 at 5 x 64). Trained part by part, each
part's activations are freed by its own backward before the next part's forward. A loss that is a mean
or a sum over its pairs declares it (`PairLoss.additive`), and each part's loss is weighted by
`PairLoss.part_weight`, so the step's gradient stays that of the whole batch.
"""

from __future__ import annotations

import numpy as np
import torch

from setfit_core.engine.steps import Step

# split_pairs tries part caps this many tokens apart (about one text).
PART_CAP_STEP = 16


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
