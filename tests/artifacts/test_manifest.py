from __future__ import annotations

import json

import pytest

from setfit_core.artifacts import FileEntry, Manifest, validate_relpath

KEY = "1" * 64
PARENT = "2" * 64


def make_manifest(**changes) -> Manifest:
    fields = dict(
        stage="head",
        key=KEY,
        parents={"body": PARENT},
        config={"c": 1.0, "solver": "lbfgs", "sizes": [1, 2]},
        inputs={"train": "3" * 64},
        files=(FileEntry("head.joblib", 10, "4" * 64), FileEntry("sub/x.bin", 0, "5" * 64)),
        metrics={"accuracy": 0.9},
        timings={"fit": 1.5},
        versions={"setfit_core": "0.1.0"},
        created_at="2026-01-01T00:00:00+00:00",
    )
    return Manifest(**{**fields, **changes})


def edited(**changes) -> str:
    data = json.loads(make_manifest().to_json())
    data.update(changes)
    return json.dumps(data)


def test_round_trip():
    manifest = make_manifest()
    assert Manifest.from_json(manifest.to_json(), expected_stage="head", expected_key=KEY) == manifest


def test_to_json_is_plain_and_stable():
    manifest = make_manifest(config={"sizes": (1, 2)})
    assert json.loads(manifest.to_json())["config"] == {"sizes": [1, 2]}
    assert manifest.to_json() == make_manifest(config={"sizes": [1, 2]}).to_json()


def test_file_lookup_names_listed_files():
    assert make_manifest().file("sub/x.bin").size == 0
    with pytest.raises(KeyError, match=r"'nope' is not in manifest head/1{64}; listed: "):
        make_manifest().file("nope")


@pytest.mark.parametrize(
    "path",
    ["../x", "/etc/passwd", "a/../../b", "manifest.json", "a\\b", "a//b", "./a", "a/", ""],
)
def test_rejects_paths_outside_the_stage_dir(path):
    text = edited(files=[{"path": path, "size": 1, "sha256": "4" * 64}])
    with pytest.raises(ValueError, match=r"manifest s3://b/head/1+/manifest.json is invalid: .*path"):
        Manifest.from_json(text, source=f"s3://b/head/{KEY}/manifest.json")


def test_validate_relpath_accepts_nested_paths():
    assert validate_relpath("a/b/manifest.json") == "a/b/manifest.json"


def test_rejects_manifest_found_under_another_stage_or_key():
    text = make_manifest().to_json()
    with pytest.raises(ValueError, match=r"stage is 'head' but the manifest was found under 'body'"):
        Manifest.from_json(text, expected_stage="body", expected_key=KEY)
    with pytest.raises(ValueError, match=r"key is '1{64}' but the manifest was found under '2{64}'"):
        Manifest.from_json(text, expected_stage="head", expected_key=PARENT)


@pytest.mark.parametrize("field", ["stage", "key", "files", "created_at", "format_version"])
def test_rejects_missing_fields(field):
    data = json.loads(make_manifest().to_json())
    del data[field]
    with pytest.raises(ValueError, match=rf"manifest x is invalid: missing fields \['{field}'\]"):
        Manifest.from_json(json.dumps(data), source="x")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format_version": 2}, r"format_version must be 1; got 2"),
        ({"stage": "../etc"}, r"stage name must match"),
        ({"key": "../../x"}, r"stage key must be 64 lowercase hex"),
        ({"parents": {"body": "nothex"}}, r"got 'nothex'"),
        ({"files": [{"path": "a", "size": -1, "sha256": "4" * 64}]}, r"files\[0\]\.size must be"),
        ({"files": [{"path": "a", "size": 1, "sha256": "x"}]}, r"files\[0\]\.sha256 must be"),
        ({"timings": {"fit": "slow"}}, r"timings\.fit must be a number; got 'slow'"),
        ({"extra": 1}, r"unknown fields \['extra'\]"),
    ],
)
def test_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        Manifest.from_json(edited(**changes))


def test_rejects_duplicate_paths_nan_and_garbage():
    entry = {"path": "a", "size": 1, "sha256": "4" * 64}
    with pytest.raises(ValueError, match=r"files\[1\]\.path must be unique"):
        Manifest.from_json(edited(files=[entry, entry]))
    with pytest.raises(ValueError, match=r"metrics\.f1 must be a finite number"):
        Manifest.from_json(edited(metrics={"f1": float("nan")}))
    with pytest.raises(ValueError, match=r"manifest m is not valid JSON"):
        Manifest.from_json("{not json", source="m")
    with pytest.raises(ValueError, match=r"manifest m is not valid JSON"):
        Manifest.from_json(b"\xff\xfe", source="m")
