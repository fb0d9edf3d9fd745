"""`setfit-pipeline data-updated` and the event it emits (the trigger itself: tests/deployments/test_e2e_server.py)."""

from __future__ import annotations

import pytest
import yaml
from setfit_pipeline.flows import cli
from setfit_pipeline.flows.events import DATA_UPDATED, data_updated_event


def test_the_event_names_the_dataset_and_carries_the_data():
    event = data_updated_event("acme", "s3://b/acme/train.parquet", "s3://b/acme/test.parquet")
    assert event.event == DATA_UPDATED == "setfit.data.updated"
    assert event.resource.id == "setfit.dataset.acme" and event.resource["setfit.dataset"] == "acme"
    assert event.payload == {"train_data": "s3://b/acme/train.parquet", "eval_data": "s3://b/acme/test.parquet"}


@pytest.mark.parametrize(("args", "message"), [
    (["--dataset", "a b", "--uri", "x", "--eval-uri", "y"], "--dataset must be a name of letters, .* got 'a b'"),
    (["--dataset", "acme", "--uri", " ", "--eval-uri", "y"], "--uri must be a path or s3:// URI of the data; got ' '"),
    (["--dataset", "acme", "--uri", "x"], "pass --eval-uri .* or --no-eval"),
    (["--dataset", "acme", "--uri", "x", "--eval-uri", "y", "--no-eval"], "pass --eval-uri .* not both or neither"),
])
def test_bad_flags_are_one_line(args, message, monkeypatch, capsys):
    monkeypatch.setattr(cli.prefect_ops, "require_api_url", lambda command: "http://127.0.0.1:1/api")
    assert cli.main(["data-updated", *args]) == 2
    assert capsys.readouterr().err.startswith("setfit-pipeline: error: ")
    parsed = cli.build_parser().parse_args(["data-updated", *args])
    with pytest.raises(ValueError, match=message):
        parsed.func(parsed)


def test_without_a_server_it_says_how_to_start_one(monkeypatch, capsys):
    monkeypatch.setattr(cli.prefect_ops, "configured_api_url", lambda: None)
    assert cli.main(["data-updated", "--dataset", "acme", "--uri", "x", "--eval-uri", "y"]) == 2
    assert "`setfit-pipeline data-updated` needs a Prefect server" in capsys.readouterr().err


def test_nightly_retrain_keeps_its_schedule_and_has_the_trigger():
    spec = yaml.safe_load(open(cli.prefect_ops.PREFECT_FILE, encoding="utf-8"))
    (nightly,) = [d for d in spec["deployments"] if d["name"] == "nightly-retrain"]
    assert [s["cron"] for s in nightly["schedules"]] == ["0 2 * * *"]
    (trigger,) = nightly["triggers"]
    assert trigger["expect"] == [DATA_UPDATED] and trigger["match"] == {"prefect.resource.id": "setfit.dataset.*"}
    assert trigger["parameters"] == {"train_data": "{{ event.payload.train_data }}",
                                     "eval_data": "{{ event.payload.eval_data }}"}
