"""Step time with and without feed_forward_recompute.patch, alternating in one process (this machine's step
times drifted 30-50% between processes, more than the difference): PAIRS rounds of 15 steps each way, the
order flipped every round; prints each round's ms per step and the median ratio (patched / plain).

With the patch applied, from the repository root:
    python benchmarks/notes/cpu_intel_2core_pairs_context/ffn_ab_in_process.py emotion 8 10
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(1, str(REPO))
sys.path.insert(1, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _workers import few_shot_sample, load_split  # noqa: E402

from setfit_core import SetFitModel, TrainingArguments, default_model_path  # noqa: E402
from setfit_core.body_training import train_body  # noqa: E402


def main() -> None:
    dataset, shots, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(2)
    sample = few_shot_sample(load_split(str(REPO.parent / "shared" / "data"), dataset, "train"), shots, seed=0)
    model = SetFitModel.from_pretrained(default_model_path(), device="cpu")
    ratios = []
    for r in range(rounds):
        ms = {}
        for switch in ("0", "1") if r % 2 == 0 else ("1", "0"):
            os.environ["FFN"] = switch  # read by the patched train_body at each call
            args = TrainingArguments(max_steps=15, seed=r, show_progress_bar=False, save_strategy="no")
            result = train_body(model.model_body, sample.text.tolist(), np.asarray(sample.label), args)
            ms[switch] = 1000 * result.seconds / result.steps
        ratios.append(ms["1"] / ms["0"])
        print(r, round(ms["0"], 1), round(ms["1"], 1), round(ratios[-1], 3), flush=True)
    print(dataset, shots, "median ratio", round(float(np.median(ratios)), 3), "mean", round(float(np.mean(ratios)), 3))


if __name__ == "__main__":
    main()
