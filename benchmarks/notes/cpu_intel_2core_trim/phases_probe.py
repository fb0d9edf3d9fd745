"""RSS and peak RSS after phase 1 and after the head (sst5, C classes x S shots, oversampling, 30 steps).

From the repository root: python benchmarks/notes/cpu_intel_2core_trim/phases_probe.py 5 64
"""

import resource
import sys

sys.path.insert(0, ".")

import pandas as pd  # noqa: E402
import sentence_transformers  # noqa: E402, F401  (imported before timing, as compare_setfit.py does)
import torch  # noqa: E402

from setfit_core import SetFitModel, Trainer, TrainingArguments, default_model_path, heap  # noqa: E402


def report(tag: str) -> None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(tag, "rss", round(heap.resident_bytes() / 2**20), "peak", round(peak), flush=True)


def main() -> None:
    classes, shots = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(2)
    train = pd.read_parquet("../shared/data/sst5/train.parquet")
    train = pd.concat([train[train.label == label].sample(n=shots, random_state=0) for label in range(classes)])
    model = SetFitModel.from_pretrained(default_model_path())
    report("load")
    args = TrainingArguments(seed=0, sampling_strategy="oversampling", num_iterations=None, max_steps=30,
                             show_progress_bar=False, save_strategy="no")
    trainer = Trainer(model, args, train_dataset={"text": train.text.tolist(), "label": train.label.tolist()})
    trainer.train_embeddings()
    report("body")
    trainer.train_classifier()
    report("head")


if __name__ == "__main__":
    main()
