"""Batch semi-hard triplet loss on a label-grouped batch (FaceNet, Schroff et al. 2015).

Inputs: ``embeddings [B, D]``, ``labels [B]`` (int class ids; each class should occur at least twice).
Output: scalar; for every positive pair (a, p) the negative n is the closest negative farther than
``d(a, p)`` (semi-hard), or, if none exists, a's farthest negative; the loss is
``sum relu(d(a, p) - d(a, n) + margin) / number_of_positive_pairs``. Identical to
``sentence_transformers.losses.BatchSemiHardTripletLoss`` (a port of TensorFlow Addons' version).

Example:
    >>> import torch
    >>> emb = torch.tensor([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 1.0]])
    >>> BatchSemiHardTripletLoss(margin=5.0)(emb, torch.tensor([0, 0, 1, 1]))
    tensor(3.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import GroupLoss
from .distances import canonical_distance, pairwise_distances


class BatchSemiHardTripletLoss(GroupLoss):
    """Hinge loss on every positive pair with its semi-hard negative."""

    def __init__(self, distance_metric: str = "euclidean", margin: float = 5.0):
        super().__init__()
        self.distance_metric = canonical_distance(distance_metric)
        self.margin = float(margin)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        labels = labels.view(-1)
        batch_size = labels.numel()
        dist = pairwise_distances(self.distance_metric, embeddings)
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        # For each (a, p): smallest negative distance strictly greater than d(a, p), via sort + search.
        sorted_negatives = dist.masked_fill(same, torch.inf).sort(dim=1, stable=True).values
        positions = torch.searchsorted(sorted_negatives.detach().contiguous(), dist.detach().contiguous(), right=True)
        outside = sorted_negatives.gather(1, positions.clamp(max=batch_size - 1))
        # Fallback: the farthest negative of the anchor (masked maximum as in the reference).
        row_min = dist.min(1, keepdim=True).values
        inside = ((dist - row_min) * ~same).max(1, keepdim=True).values + row_min
        semi_hard = torch.where(torch.isfinite(outside), outside, inside)
        positive = same.to(dist.dtype) - torch.eye(batch_size, dtype=dist.dtype, device=dist.device)
        loss = ((dist - semi_hard + self.margin) * positive).clamp(min=0).sum()
        return loss / positive.sum().clamp(min=1e-16)
