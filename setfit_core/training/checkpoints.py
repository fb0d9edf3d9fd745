"""Phase-1 checkpoints (`save_strategy`), and resuming from one.

A checkpoint is `<output_dir>/checkpoint-<step>/`, laid out as transformers' Trainer lays its out: the body
as `SentenceTransformer.save` writes it, `optimizer.pt` (AdamW's state), `rng_state.pth` (torch's random
state, which dropout draws from; the batch order has a generator of its own) and `trainer_state.json` (the
step, the summed loss, the log rows), written last. Both .pt files hold tensors only and are read with
`weights_only=True`: loading a checkpoint runs no pickled code. A checkpoint is written to a temporary
directory and renamed into place, so a run killed while saving leaves no checkpoint a later run would trust.

Resuming restores all of it and skips the batches already trained (the batch stream is a function of
the seed), so on CPU a resumed run trains the very same body as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng_state.pth"


@dataclass
class Resume:
    """What a checkpoint holds besides the body's weights."""

    path: Path
    step: int
    loss_sum: float
    log: list[dict] = field(default_factory=list)
    optimizer: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(root: Path, body, optimizer: torch.optim.Optimizer, step: int, loss_sum: float, log: list[dict],
                    keep: int | None) -> Path:
    """Write `root/checkpoint-<step>` (see the module docstring); keep the newest `keep` checkpoints."""
    target = root / f"checkpoint-{step}"
    tmp = root / f".tmp-checkpoint-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    body.save(str(tmp))
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
    torch.save(_rng_state(), tmp / RNG_FILE)
    (tmp / STATE_FILE).write_text(json.dumps({"global_step": step, "loss_sum": loss_sum, "log_history": log}))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    if keep:
        for old in checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return target


def checkpoints(root: Path) -> list[Path]:
    """The complete checkpoints under `root`, oldest first."""
    found = [p for p in Path(root).glob("checkpoint-*") if (p / STATE_FILE).is_file() and p.name[11:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[11:]))


def load_checkpoint(path: str | Path, body) -> Resume:
    """Load a checkpoint's weights into `body` and return the rest (applied by `restore`)."""
    path = Path(path)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{str(path)!r} is no complete phase-1 checkpoint (no {STATE_FILE}); pass a "
                                "checkpoint-<step> directory that save_strategy wrote, or resume_from_checkpoint=True")
    from sentence_transformers import SentenceTransformer

    saved = SentenceTransformer(str(path), device=str(body.device))
    body.load_state_dict(saved.state_dict())
    state = json.loads((path / STATE_FILE).read_text())
    return Resume(path, int(state["global_step"]), float(state["loss_sum"]), list(state["log_history"]),
                  torch.load(path / OPTIMIZER_FILE, map_location=body.device, weights_only=True),
                  torch.load(path / RNG_FILE, weights_only=True))


def restore(resume: Resume, optimizer: torch.optim.Optimizer) -> None:
    """AdamW's state and the random state as they were when the checkpoint was written."""
    optimizer.load_state_dict(resume.optimizer)
    torch.set_rng_state(resume.rng["torch"])
    if torch.cuda.is_available() and resume.rng["cuda"]:
        torch.cuda.set_rng_state_all(resume.rng["cuda"])
    logger.info("resumed phase 1 from %s (step %d)", resume.path, resume.step)


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
