"""Predicting through an alias (`predict_flow`, `setfit-pipeline predict`, local and S3) and `setfit-pipeline models
ls | promote | rollback`, on models the tiny pipeline trained."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from setfit_pipeline.flows.cli import main
from setfit_pipeline.flows.predict import predict_flow
from setfit_pipeline.flows.train import train_pipeline

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.aliases import AliasStore

ARGS = {"num_iterations": 2, "seed": 0, "show_progress_bar": False}


@pytest.mark.parametrize("command", [["models"], ["models", "ls"], ["models", "promote"], ["models", "rollback"]],
                         ids=" ".join)
def test_models_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: setfit-pipeline models")


@pytest.fixture
def config_file(tmp_path, tiny_model_dir, tiny_splits):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"train_data": tiny_splits["train"], "eval_data": tiny_splits["eval"],
                                    "model": tiny_model_dir, "artifacts_root": str(tmp_path / "artifacts"),
                                    "args": ARGS}))
    return path


def _train(config_file, capsys, *flags: str) -> dict:
    assert main(["train", "--config", str(config_file), "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_train_promote_predict_rollback_from_the_cli(config_file, tmp_path, tiny_splits, capsys):
    root = tmp_path / "artifacts"
    record = str(root / "aliases" / "production.json")
    first = _train(config_file, capsys)
    assert first["promotion"]["promoted"] is True
    assert main(["train", "--config", str(config_file), "--head-params", '{"C": 0.25}', "--min-improvement", "-1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^alias production: promoted: accuracy 0\.\d{4} on this run's eval set", out, re.M), out
    second = AliasStore(ArtifactStore(root)).current("production")
    assert second.version == 2 and second.previous_model_uri == first["model_uri"]

    assert main(["models", "ls", str(root)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["ALIAS", "VERSION", "MODEL", "METRIC", "SET", "AGE", "BY", "BEFORE"]
    assert table[1].startswith("production  2") and "accuracy 0." in table[1] and " promote " in table[1]
    assert f"{root}/model/{first['model_uri'][-64:][:12]}" in table[1]  # BEFORE, shortened

    output = tmp_path / "predictions.parquet"
    assert main(["predict", record, tiny_splits["test"], str(output)]) == 0
    assert f"model: {second.model_uri} (alias production, version 2)" in capsys.readouterr().out
    assert len(pd.read_parquet(output)) == 6

    assert main(["models", "rollback", "--alias", "production", "--artifacts-root", str(root)]) == 0
    assert f"alias 'production' -> {first['model_uri']} (version 3; rolled back from {second.model_uri})" \
        in capsys.readouterr().out
    assert main(["predict", record, tiny_splits["test"], str(output)]) == 0
    assert f"model: {first['model_uri']} (alias production, version 3)" in capsys.readouterr().out
    assert main(["models", "rollback", "--artifacts-root", str(root)]) == 2
    assert "points to its first model" in capsys.readouterr().err

    key = second.model_uri[-64:]
    assert main(["models", "promote", f"{root}/model/{key[:10]}", "--alias", "production"]) == 0
    assert f"alias 'production' -> {second.model_uri} (version 4; before: {first['model_uri']})" \
        in capsys.readouterr().out
    assert main(["models", "promote", second.model_uri]) == 0
    assert "already points to" in capsys.readouterr().out
    assert main(["models", "ls", str(root), "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    manual = json.loads(line)
    assert (manual["action"], manual["version"], manual["metric"]) == ("manual", 4, "accuracy")
    assert manual["metrics"]["split"] == "eval" and isinstance(manual["metrics"]["accuracy"], float)
    assert [r.action for r in AliasStore(ArtifactStore(root)).history("production")] == [
        "promote", "promote", "rollback", "manual"]

    # gc keeps both models for the alias, whatever --keep-last says.
    assert main(["artifacts", "gc", str(root), "--keep-last", "0", "--older-than", "0"]) == 0
    plan = capsys.readouterr().out
    assert "kept model: held by alias production" in plan and "previous holder of alias production" in plan


def test_alias_mistakes_are_one_line_errors(tmp_path, tiny_splits, capsys):
    (tmp_path / "artifacts").mkdir()
    missing = str(tmp_path / "artifacts" / "aliases" / "staging.json")
    assert main(["predict", missing, tiny_splits["test"], str(tmp_path / "out.parquet")]) == 2
    err = capsys.readouterr().err
    assert "no model was promoted to alias 'staging'" in err and "setfit-pipeline models promote" in err
    assert main(["models", "promote", str(tmp_path), "--alias", "production"]) == 2
    assert "pass --artifacts-root ROOT" in capsys.readouterr().err
    assert main(["models", "promote", str(tmp_path / "artifacts" / "model" / ("ab" * 32))]) == 2
    assert "is not a verified model stage (missing, deleted by gc, or damaged)" in capsys.readouterr().err
    assert main(["models", "ls", str(tmp_path / "nowhere")]) == 2
    assert "artifacts root" in capsys.readouterr().err
    assert main(["models", "ls", str(tmp_path / "artifacts")]) == 0
    assert "no aliases under" in capsys.readouterr().out
    assert main(["train", "--train-data", "x", "--artifacts-root", "a", "--promote-to", "Prod"]) == 2
    assert "promote_to must be 1-63 lowercase letters" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_flow_through_an_alias_on_s3_reports_the_model_it_used(tiny_model_dir, tiny_splits, s3_root,
                                                                       tmp_path):
    trained = train_pipeline(train_data=tiny_splits["train"], eval_data=tiny_splits["eval"], artifacts_root=s3_root,
                             model=tiny_model_dir, args=ARGS)
    output = f"{s3_root}/predictions/test.parquet"
    state = predict_flow(f"{s3_root}/aliases/production.json", tiny_splits["test"], output, return_state=True)
    result = state.result()
    assert result["model_uri"] == trained["model_uri"] and result["rows"] == 6
    assert result["via_alias"]["alias"] == "production" and result["via_alias"]["version"] == 1
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    summary = next(a.data for a in artifacts if a.key and a.key.endswith("-summary"))
    assert f"Model: `{trained['model_uri']}`, the model alias `production` pointed to" in summary
    assert "record version 1" in summary
