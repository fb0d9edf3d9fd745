"""Step time with and without parts, one process, alternating: python parts_ab.py DATASET SHOTS ROUNDS CAP [STEPS]
(e8_v2.txt: emotion 8 16 512 12; s64_v2.txt: sst2 64 16 512 12). Columns: round, ms/step off, on, on/off, train loss off, on."""
import sys
from pathlib import Path
REPO = Path(__file__).resolve().parents[3]  # the repository root
sys.path.insert(1, str(REPO)); sys.path.insert(1, str(REPO / "benchmarks"))
import numpy as np, torch, time
from _workers import few_shot_sample, load_split
from setfit_core import SetFitModel, TrainingArguments, default_model_path, body_training
from setfit_core.body_training import train_body

dataset, shots, rounds, cap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(2)
sample = few_shot_sample(load_split(str(REPO.parent / "shared" / "data"), dataset, "train"), shots, seed=0)
model = SetFitModel.from_pretrained(default_model_path(), device="cpu")
ratios = []
for r in range(rounds):
    ms, loss = {}, {}
    for switch in ("off", "on") if r % 2 == 0 else ("on", "off"):
        body_training.CPU_PART_MAX_TOKENS = cap if switch == "on" else None
        args = TrainingArguments(max_steps=int(sys.argv[5]) if len(sys.argv) > 5 else 15, seed=r, show_progress_bar=False, save_strategy="no")
        c0 = time.process_time()
        result = train_body(model.model_body, sample.text.tolist(), np.asarray(sample.label), args)
        ms[switch] = 1000 * result.seconds / result.steps; loss[switch] = result.train_loss
    ratios.append(ms["on"] / ms["off"])
    print(r, round(ms["off"], 1), round(ms["on"], 1), round(ratios[-1], 3), round(loss["off"],5), round(loss["on"],5), flush=True)
print(dataset, shots, cap, "median ratio", round(float(np.median(ratios)), 3), "mean", round(float(np.mean(ratios)), 3))
