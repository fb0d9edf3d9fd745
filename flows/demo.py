"""`make demo`: train on the built-in demo data with the offline model and print the metrics.

(The Prefect pipeline version replaces this body once the pipeline lands.)
"""

from __future__ import annotations

import logging
import time

from setfit_core import SetFitModel, Trainer, TrainingArguments
from setfit_core.demo_data import demo_splits


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    train, test = demo_splits()
    columns = lambda rows: {k: [r[k] for r in rows] for k in ("text", "label")}  # noqa: E731
    model = SetFitModel.from_pretrained()  # bundled offline all-MiniLM-L6-v2
    args = TrainingArguments(num_iterations=5, seed=0, save_strategy="no")
    trainer = Trainer(model, args, train_dataset=columns(train), eval_dataset=columns(test), metric="accuracy")
    started = time.perf_counter()
    trainer.train()
    print(f"trained on {len(train)} texts in {time.perf_counter() - started:.1f} s")
    print("metrics:", trainer.evaluate())
    print("predict:", model.predict(["I was charged twice, please refund me.", "The app crashes on startup."]))


if __name__ == "__main__":
    main()
