"""Stage 2, body: contrastive training of the sentence-transformers body on the stored pairs.

The stage reads its examples from the pairs stage (never from the raw data), trains with
`setfit_core.training.embedding_phase.train_body`, and writes the body with `SentenceTransformer.save`, so
the stage directory loads with `SentenceTransformer(path)`.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from setfit_core.args import TrainingArguments
from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.stagedir import StageWriter
from setfit_core.model_io.body_loading import load_body
from setfit_core.pipeline.inputs import PipelineData
from setfit_core.pipeline.pairs_stage import read_pair_set, read_training_rows
from setfit_core.pipeline.plan import StageSpec
from setfit_core.pipeline.results import ProgressFn, StageResult, find_or_compute, parent_dir
from setfit_core.pipeline.stage_config import model_identity, stage_args
from setfit_core.training.checkpoints import checkpoints
from setfit_core.training.embedding_phase import train_body

logger = logging.getLogger(__name__)


def run_body(
    store: ArtifactStore,
    spec: StageSpec,
    model: str,
    data: PipelineData | None = None,
    progress: ProgressFn | None = None,
    device: str | None = None,
    checkpoints: Checkpointing | None = None,
) -> StageResult:
    """`model` is the base model's path or hub id; `data` is only read for phase-1 evaluation. With
    `checkpoints`, training saves checkpoints and resumes from the last one an interrupted run of this key
    left; they are removed once the stage is published."""

    def compute(writer: StageWriter) -> None:
        if model_identity(model) != spec.config["model"]:
            raise RuntimeError(f"model {model!r} changed since the run was planned; rerun the pipeline")
        args = stage_args(spec.config)
        resume = None
        if checkpoints is not None:
            args = checkpoints.apply(args)
            resume = checkpoints.latest()
        pairs_dir = parent_dir(store, spec, "pairs")
        texts, label_ids = read_training_rows(pairs_dir)
        pairs = read_pair_set(pairs_dir, texts) if spec.config["loss"]["kind"] == "pair" else None
        eval_texts, eval_ids = _eval_split(spec, data)
        body = load_body(model, device=device)
        result = train_body(body, texts, label_ids, args, eval_texts, eval_ids, progress=_steps(progress), pairs=pairs,
                            resume_from_checkpoint=resume)
        body.save(str(writer.dir))
        writer.metrics.update(steps=result.steps, train_loss=result.train_loss, num_pairs=result.num_pairs,
                              log=result.log, engine=result.engine.to_dict(),
                              resumed_from_step=result.resumed_from_step)
        writer.timings["train"] = result.seconds

    result = find_or_compute(store, spec, compute)
    if checkpoints is not None:  # published (or found published): nothing left to resume
        shutil.rmtree(checkpoints.directory, ignore_errors=True)
    return result


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often the body stage saves phase-1 checkpoints (`save_strategy` "steps" every `save_steps`,
    or "epoch"), one directory per body key (`ArtifactStore.checkpoint_dir`)."""

    directory: Path
    save_strategy: str
    save_steps: int

    def apply(self, args: TrainingArguments) -> TrainingArguments:
        return args.replace(output_dir=str(self.directory), save_strategy=self.save_strategy,
                            save_steps=self.save_steps, save_total_limit=1)

    def latest(self) -> Path | None:
        found = checkpoints(self.directory)
        if found:
            logger.info("resuming the body from %s, which an interrupted run left", found[-1])
        return found[-1] if found else None


def _eval_split(spec: StageSpec, data: PipelineData | None) -> tuple[list[str] | None, np.ndarray | None]:
    if spec.config["eval"] is None:
        return None, None
    if data is None or "eval" not in data.splits:
        raise ValueError("this body stage evaluates during training (args.eval_strategy); pass data with eval_data")
    split = data.splits["eval"]
    if split.content_hash != spec.inputs["eval"]:
        raise RuntimeError(f"eval_data {split.uri!r} is not the data this body stage was planned with; rerun")
    return split.texts, split.label_ids


def _steps(progress: ProgressFn | None) -> Callable[[int, int, float], None] | None:
    if progress is None:
        return None
    return lambda step, total, loss: progress(step, total, f"body training, loss {loss:.4f}")
