"""The bad-input matrix of docs/reliability.md ("Bad input matrix"): one row per bad input, one test case per row.

Every row asserts the message a user sees. Errors come before any training: library rows fail while
the `Trainer` / `TrainingArguments` / model is being built; pipeline rows fail in `PipelineRun.run_all()`
before stage 1, and the test checks that nothing was written under the artifacts root. Warning rows
(training could go on) check the log line and stop after planning. Data-quality rows (FINDING) check
both modes: the warning logged without strict, and the same text in the `DataQualityError` raised with
strict (library: `check_data_quality(..., strict=True)`; pipeline: `PipelineJob(strict=True)`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from setfit_core import DataQualityError, SetFitModel, Trainer, TrainingArguments, check_data_quality
from setfit_core.pipeline import PipelineJob, PipelineRun

MATRIX_PAGE = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
TINY_ARGS = {"num_iterations": 2, "seed": 0, "num_epochs": [1, 2], "show_progress_bar": False}
LONG_TEXT = " ".join(["good movie"] * 80)  # 160 words: past the tiny body's 64 tokens
WARNING = "warning"  # a row whose `error` is this logs a warning instead of raising
FINDING = "finding"  # a data-quality row: a warning without strict, a DataQualityError with it
BLANKS = ["", "   ", "\u200b", "\u2060\ufeff"]  # empty, whitespace, zero-width space, word joiner + BOM


@dataclass(frozen=True)
class Row:
    id: str
    case: str  # the bad input, as the docs table says it
    # library: call(ctx) does the failing thing (FINDING rows: returns the Trainer's data keywords);
    # pipeline: returns job changes
    call: Callable[[Any], Any]
    error: type[Exception] | str
    match: str

    def param(self) -> Any:
        return pytest.param(self, id=self.id)


def train_with(train: Any, eval_dataset: Any = None, **kwargs: Any) -> Callable[[Any], Any]:
    return lambda ctx: Trainer(ctx.model(), TrainingArguments(show_progress_bar=False), train_dataset=train,
                               eval_dataset=eval_dataset, **kwargs)


def data(train: Any, eval_dataset: Any = None) -> Callable[[Any], dict[str, Any]]:
    """A FINDING row's data: the Trainer builds with it (warning) and check_data_quality raises (strict)."""
    return lambda ctx: {"train_dataset": train, "eval_dataset": eval_dataset}


GOOD = {"text": ["good", "bad", "nice", "poor"], "label": [1, 0, 1, 0]}
TINY_CLASSES = {"text": [f"request {i}" for i in range(500)], "label": [f"intent-{i}" for i in range(500)]}

LIBRARY_ROWS = [
    Row("lib-empty-train", "empty training set", train_with({"text": [], "label": []}), ValueError,
        r"train_dataset is empty; SetFit needs at least 2 labelled examples per class"),
    Row("lib-single-class", "a single class", train_with({"text": ["a", "b", "c"], "label": [1, 1, 1]}), ValueError,
        r"train_dataset has a single class \(1\); SetFit needs at least 2 classes.*Add examples of another class"),
    Row("lib-missing-text-column", "no `text` column", train_with({"sentence": ["a", "b"], "label": [0, 1]}),
        ValueError, r"train_dataset is missing column\(s\) \['text'\]; found columns: \['label', 'sentence'\].*"
                    r"column_mapping"),
    Row("lib-missing-label-column", "no `label` column", train_with({"text": ["a", "b"], "y": [0, 1]}), ValueError,
        r"train_dataset is missing column\(s\) \['label'\]; found columns: \['text', 'y'\]"),
    Row("lib-column-mapping-unknown", "`column_mapping` names a column that is not there",
        train_with(GOOD, column_mapping={"sentence": "text"}), ValueError,
        r"column_mapping names column\(s\) \['sentence'\] that train_dataset does not have; found columns: "
        r"\['label', 'text'\]"),
    Row("lib-none-text", "`None` text", train_with({"text": ["a", None], "label": [0, 1]}), ValueError,
        r"train_dataset column 'text' row 1 is None \(NoneType\); every text must be a string.*dropna"),
    Row("lib-nan-text", "NaN text (pandas missing value)",
        train_with(pd.DataFrame({"text": ["a", math.nan], "label": [0, 1]})), ValueError,
        r"train_dataset column 'text' row 1 is NaN \(float\)"),
    Row("lib-non-string-text", "non-string text", train_with({"text": ["a", 3], "label": [0, 1]}), ValueError,
        r"train_dataset column 'text' row 1 is 3 \(int\); every text must be a string"),
    Row("lib-mixed-label-types", "labels of mixed types", train_with({"text": ["a", "b"], "label": [0, "pos"]}),
        ValueError, r"train_dataset column 'label' mixes label types \{'int': 0, 'str': 'pos'\}; use one type"),
    Row("lib-float-labels", "float labels", train_with({"text": ["a", "b"], "label": [0.0, 1.0]}), ValueError,
        r"train_dataset column 'label' holds floats \(row 0: 0.0\); labels must be ints or strings.*astype\(int\)"),
    Row("lib-nan-label", "missing (NaN) label", train_with({"text": ["a", "b"], "label": [0, math.nan]}), ValueError,
        r"train_dataset column 'label' row 1 is NaN; drop rows without a label first"),
    Row("lib-eval-label-unseen", "eval labels never seen in training",
        train_with(GOOD, {"text": ["fine"], "label": [7]}), ValueError,
        r"eval_dataset has labels \[7\] never seen in training; known labels: \[0, 1\]"),
    Row("lib-eval-label-type", "eval labels of another type than the training labels",
        train_with(GOOD, {"text": ["fine"], "label": ["positive"]}), ValueError,
        r"eval_dataset has string labels \(e.g. 'positive'\) but the training labels are the ints \[0, 1\]; use the "
        r"same label type in every split"),
    Row("lib-empty-eval", "empty eval set", train_with(GOOD, {"text": [], "label": []}), ValueError,
        r"eval_dataset is empty \(0 rows\); give it labelled rows, or leave it out"),
    Row("lib-out-features", "`out_features` ≠ number of classes",
        lambda ctx: Trainer(SetFitModel.from_pretrained(ctx.tiny_model_dir, use_differentiable_head=True,
                                                        head_params={"out_features": 3}, device="cpu"),
                            TrainingArguments(show_progress_bar=False), train_dataset=GOOD), ValueError,
        r"head_params\['out_features'\] is 3 but the training data has 2 classes; set out_features=2"),
    Row("lib-model-path-missing", "a model path that does not exist",
        lambda ctx: SetFitModel.from_pretrained(str(ctx.tmp_path / "no-such-model")), FileNotFoundError,
        r"model path '.*no-such-model' does not exist or is not a directory.*bundled offline model"),
    Row("lib-hub-id-offline", "a hub id that cannot be fetched offline",
        lambda ctx: SetFitModel.from_pretrained("someone/not-cached-model"), OSError,
        r"could not load model 'someone/not-cached-model'.*HF_HUB_OFFLINE is set.*Pass a local directory.*"
        r"bundled offline model"),
    Row("lib-unknown-loss", "a loss name that does not exist", lambda ctx: TrainingArguments(loss="TripletLoss"),
        ValueError, r"loss 'TripletLoss' is not a supported loss.*Valid:"),
    Row("lib-unknown-args-field", "a `TrainingArguments` field that does not exist",
        lambda ctx: TrainingArguments.from_dict({"num_iteration": 20}), ValueError,
        r"'num_iteration' is not a TrainingArguments field; did you mean 'num_iterations'\?"),
    Row("lib-tuple-wrong-length", "a tuple of the wrong length for a tuple field",
        lambda ctx: TrainingArguments(batch_size=(16, 2, 4)), ValueError,
        r"'batch_size' must be a single value or a \(embedding_phase, classifier_phase\) pair of positive ints; "
        r"got \(16, 2, 4\)"),
    Row("lib-unknown-metric", "a metric name that does not exist", train_with(GOOD, metric="auc"), ValueError,
        r"'metric' must be one of \['accuracy', 'f1'.*got 'auc'"),
    Row("lib-long-texts", "texts longer than the body's max length (warning)",
        train_with({"text": [LONG_TEXT, "bad", "nice", "poor"], "label": [1, 0, 1, 0]}), WARNING,
        r"train_dataset: 1 of 4 texts are longer than the body's max_seq_length \(64 tokens\) and will be truncated"),
    Row("lib-conflicting-duplicates", "identical texts with conflicting labels (warning; error with strict)",
        data({"text": ["good", "good", "bad", "nice"], "label": [1, 0, 0, 1]}), FINDING,
        r"train_dataset has 1 text\(s\) that appear with different labels, e.g. 'good'; check the labelling"),
    Row("lib-duplicate-columns", "a DataFrame with two `text` columns (warning; error with strict)",
        data(pd.DataFrame([["good", "x", 1], ["bad", "y", 0], ["nice", "z", 1], ["poor", "w", 0]],
                          columns=["text", "text", "label"])), FINDING,
        r"train_dataset has more than one column named 'text' \(positions \[0, 1\]\); only the first of each is "
        r"read and the others are ignored. Rename or drop the extra column\(s\)"),
    Row("lib-blank-texts", "empty, whitespace-only or invisible texts (warning; error with strict)",
        data({"text": [*BLANKS, *GOOD["text"]], "label": [1, 0, 1, 0, *GOOD["label"]]}), FINDING,
        r"train_dataset has 4 empty or invisible text\(s\) at rows \[0, 1, 2, 3\] \('', '   ', '\\u200b'\): .*"
        r"Drop those rows \(setfit_core.data_quality.is_blank_text finds them\) or give them real text"),
    Row("lib-blank-eval-texts", "an invisible text in the eval set (warning; error with strict)",
        data(GOOD, {"text": ["fine", "\u00ad"], "label": [1, 0]}), FINDING,
        r"eval_dataset has 1 empty or invisible text\(s\) at rows \[1\] \('\\xad'\)"),
    Row("lib-single-example-class", "a class with one example (warning; error with strict)",
        data({"text": [*GOOD["text"], "cancel my order"], "label": [*GOOD["label"], 2]}), FINDING,
        r"train_dataset has 1 class\(es\) with fewer than 2 examples: 2 \(1\); the only positive pair of such a "
        r"class is its one text paired with itself.*Add at least one more example of each, or drop these classes"),
    Row("lib-too-few-examples", "fewer examples than 2 per class (warning; error with strict)",
        data({"text": ["good", "bad", "nice", "poor", "meh"], "label": [1, 0, 1, 0, 2]}), FINDING,
        r"train_dataset has 5 examples for 3 classes, fewer than 6 \(2 per class\); add examples until every "
        r"class has at least 2"),
    Row("lib-many-tiny-classes", "500 classes with one example each (warning; error with strict)",
        data(TINY_CLASSES), FINDING,
        r"train_dataset has 500 classes with at most 2 examples each \(more than 100\): pair sampling "
        r"\(sampling_strategy='oversampling'\) makes 249,500 pairs of its 500 texts, 15,594 steps per epoch at "
        r"batch size 16. Use TrainingArguments\(preset=\"fast\"\)"),
]


def csv(ctx: Any, name: str, body: bytes) -> str:
    path = ctx.tmp_path / "data" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(body)
    return str(path)


def parquet(ctx: Any, name: str, columns: dict[str, list]) -> str:
    path = ctx.tmp_path / "data" / name
    path.parent.mkdir(exist_ok=True)
    pd.DataFrame(columns).to_parquet(path, index=False)
    return str(path)


def text_file(ctx: Any, name: str, text: str) -> str:
    path = ctx.tmp_path / "data" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def parquet_columns(ctx: Any, name: str, names: list[str], columns: list[list]) -> str:
    """A Parquet file whose schema may repeat a name (pandas refuses to write one)."""
    path = ctx.tmp_path / "data" / name
    path.parent.mkdir(exist_ok=True)
    pq.write_table(pa.table([pa.array(c) for c in columns], names=names), path)
    return str(path)


SENTIMENT = {"text": ["good", "bad", "nice", "poor"], "label": ["positive", "negative", "positive", "negative"]}


PIPELINE_ROWS = [
    Row("pipe-missing-data-uri", "a data URI that does not exist",
        lambda ctx: {"train_data": str(ctx.tmp_path / "nowhere" / "train.parquet")}, FileNotFoundError,
        r"train_data '.*nowhere/train.parquet' does not exist; pass a path or URI to Parquet"),
    Row("pipe-empty-data-uri", "an empty data URI", lambda ctx: {"train_data": ""}, ValueError,
        r"'train_data' must be a non-empty path or URI; got ''"),
    Row("pipe-unreadable-file", "a file that cannot be parsed (corrupt Parquet)",
        lambda ctx: {"train_data": csv(ctx, "train.parquet", b"this is not parquet")}, ValueError,
        r"could not read train_data '.*train.parquet' as parquet:"),
    Row("pipe-wrong-format", "a file format that is not supported",
        lambda ctx: {"train_data": csv(ctx, "train.txt", b"good\t1\n")}, ValueError,
        r"train_data '.*train.txt' has an unsupported format '.txt'; use Parquet \(.parquet, .pq\), CSV"),
    Row("pipe-missing-columns", "a CSV without `text`/`label` columns",
        lambda ctx: {"train_data": csv(ctx, "train.csv", b"sentence,y\ngood,1\nbad,0\n")}, ValueError,
        r"train_data is missing column\(s\) \['text', 'label'\]; found columns: \['sentence', 'y'\]"),
    Row("pipe-empty-eval", "an empty eval split",
        lambda ctx: {"eval_data": csv(ctx, "eval.csv", b"text,label\n")}, ValueError,
        r"eval_data is empty \(0 rows\); give it labelled rows, or leave it out to skip evaluation"),
    Row("pipe-non-utf8-csv", "a CSV with bytes that are not UTF-8",
        lambda ctx: {"train_data": csv(ctx, "train.csv", b"text,label\ncaf\xe9 ok,1\nbad,0\n")}, ValueError,
        r"train_data '.*train.csv' is not valid UTF-8 text \(bytes b'\\xe9.*re-save it as UTF-8, e.g. iconv"),
    Row("pipe-non-utf8-jsonl", "a JSONL file with bytes that are not UTF-8",
        lambda ctx: {"train_data": csv(ctx, "train.jsonl", b'{"text": "caf\xe9", "label": 1}\n')}, ValueError,
        r"train_data '.*train.jsonl' is not valid UTF-8 text .*in.jsonl > out.jsonl, or write Parquet"),
    Row("pipe-float-labels", "float labels in a CSV",
        lambda ctx: {"train_data": csv(ctx, "train.csv", b"text,label\ngood,1.0\nbad,0.5\n")}, ValueError,
        r"train_data column 'label' holds floats \(row 0: 1.0\); labels must be ints or strings"),
    Row("pipe-missing-text", "an empty text cell in a CSV",
        lambda ctx: {"train_data": csv(ctx, "train.csv", b"text,label\ngood,1\n,0\n")}, ValueError,
        r"train_data column 'text' row 1 is NaN \(float\); every text must be a string"),
    Row("pipe-eval-label-unseen", "eval labels never seen in training",
        lambda ctx: {"eval_data": parquet(ctx, "eval.parquet", {"text": ["meh"], "label": ["neutral"]})},
        ValueError, r"eval_data has labels \['neutral'\] never seen in training; known labels: \['negative', "
                    r"'positive'\]"),
    Row("pipe-eval-label-type", "eval labels of another type than the training labels",
        lambda ctx: {"train_data": parquet(ctx, "train.parquet", {"text": ["a", "b"], "label": [0, 1]})},
        ValueError, r"eval_data has string labels \(e.g. 'positive'\) but the training labels are the ints"),
    Row("pipe-single-class", "a single class",
        lambda ctx: {"train_data": parquet(ctx, "train.parquet", {"text": ["a", "b"], "label": ["x", "x"]})},
        ValueError, r"train_data has a single class \('x'\)"),
    Row("pipe-multi-label", "multi-label rows (the pipeline is single-label)",
        lambda ctx: {"train_data": parquet(ctx, "train.parquet", {"text": ["a", "b"], "label": [[1, 0], [0, 1]]})},
        ValueError, r"train_data '.*' has multi-label rows.*Train multi-label models with setfit_core.Trainer"),
    Row("pipe-unknown-args-field", "an `args` field that does not exist",
        lambda ctx: {"args": {**TINY_ARGS, "num_iteration": 2}}, ValueError,
        r"'num_iteration' is not a TrainingArguments field; did you mean 'num_iterations'\?"),
    Row("pipe-tuple-wrong-length", "a tuple of the wrong length in `args`",
        lambda ctx: {"args": {**TINY_ARGS, "num_epochs": [1, 2, 3]}}, ValueError,
        r"'num_epochs' must be a single value or a \(embedding_phase, classifier_phase\) pair of positive ints; "
        r"got \[1, 2, 3\]"),
    Row("pipe-bad-head-params", "`head_params` that LogisticRegression rejects",
        lambda ctx: {"head_params": {"C": -1}}, ValueError,
        r"head_params \{'C': -1\} are not valid LogisticRegression parameters"),
    Row("pipe-model-path-missing", "a model path that does not exist",
        lambda ctx: {"model": str(ctx.tmp_path / "no-such-model")}, FileNotFoundError,
        r"model path '.*no-such-model' does not exist or is not a directory"),
    Row("pipe-unwritable-root", "an artifacts root that cannot be written (here: a path under a regular file)",
        lambda ctx: {"artifacts_root": csv(ctx, "a-file", b"x") + "/artifacts"}, PermissionError,
        r"artifacts_root '.*a-file/artifacts' is not writable \(Not a directory.*pick a directory"),
    Row("pipe-long-texts", "texts longer than the body's max length (warning)",
        lambda ctx: {"train_data": parquet(ctx, "train.parquet", {"text": [LONG_TEXT, LONG_TEXT, "bad", "poor"],
                                                                  "label": ["positive", "positive", "negative",
                                                                            "negative"]})}, WARNING,
        r"train_data: 2 of 4 texts are longer than the body's max_seq_length \(64 tokens\) and will be truncated"),
    Row("pipe-conflicting-duplicates", "identical texts with conflicting labels (warning; error with strict)",
        lambda ctx: {"train_data": parquet(ctx, "train.parquet", {"text": ["good", "good", "bad", "nice"],
                                                                  "label": ["positive", "negative", "negative",
                                                                            "positive"]})}, FINDING,
        r"train_data has 1 text\(s\) that appear with different labels, e.g. 'good'"),
    Row("pipe-duplicate-csv-header", "a CSV header with `text` twice (warning; error with strict)",
        lambda ctx: {"train_data": csv(ctx, "train.csv", b"text,label,text\ngood,positive,x\nbad,negative,y\n"
                                                         b"nice,positive,z\npoor,negative,w\n")}, FINDING,
        r"train_data has more than one column named 'text' \(positions \[0, 2\]\); only the first of each is read"),
    Row("pipe-duplicate-parquet-column", "a Parquet schema with `text` twice (warning; error with strict)",
        lambda ctx: {"train_data": parquet_columns(ctx, "train.parquet", ["label", "text", "text"],
                                                   [SENTIMENT["label"], SENTIMENT["text"], ["w", "x", "y", "z"]])},
        FINDING, r"train_data has more than one column named 'text' \(positions \[1, 2\]\)"),
    Row("pipe-blank-texts", "empty, whitespace-only or invisible texts (warning; error with strict)",
        lambda ctx: {"train_data": parquet(ctx, "train.parquet", {
            "text": [*SENTIMENT["text"], *BLANKS], "label": SENTIMENT["label"] * 2})}, FINDING,
        r"train_data has 4 empty or invisible text\(s\) at rows \[4, 5, 6, 7\] \('', '   ', '\\u200b'\)"),
    Row("pipe-single-example-class", "a class with one example (warning; error with strict)",
        lambda ctx: {"train_data": parquet(ctx, "train.parquet", {"text": [*SENTIMENT["text"], "meh"],
                                                                  "label": [*SENTIMENT["label"], "neutral"]})},
        FINDING, r"train_data has 1 class\(es\) with fewer than 2 examples: 'neutral' \(1\)"),
    Row("pipe-too-few-examples", "fewer examples than 2 per class (warning; error with strict)",
        lambda ctx: {"train_data": parquet(ctx, "train.parquet", {"text": [*SENTIMENT["text"], "meh"],
                                                                  "label": [*SENTIMENT["label"], "neutral"]})},
        FINDING, r"train_data has 5 examples for 3 classes, fewer than 6 \(2 per class\)"),
    Row("pipe-many-tiny-classes", "500 classes with one example each (warning; error with strict)",
        lambda ctx: {"train_data": parquet(ctx, "train.parquet", TINY_CLASSES), "eval_data": None,
                     "args": {**TINY_ARGS, "num_iterations": None}}, FINDING,
        r"train_data has 500 classes with at most 2 examples each \(more than 100\): pair sampling .* makes "
        r"249,500 pairs.*Use TrainingArguments\(preset=\"fast\"\) \(pipeline: args=\{\"preset\": \"fast\"\}\)"),
    Row("pipe-jsonl-bad-line", "a JSON Lines file with a broken line",
        lambda ctx: {"train_data": text_file(ctx, "train.jsonl", '{"text": "good", "label": 1}\n{"text": "bad", '
                                                                 '"label": 0}\n{"text": "nice" "label": 1}\n')},
        ValueError, r"could not read train_data '.*train.jsonl' as json: line 3 is not valid JSON: Expecting ',' "
                    r"delimiter at column 17"),
    Row("pipe-s3-no-credentials", "an `s3://` root with no AWS credentials anywhere",
        lambda ctx: ctx.without_aws_credentials({"artifacts_root": "s3://setfit-artifacts/x"}), PermissionError,
        r"no AWS credentials to write to s3://setfit-artifacts/x: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
        r"\(or AWS_PROFILE.*\), or pass storage_options"),
    Row("pipe-s3-unreachable", "an S3 endpoint that does not answer",
        lambda ctx: {"artifacts_root": "s3://setfit-artifacts/x", "storage_options": {
            "endpoint_url": "http://127.0.0.1:9", "key": "k", "secret": "s"}}, OSError,
        r"could not write to s3://setfit-artifacts/x after 4 attempts: .*is the S3 endpoint up, and is "
        r"AWS_ENDPOINT_URL \(or storage_options\['endpoint_url'\]\) right\?"),
    Row("pipe-s3-no-bucket", "an `s3://` root whose bucket does not exist",
        lambda ctx: ctx.with_s3({"artifacts_root": "s3://no-such-bucket/x"}), FileNotFoundError,
        r"bucket 'no-such-bucket' does not exist \(to write to s3://no-such-bucket/x\); create it or fix the "
        r"s3:// URI"),
]


@dataclass
class Context:
    tmp_path: Path
    tiny_model_dir: str
    monkeypatch: pytest.MonkeyPatch
    request: pytest.FixtureRequest

    def model(self) -> SetFitModel:
        return SetFitModel.from_pretrained(self.tiny_model_dir, device="cpu")

    def without_aws_credentials(self, changes: dict[str, Any]) -> dict[str, Any]:
        """`changes`, with no AWS credentials anywhere botocore looks (environment, files, instance metadata)."""
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            self.monkeypatch.delenv(name, raising=False)
        for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
            self.monkeypatch.setenv(name, str(self.tmp_path / "none"))
        self.monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        return changes

    def with_s3(self, changes: dict[str, Any]) -> dict[str, Any]:
        """`changes`, with the loopback S3 server up (its endpoint and credentials in AWS_*)."""
        self.request.getfixturevalue("s3_server")
        return changes


@pytest.fixture
def ctx(tmp_path, tiny_model_dir, cache_home, monkeypatch, request) -> Context:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return Context(tmp_path, tiny_model_dir, monkeypatch, request)


def check(row: Row, action: Callable[[], Any], caplog: pytest.LogCaptureFixture) -> None:
    if row.error in (WARNING, FINDING):
        with caplog.at_level("WARNING", logger="setfit_core"):
            action()
        assert re.search(row.match, caplog.text), f"no warning matching {row.match!r} in:\n{caplog.text}"
        return
    with pytest.raises(row.error, match=row.match):
        action()


def check_strict(row: Row, action: Callable[[], Any]) -> None:
    """A FINDING row with strict on: the same text, now in the error that lists every finding."""
    with pytest.raises(DataQualityError, match=r"strict data checks found \d+ problem\(s\); fix the data") as raised:
        action()
    assert isinstance(raised.value, ValueError) and re.search(row.match, str(raised.value)), str(raised.value)


@pytest.mark.parametrize("row", [r.param() for r in LIBRARY_ROWS])
def test_library_bad_input(row: Row, ctx: Context, caplog) -> None:
    if row.error != FINDING:
        check(row, lambda: row.call(ctx), caplog)
        return
    given = row.call(ctx)
    check(row, lambda: Trainer(ctx.model(), TrainingArguments(show_progress_bar=False), **given), caplog)
    check_strict(row, lambda: check_data_quality(given["train_dataset"], given["eval_dataset"], strict=True))


@pytest.mark.parametrize("row", [r.param() for r in PIPELINE_ROWS])
def test_pipeline_bad_input(row: Row, ctx: Context, tiny_splits, caplog) -> None:
    root = ctx.tmp_path / "artifacts"
    job = {"train_data": tiny_splits["train"], "eval_data": tiny_splits["eval"], "artifacts_root": str(root),
           "model": ctx.tiny_model_dir, "args": TINY_ARGS, **row.call(ctx)}
    # Errors: the whole pipeline is asked to run and must fail before stage 1. Warnings: planning
    # (data validation) is where they come from; the run could go on. Findings: both, strict on for the run.
    planned = row.error in (WARNING, FINDING)
    action = (lambda: PipelineRun(PipelineJob(**job)).plan) if planned else (
        lambda: PipelineRun(PipelineJob(**job)).run_all())
    check(row, action, caplog)
    if row.error == FINDING:
        check_strict(row, lambda: PipelineRun(PipelineJob(**job, strict=True)).run_all())
    written = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []
    assert written == [], f"nothing may be written under the artifacts root before stage 1; found {written}"


def test_docs_matrix_lists_every_row() -> None:
    """The docs table and the rows above are the same list, in the same order."""
    section = MATRIX_PAGE.read_text(encoding="utf-8").split("### Bad input matrix", 1)[1].split("\n#", 1)[0]
    ids = re.findall(r"^\| `([a-z0-9-]+)` \|", section, flags=re.MULTILINE)
    assert ids == [r.id for r in LIBRARY_ROWS + PIPELINE_ROWS]
