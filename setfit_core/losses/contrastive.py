"""Contrastive (Hadsell et al. 2006) loss on embedding pairs.

Inputs: ``emb_1 [B, D]``, ``emb_2 [B, D]``, ``labels [B]`` (1 = similar, 0 = dissimilar; floats allowed).
Output: scalar ``0.5 * (y * d**2 + (1 - y) * relu(margin - d)**2)`` averaged over the batch (summed when
``size_average=False``), with ``d = paired_distances(distance_metric, emb_1, emb_2)``. Identical to
``sentence_transformers.losses.ContrastiveLoss`` (default metric: cosine distance, margin 0.5).

Example:
    >>> import torch
    >>> loss = ContrastiveLoss()
    >>> a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    >>> b = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # cosine distance 1 for both pairs
    >>> loss(a, b, torch.tensor([1.0, 0.0]))  # 0.5 * (1 * 1 + 0) / 2
    tensor(0.2500)
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import PairLoss
from .distances import canonical_distance, paired_distances


class ContrastiveLoss(PairLoss):
    """Pull positive pairs together, push negative pairs beyond ``margin``."""

    additive = True  # a mean over pairs, or a sum with size_average=False

    def __init__(self, distance_metric: str = "cosine_distance", margin: float = 0.5, size_average: bool = True):
        super().__init__()
        self.distance_metric = canonical_distance(distance_metric)
        self.margin = float(margin)
        self.size_average = bool(size_average)

    def forward(self, emb_1: Tensor, emb_2: Tensor, labels: Tensor) -> Tensor:
        dist = paired_distances(self.distance_metric, emb_1, emb_2)
        y = labels.to(dist.dtype).view(-1)
        losses = 0.5 * (y * dist.pow(2) + (1 - y) * F.relu(self.margin - dist).pow(2))
        return losses.mean() if self.size_average else losses.sum()

    def part_weight(self, part_pairs: int, all_pairs: int) -> float:
        return part_pairs / all_pairs if self.size_average else 1.0
