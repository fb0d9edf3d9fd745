from __future__ import annotations

import enum
import hashlib
import re

import pytest

from setfit_core.artifacts import (
    canonical_json,
    sha256_bytes,
    sha256_file,
    stage_key,
    validate_key,
    validate_stage_name,
)


class Loss(enum.Enum):
    COSINE = "cosine"


BASE = dict(
    stage="body",
    config={"lr": 2e-5, "epochs": 1, "loss": Loss.COSINE, "sizes": (16, 2)},
    parents={"pairs": "a" * 64},
    inputs={"train": "b" * 64},
    versions={"setfit_core": "0.1.0"},
)


def test_canonical_json_ignores_dict_order_and_whitespace():
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1})
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'


def test_canonical_json_tuple_equals_list_and_enum_equals_value():
    assert canonical_json({"x": (1, 2)}) == canonical_json({"x": [1, 2]})
    assert canonical_json({"loss": Loss.COSINE}) == canonical_json({"loss": "cosine"})


def test_canonical_json_float_spelling_does_not_matter():
    assert canonical_json({"lr": 1e-05}) == canonical_json({"lr": 0.00001})
    assert canonical_json(0.1 + 0.2) == repr(0.1 + 0.2)


def test_canonical_json_keeps_bool_distinct_from_int():
    assert canonical_json([True, 1]) == "[true,1]"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_canonical_json_rejects_non_finite_floats_naming_the_path(bad):
    with pytest.raises(TypeError, match=r"config\.args\.foo must be a finite number"):
        canonical_json({"config": {"args": {"foo": bad}}})


def test_canonical_json_rejects_unknown_types_naming_the_path():
    with pytest.raises(TypeError, match=r"config\.args\.foo\[1\] must be a JSON-able value.*set"):
        canonical_json({"config": {"args": {"foo": [1, {2}]}}})
    with pytest.raises(TypeError, match=r"config must be a JSON-able value.*function"):
        canonical_json({"config": lambda: 0})


def test_canonical_json_rejects_non_string_keys():
    # json.dumps would turn 1 into "1" and collide with a real "1" key.
    with pytest.raises(TypeError, match=r"keys of config must be str; got 1"):
        canonical_json({"config": {1: "a"}})


def test_stage_key_is_stable_and_hex():
    key = stage_key(**BASE)
    assert key == stage_key(**BASE)
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "change",
    [
        {"stage": "head"},
        {"config": {**BASE["config"], "lr": 3e-5}},
        {"parents": {"pairs": "c" * 64}},
        {"inputs": {"train": "d" * 64}},
        {"versions": {"setfit_core": "0.2.0"}},
    ],
    ids=["stage", "config", "parents", "inputs", "versions"],
)
def test_stage_key_changes_when_any_part_changes(change):
    assert stage_key(**{**BASE, **change}) != stage_key(**BASE)


def test_stage_key_ignores_cosmetic_differences():
    cosmetic = {**BASE, "config": {"sizes": [16, 2], "loss": "cosine", "epochs": 1, "lr": 0.00002}}
    assert stage_key(**cosmetic) == stage_key(**BASE)


def test_sha256_helpers(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 3000)
    expected = hashlib.sha256(b"x" * 3000).hexdigest()
    assert sha256_bytes(b"x" * 3000) == expected
    assert sha256_file(path, chunk=1000) == expected


@pytest.mark.parametrize("name", ["Body", "1body", "", "a" * 33, "../x", "body\n", "bo-dy"])
def test_validate_stage_name_rejects(name):
    with pytest.raises(ValueError, match=r"stage name must match .* got " + re.escape(repr(name))):
        validate_stage_name(name)


@pytest.mark.parametrize("key", ["A" * 64, "a" * 63, "a" * 65, "g" * 64, "a" * 64 + "\n", None])
def test_validate_key_rejects(key):
    with pytest.raises(ValueError, match=r"stage key must be 64 lowercase hex"):
        validate_key(key)


def test_validate_accepts_good_values():
    assert validate_stage_name("head_2") == "head_2"
    assert validate_key("0f" * 32) == "0f" * 32
