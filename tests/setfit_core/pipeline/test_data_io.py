from __future__ import annotations

import json

import datasets
import pandas as pd
import pytest

from setfit_core.pipeline import PipelineJob, PipelineRun, dataset_label, load_pipeline_data, load_split
from tests.conftest import TINY_SPLITS

TRAIN = TINY_SPLITS["train"]


def write(tmp_path, fmt: str, columns: dict = TRAIN) -> str:
    frame = pd.DataFrame(columns)
    path = tmp_path / f"train.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    elif fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif fmt == "json":
        path.write_text(json.dumps(frame.to_dict(orient="records")))
    else:
        path = tmp_path / "train_ds"
        datasets.Dataset.from_pandas(frame).save_to_disk(str(path))
    return str(path)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json", "datasets"])
def test_every_format_reads_the_same_rows_and_hashes_like_parquet(tmp_path, fmt):
    reference = load_split(write(tmp_path, "parquet"), "train_data")
    other = load_split(write(tmp_path, fmt), "train_data")
    assert other.data.texts == TRAIN["text"] and other.data.labels == TRAIN["label"]
    assert other.content_hash == reference.content_hash


def test_hash_follows_content_and_order_not_extra_columns(tmp_path):
    base = load_split(write(tmp_path, "parquet"), "train_data").content_hash
    extra = load_split(write(tmp_path, "csv", {**TRAIN, "source": ["x"] * 16}), "train_data").content_hash
    swapped = {"text": TRAIN["text"][::-1], "label": TRAIN["label"][::-1]}
    assert extra == base
    assert load_split(write(tmp_path, "jsonl", swapped), "train_data").content_hash != base


def test_csv_keeps_texts_that_look_like_missing_values(tmp_path):
    columns = {"text": ["NA", "null", "fine", "bad"], "label": [1, 0, 1, 0]}
    assert load_split(write(tmp_path, "csv", columns), "train_data").data.texts == ["NA", "null", "fine", "bad"]


def test_column_mapping_applies_before_validation(tmp_path):
    path = write(tmp_path, "parquet", {"sentence": TRAIN["text"], "y": TRAIN["label"]})
    assert load_split(path, "train_data", {"sentence": "text", "y": "label"}).data.texts == TRAIN["text"]
    with pytest.raises(ValueError, match=r"train_data is missing column\(s\) \['text', 'label'\].*column_mapping"):
        load_split(path, "train_data")


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda d: str(d / "nope.parquet"), FileNotFoundError, r"train_data '.*nope.parquet' does not exist"),
        (lambda d: (d / "t.xlsx").write_text("x") and str(d / "t.xlsx"), ValueError,
         r"unsupported format '.xlsx'; use Parquet .*CSV .*JSON Lines"),
        (lambda d: (d / "t.parquet").write_text("not parquet") and str(d / "t.parquet"), ValueError,
         r"could not read train_data '.*t.parquet' as parquet"),
        (lambda d: str(d), ValueError, r"is a directory but not one saved by datasets"),
    ],
)
def test_unreadable_data_names_the_uri_and_the_fix(tmp_path, make, error, match):
    with pytest.raises(error, match=match):
        load_split(make(tmp_path), "train_data")


def test_dataset_dict_asks_for_one_split(tmp_path):
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(TRAIN)}).save_to_disk(str(tmp_path / "dd"))
    match = r"is a DatasetDict with splits \['train'\]; point at one split, e\.g\. .*dd/train"
    with pytest.raises(ValueError, match=match):
        load_split(str(tmp_path / "dd"), "train_data")
    assert load_split(str(tmp_path / "dd" / "train"), "train_data").data.texts == TRAIN["text"]


@pytest.mark.parametrize(
    ("columns", "match"),
    [
        ({"text": [], "label": []}, r"train_data is empty"),
        ({"text": ["a", "b"], "label": [1, 1]}, r"train_data has a single class \(1\)"),
        ({"text": ["a", None], "label": [0, 1]}, r"train_data column 'text' row 1 is None"),
        ({"text": ["a", "b"], "label": [[0, 1], [1, 0]]}, r"multi-label rows .*single-label classification only"),
    ],
)
def test_library_validation_runs_before_any_stage(tmp_path, columns, match):
    path = tmp_path / "train.parquet"
    pd.DataFrame(columns, columns=["text", "label"]).to_parquet(path)
    with pytest.raises(ValueError, match=match):
        load_pipeline_data(str(path))


def test_eval_labels_must_be_known_from_training(tmp_path, tiny_splits):
    path = write(tmp_path, "csv", {"text": ["a", "b"], "label": ["positive", "neutral"]})
    with pytest.raises(ValueError, match=r"eval_data has labels \['neutral'\] never seen in training"):
        load_pipeline_data(tiny_splits["train"], eval_data=path)


def test_invalid_job_fails_before_reading_data(tmp_path, tiny_splits):
    def job(**changes):
        return PipelineJob(train_data=tiny_splits["train"], artifacts_root=str(tmp_path), **changes)

    with pytest.raises(ValueError, match=r"'num_iteration' is not a TrainingArguments field; did you mean 'num_iter"):
        PipelineRun(job(args={"num_iteration": 5}))
    with pytest.raises(ValueError, match=r"head_params \{'C': -1\} are not valid LogisticRegression parameters"):
        PipelineRun(job(head_params={"C": -1}))
    with pytest.raises(ValueError, match=r"'metric' must be one of"):
        PipelineRun(job(metric="auc"))
    with pytest.raises(ValueError, match=r"end_to_end.*use_differentiable_head=True"):
        PipelineRun(job(args={"end_to_end": True}))
    run = PipelineRun(job(use_differentiable_head=True, head_params={"out_features": 3}))
    with pytest.raises(ValueError, match=r"out_features'\] is 3 but the training data has 2 classes"):
        _ = run.plan


def test_data_edited_after_planning_is_refused(tmp_path, tiny_splits):
    path = write(tmp_path, "parquet")
    planned = load_pipeline_data(path).hashes
    write(tmp_path, "parquet", {"text": TRAIN["text"][::-1], "label": TRAIN["label"][::-1]})
    with pytest.raises(RuntimeError, match=r"train_data '.*' changed while the pipeline was running"):
        load_pipeline_data(path, expected_hashes=planned)


def test_reads_data_from_s3(s3_root, tiny_splits, cache_home):
    import fsspec

    uri = f"{s3_root}/data/train.parquet"
    with fsspec.open(uri, "wb") as f, open(tiny_splits["train"], "rb") as src:
        f.write(src.read())
    assert load_split(uri, "train_data").content_hash == load_split(tiny_splits["train"], "train_data").content_hash
    csv_uri = f"{s3_root}/data/train.csv"  # the header is read apart from pandas (repeats): also from S3
    with fsspec.open(csv_uri, "wb") as f:
        f.write(b"text,label,text\ngood,1,x\nbad,0,y\n")
    data = load_split(csv_uri, "train_data").data
    assert data.texts == ["good", "bad"] and data.duplicate_columns == {"text": (0, 2)}


def test_dataset_label_is_short_and_readable():
    assert dataset_label("/data/sst2/train.parquet") == "sst2-train"
    assert dataset_label("s3://bucket/x/Movie Reviews.csv") == "movie-reviews"
    assert dataset_label("/data/my_ds") == "my-ds"


def test_a_bad_json_line_is_named_by_its_line_in_the_file(tmp_path):
    lines = [json.dumps({"text": f"text {i}", "label": i % 2}) for i in range(20)]
    lines[17] = '{"text": "seventeen", "label": 1'  # line 18: the closing brace is missing
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"could not read train_data '.*train.jsonl' as json: line 18 is not valid "
                                         r"JSON: Expecting ',' delimiter at column 33"):
        load_split(str(path), "train_data")


def test_an_unreadable_local_file_is_named_with_the_fix(tmp_path):
    """Tests run as root, whom file modes do not stop: an fsspec filesystem that refuses the read stands in."""
    from fsspec.implementations.local import LocalFileSystem

    from setfit_core.pipeline import data_io

    class Refusing(LocalFileSystem):
        def _open(self, path, mode="rb", **kwargs):
            raise PermissionError(13, "Permission denied", path)

    path = write(tmp_path, "parquet")
    fs = Refusing()
    with pytest.raises(PermissionError, match=r"train_data '.*train.parquet' cannot be read \(Permission denied\); "
                                              r"make it readable by this user"):
        data_io._read(fs, path, fs.info(path), path, "train_data", None)
