"""How phase-1 steps are computed fast: the speed-ups, apart from the SetFit algorithm (`setfit_core.training`).

- `EngineOptions` (options.py): which speed-ups may run; one typed object, passed down.
- `start_engine` (runtime.py): applies them to a body, owning the rules of which may run together, and
  yields the `Engine` whose `step()` trains one step; `EngineReport` says what ran.
- Device-independent parts: tokenising once and encoding each distinct text of a step once
  (encoding.py, steps.py), pair steps in parts (step_parts.py), gradient checkpointing, fused AdamW
  (optimizer.py), batched inference for prediction (inference.py).
- `cpu/`: compact vocabulary, fast dropout and phase 1's own attention, native GELU, bf16 products in
  tiles, lean activations, packed tokens, heap release. `cuda/`: whole-step CUDA graphs.
"""

from __future__ import annotations

from setfit_core.engine.encoding import TokenCache, step_loss
from setfit_core.engine.optimizer import set_lr
from setfit_core.engine.options import EngineOptions
from setfit_core.engine.runtime import Engine, EngineReport, start_engine
from setfit_core.engine.steps import Step, prepare_steps

__all__ = ["Engine", "EngineOptions", "EngineReport", "Step", "TokenCache", "prepare_steps", "set_lr",
           "start_engine", "step_loss"]
