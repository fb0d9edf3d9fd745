"""Batch-hard triplet loss on a label-grouped batch (Hermans et al. 2017).

Inputs: ``embeddings [B, D]``, ``labels [B]`` (int class ids; each class should occur at least twice).
Output: scalar ``mean_a relu(max_p d(a, p) - min_n d(a, n) + margin)`` over all anchors, where p ranges over
the other members of a's class and n over the other classes. Identical to
``sentence_transformers.losses.BatchHardTripletLoss`` (including its quirks: an anchor without positives uses
0 as its hardest-positive distance; an anchor without negatives uses its row maximum).

Example:
    >>> import torch
    >>> emb = torch.tensor([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 1.0]])
    >>> BatchHardTripletLoss(margin=5.0)(emb, torch.tensor([0, 0, 1, 1]))  # 1 - 3 + 5
    tensor(3.)
"""

from __future__ import annotations

from torch import Tensor

from .base import GroupLoss
from .distances import canonical_distance, pairwise_distances


def hardest_distances(dist: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per anchor ``[B, 1]``: hardest (largest) positive and hardest (smallest) negative distance."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    positive = same.clone()
    positive.fill_diagonal_(False)
    hardest_positive = (positive * dist).max(1, keepdim=True).values
    row_max = dist.max(1, keepdim=True).values
    hardest_negative = (dist + row_max * same).min(1, keepdim=True).values
    return hardest_positive, hardest_negative


class BatchHardTripletLoss(GroupLoss):
    """Hinge loss on each anchor's hardest positive and hardest negative."""

    def __init__(self, distance_metric: str = "euclidean", margin: float = 5.0):
        super().__init__()
        self.distance_metric = canonical_distance(distance_metric)
        self.margin = float(margin)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        dist = pairwise_distances(self.distance_metric, embeddings)
        hardest_positive, hardest_negative = hardest_distances(dist, labels.view(-1))
        return (hardest_positive - hardest_negative + self.margin).clamp(min=0).mean()
