"""Tokenising texts for a sentence-transformers body, across sentence-transformers versions."""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def max_length_of(body, requested: int | None) -> int | None:
    """The truncation length to use: `requested`, capped at what the body supports."""
    if requested is None:
        return None
    supported = body.max_seq_length
    if supported and requested > supported:
        logger.warning("max_length=%d exceeds the model's max_seq_length %d; using %d", requested, supported, supported)
        return supported
    return requested


def tokenize(body, texts: list[str], max_length: int | None = None) -> dict:
    """Padded (to the longest text, not to max_length) model inputs on the body's device."""
    # sentence-transformers >= 6 renamed tokenize() to preprocess(); older releases only have tokenize().
    encode = getattr(body, "preprocess", None) or body.tokenize
    if max_length is not None and max_length != body.max_seq_length:
        previous = body.max_seq_length
        body.max_seq_length = max_length
        try:
            features = encode(texts)
        finally:
            body.max_seq_length = previous
    else:
        features = encode(texts)
    device = body.device
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in features.items()}
