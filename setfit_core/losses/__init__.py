"""Contrastive losses computed on precomputed embeddings (not on a model + features).

Pair losses (``kind == "pair"``): ``loss(emb_1 [B, D], emb_2 [B, D], labels [B] float) -> scalar``.
Group losses (``kind == "group"``): ``loss(embeddings [B, D], labels [B] int64) -> scalar``.

* ``LOSSES``: name -> class for every supported loss.
* ``resolve_loss(loss)``: our class, a name (case-insensitive), or a sentence-transformers / setfit loss class
  with a supported ``__name__`` -> our class.
* ``build_loss(loss, margin, distance_metric)``: instantiate like setfit 1.2.0's trainer does.

Example:
    >>> import torch
    >>> loss = build_loss("batchhardtripletloss", margin=0.25, distance_metric="cosine_distance")
    >>> loss.name, loss.config()
    ('BatchHardTripletLoss', {'distance_metric': 'cosine_distance', 'margin': 0.25})
    >>> LOSSES[loss.name](**loss.config()).config() == loss.config()
    True
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable
from typing import Any

from torch import nn

from .base import GroupLoss, PairLoss
from .batch_all_triplet import BatchAllTripletLoss
from .batch_cosine_similarity import BatchCosineSimilarityLoss
from .batch_hard_soft_margin_triplet import BatchHardSoftMarginTripletLoss
from .batch_hard_triplet import BatchHardTripletLoss
from .batch_semi_hard_triplet import BatchSemiHardTripletLoss
from .contrastive import ContrastiveLoss
from .cosine_similarity import CosineSimilarityLoss
from .distances import DISTANCE_METRICS, canonical_distance, paired_distances, pairwise_distances
from .supcon import SupConLoss

LOSSES: dict[str, type[PairLoss] | type[GroupLoss]] = {
    cls.name: cls
    for cls in (
        CosineSimilarityLoss,
        ContrastiveLoss,
        BatchAllTripletLoss,
        BatchHardTripletLoss,
        BatchSemiHardTripletLoss,
        BatchHardSoftMarginTripletLoss,
        SupConLoss,
        BatchCosineSimilarityLoss,
    )
}

__all__ = [
    "DISTANCE_METRICS",
    "LOSSES",
    "BatchAllTripletLoss",
    "BatchCosineSimilarityLoss",
    "BatchHardSoftMarginTripletLoss",
    "BatchHardTripletLoss",
    "BatchSemiHardTripletLoss",
    "ContrastiveLoss",
    "CosineSimilarityLoss",
    "GroupLoss",
    "PairLoss",
    "SupConLoss",
    "build_loss",
    "canonical_distance",
    "paired_distances",
    "pairwise_distances",
    "resolve_loss",
]


def _closest(key: str) -> str | None:
    """Closest supported name: difflib ratio, boosted by a shared prefix or containment (case-insensitive)."""
    key = key.lower()

    def score(name: str) -> float:
        low = name.lower()
        ratio = difflib.SequenceMatcher(None, key, low).ratio()
        prefix = len(os.path.commonprefix([key, low])) / max(len(key), 1)
        return ratio + 0.5 * prefix + 0.5 * (key in low)

    scored = [(score(name), name) for name in LOSSES]
    best_score, best = max(scored)
    return best if best_score >= 0.6 else None


def _unknown(shown: str, key: str) -> ValueError:
    close = _closest(key)
    hint = f"; did you mean {close!r}?" if close else ";"
    return ValueError(f"loss {shown} is not a supported loss{hint} Valid: {', '.join(LOSSES)}")


def resolve_loss(loss: str | type | nn.Module) -> type[PairLoss] | type[GroupLoss]:
    """Map ``loss`` to one of our loss classes.

    Accepts a ``PairLoss``/``GroupLoss`` subclass (returned as is, custom ones included) or instance (its class),
    a supported name (exact or case-insensitive), or a foreign class such as
    ``sentence_transformers.losses.CosineSimilarityLoss`` / ``setfit.losses.SupConLoss`` matched by ``__name__``.
    Raises ``ValueError`` naming the bad value, suggesting the closest name and listing the valid ones.
    """
    if isinstance(loss, (PairLoss, GroupLoss)):
        return type(loss)
    if isinstance(loss, type) and issubclass(loss, (PairLoss, GroupLoss)):
        return loss
    if isinstance(loss, str):
        key, shown = loss, repr(loss)
    elif isinstance(loss, type):
        key, shown = loss.__name__, f"class {loss.__module__}.{loss.__qualname__}"
    else:
        raise _unknown(repr(loss), type(loss).__name__)
    if key in LOSSES:
        return LOSSES[key]
    by_lower = {name.lower(): cls for name, cls in LOSSES.items()}
    if key.lower() in by_lower:
        return by_lower[key.lower()]
    raise _unknown(shown, key)


def build_loss(
    loss: str | type | nn.Module,
    margin: float = 0.25,
    distance_metric: str | Callable[..., Any] = "cosine_distance",
    params: dict[str, Any] | None = None,
) -> nn.Module:
    """Instantiate ``resolve_loss(loss)`` the way setfit 1.2.0's trainer does.

    Defaults are setfit's ``TrainingArguments`` (``margin=0.25``, cosine distance). Pair losses and SupConLoss get
    their own defaults (margin/distance_metric ignored); BatchHardSoftMarginTripletLoss gets ``distance_metric``
    only; the other triplet losses get both. A custom group loss receives whichever of the two its constructor
    accepts. ``params`` (``TrainingArguments.loss_params``) override constructor arguments by name. An
    already-built instance of our losses is returned unchanged.
    """
    if isinstance(loss, (PairLoss, GroupLoss)):
        return loss
    cls = resolve_loss(loss)
    accepted = inspect.signature(cls).parameters
    if issubclass(cls, PairLoss) or cls is SupConLoss:
        offered: dict[str, Any] = {}
    else:
        offered = {"distance_metric": canonical_distance(distance_metric), "margin": margin}
    unknown = sorted(set(params or {}) - set(accepted))
    if unknown:
        raise ValueError(
            f"loss_params {unknown} are not parameters of {cls.__name__}; it accepts {sorted(accepted)}"
        )
    kwargs = {key: value for key, value in offered.items() if key in accepted}
    return cls(**{**kwargs, **(params or {})})
