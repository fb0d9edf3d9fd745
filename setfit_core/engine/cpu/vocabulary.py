"""Phase 1 on CPU trains only the rows of the word embedding that its texts use (`compact_vocabulary`).

MiniLM's word embedding is half the body (30,522 x 384 of 22.7M parameters), but a few-shot run's
texts use a few hundred of its rows. Every other row gets a zero gradient on every step, and AdamW
with weight decay 0 (as phase 1 runs it) never moves a row whose gradients were always zero: its
moments stay 0, so its update is 0. Training a compact copy of the used rows is therefore the same
arithmetic, and each step skips AdamW, gradient clipping and a 47 MB dense gradient over the rest
(~26 ms of a 250-420 ms step on 2 cores). The step inputs' token ids are remapped to the compact rows;
the trained rows are written back into the full matrix at the end, and whenever a checkpoint or an
evaluation needs the whole body (`whole()`).

Only for architectures whose word embedding is the only thing that reads token ids (BERT-style
absolute positions): RoBERTa-style models derive position ids from the padding id, which a remap
would move. Other bodies get sparse embedding gradients instead (`sparse_vocabulary_grads`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from setfit_core.engine.cpu.heap import page_out

# Model types whose forward reads input ids only through the word embedding.
SAFE_MODEL_TYPES = {"bert", "distilbert"}


def word_embedding_of(body, min_vocab: int) -> torch.nn.Embedding | None:
    """The body's word embedding if a compact copy of it can stand in for it, else None."""
    auto_model = getattr(body[0], "auto_model", None) if len(body) else None
    model_type = getattr(getattr(auto_model, "config", None), "model_type", None)
    if auto_model is None or model_type not in SAFE_MODEL_TYPES:
        return None
    embedding = auto_model.get_input_embeddings()
    if not isinstance(embedding, torch.nn.Embedding) or embedding.num_embeddings < min_vocab:
        return None
    if embedding.max_norm is not None or embedding.sparse or not embedding.weight.requires_grad:
        return None
    # A weight shared with another module (tied to an output layer, say) must stay whole.
    owners = sum(1 for module in body.modules() for p in module.parameters(recurse=False) if p is embedding.weight)
    return embedding if owners == 1 else None


class CompactVocabulary:
    """Swaps `embedding.weight` for a trainable copy of the rows `used_ids` until `close()`."""

    def __init__(self, embedding: torch.nn.Embedding, used_ids: torch.Tensor) -> None:
        self.embedding, self.full = embedding, embedding.weight
        self.num_embeddings, self.padding_idx = embedding.num_embeddings, embedding.padding_idx
        self.used = torch.unique(used_ids.to(self.full.device))
        self.remap = torch.full((self.num_embeddings,), -1, dtype=torch.long, device=self.full.device)
        self.remap[self.used] = torch.arange(len(self.used), device=self.full.device)
        self.compact = torch.nn.Parameter(self.full.detach()[self.used].clone())
        # The full matrix is loaded as a view of the model file, so the pages its rows were just read from
        # stay resident while they sit unused: 27 MiB of them for 320 texts (docs/performance.md).
        self.paged_out = page_out(self.full.detach())
        self._install()

    def remap_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.remap[input_ids]

    def write_back(self) -> None:
        with torch.no_grad():
            self.full[self.used] = self.compact

    @contextmanager
    def whole(self) -> Iterator[None]:
        """The full, up-to-date embedding in place for the block (to save or evaluate the body)."""
        self.write_back()
        self._uninstall()
        try:
            yield
        finally:
            self._install()

    def close(self) -> None:
        self.write_back()
        self._uninstall()

    def _install(self) -> None:
        self.embedding.weight = self.compact
        self.embedding.num_embeddings = len(self.used)
        if self.padding_idx is not None:
            compact_pad = int(self.remap[self.padding_idx])
            self.embedding.padding_idx = compact_pad if compact_pad >= 0 else None

    def _uninstall(self) -> None:
        self.embedding.weight = self.full
        self.embedding.num_embeddings, self.embedding.padding_idx = self.num_embeddings, self.padding_idx


@contextmanager
def compact_vocabulary(body, cache, min_vocab: int, enabled: bool) -> Iterator[CompactVocabulary | None]:
    """The body's word embedding trained as a compact copy of the rows `cache` (a TokenCache) uses, with the
    cache's token ids remapped; yields None where that does not apply (not `enabled`, another
    architecture, a vocabulary under `min_vocab`). The full embedding, with the trained rows, is back in
    place on the way out, also after an error."""
    embedding = word_embedding_of(body, min_vocab) if enabled and cache.sliceable else None
    if embedding is None:
        yield None
        return
    vocabulary = CompactVocabulary(embedding, cache.features["input_ids"])
    cache.features["input_ids"] = vocabulary.remap_ids(cache.features["input_ids"])
    try:
        yield vocabulary
    finally:
        vocabulary.close()


@contextmanager
def sparse_vocabulary_grads(body, min_vocab: int, enabled: bool) -> Iterator[list[torch.nn.Parameter]]:
    """The fallback where no compact vocabulary applies: embeddings of at least `min_vocab` rows get
    sparse gradients inside the block; yields their weights.

    On CPU a dense embedding gradient zero-fills the whole vocabulary matrix (30,522 x 384 for
    MiniLM, 47 MB) on every forward call, i.e. once per length bucket: ~11% of a step. Sparse
    gradients accumulate cheaply over the buckets and are made dense once (`densify`), before
    clipping and AdamW. The modules are restored on the way out, also after an error.
    """
    modules = [m for m in body.modules() if isinstance(m, torch.nn.Embedding)
               and m.num_embeddings >= min_vocab and not m.sparse] if enabled else []
    for module in modules:
        module.sparse = True
    try:
        yield [m.weight for m in modules]
    finally:
        for module in modules:
            module.sparse = False


def densify(weights: list[torch.nn.Parameter]) -> None:
    """Sparse gradients made dense, in place, for clipping and AdamW."""
    for weight in weights:
        if weight.grad is not None and weight.grad.is_sparse:
            weight.grad = weight.grad.to_dense()
