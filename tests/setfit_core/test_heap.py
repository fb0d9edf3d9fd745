"""setfit_core/heap.py: freed heap pages go back to the OS when a CPU training run's RSS creeps."""

from __future__ import annotations

import platform

import numpy as np
import pytest
import torch

from setfit_core import SetFitModel, TrainingArguments, body_training, heap, optimization

GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_release_free_memory_works_with_glibc():
    assert heap.release_free_memory() is True
    assert heap.resident_bytes() > 0


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_trims_only_when_the_resident_set_creeps_past_its_settled_level(monkeypatch):
    mib = 2**20
    readings = iter([0, 100 * mib, 130 * mib, 120 * mib, 150 * mib, 181 * mib, 150 * mib, 200 * mib])
    monkeypatch.setattr(heap, "resident_bytes", lambda: next(readings))
    trims = []
    monkeypatch.setattr(heap, "release_free_memory", lambda: trims.append(1) or True)
    releaser = heap.HeapReleaser(slack_bytes=50 * mib, settle_steps=3)  # reads 0: /proc is there
    for _ in range(3):
        releaser.after_step()  # settles at the largest of 100, 130, 120
    assert releaser.level == 130 * mib and not trims
    releaser.after_step()  # 150: within 130 + 50
    assert not trims
    releaser.after_step()  # 181: past it
    releaser.after_step()  # 150
    releaser.after_step()  # 200: past it again
    assert releaser.trims == 2 and len(trims) == 2


def test_cpu_training_uses_the_releaser(tiny_model_dir, tiny_data, monkeypatch):
    made = []

    class Recording(heap.HeapReleaser):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(body_training, "HeapReleaser", Recording)
    body = SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body
    args = TrainingArguments(num_iterations=1, seed=0, show_progress_bar=False, save_strategy="no")
    result = body_training.train_body(body, tiny_data["text"], np.asarray(tiny_data["label"]), args)
    assert len(made) == 1 and made[0].steps == result.steps


def test_cpu_training_hands_its_memory_back_when_it_ends(tiny_model_dir, tiny_data, monkeypatch):
    """Phase 1's AdamW moments and freed activations must not stay resident through the phases after it."""
    optimizers, released = [], []
    real_make = body_training.make_optimizer
    monkeypatch.setattr(body_training, "make_optimizer",
                        lambda *a, **k: optimizers.append(real_make(*a, **k)) or optimizers[-1])
    monkeypatch.setattr(body_training, "release_free_memory",
                        lambda: released.append(sum(len(s) for s in optimizers[0].state.values())) or True)
    body = SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body
    args = TrainingArguments(num_iterations=1, seed=0, show_progress_bar=False, save_strategy="no")
    result = body_training.train_body(body, tiny_data["text"], np.asarray(tiny_data["label"]), args)
    assert result.steps > 1
    assert released == [0]  # once, at the end (the releaser trims nothing in so short a run), state dropped first


def _tiny_net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


@pytest.mark.parametrize("fused", [False, True])
def test_optimizer_state_made_up_front_changes_no_update(fused):
    lazy_net, early_net = _tiny_net(0), _tiny_net(0)
    lazy = torch.optim.AdamW(lazy_net.parameters(), lr=0.05, weight_decay=0.01, fused=fused)
    early = torch.optim.AdamW(early_net.parameters(), lr=0.05, weight_decay=0.01, fused=fused)
    optimization.allocate_state_now(early)
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


def test_cpu_training_makes_the_optimizer_state_before_the_first_step(tiny_model_dir, tiny_data, monkeypatch):
    calls = []
    real = body_training.allocate_state_now
    monkeypatch.setattr(body_training, "allocate_state_now", lambda opt: calls.append(len(opt.state)) or real(opt))
    body = SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body
    args = TrainingArguments(max_steps=2, seed=5, batch_size=8, show_progress_bar=False)
    body_training.train_body(body, tiny_data["text"], np.asarray(tiny_data["label"]), args)
    assert calls == [0]  # once, while the optimizer had no state yet


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


def test_the_compact_vocabulary_pages_out_the_full_embedding(tiny_model_dir, tiny_data, monkeypatch):
    from setfit_core import compact_vocabulary

    paged = []
    real = compact_vocabulary.page_out
    monkeypatch.setattr(compact_vocabulary, "page_out", lambda t: paged.append(t.data_ptr()) or real(t))
    monkeypatch.setattr(body_training, "SPARSE_GRAD_MIN_VOCAB", 1)
    body = SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body
    full = body[0].auto_model.get_input_embeddings().weight
    args = TrainingArguments(max_steps=2, seed=5, batch_size=8, show_progress_bar=False)
    body_training.train_body(body, tiny_data["text"], np.asarray(tiny_data["label"]), args)
    assert paged == [full.data_ptr()]
