"""SIGKILL pipeline processes mid-stage; each fresh process reuses what finished and redoes the rest.

One chain of three processes (each start costs ~8 s of imports on 2 cores): killed while training
the body, then (a fresh process) killed while writing embeddings, then a fresh process that finishes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from setfit_core.artifacts import ArtifactStore
from tests.reliability.conftest import Child, assert_all_verify, leftovers, wait_for_file

# Kills and reruns training processes: ~20 s.
pytestmark = pytest.mark.slow

STAGES = ("pairs", "body", "embeddings", "head", "evaluation", "model")


def kill_during(stage: str, child: Child, marker: Path) -> dict[str, str]:
    """SIGKILL `child` once it is inside `stage`; returns the statuses of the stages it finished first."""
    assert wait_for_file(marker, child).startswith(stage)
    child.kill()  # SIGKILL: no finally block or atexit runs, the temp dir stays as it was
    assert child.proc.returncode == -9
    marker.unlink()
    return {s: r["status"] for s, r in child.printed()["stages"].items()}


def assert_partial(root: Path, store: ArtifactStore, stage: str, partial: list[Path]) -> None:
    """The killed stage left a temp dir and published nothing, and the store does not see it."""
    assert [p.parent.name for p in partial] == [stage], f"one temp dir, of the killed {stage} stage: {partial}"
    assert [p for p in (root / stage).iterdir() if not p.name.startswith(".")] == [], "nothing was published"
    assert store.list_stages(stage) == []


def test_sigkill_during_body_then_during_embeddings_then_rerun(job_file, spawn, tmp_path):
    job, marker, root = job_file(), tmp_path / "marker", tmp_path / "artifacts"
    store = ArtifactStore(root)

    done = kill_during("body", spawn(job, "--hang-at", "body", "--marker", str(marker)), marker)
    assert done == {"pairs": "computed"}
    body_partial = leftovers(root)
    assert_partial(root, store, "body", body_partial)

    done = kill_during("embeddings", spawn(job, "--hang-at", "embeddings", "--marker", str(marker)), marker)
    assert done == {"pairs": "reused", "body": "computed"}, "the rerun redid the body only"
    embeddings_partial = [p for p in leftovers(root) if p not in body_partial]
    assert_partial(root, store, "embeddings", embeddings_partial)
    assert (embeddings_partial[0] / "embeddings.parquet").exists(), "killed while writing embeddings.parquet"
    snapshot = {p: sorted(q.name for q in p.rglob("*")) for p in leftovers(root)}

    rerun = spawn(job).result()
    assert {s: r["status"] for s, r in rerun["stages"].items()} == {
        "pairs": "reused", "body": "reused", "embeddings": "computed", "head": "computed",
        "evaluation": "computed", "model": "computed"}
    assert_all_verify(store, rerun["stages"])
    assert [m.key for m in store.list_stages("embeddings")] == [rerun["stages"]["embeddings"]["key"]]
    assert {p: sorted(q.name for q in p.rglob("*")) for p in leftovers(root)} == snapshot, (
        "the partial temp dirs were neither used nor touched"
    )

    assert sorted(store.cleanup_temp(older_than_s=0)) == sorted(map(str, body_partial + embeddings_partial))
    assert leftovers(root) == []
    assert_all_verify(store, rerun["stages"])
    assert {m.stage for m in store.list_stages()} == set(STAGES)


def test_a_body_killed_mid_training_resumes_from_its_last_checkpoint(job_file, spawn, tmp_path):
    """The rerun of the same body key goes on from the checkpoint the killed run saved, and trains the very same
    body as a run that was never interrupted (CPU)."""
    from setfit_core import SetFitModel

    args = {"num_iterations": 5, "seed": 0, "num_epochs": [1, 2], "show_progress_bar": False,
            "save_strategy": "steps", "save_steps": 2}
    job, marker, root = job_file(args=args), tmp_path / "marker", tmp_path / "artifacts"
    killed = spawn(job, "--hang-at", "body", "--hang-at-step", "5", "--marker", str(marker))
    kill_during("body", killed, marker)  # after step 5: checkpoint-4 is on disk
    saved = sorted(p.name for p in (root / "body").glob(".checkpoints-*/checkpoint-*"))
    assert saved == ["checkpoint-4"]

    rerun = spawn(job).result()
    body_key = rerun["stages"]["body"]["key"]
    store = ArtifactStore(root)
    assert rerun["stages"]["body"]["status"] == "computed"
    assert store.find("body", body_key).metrics["resumed_from_step"] == 4
    assert list((root / "body").glob(".checkpoints-*")) == [], "checkpoints go once the stage is published"

    uninterrupted = spawn(job_file(args=args, artifacts_root=str(tmp_path / "reference"))).result()
    assert uninterrupted["stages"]["body"]["key"] == body_key
    reference = ArtifactStore(tmp_path / "reference").find("body", body_key)
    assert reference.metrics["resumed_from_step"] == 0
    assert reference.metrics["train_loss"] == store.find("body", body_key).metrics["train_loss"]
    resumed_body = SetFitModel.from_pretrained(str(root / "body" / body_key), device="cpu").model_body.state_dict()
    reference_body = SetFitModel.from_pretrained(str(tmp_path / "reference" / "body" / body_key),
                                                 device="cpu").model_body.state_dict()
    assert all(torch.equal(resumed_body[k], reference_body[k]) for k in reference_body)
