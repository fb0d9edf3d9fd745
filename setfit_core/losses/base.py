"""Abstract base classes for losses computed on precomputed embeddings.

Two kinds exist:

* :class:`PairLoss` (``kind = "pair"``): ``forward(emb_1 [B, D], emb_2 [B, D], labels [B] float) -> scalar``.
  Used with pair datasets (text_a, text_b, similarity label).
* :class:`GroupLoss` (``kind = "group"``): ``forward(embeddings [B, D], labels [B] int64) -> scalar``.
  Used with label-grouped batches (text, class label).

Every concrete loss has a class attribute ``name`` (its class name) and a ``config()`` method returning
its constructor parameters as plain JSON values, so a loss can be stored as ``{"name": ..., "params": ...}``
and rebuilt with ``LOSSES[name](**params)``.

Example:
    >>> import torch
    >>> from setfit_core.losses import CosineSimilarityLoss
    >>> loss = CosineSimilarityLoss()
    >>> (loss.name, loss.kind, loss.config())
    ('CosineSimilarityLoss', 'pair', {})
"""

from __future__ import annotations

import abc
import inspect
from typing import Any, ClassVar

from torch import Tensor, nn


class _EmbeddingLoss(nn.Module, abc.ABC):
    """Shared plumbing: ``name`` per subclass and ``config()`` from the constructor signature."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = "_EmbeddingLoss"
    # True where the batch's loss is a mean or a sum of independent per-example terms, so a batch can be
    # trained in parts whose weighted losses add up to it (`PairLoss.part_weight`). A loss that couples its
    # batch (triplets, SupCon, a normalisation over the batch) leaves it False.
    additive: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = cls.__name__

    def config(self) -> dict[str, Any]:
        """Constructor parameters (read from same-named attributes) as plain JSON values."""
        params = inspect.signature(type(self).__init__).parameters
        return {
            key: getattr(self, key)
            for key, param in params.items()
            if key != "self" and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
        }

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.config().items())


class PairLoss(_EmbeddingLoss):
    """Loss on embedding pairs: ``forward(emb_1 [B, D], emb_2 [B, D], labels [B] float) -> scalar Tensor``."""

    kind: ClassVar[str] = "pair"

    @abc.abstractmethod
    def forward(self, emb_1: Tensor, emb_2: Tensor, labels: Tensor) -> Tensor: ...

    def part_weight(self, part_pairs: int, all_pairs: int) -> float:
        """What the loss of `part_pairs` of a batch's `all_pairs` pairs is multiplied by so that the parts'
        weighted losses add up to the whole batch's loss; only asked of an `additive` loss. Default: the
        part's share, right for a mean over pairs (a sum over pairs returns 1.0)."""
        if not self.additive:
            raise TypeError(f"{self.name} is not additive over its pairs, so its batches cannot train in parts")
        return part_pairs / all_pairs


class GroupLoss(_EmbeddingLoss):
    """Loss on a label-grouped batch: ``forward(embeddings [B, D], labels [B] int64) -> scalar Tensor``."""

    kind: ClassVar[str] = "group"

    @abc.abstractmethod
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor: ...
