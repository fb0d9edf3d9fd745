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


def tokenize(body, texts: list[str], max_length: int | None = None, device: torch.device | None = None) -> dict:
    """Padded (to the longest text, not to max_length) model inputs on `device` (default: the body's)."""
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
    device = body.device if device is None else device
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in features.items()}


def count_too_long(tokenizer, texts: list[str], limit: int) -> int:
    """How many of `texts` have more than `limit` tokens (special tokens included), i.e. get truncated.

    A token covers at least one byte of its text, so a text of at most `limit - specials - 1` UTF-8
    bytes cannot be too long and is never tokenised: few-shot data costs next to nothing.
    """
    bound = limit - tokenizer.num_special_tokens_to_add() - 1  # -1: a SentencePiece prefix token
    candidates = [t for t in texts if len(t.encode("utf-8")) > bound]
    too_long = 0
    for start in range(0, len(candidates), 1024):
        batch = candidates[start : start + 1024]
        ids = tokenizer(batch, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        too_long += sum(len(row) > limit for row in ids)
    return too_long


def warn_if_truncated(tokenizer, texts: list[str], limit: int | None, name: str, what: str) -> int:
    """Warn (training goes on) when texts exceed the body's length limit; returns how many do."""
    if not limit or not texts:
        return 0
    too_long = count_too_long(tokenizer, texts, limit)
    if too_long:
        logger.warning(
            "%s: %d of %d texts are longer than %s (%d tokens) and will be truncated to it; shorten or split "
            "them, or use a body with a longer max_seq_length",
            name, too_long, len(texts), what, limit,
        )
    return too_long
