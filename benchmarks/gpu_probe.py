"""Quick GPU probe: body-phase time and accuracy, setfit_core vs setfit 1.2.0, in one process.

A development tool beside compare_setfit.py (which isolates every run in its own process). Each
argument is LIB:DATA:SHOTS:SEED[:field=json...] (or [:field=json|field=json] when a value holds a colon),
LIB one of ours, oursnd (no text de-duplication), ourseager (no CUDA graphs),
ourstf32, ourspairs42 (setfit's own pair draw: its fixed-seed-42 shuffle, for A/B of the draw),
fast (preset="fast"), theirs (setfit 1.2.0). Environment: SETFIT_BENCH_MODEL (model dir),
SETFIT_BENCH_DATA (folder with <name>/{train,test}.parquet). Prints one JSON line per run:

    python benchmarks/gpu_probe.py ours:sst2:64:0 theirs:sst2:64:0 fast:emotion:64:1:max_steps=240
"""
import os, sys, time, tempfile, json
import pandas as pd, torch, numpy as np
from sklearn.metrics import accuracy_score, f1_score
MODEL, DATA = os.environ["SETFIT_BENCH_MODEL"], os.environ["SETFIT_BENCH_DATA"]

def sample(name, shots, seed):
    tr = pd.read_parquet(f"{DATA}/{name}/train.parquet"); te = pd.read_parquet(f"{DATA}/{name}/test.parquet")
    few = pd.concat([tr[tr.label == l].sample(n=shots, random_state=seed) for l in sorted(tr.label.unique())])
    return few, te

def ours(few, te, seed, **kw):
    kw = dict(kw)
    from setfit_core import SetFitModel, Trainer, TrainingArguments
    m = SetFitModel.from_pretrained(MODEL, device="cuda")
    kw.setdefault("num_iterations", None if kw.get("preset") else 20)
    args = TrainingArguments(seed=seed, show_progress_bar=False, save_strategy="no", **kw)
    t = Trainer(m, args, train_dataset=few[["text", "label"]])
    torch.cuda.synchronize(); s = time.perf_counter(); t.train_embeddings(); torch.cuda.synchronize(); body = time.perf_counter() - s
    t.train_classifier()
    s = time.perf_counter(); pred = m.predict(te.text.tolist(), batch_size=64, as_numpy=True); pt = time.perf_counter() - s
    return body, t.body_result.steps, pred, pt, t.body_result.graphed_steps

def theirs(few, te, seed):
    from setfit import SetFitModel, Trainer, TrainingArguments
    from datasets import Dataset
    m = SetFitModel.from_pretrained(MODEL, device="cuda")
    args = TrainingArguments(num_iterations=20, seed=seed, show_progress_bar=False, output_dir=tempfile.mkdtemp(), report_to="none", save_strategy="no")
    t = Trainer(model=m, args=args, train_dataset=Dataset.from_pandas(few[["text", "label"]], preserve_index=False), metric=lambda a, b: {"x": 0})
    x, y = few.text.tolist(), few.label.tolist()
    torch.cuda.synchronize(); s = time.perf_counter(); t.train_embeddings(x, y, args=args); torch.cuda.synchronize(); body = time.perf_counter() - s
    t.train_classifier(x, y, args=args)
    s = time.perf_counter(); pred = np.asarray(m.predict(te.text.tolist(), batch_size=64, as_numpy=True)); pt = time.perf_counter() - s
    return body, None, pred, pt, None

for spec in sys.argv[1:]:
    lib, name, shots, seed, *rest = spec.split(":", 4)
    # Fields after the seed: k=json separated by ":" or, when a value holds ":" (a JSON object), by "|".
    extra = rest[0].split("|" if "|" in rest[0] or "{" in rest[0] else ":") if rest else []
    kw = {}
    for item in extra:
        k, v = item.split("=", 1)
        kw[k] = json.loads(v)
    if lib == "fast":
        kw["preset"] = "fast"
    few, te = sample(name, int(shots), int(seed))
    import setfit_core.body_training as bt
    bt.DEDUPLICATE_TEXTS = lib != "oursnd"
    bt.CUDA_GRAPHS = lib != "ourseager"
    torch.backends.cuda.matmul.allow_tf32 = lib == "ourstf32"
    import setfit_core.sampling as sp
    if not hasattr(sp, "_own_candidates"):
        sp._own_candidates = sp._candidates
    # ourspairs42: the candidate shuffle of setfit 1.2.0's sampler, RandomState(42) whatever the seed
    # (batch order still follows the seed).
    sp._candidates = ((lambda labels, rng, cap: sp._own_candidates(labels, np.random.RandomState(42), cap))
                      if lib == "ourspairs42" else sp._own_candidates)
    torch.cuda.reset_peak_memory_stats()
    body, steps, pred, pt, graphed = theirs(few, te, int(seed)) if lib == "theirs" else ours(few, te, int(seed), **kw)
    print(json.dumps({"lib": lib, "kw": kw, "data": name, "shots": int(shots), "seed": int(seed), "body_s": round(body, 2), "steps": steps,
                      "acc": round(accuracy_score(te.label, pred), 4), "f1": round(f1_score(te.label, pred, average="macro"), 4),
                      "predict_tps": round(len(te) / pt), "graphed_steps": graphed,
                      "peak_gpu_reserved_mib": round(torch.cuda.max_memory_reserved() / 2**20)}), flush=True)
