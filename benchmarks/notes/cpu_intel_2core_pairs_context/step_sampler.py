"""Per phase-1 step: the largest glibc heap in use (mallinfo2) and RSS, sampled every ~0.3 ms by a thread,
split by where the step is (forward, backward + optimizer, between steps); smaps totals at steps 1 and 10.
sst5, C classes x S shots, oversampling, N steps (as compare_setfit.py --pairs-memory). Linux, glibc.

From the repository root: python benchmarks/notes/cpu_intel_2core_pairs_context/step_sampler.py 5 64 30
"""

import collections
import ctypes
import re
import resource
import sys
import threading
import time

sys.path.insert(0, ".")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

import setfit_core.body_training as bt  # noqa: E402
import setfit_core.heap as heap  # noqa: E402
from setfit_core import SetFitModel, Trainer, TrainingArguments, default_model_path  # noqa: E402

MIB = 2**20


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def smaps_mib() -> dict[str, int]:
    """Resident MiB per mapping name (file basename, [heap], [anon]), largest first."""
    resident: collections.Counter = collections.Counter()
    name = "[anon]"
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            parts = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                name = parts[5].split("/")[-1] if len(parts) > 5 else "[anon]"
            elif parts[0] == "Rss:":
                resident[name] += int(parts[1])
    return {key: kib // 1024 for key, kib in resident.most_common(6)}


def main() -> None:
    classes, shots, steps = (int(x) for x in sys.argv[1:4])
    torch.set_num_threads(2)
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    where = {"step": 0, "phase": "setup"}
    peaks: dict[tuple[int, str], list[float]] = {}
    tokens: dict[int, tuple[int, int]] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            info = libc.mallinfo2()
            peak = peaks.setdefault((where["step"], where["phase"]), [0.0, 0.0])
            peak[0] = max(peak[0], (info.uordblks + info.hblkhd) / MIB)
            peak[1] = max(peak[1], heap.resident_bytes() / MIB)
            time.sleep(0.0003)

    real_step_loss, real_after_step = bt.step_loss, heap.HeapReleaser.after_step

    def step_loss(*args, **kwargs):
        where["step"] += 1
        where["phase"] = "fwd"
        if where["step"] in (1, 10):
            print("smaps at step", where["step"], smaps_mib(), flush=True)
        cache, step = args[2], args[3]
        tokens[where["step"]] = (len(step.rows), int(cache.lengths[step.rows].sum()))
        loss = real_step_loss(*args, **kwargs)
        where["phase"] = "bwd+opt"
        return loss

    def after_step(self) -> None:
        where["phase"] = "between"
        real_after_step(self)

    bt.step_loss, heap.HeapReleaser.after_step = step_loss, after_step
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    train = pd.read_parquet("../shared/data/sst5/train.parquet")
    train = pd.concat([train[train.label == label].sample(n=shots, random_state=0) for label in range(classes)])
    model = SetFitModel.from_pretrained(default_model_path())
    args = TrainingArguments(seed=0, sampling_strategy="oversampling", max_steps=steps, show_progress_bar=False,
                             save_strategy="no")
    Trainer(model, args, train_dataset={"text": train.text.tolist(), "label": train.label.tolist()}).train_embeddings()
    done.set()
    sampler.join()
    for (step, phase), (in_use, rss) in sorted(peaks.items(), key=lambda item: -item[1][1])[:6]:
        print(f"step {step:3d} {phase:8s} (texts, tokens) {tokens.get(step)} heap in use {in_use:.0f} rss {rss:.0f}")
    for phase in ("setup", "fwd", "bwd+opt", "between"):
        values = [v for (_, p), v in peaks.items() if p == phase]
        if values:
            in_use, rss = max(v[0] for v in values), max(v[1] for v in values)
            print(phase, "max heap in use", round(in_use), "max rss", round(rss))
    print("ru_maxrss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)


if __name__ == "__main__":
    main()
