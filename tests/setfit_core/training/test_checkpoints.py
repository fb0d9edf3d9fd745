"""Phase-1 checkpoints (setfit_core/training/checkpoints.py): complete or absent, and a resumed run trains the
very same body as an uninterrupted one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from setfit_core import TrainingArguments
from setfit_core.model_io.body_loading import load_body
from setfit_core.training.checkpoints import checkpoints, load_checkpoint
from setfit_core.training.embedding_phase import train_body


def _train(tiny_model_dir, tiny_data, output_dir, resume=None, **changes):
    body = load_body(tiny_model_dir, device="cpu")
    values = {"max_steps": 6, "seed": 3, "batch_size": 8, "show_progress_bar": False, "output_dir": str(output_dir),
              "save_strategy": "steps", "save_steps": 2, "save_total_limit": None, **changes}
    args = TrainingArguments(**values)
    result = train_body(body, tiny_data["text"], np.asarray(tiny_data["label"]), args, resume_from_checkpoint=resume)
    return body, result


def test_a_resumed_run_trains_the_same_body_bit_for_bit(tiny_model_dir, tiny_data, tmp_path):
    whole, whole_result = _train(tiny_model_dir, tiny_data, tmp_path / "whole")
    saved = checkpoints(tmp_path / "whole")
    assert [p.name for p in saved] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert {f.name for f in saved[0].iterdir()} >= {"optimizer.pt", "rng_state.pth", "trainer_state.json",
                                                    "model.safetensors"}
    resumed, result = _train(tiny_model_dir, tiny_data, tmp_path / "resumed", resume=saved[1])
    assert result.resumed_from_step == 4 and result.steps == 6
    assert result.train_loss == whole_result.train_loss and result.log == whole_result.log
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_half_written_checkpoint_is_never_used(tiny_model_dir, tiny_data, tmp_path):
    _train(tiny_model_dir, tiny_data, tmp_path / "c", max_steps=2)
    (complete,) = checkpoints(tmp_path / "c")
    (complete / "trainer_state.json").unlink()  # as if killed before the last file went in
    assert checkpoints(tmp_path / "c") == []
    with pytest.raises(FileNotFoundError, match=r"is no complete phase-1 checkpoint \(no trainer_state.json\)"):
        load_checkpoint(complete, load_body(tiny_model_dir, device="cpu"))
