"""Data-quality findings in the pipeline: repeated file columns, logged once by the planning pass, strict mode."""

from __future__ import annotations

import logging

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from setfit_core import DataQualityError
from setfit_core.pipeline import PipelineRun, load_split
from setfit_core.pipeline.report import summary_markdown

SENTIMENT = {"text": ["good", "bad", "nice", "poor"], "label": ["positive", "negative", "positive", "negative"]}
DUPLICATE = ("train_data has more than one column named 'text' (positions [0, 2]); only the first of each is read "
             "and the others are ignored. Rename or drop the extra column(s)")


def test_a_csv_header_naming_text_twice_reads_the_first_and_reports_it(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label,text,note,note\ngood,positive,x,a,b\nbad,negative,y,a,b\n", encoding="utf-8")
    data = load_split(str(path), "train_data").data
    assert data.texts == ["good", "bad"] and data.duplicate_columns == {"text": (0, 2)}  # 'note' is never read


def test_a_csv_with_a_bom_and_quoted_header_names(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes('\ufeff"text",label,"text"\n"good, really",positive,x\nbad,negative,y\n'.encode())
    data = load_split(str(path), "train_data").data
    assert data.texts == ["good, really", "bad"] and data.duplicate_columns == {"text": (0, 2)}


def test_a_parquet_schema_naming_text_twice_reads_the_first(tmp_path):
    """pyarrow's read_table refuses such a file ("Multiple matches for FieldRef"); it reads now, like a CSV."""
    path = tmp_path / "train.parquet"
    table = pa.table([pa.array(SENTIMENT["text"]), pa.array(SENTIMENT["label"]), pa.array(["w", "x", "y", "z"])],
                     names=["text", "label", "text"])
    pq.write_table(table, path)
    data = load_split(str(path), "train_data").data
    assert data.texts == SENTIMENT["text"] and data.duplicate_columns == {"text": (0, 2)}


def test_a_mapped_column_repeated_in_a_csv_is_reported_by_its_own_name(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("sentence,y,sentence\ngood,positive,x\nbad,negative,y\n", encoding="utf-8")
    data = load_split(str(path), "train_data", {"sentence": "text", "y": "label"}).data
    assert data.texts == ["good", "bad"] and data.duplicate_columns == {"sentence": (0, 2)}


@pytest.fixture
def dirty(tmp_path) -> str:
    """Train data with a repeated text column: a finding, and nothing else wrong."""
    path = tmp_path / "data" / "train.csv"
    path.parent.mkdir()
    rows = "".join(f"{t},{lab},extra\n" for t, lab in zip(SENTIMENT["text"], SENTIMENT["label"], strict=True))
    path.write_text("text,label,text\n" + rows, encoding="utf-8")
    return str(path)


def warnings_logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("setfit_core") and r.levelno == logging.WARNING]


def test_the_planning_pass_logs_the_findings_once_and_the_pinned_runs_not_at_all(make_job, dirty, caplog):
    job = make_job(train_data=dirty, eval_data=None)
    with caplog.at_level(logging.WARNING, logger="setfit_core"):
        plan = PipelineRun(job).summary()
    assert warnings_logged(caplog) == [DUPLICATE]
    assert plan["warnings"] == [{"check": "duplicate-columns", "split": "train_data", "message": DUPLICATE}]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="setfit_core"):
        pinned = PipelineRun(job, pinned=plan)  # what every stage task builds
        assert pinned.plan and pinned.data.warnings  # known to it, logged by the planning pass only
    assert warnings_logged(caplog) == []


def test_strict_fails_in_planning_with_nothing_written(make_job, dirty, tmp_path):
    job = make_job(train_data=dirty, eval_data=None, strict=True)
    with pytest.raises(DataQualityError, match=r"strict data checks found 1 problem\(s\).*\n- train_data has more "
                                               r"than one column named 'text'") as raised:
        PipelineRun(job).run_all()
    assert [w.check for w in raised.value.warnings] == ["duplicate-columns"]
    assert not (tmp_path / "artifacts").exists()


def test_strict_changes_no_stage_key(make_job, tiny_splits):
    plain, strict = PipelineRun(make_job()).summary(), PipelineRun(make_job(strict=True)).summary()
    assert strict["keys"] == plain["keys"] and strict["hashes"] == plain["hashes"]
    assert plain["warnings"] == [] and make_job(strict=True).to_dict()["strict"] is True


def test_strict_must_be_a_bool(make_job):
    with pytest.raises(ValueError, match=r"'strict' must be true or false; got 'yes'"):
        make_job(strict="yes").validate()


def test_eval_and_test_splits_get_the_text_checks(make_job, tiny_splits, tmp_path):
    frame = pd.read_parquet(tiny_splits["eval"])
    frame.loc[3, "text"] = "\u200b\u200b"
    frame.to_parquet(tmp_path / "eval.parquet", index=False)
    plan = PipelineRun(make_job(eval_data=str(tmp_path / "eval.parquet"))).summary()
    assert [(w["check"], w["split"]) for w in plan["warnings"]] == [("blank-texts", "eval_data")]
    assert plan["warnings"][0]["message"].startswith(
        "eval_data has 1 empty or invisible text(s) at rows [3] ('\\u200b\\u200b'): ")


def test_the_summary_lists_the_warnings_as_literal_text():
    stage = {"key": "a" * 64, "status": "computed", "seconds": 1.0, "uri": "/r/model/aaa"}
    warnings = ["train_data has 1 text(s) that appear with different labels, e.g. '*so* <b>good</b>'; check the "
                "labelling", "eval_data has 1 empty or invisible text(s) at rows [3] ('\\u200b')"]
    markdown = summary_markdown("demo", {"model": stage}, "/r/model/aaa", warnings)
    assert "## Data warnings (2)\n\nTraining went on; `strict=True` (`--strict`) stops a run on these" in markdown
    assert "- train\\_data has 1 text(s) that appear with different labels, e.g. '\\*so\\* \\<b\\>good\\</b\\>'" \
        in markdown
    assert "- eval\\_data has 1 empty or invisible text(s) at rows \\[3\\] ('\\\\u200b')" in markdown
    assert markdown.index("## Data warnings") < markdown.index("## Stages") < markdown.index("| stage |")
    assert "Data warnings" not in summary_markdown("demo", {"model": stage}, "/r/model/aaa")
