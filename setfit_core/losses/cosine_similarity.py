"""Cosine-similarity regression loss on embedding pairs.

Inputs: ``emb_1 [B, D]``, ``emb_2 [B, D]``, ``labels [B]`` (float target similarities, e.g. 1.0 / 0.0).
Output: scalar ``mean((cos(emb_1, emb_2) - labels) ** 2)``, identical to
``sentence_transformers.losses.CosineSimilarityLoss`` with its defaults (``nn.MSELoss()`` and identity
``cos_score_transformation``).

Example:
    >>> import torch
    >>> loss = CosineSimilarityLoss()
    >>> a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    >>> b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> loss(a, b, torch.tensor([1.0, 1.0]))
    tensor(0.5000)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import PairLoss


class CosineSimilarityLoss(PairLoss):
    """MSE between ``cos(emb_1, emb_2)`` and the float ``labels``."""

    additive = True  # a mean over pairs

    def forward(self, emb_1: Tensor, emb_2: Tensor, labels: Tensor) -> Tensor:
        scores = torch.cosine_similarity(emb_1, emb_2)
        return F.mse_loss(scores, labels.to(scores.dtype).view(-1))
