"""Batch-all triplet loss on a label-grouped batch.

Inputs: ``embeddings [B, D]``, ``labels [B]`` (int class ids; each class should occur at least twice).
Output: scalar; over every valid triplet (a, p, n) with ``label[a] == label[p]``, ``a != p`` and
``label[a] != label[n]``, ``relu(d(a, p) - d(a, n) + margin)`` summed and divided by the number of triplets
with a strictly positive loss (0 when there are none). Identical to
``sentence_transformers.losses.BatchAllTripletLoss``.

Example:
    >>> import torch
    >>> emb = torch.tensor([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 1.0]])
    >>> BatchAllTripletLoss(margin=5.0)(emb, torch.tensor([0, 0, 1, 1]))  # > 0: classes are only ~3 apart
    tensor(2.9189)
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import GroupLoss
from .distances import canonical_distance, pairwise_distances


class BatchAllTripletLoss(GroupLoss):
    """Average hinge loss over all valid triplets that still violate the margin."""

    def __init__(self, distance_metric: str = "euclidean", margin: float = 5.0):
        super().__init__()
        self.distance_metric = canonical_distance(distance_metric)
        self.margin = float(margin)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        labels = labels.view(-1)
        dist = pairwise_distances(self.distance_metric, embeddings)
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        not_self = ~torch.eye(labels.numel(), dtype=torch.bool, device=labels.device)
        valid = (same & not_self).unsqueeze(2) & ~same.unsqueeze(1)  # [a, p, n]
        triplet = dist.unsqueeze(2) - dist.unsqueeze(1) + self.margin  # d(a, p) - d(a, n) + margin
        triplet = (triplet * valid).clamp(min=0)
        num_positive = (triplet > 1e-16).sum()
        return triplet.sum() / (num_positive + 1e-16)
