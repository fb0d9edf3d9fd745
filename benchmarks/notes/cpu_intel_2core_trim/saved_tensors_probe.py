"""Bytes autograd keeps for backward per phase-1 step, by tensor kind (sst5, C classes x S shots, oversampling,
N steps): the mean and worst step, the worst in full. Counted once per storage; weights included.

From the repository root: python benchmarks/notes/cpu_intel_2core_trim/saved_tensors_probe.py 5 64 30
"""

import collections
import json
import sys

sys.path.insert(0, ".")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

import setfit_core.body_training as bt  # noqa: E402
from setfit_core import SetFitModel, Trainer, TrainingArguments, default_model_path  # noqa: E402

MIB = 2**20


def kind(t: torch.Tensor) -> str:
    shape = tuple(t.shape)
    if t.requires_grad and t.is_leaf:
        return "param"
    if len(shape) == 4:
        return f"4d[-1]={'LxL' if shape[-1] == shape[-2] else shape[-1]}"
    return f"{len(shape)}d[-1]={shape[-1] if shape else ''}"


def main() -> None:
    classes, shots, steps = (int(x) for x in sys.argv[1:4])
    torch.set_num_threads(2)
    real_step_loss, stats = bt.step_loss, []

    def counted_step_loss(*args, **kwargs):
        seen: dict[int, int] = {}
        by_kind: collections.Counter = collections.Counter()

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            if storage.data_ptr() not in seen:
                seen[storage.data_ptr()] = storage.nbytes()
                by_kind[f"{kind(t)} {t.dtype}"] += storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = real_step_loss(*args, **kwargs)
        cache, step = args[2], args[3]
        stats.append({"texts": len(step.rows), "tokens": int(cache.lengths[step.rows].sum()),
                      "total_mib": round(sum(seen.values()) / MIB, 1),
                      "by": {k: round(v / MIB, 1) for k, v in by_kind.most_common()}})
        return loss

    bt.step_loss = counted_step_loss
    train = pd.read_parquet("../shared/data/sst5/train.parquet")
    train = pd.concat([train[train.label == label].sample(n=shots, random_state=0) for label in range(classes)])
    model = SetFitModel.from_pretrained(default_model_path())
    args = TrainingArguments(seed=0, sampling_strategy="oversampling", max_steps=steps, show_progress_bar=False,
                             save_strategy="no")
    Trainer(model, args, train_dataset={"text": train.text.tolist(), "label": train.label.tolist()}).train_embeddings()
    totals = [s["total_mib"] for s in stats]
    print("mean", round(sum(totals) / len(totals), 1), "max", max(totals))
    print(json.dumps(max(stats, key=lambda s: s["total_mib"]), indent=1))


if __name__ == "__main__":
    main()
