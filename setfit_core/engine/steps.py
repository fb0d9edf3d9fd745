"""A training step's indices: the distinct texts it encodes and where each occurrence finds its embedding.

Few-shot batches repeat texts (640 pairs over 16 texts at 8-shot), so a step encodes each distinct
text once and gathers its embedding for every pair or group slot it fills (`deduplicate=True`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch


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
        else:  # one forward per occurrence, as setfit does (EngineOptions(deduplicate_texts=False))
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
