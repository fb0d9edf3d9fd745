"""Peak GPU memory of phase 1 on texts of many lengths: CUDA graphs in one shared pool, a pool per graph, eager.

Each step shape gets its own CUDA graph (setfit_core/engine/cuda/graphs.py). Recorded into private pools, the
graphs' memory adds up over shapes; recorded into one shared pool it is about that of the largest step.
sst2 texts are lengthened by appending 0..EXTRA random other training texts, so steps come in several
token widths. One variant per process (CUDA peaks are per process):

    python benchmarks/graph_memory_probe.py shared 16 6    # VARIANT SHOTS EXTRA; VARIANT: shared, private, eager

Environment: SETFIT_BENCH_MODEL (model dir), SETFIT_BENCH_DATA (folder with sst2/train.parquet).
Rows from an H200: benchmarks/rows/memory.jsonl (table h200_graph_pool_memory), in benchmarks/RESULTS.md.
"""

import json
import logging
import os
import sys
import time

import numpy as np
import pandas as pd
import torch

variant, shots, extra = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if variant == "private":
    torch.cuda.graph_pool_handle = lambda: None  # GraphedSteps then records each graph into a pool of its own

from setfit_core import EngineOptions, SetFitModel, Trainer, TrainingArguments  # noqa: E402

messages = []


class _Keep(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())


logging.getLogger("setfit_core").addHandler(_Keep())
logging.getLogger("setfit_core").setLevel(logging.INFO)

train = pd.read_parquet(f"{os.environ['SETFIT_BENCH_DATA']}/sst2/train.parquet")
rng = np.random.default_rng(0)
few = pd.concat([train[train.label == label].sample(n=shots, random_state=0) for label in (0, 1)])
others = train.text.tolist()
few["text"] = [" ".join([text, *rng.choice(others, rng.integers(0, extra + 1))]) for text in few.text]

model = SetFitModel.from_pretrained(os.environ["SETFIT_BENCH_MODEL"], device="cuda")
args = TrainingArguments(seed=0, num_iterations=20, num_epochs=(3, 1), show_progress_bar=False, save_strategy="no")
engine = EngineOptions(cuda_graphs=variant != "eager")
trainer = Trainer(model, args, train_dataset=few[["text", "label"]], engine=engine)
torch.cuda.synchronize()
torch.cuda.reset_peak_memory_stats()
before = torch.cuda.memory_reserved()
started = time.perf_counter()
trainer.train_embeddings()
torch.cuda.synchronize()
print(json.dumps({
    "variant": variant, "shots": shots, "extra": extra, "body_s": round(time.perf_counter() - started, 2),
    "steps": trainer.body_result.steps, "graphed_steps": trainer.body_result.engine.graphed_steps,
    "peak_reserved_mib": round(torch.cuda.max_memory_reserved() / 2**20), "reserved_before_mib": round(before / 2**20),
    "graphs": [m for m in messages if "CUDA graphs" in m],
}), flush=True)
