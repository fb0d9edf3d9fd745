"""Report rows: the same rows feed the Prefect UI table and the terminal table."""

from __future__ import annotations

from setfit_core.pipeline.report import metric_rows, text_table

METRICS = {"eval": {"accuracy": 0.75, "macro_f1": 0.7, "rows": 8, "metric": "accuracy",
                    "per_class": {"neg": {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 4},
                                  "pos": {"precision": 0.6667, "recall": 1.0, "f1": 0.8, "support": 4}}}}


def test_every_metric_row_has_every_column():
    # The Prefect UI takes a table's columns from its first row: per-class scores would vanish.
    rows = metric_rows(METRICS)
    assert [r["class"] for r in rows] == ["(all)", "neg", "pos"]
    assert len({tuple(r) for r in rows}) == 1
    assert rows[0]["precision"] is None and rows[1]["precision"] == 1.0 and rows[2]["support"] == 4


def test_text_table_leaves_missing_cells_blank():
    table = text_table(metric_rows(METRICS))
    assert "None" not in table
    assert table.splitlines()[0].split() == ["split", "class", "accuracy", "macro_f1", "rows", "precision",
                                             "recall", "f1", "support"]
