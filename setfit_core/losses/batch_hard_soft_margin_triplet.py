"""Batch-hard triplet loss with a soft margin (Hermans et al. 2017).

Inputs: ``embeddings [B, D]``, ``labels [B]`` (int class ids; each class should occur at least twice).
Output: scalar ``mean_a softplus(max_p d(a, p) - min_n d(a, n))``; no margin parameter. Identical to
``sentence_transformers.losses.BatchHardSoftMarginTripletLoss``.

Example:
    >>> import torch
    >>> emb = torch.tensor([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 1.0]])
    >>> BatchHardSoftMarginTripletLoss()(emb, torch.tensor([0, 0, 1, 1]))  # softplus(1 - 3)
    tensor(0.1269)
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import GroupLoss
from .batch_hard_triplet import hardest_distances
from .distances import canonical_distance, pairwise_distances


class BatchHardSoftMarginTripletLoss(GroupLoss):
    """Softplus of (hardest positive distance - hardest negative distance), averaged over anchors."""

    def __init__(self, distance_metric: str = "euclidean"):
        super().__init__()
        self.distance_metric = canonical_distance(distance_metric)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        dist = pairwise_distances(self.distance_metric, embeddings)
        hardest_positive, hardest_negative = hardest_distances(dist, labels.view(-1))
        return F.softplus(hardest_positive - hardest_negative).mean()
