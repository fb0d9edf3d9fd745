"""`make demo`: run `train_pipeline` on the built-in demo data with the offline model.

Artifacts go to ``artifacts/`` under the repository root (git-ignored); run it twice and the
second run reuses every stage. No Prefect server is needed: the flow starts Prefect's temporary
local API.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
# Small enough for ~1 minute on 2 CPU cores: 40 texts, 2·5·40 = 400 pairs, 25 steps.
DEMO_ARGS = {"num_iterations": 5, "seed": 0, "show_progress_bar": False}
# Prefect offline: no telemetry look-ups; the temporary API can take >20 s to start on a busy
# 2-core machine. Only defaults: a user's own settings win.
PREFECT_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def main() -> None:
    for name, value in PREFECT_ENV.items():
        os.environ.setdefault(name, value)
    # Imported after the environment is set: Prefect reads its settings at import.
    from setfit_pipeline.flows import prefect_ops
    from setfit_pipeline.flows.train import train_pipeline

    from setfit_core import SetFitModel
    from setfit_core.demo_data import write_demo_data
    from setfit_core.pipeline.report import metric_rows, stage_rows, text_table

    paths = write_demo_data(ARTIFACTS / "demo-data")
    started = time.perf_counter()
    with prefect_ops.temporary_api():  # a temporary API that goes with this process, however it ends
        result = train_pipeline(train_data=str(paths["train"]), eval_data=str(paths["test"]),
                                artifacts_root=str(ARTIFACTS), args=DEMO_ARGS)
    seconds = time.perf_counter() - started
    print(f"\nsetfit-train on the demo data: {seconds:.1f} s (Prefect start-up included)\n")
    print(f"phase 1: {result['phase1']}\n")
    print(text_table(stage_rows(result["stages"])))
    print()
    print(text_table(metric_rows(result["metrics"])))
    model = SetFitModel.from_pretrained(result["model_uri"])
    texts = ["I was charged twice, please refund me.", "The app crashes on startup."]
    print(f"\nmodel: {result['model_uri']}\npredict {texts}: {model.predict(texts)}")


if __name__ == "__main__":
    main()
