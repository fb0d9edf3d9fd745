"""Supervised contrastive loss (Khosla et al. 2020), single view.

Inputs: ``embeddings [B, D]`` (L2-normalised inside), ``labels [B]`` (int class ids).
Output: scalar
``mean_a [ -(temperature / base_temperature) * mean_{p in P(a)} log softmax_{j != a}(z_a . z_j / temperature)[p] ]``
where ``P(a)`` are the other batch members sharing a's label. Equal to ``setfit.losses.SupConLoss``
(setfit 1.2.0, ``contrast_mode="all"``, one view) whenever every label occurs at least twice.

Singleton labels: an anchor with no positive in the batch is EXCLUDED from the mean (it still serves as a
negative for the other anchors); if no anchor has a positive the loss is 0 (with a zero gradient). setfit 1.2.0
instead divides 0 by 0 for such anchors and returns NaN for the whole batch.

Example:
    >>> import torch
    >>> emb = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    >>> loss = SupConLoss()(emb, torch.tensor([0, 0, 1, 1]))
    >>> bool(loss < 0.01)
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import GroupLoss


class SupConLoss(GroupLoss):
    """Supervised contrastive loss with temperature scaling on cosine similarities."""

    def __init__(self, temperature: float = 0.07, base_temperature: float = 0.07):
        super().__init__()
        self.temperature = float(temperature)
        self.base_temperature = float(base_temperature)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        labels = labels.view(-1)
        if labels.numel() < 2:  # no contrast possible at all
            return embeddings.sum() * 0.0
        features = F.normalize(embeddings, p=2, dim=1)
        logits = features @ features.t() / self.temperature
        self_mask = torch.eye(labels.numel(), dtype=torch.bool, device=labels.device)
        log_prob = logits - torch.logsumexp(logits.masked_fill(self_mask, -torch.inf), dim=1, keepdim=True)
        positive = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~self_mask
        num_positive = positive.sum(1)
        mean_log_prob_pos = (log_prob * positive).sum(1) / num_positive.clamp(min=1)
        has_positive = (num_positive > 0).to(mean_log_prob_pos.dtype)
        per_anchor = -(self.temperature / self.base_temperature) * mean_log_prob_pos
        return (per_anchor * has_positive).sum() / has_positive.sum().clamp(min=1)
