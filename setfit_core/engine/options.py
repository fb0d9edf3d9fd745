"""`EngineOptions`: which speed-ups phase 1 may use. One typed object, passed down; no module switches.

The speed-ups change how a step is computed, not what it computes: each one either gives the same
numbers or differs only by float rounding and by which dropout masks are drawn (see each module's
docstring). Every field defaults to on; a speed-up runs only where its hardware and the run's arguments
allow it (`runtime.start_engine` owns those rules), so the defaults are right on every machine. Turn one
off to measure it (`benchmarks/cpu_step_ab.py`) or to rule it out when something looks wrong.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Bf16Matmul = Literal["auto", "always", "never"]


@dataclass(frozen=True)
class EngineOptions:
    """Speed-ups of phase 1 (contrastive body training). Pass to `Trainer(..., engine=...)` or `train_body`.

    Attributes:
        deduplicate_texts: encode each distinct text of a step once and gather its embedding for every
            pair it appears in (setfit encodes every occurrence).
        cuda_graphs: on a GPU, replay whole training steps from CUDA graphs (`cuda/graphs.py`).
        compact_vocabulary: on CPU, train only the word-embedding rows the texts use (`cpu/vocabulary.py`).
        sparse_vocabulary_grads: on CPU, where no compact vocabulary applies (another architecture, or
            `compact_vocabulary=False`), large embeddings get sparse gradients (`cpu/vocabulary.py`).
        fast_dropout: on CPU, draw dropout masks from 16-bit random integers (`cpu/dropout.py`), with
            phase 1's own attention (`cpu/attention.py`), which bf16 products and packed tokens need.
        native_gelu: on CPU, run GELU through PyTorch's kernel, not oneDNN's per-shape ones (`cpu/gelu.py`).
        bf16_matmul: on CPU, fp32 matrix products take bf16 inputs (`cpu/matmul.py`): "auto" where the
            CPU has AMX, "always" also without it (slow; for tests), "never".
        lean_activations: on CPU with fp32 products, rebuild cheap outputs in backward instead of keeping
            them (`cpu/recompute.py`).
        packed_tokens: on CPU, transformer layers see a step's real tokens only, not its padding
            (`cpu/packing.py`).
        part_max_tokens: on CPU, a pair step whose distinct texts have more tokens than this trains in
            parts (`step_parts.py`); None: never.
        release_heap: on CPU, hand freed heap pages back to the OS when the resident set creeps up, and
            once more when phase 1 ends (`cpu/heap.py`).
        checkpointed_micro_batch_tokens: with `gradient_checkpointing=True` on CPU, micro-batches of at
            most this many padded tokens (`gradient_checkpointing.py`).
        sparse_vocabulary_min_rows: word embeddings of at least this many rows are trained compactly or
            with sparse gradients on CPU.
        cuda_loss_read_every: on a GPU, the loss is read back to the host every this many steps (every
            step would stall the host, which could then not queue the next step ahead).
    """

    deduplicate_texts: bool = True
    cuda_graphs: bool = True
    compact_vocabulary: bool = True
    sparse_vocabulary_grads: bool = True
    fast_dropout: bool = True
    native_gelu: bool = True
    bf16_matmul: Bf16Matmul = "auto"
    lean_activations: bool = True
    packed_tokens: bool = True
    part_max_tokens: int | None = 512
    release_heap: bool = True
    checkpointed_micro_batch_tokens: int = 256
    sparse_vocabulary_min_rows: int = 4096
    cuda_loss_read_every: int = 20

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "bool" and not isinstance(value, bool):
                raise ValueError(f"EngineOptions {f.name!r} must be True or False; got {value!r}")
        if self.bf16_matmul not in ("auto", "always", "never"):
            raise ValueError(f"EngineOptions 'bf16_matmul' must be 'auto', 'always' or 'never'; got "
                             f"{self.bf16_matmul!r}")
        if self.part_max_tokens is not None and not _positive_int(self.part_max_tokens):
            raise ValueError(f"EngineOptions 'part_max_tokens' must be a positive int or None; got "
                             f"{self.part_max_tokens!r}")
        for name in ("checkpointed_micro_batch_tokens", "sparse_vocabulary_min_rows", "cuda_loss_read_every"):
            if not _positive_int(getattr(self, name)):
                raise ValueError(f"EngineOptions {name!r} must be a positive int; got {getattr(self, name)!r}")

    @classmethod
    def plain(cls) -> EngineOptions:
        """No speed-up: setfit's computation (every text occurrence encoded, padded batches, eager steps)."""
        return cls(deduplicate_texts=False, cuda_graphs=False, compact_vocabulary=False,
                   sparse_vocabulary_grads=False, fast_dropout=False,
                   native_gelu=False, bf16_matmul="never", lean_activations=False, packed_tokens=False,
                   part_max_tokens=None, release_heap=False)

    def replace(self, **changes: Any) -> EngineOptions:
        return dataclasses.replace(self, **changes)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
