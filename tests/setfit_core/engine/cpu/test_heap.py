"""setfit_core/engine/cpu/heap.py: freed heap pages go back to the OS when a CPU training run's RSS creeps."""

from __future__ import annotations

import platform

import pytest
import torch

from setfit_core import EngineOptions
from setfit_core.engine.cpu import heap

GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_release_free_memory_works_with_glibc():
    assert heap.release_free_memory() is True
    assert heap.resident_bytes() > 0


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_trims_only_when_the_resident_set_creeps_past_its_settled_level():
    mib = 2**20
    readings = iter([0, 100 * mib, 130 * mib, 120 * mib, 150 * mib, 181 * mib, 150 * mib, 200 * mib])
    trims = []
    releaser = heap.HeapReleaser(slack_bytes=50 * mib, settle_steps=3, resident=lambda: next(readings),
                                 trim=lambda: trims.append(1) or True)  # reads 0: /proc is there
    for _ in range(3):
        releaser.after_step()  # settles at the largest of 100, 130, 120
    assert releaser.level == 130 * mib and not trims
    releaser.after_step()  # 150: within 130 + 50
    assert not trims
    releaser.after_step()  # 181: past it
    releaser.after_step()  # 150
    releaser.after_step()  # 200: past it again
    assert releaser.trims == 2 and len(trims) == 2


def test_cpu_training_uses_the_releaser(run_engine):
    run = run_engine(steps=3)
    assert run.engine.heap is not None and run.engine.heap.steps == 3
    assert run.engine.report.release_heap == GLIBC
    assert run_engine(steps=1, options=EngineOptions(release_heap=False)).engine.heap is None


def test_cpu_training_hands_its_memory_back_when_it_ends(run_engine):
    """Phase 1's AdamW moments and freed activations must not stay resident through the phases after it."""
    run = run_engine(steps=3)
    assert run.engine.optimizer.state == {}  # dropped, then the heap's free pages handed back


def _tiny_net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


@pytest.mark.parametrize("fused", [False, True])
def test_optimizer_state_made_up_front_changes_no_update(fused):
    lazy_net, early_net = _tiny_net(0), _tiny_net(0)
    lazy = torch.optim.AdamW(lazy_net.parameters(), lr=0.05, weight_decay=0.01, fused=fused)
    early = torch.optim.AdamW(early_net.parameters(), lr=0.05, weight_decay=0.01, fused=fused)
    heap.allocate_state_now(early)
    for p in early_net.parameters():  # the moments exist, at zero, before any step; nothing moved
        state = early.state[p]
        assert torch.count_nonzero(state["exp_avg"]) == 0 and torch.count_nonzero(state["exp_avg_sq"]) == 0
        assert float(state["step"]) == 0 and p.grad is None
    assert all(torch.equal(a, b) for a, b in zip(lazy_net.parameters(), early_net.parameters(), strict=True))
    assert early.param_groups[0]["lr"] == 0.05
    torch.manual_seed(1)
    for _ in range(4):
        x = torch.randn(8, 6)
        for net, optimizer in ((lazy_net, lazy), (early_net, early)):
            net(x).square().sum().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    assert all(torch.equal(a, b) for a, b in zip(lazy_net.parameters(), early_net.parameters(), strict=True))
    assert float(early.state[next(early_net.parameters())]["step"]) == 4


def test_cpu_training_makes_the_optimizer_state_before_the_first_step(run_engine):
    def state(engine):
        steps = [float(s["step"]) for s in engine.optimizer.state.values()]
        trainable = [p for p in engine.body.parameters() if p.requires_grad]
        return {"tensors": len(engine.optimizer.state), "trainable": len(trainable), "steps": set(steps)}

    seen = run_engine(steps=2, before_first_step=state).seen
    assert seen["tensors"] == seen["trainable"] > 0 and seen["steps"] == {0.0}


def _mapped_kib(path) -> int:
    """Resident KiB of this process's mappings of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
                inside = len(fields) >= 6 and fields[-1] == str(path)
            elif inside and fields[0] == "Rss:":
                total += int(fields[1])
    return total


@pytest.mark.skipif(platform.system() != "Linux", reason="madvise(MADV_PAGEOUT) is Linux's")
def test_page_out_drops_a_mapped_files_resident_pages_and_changes_no_value(tmp_path):
    path = tmp_path / "weights.bin"
    values = torch.arange(2**20, dtype=torch.float32)  # 4 MiB
    values.numpy().tofile(path)
    mapped = torch.from_file(str(path), shared=False, size=values.numel(), dtype=torch.float32)  # private mmap
    assert torch.equal(mapped, values)  # reads every page
    before = _mapped_kib(path)
    assert before >= 3 * 1024
    assert heap.page_out(mapped) is True
    assert _mapped_kib(path) < before / 4
    assert torch.equal(mapped, values)  # read back from the file
    # Pages written since (private copies) keep what was written.
    mapped[:1024] = -1.0
    assert heap.page_out(mapped) is True
    assert float(mapped[:1024].sum()) == -1024.0 and torch.equal(mapped[1024:], values[1024:])


def test_page_out_skips_what_it_cannot_cover():
    assert heap.page_out(torch.empty(0)) is False
    assert heap.page_out(torch.ones(64, 64).t()[:, :8]) is False  # not contiguous: no single range


@pytest.mark.skipif(platform.system() != "Linux", reason="madvise(MADV_PAGEOUT) is Linux's")
def test_the_compact_vocabulary_pages_out_the_full_embedding(run_engine):
    run = run_engine(options=EngineOptions(sparse_vocabulary_min_rows=1))  # the tiny model's vocabulary is small
    assert run.engine.report.compact_vocabulary and run.engine.vocabulary.paged_out
