"""Where a CPU run's resident memory goes, step by step: glibc's heap in use vs free (mallinfo2).

The 5x64 vs 2x8 peak-RSS gap of `compare_setfit.py --pairs-memory` is not live memory: between steps
the heap in use stays flat (parameters and AdamW state) while its free part grows, because every step
frees activations of other sizes than the step before and glibc keeps the freed pages. This prints,
after each step of a sst5 run (oversampling, like --pairs-memory): resident MiB, peak MiB so far, and the
heap's mmapped / in-use / free MiB. `--mmap-threshold N` fixes glibc's mmap threshold first (activations of
N bytes or more then get fresh pages each step: no growth, but page faults on every step).

    python benchmarks/heap_trace.py --classes 5 --shots 64 --steps 30
    python benchmarks/heap_trace.py --classes 2 --shots 8
    python benchmarks/heap_trace.py --classes 5 --shots 64 --mmap-threshold 131072

Linux with glibc only.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

M_MMAP_THRESHOLD = -3
MIB = 2**20


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--shots", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--mmap-threshold", type=int, default=0, help="bytes; 0 keeps glibc's dynamic threshold")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="TrainingArguments(gradient_checkpointing=True)")
    args = parser.parse_args()

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    if args.mmap_threshold:
        libc.mallopt(M_MMAP_THRESHOLD, args.mmap_threshold)

    import pandas as pd
    import torch

    import setfit_core.engine.cpu.heap as heap
    from setfit_core import SetFitModel, Trainer, TrainingArguments, default_model_path

    torch.set_num_threads(args.threads)

    def sample() -> dict:
        info = libc.mallinfo2()
        return {"resident": round(heap.resident_bytes() / MIB), "peak": round(resident_peak()),
                "heap_mmapped": round(info.hblkhd / MIB), "heap_in_use": round(info.uordblks / MIB),
                "heap_free": round(info.fordblks / MIB)}

    rows = []
    after_step = heap.HeapReleaser.after_step

    def traced(self):
        rows.append({"step": len(rows) + 1, **sample()})
        print(json.dumps(rows[-1]), flush=True)
        after_step(self)

    heap.HeapReleaser.after_step = traced
    train = pd.read_parquet(Path(args.data_root) / "sst5" / "train.parquet")
    train = pd.concat([train[train.label == label].sample(n=args.shots, random_state=0)
                       for label in range(args.classes)])
    model = SetFitModel.from_pretrained(default_model_path())
    print(json.dumps({"after_load": sample()}), flush=True)
    training = TrainingArguments(seed=0, sampling_strategy="oversampling", max_steps=args.steps,
                                 show_progress_bar=False, save_strategy="no",
                                 gradient_checkpointing=args.gradient_checkpointing)
    trainer = Trainer(model, training, train_dataset={"text": train.text.tolist(), "label": train.label.tolist()})
    started = time.perf_counter()
    trainer.train_embeddings()
    print(json.dumps({"body_s": round(time.perf_counter() - started, 2), "after_body": sample(),
                      "mmap_threshold": args.mmap_threshold or "dynamic"}), flush=True)


def resident_peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
