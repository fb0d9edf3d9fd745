"""Embedding throughput: sentence-transformers' encode() (what setfit's predict calls) against
setfit_core's token-count batching at several CPU token budgets, on the same body, alternating.

    python benchmarks/predict_probe.py --datasets sst2,emotion --threads 2 --repeats 3

Prints texts/s per variant and the largest difference from encode()'s embeddings; `--out F.jsonl`
appends the rows. Chooses `setfit_core.engine.inference.CPU_TOKEN_BUDGET`; compare_setfit.py measures predict
end to end.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The working tree's setfit_core is the one under test, installed or not (as in compare_setfit.py).
sys.path.insert(1, str(ROOT))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from setfit_core import inference  # noqa: E402
from setfit_core.model_io.body_loading import default_model_path  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="sst2,emotion")
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--model", default=None, help="sentence-transformers dir (default: the offline model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64, help="compare_setfit.py's predict batch size")
    p.add_argument("--budgets", default="none,1024,2048,4096", help="token budgets; none = batch_size only")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args()

    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    body = SentenceTransformer(args.model or default_model_path(), device=args.device)
    body.eval()
    budgets = [None if b == "none" else int(b) for b in args.budgets.split(",")]
    for name in args.datasets.split(","):
        texts = pd.read_parquet(Path(args.data_root) / name / "test.parquet")["text"].tolist()
        probe(body, name, texts, budgets, args)


def _st_encode(body, texts: list[str], batch_size: int):
    return body.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)


def _ours(body, texts: list[str], batch_size: int, budget: int | None):
    inference.CPU_TOKEN_BUDGET = budget
    return inference.embed(body, texts, batch_size, normalize=True)


def probe(body, name: str, texts: list[str], budgets: list[int | None], args: argparse.Namespace) -> None:
    st_name = "sentence-transformers encode"
    variants = {st_name: partial(_st_encode, body, texts, args.batch_size)} | {
        f"setfit_core budget={b}": partial(_ours, body, texts, args.batch_size, b) for b in budgets}
    reference = variants[st_name]()
    rates: dict[str, list[float]] = {v: [] for v in variants}
    diffs: dict[str, float] = {}
    for _ in range(args.repeats):  # alternate variants, so drift in machine speed hits all alike
        for variant, run in variants.items():
            start = time.perf_counter()
            embeddings = run()
            rates[variant].append(len(texts) / (time.perf_counter() - start))
            diffs[variant] = float((embeddings.float() - reference).abs().max())
    base = max(rates[st_name])
    print(f"\n{name}: {len(texts)} texts, {args.device}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads")
    for variant, r in rates.items():
        print(f"  {variant:32s} best {max(r):7.1f} texts/s ({max(r) / base:.2f}x)  max |diff| {diffs[variant]:.1e}")
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps({"dataset": name, "variant": variant, "texts_per_s": r, "device": args.device,
                                    "threads": args.threads, "max_abs_diff": diffs[variant]}) + "\n")


if __name__ == "__main__":
    main()
