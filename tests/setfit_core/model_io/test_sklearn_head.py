"""The legacy reader (`model_head.json` + `model_head.safetensors`, written before the switch to skops),
the choice between the formats, and the trusted-pickle path of setfit 1.x's `model_head.pkl`.

`legacy_heads/` holds heads written by that format's writer (setfit_core at commit 50a7657), each with
`expected.json`: inputs and the outputs the head gave before it was saved.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import _ConstantPredictor
from sklearn.svm import SVC

from setfit_core.model_io.sklearn_head import (
    HEAD_SPEC_FILE,
    HEAD_WEIGHTS_FILE,
    PICKLE_HEAD_FILE,
    SKOPS_HEAD_FILE,
    UnsafeHeadError,
    load_pickle_head,
    load_sklearn_head,
    save_pickle_head,
    save_sklearn_head,
)

LEGACY = Path(__file__).parent / "legacy_heads"
NAMES = sorted(p.name for p in LEGACY.iterdir() if p.is_dir())
N_FEATURES = 8


def _copy(name: str, tmp_path: Path) -> Path:
    """A writable copy of a legacy head (the corruption tests edit it)."""
    return Path(shutil.copytree(LEGACY / name, tmp_path / name))


def _expected(name: str) -> dict[str, Any]:
    return json.loads((LEGACY / name / "expected.json").read_text())


def _inputs(expected: dict[str, Any]) -> Any:
    x = np.asarray(expected["x"], dtype=np.float32 if expected.get("float32") else np.float64)
    if "feature_names" in expected:
        import pandas as pd

        return pd.DataFrame(x, columns=expected["feature_names"])
    return x


def _assert_close(expected: Any, actual: Any) -> None:
    if isinstance(actual, list):  # MultiOutputClassifier.predict_proba: one array per label
        for e, a in zip(expected, actual, strict=True):
            _assert_close(e, a)
        return
    np.testing.assert_allclose(actual, np.asarray(expected), rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------------------------
# Heads saved in the legacy format still load
# --------------------------------------------------------------------------------------------


def test_the_fixture_covers_every_legacy_head_type() -> None:
    types = {_expected(name)["type"] for name in NAMES}
    assert types == {"LogisticRegression", "OneVsRestClassifier", "MultiOutputClassifier", "ClassifierChain"}


@pytest.mark.parametrize("name", NAMES)
def test_a_legacy_head_loads_and_predicts_as_before_saving(name: str) -> None:
    expected = _expected(name)
    head = load_sklearn_head(LEGACY / name)
    assert type(head).__name__ == expected["type"]
    if "predict" not in expected:  # saved unfitted
        assert not hasattr(head, "classes_")
        return
    x = _inputs(expected)
    assert np.asarray(head.predict(x)).tolist() == expected["predict"]
    _assert_close(expected["predict_proba"], head.predict_proba(x))
    assert head.n_features_in_ == N_FEATURES


def test_legacy_dtypes_and_params_are_restored() -> None:
    head = load_sklearn_head(LEGACY / "logreg-4-class-int")
    assert head.n_iter_.dtype == np.int32  # stored widened to int64, narrowed back on load
    assert load_sklearn_head(LEGACY / "logreg-float32").coef_.dtype == np.float32
    params = load_sklearn_head(LEGACY / "logreg-params").get_params()
    assert params["C"] == float("inf") and params["max_iter"] == 250
    assert params["class_weight"] == {0: 1.0, 1: 2.5} and list(params["class_weight"]) == [0, 1]  # int keys
    assert load_sklearn_head(LEGACY / "unfitted-classifier-chain").estimator.C == 0.3


def test_legacy_wrappers_restore_their_links() -> None:
    ovr = load_sklearn_head(LEGACY / "one-vs-rest-constant-labels")
    assert [type(e) for e in ovr.estimators_] == [LogisticRegression, _ConstantPredictor, _ConstantPredictor]
    assert ovr.classes_ is ovr.label_binarizer_.classes_
    chain = load_sklearn_head(LEGACY / "classifier-chain-random-order")
    assert [e.n_features_in_ for e in chain.estimators_] == [N_FEATURES, N_FEATURES + 1, N_FEATURES + 2]
    names = load_sklearn_head(LEGACY / "one-vs-rest-feature-names").feature_names_in_
    assert names.tolist() == [f"dim_{i}" for i in range(N_FEATURES)]


def test_legacy_load_never_unpickles(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("load_sklearn_head must not unpickle")

    monkeypatch.setattr(joblib, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    load_sklearn_head(LEGACY / "one-vs-rest-constant-labels")


def test_a_skops_head_wins_over_legacy_files_beside_it(tmp_path: Path) -> None:
    directory = _copy("logreg-binary-int", tmp_path)
    save_sklearn_head(SVC().fit(np.eye(N_FEATURES), [0, 1] * 4), directory)
    assert type(load_sklearn_head(directory)) is SVC


def test_save_writes_skops_only(tmp_path: Path) -> None:
    save_sklearn_head(LogisticRegression(), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [SKOPS_HEAD_FILE]


def test_save_requires_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        save_sklearn_head(LogisticRegression(), tmp_path / "missing")


# --------------------------------------------------------------------------------------------
# setfit 1.x's pickle
# --------------------------------------------------------------------------------------------


def test_pickle_head_requires_trust(tmp_path: Path) -> None:
    head = load_sklearn_head(LEGACY / "multi-output")
    save_pickle_head(head, tmp_path)
    assert (tmp_path / PICKLE_HEAD_FILE).is_file()
    with pytest.raises(UnsafeHeadError, match="trust_pickle=True") as excinfo:
        load_pickle_head(tmp_path)
    message = str(excinfo.value)
    assert PICKLE_HEAD_FILE in message and "arbitrary code" in message and SKOPS_HEAD_FILE in message
    assert isinstance(excinfo.value, ValueError)

    loaded = load_pickle_head(tmp_path, trust_pickle=True)
    x = _inputs(_expected("multi-output"))
    np.testing.assert_array_equal(loaded.predict(x), head.predict(x))


def test_the_refusal_says_what_the_pickle_holds_without_unpickling_it(tmp_path: Path) -> None:
    """The class is read from the pickle's opcodes: setfit's differentiable head is named as a torch module,
    with the safetensors file it is re-saved as, and no scikit-learn advice."""
    from setfit_core import SetFitHead

    save_pickle_head(SetFitHead(in_features=4, out_features=2), tmp_path)
    with pytest.raises(UnsafeHeadError, match=r"holds 'model_head.pkl', a pickled differentiable head "
                                              r"\(setfit_core.differentiable_head.SetFitHead, a torch module; "
                                              r"setfit 1.x format\).*trust_pickle=True.*SetFitModel.save_pretrained "
                                              r"writes it as model_head.safetensors \+ config_setfit.json") as excinfo:
        load_pickle_head(tmp_path)
    assert "scikit-learn" not in str(excinfo.value)
    save_pickle_head(load_sklearn_head(LEGACY / "multi-output"), tmp_path)
    with pytest.raises(UnsafeHeadError, match=r"a pickled scikit-learn head \(sklearn.multioutput."
                                              r"MultiOutputClassifier; setfit 1.x format\)"):
        load_pickle_head(tmp_path)
    # compressed: its opcodes cannot be read, so no guess
    joblib.dump(load_sklearn_head(LEGACY / "multi-output"), tmp_path / PICKLE_HEAD_FILE, compress=3)
    with pytest.raises(UnsafeHeadError, match=r"holds 'model_head.pkl', a pickled head \(setfit 1.x format\)"):
        load_pickle_head(tmp_path)


def test_load_pickle_head_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=PICKLE_HEAD_FILE):
        load_pickle_head(tmp_path, trust_pickle=True)


def test_load_sklearn_head_points_at_pickle_when_only_pickle_exists(tmp_path: Path) -> None:
    save_pickle_head(LogisticRegression(), tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"neither {SKOPS_HEAD_FILE} nor {HEAD_SPEC_FILE}.*trust_pickle=True"):
        load_sklearn_head(tmp_path)


# --------------------------------------------------------------------------------------------
# Corrupted or inconsistent legacy files
# --------------------------------------------------------------------------------------------


def _edit_spec(tmp_path: Path, edit: Any) -> None:
    path = tmp_path / HEAD_SPEC_FILE
    spec = json.loads(path.read_text())
    edit(spec)
    path.write_text(json.dumps(spec))


def _rewrite_tensors(tmp_path: Path, edit: Any) -> None:
    path = tmp_path / HEAD_WEIGHTS_FILE
    tensors = dict(load_file(str(path)))
    edit(tensors)
    save_file(tensors, str(path))


@pytest.mark.parametrize("keep", [0, 20, 0.5, -1], ids=["empty", "header-only", "half", "one-byte-short"])
def test_truncated_safetensors_raises_value_error_naming_file(keep: float, tmp_path: Path) -> None:
    tmp_path = _copy("logreg-4-class-int", tmp_path)
    path = tmp_path / HEAD_WEIGHTS_FILE
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)] if isinstance(keep, float) else data[:keep])
    with pytest.raises(ValueError, match=HEAD_WEIGHTS_FILE):
        load_sklearn_head(tmp_path)


def test_garbage_safetensors_raises_value_error(tmp_path: Path) -> None:
    tmp_path = _copy("logreg-binary-int", tmp_path)
    (tmp_path / HEAD_WEIGHTS_FILE).write_bytes(b"\x00" * 7 + b"not safetensors at all" * 10)
    with pytest.raises(ValueError, match=HEAD_WEIGHTS_FILE):
        load_sklearn_head(tmp_path)


def test_missing_weights_file(tmp_path: Path) -> None:
    tmp_path = _copy("logreg-binary-int", tmp_path)
    (tmp_path / HEAD_WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=HEAD_WEIGHTS_FILE):
        load_sklearn_head(tmp_path)


def test_invalid_json_raises_value_error(tmp_path: Path) -> None:
    tmp_path = _copy("logreg-binary-int", tmp_path)
    (tmp_path / HEAD_SPEC_FILE).write_text('{"format": ')
    with pytest.raises(ValueError, match=f"{HEAD_SPEC_FILE} is not valid JSON"):
        load_sklearn_head(tmp_path)


def test_newer_format_version_is_rejected(tmp_path: Path) -> None:
    tmp_path = _copy("logreg-binary-int", tmp_path)
    _edit_spec(tmp_path, lambda spec: spec.update(format_version=99))
    with pytest.raises(ValueError, match="format_version 99"):
        load_sklearn_head(tmp_path)


def test_unknown_estimator_type_is_rejected(tmp_path: Path) -> None:
    tmp_path = _copy("logreg-binary-int", tmp_path)
    _edit_spec(tmp_path, lambda spec: spec["estimator"].update(type="os.system"))
    with pytest.raises(ValueError, match=rf"{HEAD_SPEC_FILE}.*unknown or disallowed estimator type 'os.system'"):
        load_sklearn_head(tmp_path)


def test_constant_predictor_not_allowed_at_top_level(tmp_path: Path) -> None:
    tmp_path = _copy("one-vs-rest-constant-labels", tmp_path)
    _edit_spec(tmp_path, lambda spec: spec.update(estimator=spec["estimator"]["estimators"][1]))
    with pytest.raises(ValueError, match="disallowed estimator type '_ConstantPredictor'"):
        load_sklearn_head(tmp_path)


def test_missing_tensor_is_reported(tmp_path: Path) -> None:
    tmp_path = _copy("classifier-chain-random-order", tmp_path)
    _rewrite_tensors(tmp_path, lambda tensors: tensors.pop("estimators.1.coef_"))
    with pytest.raises(ValueError, match=rf"{HEAD_WEIGHTS_FILE} is missing tensor 'estimators.1.coef_'"):
        load_sklearn_head(tmp_path)


def test_tensor_shape_mismatch_with_spec_is_reported(tmp_path: Path) -> None:
    tmp_path = _copy("logreg-4-class-int", tmp_path)
    _rewrite_tensors(tmp_path, lambda tensors: tensors.update(coef_=np.zeros((4, 7))))
    with pytest.raises(ValueError, match=r"'coef_'.*shape \(4, 7\).*expects \(4, 8\)"):
        load_sklearn_head(tmp_path)


def test_spec_inconsistent_with_classes_is_reported(tmp_path: Path) -> None:
    tmp_path = _copy("logreg-4-class-int", tmp_path)
    _edit_spec(tmp_path, lambda spec: spec["estimator"]["classes"].update(values=[0, 1, 2]))
    with pytest.raises(ValueError, match=rf"{HEAD_SPEC_FILE}.*coef_ has shape \(4, 8\), expected \(3, 8\)"):
        load_sklearn_head(tmp_path)


def test_chain_link_feature_count_is_checked(tmp_path: Path) -> None:
    tmp_path = _copy("classifier-chain-random-order", tmp_path)
    _edit_spec(tmp_path, lambda spec: spec["estimator"].update(n_features_in=9))
    with pytest.raises(ValueError, match=r"estimators\[0\]: expects 8 features, not 9"):
        load_sklearn_head(tmp_path)


def test_extra_tensor_is_reported(tmp_path: Path) -> None:
    tmp_path = _copy("logreg-binary-int", tmp_path)
    _rewrite_tensors(tmp_path, lambda tensors: tensors.update(stray=np.zeros(3)))
    with pytest.raises(ValueError, match="'stray'"):
        load_sklearn_head(tmp_path)


def test_bad_param_value_is_reported(tmp_path: Path) -> None:
    tmp_path = _copy("logreg-binary-int", tmp_path)
    _edit_spec(tmp_path, lambda spec: spec["estimator"]["params"].update(no_such_param=1))
    with pytest.raises(ValueError, match=rf"{HEAD_SPEC_FILE}.*cannot restore parameters of LogisticRegression"):
        load_sklearn_head(tmp_path)
