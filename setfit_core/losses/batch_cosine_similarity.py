"""setfit's cosine-similarity regression, over every pair of texts in a batch.

Inputs: ``embeddings [B, D]``, ``labels [B]`` (int class ids). Output: scalar
``(mean_{pos} (cos_ij - 1)^2 + mean_{neg} cos_ij^2) / 2`` over the pairs i < j of the batch, positives
(same label) and negatives weighted equally, as setfit's pair recipe samples them 1:1. One label-balanced
batch of B texts gives B(B-1)/2 pairs from B encodes; the pair recipe gets B/2 pairs from B encodes.
If the batch has only positives or only negatives, the loss is the mean over that kind.

Example:
    >>> import torch
    >>> emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    >>> float(BatchCosineSimilarityLoss()(emb, torch.tensor([0, 0, 1, 1])))
    0.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import GroupLoss


class BatchCosineSimilarityLoss(GroupLoss):
    """MSE between the cosine similarity of every in-batch pair and 1 (same label) or 0 (other label)."""

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        labels = labels.view(-1)
        if labels.numel() < 2:  # no pair at all
            return embeddings.sum() * 0.0
        features = F.normalize(embeddings, p=2, dim=1)
        cosine = features @ features.t()
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        upper = torch.ones_like(same).triu(diagonal=1)
        positive, negative = same & upper, ~same & upper
        error = (cosine - same.to(cosine.dtype)) ** 2
        # Device-side means and presence flags: no value is read back to the host (CUDA-graph safe).
        kinds = torch.stack([positive.sum(), negative.sum()]).to(cosine.dtype)
        means = torch.stack([(error * positive).sum(), (error * negative).sum()]) / kinds.clamp(min=1)
        present = (kinds > 0).to(cosine.dtype)
        return (means * present).sum() / present.sum().clamp(min=1)
