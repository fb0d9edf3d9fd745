"""benchmarks/compare_setfit.py's orchestration: argument checks and the --pairs-memory verdict. The workers
(real training, minutes each) are replaced by recorded results; the benchmark itself is a script."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def compare_setfit(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("compare_setfit", None)
    import compare_setfit

    return compare_setfit


def _args(compare_setfit, tmp_path, *argv):
    (tmp_path / "sst5").mkdir(exist_ok=True)
    (tmp_path / "sst5" / "train.parquet").touch()
    return compare_setfit.build_parser().parse_args(["--pairs-memory", "--data-root", str(tmp_path), *argv])


def test_setfit_runs_are_refused_up_front_where_setfit_is_missing(compare_setfit, tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "setfit" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(SystemExit, match=r"setfit is not installed.*--libraries setfit_core"):
        compare_setfit.check_args(_args(compare_setfit, tmp_path))
    compare_setfit.check_args(_args(compare_setfit, tmp_path, "--libraries", "setfit_core"))  # ours alone is fine


def _fake_spawn(peaks: dict[tuple[str, str], float], calls: list[tuple[str, str]]):
    def spawn(spec, out, name):
        case = f"{spec['classes']}x{spec['shots']}"
        calls.append((spec["library"], case))
        return {"peak_rss_mib": peaks[spec["library"], case], "peak_rss_after_load_mib": 500.0, "body_steps": 9,
                "body_pairs": 144, "body_s": 1.0, "gradient_checkpointing": spec["gradient_checkpointing"]}

    return spawn


@pytest.mark.parametrize(("ours_5x64", "verdict", "rc"), [(1080.0, "PASS", 0), (1130.0, "FAIL", 1)])
def test_pairs_memory_judges_setfit_core_and_reports_setfit_beside_it(compare_setfit, tmp_path, monkeypatch,
                                                                      ours_5x64, verdict, rc):
    peaks = {("setfit_core", "2x8"): 1000.0, ("setfit_core", "5x64"): ours_5x64,
             ("setfit", "2x8"): 1400.0, ("setfit", "5x64"): 1600.0}
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(compare_setfit, "spawn", _fake_spawn(peaks, calls))
    assert compare_setfit.run_pairs_memory(_args(compare_setfit, tmp_path), tmp_path / "out") == rc
    # The libraries alternate which goes first, case by case.
    assert calls == [("setfit_core", "2x8"), ("setfit", "2x8"), ("setfit", "5x64"), ("setfit_core", "5x64")]
    summary = json.loads((tmp_path / "out" / "pairs_memory.json").read_text())
    assert summary["verdict"] == verdict  # setfit's own ratio (1.143) never decides it
    assert summary["rss_ratio_5x64_over_2x8"] == pytest.approx({"setfit_core": ours_5x64 / 1000, "setfit": 1600 / 1400})
    assert summary["setfit_core_5x64_over_setfit_2x8"] == pytest.approx(ours_5x64 / 1400)


def test_pairs_memory_checkpointed_leaves_setfit_out(compare_setfit, tmp_path, monkeypatch, capsys):
    peaks = {("setfit_core", "2x8"): 1000.0, ("setfit_core", "5x64"): 1040.0}
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(compare_setfit, "spawn", _fake_spawn(peaks, calls))
    args = _args(compare_setfit, tmp_path, "--gradient-checkpointing")
    assert compare_setfit.run_pairs_memory(args, tmp_path / "out") == 0
    assert calls == [("setfit_core", "2x8"), ("setfit_core", "5x64")]
    assert "no gradient checkpointing switch" in capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "pairs_memory.json").read_text())
    assert summary["verdict"] == "PASS" and "setfit_core_5x64_over_setfit_2x8" not in summary


def _row(library, dataset, classes, accuracy, body_s):
    return {"library": library, "dataset": dataset, "num_classes": classes, "shots": 8, "device": "cuda",
            "amp": False, "seed": 0, "accuracy": accuracy, "macro_f1": accuracy, "body_s": body_s, "head_s": 0.1,
            "num_test": 100, "device_name": "H200", "cpu_model": None, "torch_threads": 16,
            "versions": {"setfit": "1.2.0"}}


def test_summary_sets_the_four_rows_side_by_side_fewest_classes_first(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from _report import write_summary

    rows = [_row("setfit", "hwu64", 64, 0.77, 250.0), _row("fast", "hwu64", 64, 0.84, 5.0),
            _row("probe", "hwu64", 64, 0.78, 0.0), _row("setfit_core", "hwu64", 64, 0.76, 40.0),
            _row("setfit", "sst2", 2, 0.65, 10.0), _row("fast", "sst2", 2, 0.67, 1.0),
            _row("probe", "sst2", 2, 0.64, 0.0)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_summary(tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    table = summary[summary.index("## Accuracy by number of classes"):].split("\n\n")[1].splitlines()
    assert table[0] == ("| dataset | classes | shots | device | setfit_core | fast | setfit | probe | fast − setfit "
                        "| fast − probe | fast time / setfit time |")
    assert table[2] == "| sst2 | 2 | 8 | cuda | – | 0.670 | 0.650 | 0.640 | +2.0 pt | +3.0 pt | 10.0% |"
    assert table[3] == "| hwu64 | 64 | 8 | cuda | 0.760 | 0.840 | 0.770 | 0.780 | +7.0 pt | +6.0 pt | 2.0% |"
    assert "| fast vs probe | |  |  | +6.0 pt | +6.0 pt |" in summary


def test_predict_alternates_variants_and_judges_the_onnx_goals(compare_setfit, tmp_path, monkeypatch):
    """--predict: one prepare run, then every variant per repeat, the order alternating; ratios to setfit's
    texts/s against the goals; the streaming rows. The workers are replaced by recorded results."""
    import numpy as np

    rates = {"setfit": 100.0, "torch": 110.0, "onnx_fp32": 160.0, "onnx_int8": 240.0}
    calls: list[str] = []

    def spawn(spec, out, name):
        calls.append(name)
        base = {"peak_rss_mib": 900.0, "host_probe_start_ms": 50.0, "host_probe_end_ms": 50.0, "torch_threads": 2,
                "cpu_model": "test cpu", "versions": {}}
        if spec["kind"] == "predict":
            (out / "runs").mkdir(parents=True, exist_ok=True)
            np.save(out / "runs" / f"{name}.npy", np.array([0, 1, 1, 0 if spec["variant"] == "onnx_int8" else 1]))
            return {**base, "predict_texts_per_s": rates[spec["variant"]], "accuracy": 0.8, "macro_f1": 0.8}
        if spec["kind"] == "stream":
            return {**base, "predict_texts_per_s": 300.0, "peak_rss_after_predict_mib": 700.0,
                    "output_rows": spec["rows"]}
        return base

    monkeypatch.setattr(compare_setfit, "spawn", spawn)
    sys.modules.pop("_predict_report", None)
    args = compare_setfit.build_parser().parse_args(["--predict", "--datasets", "sst2", "--repeats", "2",
                                                     "--stream-rows", "1000,0"])
    import _predict_report

    assert _predict_report.run_predict(args, tmp_path / "out") == 0
    assert calls == ["predict-prepare", "predict-setfit-0", "predict-torch-0", "predict-onnx_fp32-0",
                     "predict-onnx_int8-0", "predict-onnx_int8-1", "predict-onnx_fp32-1", "predict-torch-1",
                     "predict-setfit-1", "stream-1000"]
    table = (tmp_path / "out" / "predict.md").read_text()
    assert "| onnx_int8 | default | 240 (240–240) | 2.40× | ≥ 2.5× (NOT met) | 0.8000 | 0.7500 | 900 |" in table
    assert "| onnx_fp32 | default | 160 (160–160) | 1.60× | ≥ 1.5× (met) |" in table
    assert "| synthetic Parquet, onnx_int8 | 1,000 | 300 | 700 |" in table


def test_predict_on_a_gpu_runs_the_half_precision_variants_on_repeated_texts(compare_setfit, tmp_path, monkeypatch):
    """--predict --device cuda: setfit at its default batch and at 256, setfit_core in float32, float16 and
    bfloat16; K copies of the test split in every run; the 2x goal on float32; no ONNX."""
    import numpy as np

    rates = {"setfit": 4000.0, "setfit_b256": 7000.0, "torch": 7600.0, "torch_fp16": 9000.0, "torch_bf16": 8400.0}
    batches = {"setfit": 32, "setfit_b256": 256, "torch": None, "torch_fp16": None, "torch_bf16": None}
    specs: list[dict] = []

    def spawn(spec, out, name):
        specs.append({**spec, "name": name})
        base = {"peak_rss_mib": 1900.0, "host_probe_start_ms": 50.0, "host_probe_end_ms": 50.0, "torch_threads": 16,
                "cpu_model": "host cpu", "versions": {}, "device": "cuda", "device_name": "NVIDIA H200"}
        if spec["kind"] == "predict":
            (out / "runs").mkdir(parents=True, exist_ok=True)
            np.save(out / "runs" / f"{name}.npy", np.array([0, 1, 1, 0 if spec["variant"] == "torch_bf16" else 1]))
            return {**base, "predict_texts_per_s": rates[spec["variant"]], "accuracy": 0.8, "macro_f1": 0.8,
                    "num_test": 1821 * spec["repeat_texts"], "batch_size": batches[spec["variant"]]}
        if spec["kind"] == "stream":
            assert spec["variant"] == "torch"  # no GPU onnxruntime: the GPU streams with the torch model
            return {**base, "predict_texts_per_s": 9000.0, "peak_rss_after_predict_mib": 2000.0,
                    "output_rows": spec["rows"]}
        return base

    monkeypatch.setattr(compare_setfit, "spawn", spawn)
    sys.modules.pop("_predict_report", None)
    args = compare_setfit.build_parser().parse_args(["--predict", "--device", "cuda", "--datasets", "sst2",
                                                     "--repeats", "1", "--predict-repeat-texts", "12",
                                                     "--stream-rows", "500"])
    import _predict_report

    assert _predict_report.run_predict(args, tmp_path / "out") == 0
    assert [s["name"] for s in specs] == ["predict-prepare", "predict-setfit-0", "predict-setfit_b256-0",
                                          "predict-torch-0", "predict-torch_fp16-0", "predict-torch_bf16-0",
                                          "stream-500"]
    assert {s["repeat_texts"] for s in specs} == {12} and {s["device"] for s in specs} == {"cuda"}
    table = (tmp_path / "out" / "predict.md").read_text()
    assert table.startswith("Prediction, sst2 test split ×12 (21852 texts), NVIDIA H200 (host: 16 threads, host cpu)")
    assert "| setfit | 32 | 4000 (4000–4000) | 1.00× | – |" in table
    assert "| torch | default | 7600 (7600–7600) | 1.90× | ≥ 2.0× (NOT met) | 0.8000 | 1.0000 |" in table
    assert "| torch_fp16 | default | 9000 (9000–9000) | 2.25× | – | 0.8000 | 1.0000 |" in table
    assert "| torch_bf16 | default | 8400 (8400–8400) | 2.10× | – | 0.8000 | 0.7500 |" in table
    assert "onnx" not in table and "| synthetic Parquet, torch | 500 | 9000 | 2000 |" in table


def test_predict_repeat_texts_must_be_positive(compare_setfit, tmp_path):
    args = compare_setfit.build_parser().parse_args(["--predict", "--data-root", str(tmp_path),
                                                     "--predict-repeat-texts", "0", "--libraries", "setfit_core"])
    with pytest.raises(SystemExit, match=r"--predict-repeat-texts must be a positive int; got 0"):
        compare_setfit.check_args(args)


def test_predict_batch_sizes_per_device(compare_setfit):
    """On a CPU every variant predicts in batches of 64 (as earlier rows); on a GPU setfit at its default 32 and at
    256, setfit_core at its own default (None: 256 there)."""
    import _predict_workers

    assert {_predict_workers.predict_batch_size(v, "cpu") for v in compare_setfit.PREDICT_VARIANTS["cpu"]} == {64}
    cuda = {v: _predict_workers.predict_batch_size(v, "cuda") for v in compare_setfit.PREDICT_VARIANTS["cuda"]}
    assert cuda == {"setfit": 32, "setfit_b256": 256, "torch": None, "torch_fp16": None, "torch_bf16": None}
    assert _predict_workers.VARIANTS["torch_bf16"][1] == "bfloat16"
