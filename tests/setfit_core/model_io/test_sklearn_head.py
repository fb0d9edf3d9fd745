"""Round-trip and safety tests for setfit_core.model_io.sklearn_head."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier, _ConstantPredictor
from sklearn.multioutput import ClassifierChain, MultiOutputClassifier
from sklearn.svm import SVC

from setfit_core.model_io.sklearn_head import (
    HEAD_SPEC_FILE,
    HEAD_WEIGHTS_FILE,
    PICKLE_HEAD_FILE,
    UnsafeHeadError,
    is_supported_sklearn_head,
    load_pickle_head,
    load_sklearn_head,
    save_pickle_head,
    save_sklearn_head,
)

N_SAMPLES, N_FEATURES = 40, 8


def _x(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(N_SAMPLES, N_FEATURES))


def _single_label(kind: str) -> np.ndarray:
    rng = np.random.default_rng(1)
    if kind == "binary-int":
        return rng.integers(0, 2, N_SAMPLES)
    if kind == "4-class-int":
        return rng.integers(0, 4, N_SAMPLES)
    return np.array(["negative", "neutral", "positive"])[rng.integers(0, 3, N_SAMPLES)]


def _multi_label(constant_columns: bool = False) -> np.ndarray:
    y = np.random.default_rng(2).integers(0, 2, (N_SAMPLES, 3))
    if constant_columns:
        y[:, 1] = 1  # every sample has label 1
        y[:, 2] = 0  # no sample has label 2
    return y


def _fit(estimator: BaseEstimator, y: np.ndarray, x: np.ndarray | None = None) -> BaseEstimator:
    with warnings.catch_warnings():
        # OneVsRestClassifier warns about constant label columns; that is the point of that case.
        warnings.simplefilter("ignore", UserWarning)
        return estimator.fit(_x(0) if x is None else x, y)


def _fitted_heads() -> dict[str, BaseEstimator]:
    kinds = ("binary-int", "4-class-int", "3-class-str")
    heads = {f"logreg-{kind}": _fit(LogisticRegression(), _single_label(kind)) for kind in kinds}
    heads["one-vs-rest"] = _fit(OneVsRestClassifier(LogisticRegression()), _multi_label())
    heads["one-vs-rest-constant-labels"] = _fit(OneVsRestClassifier(LogisticRegression()), _multi_label(True))
    heads["one-vs-rest-multiclass-str"] = _fit(OneVsRestClassifier(LogisticRegression()), _single_label("3-class-str"))
    heads["one-vs-rest-binary"] = _fit(OneVsRestClassifier(LogisticRegression()), _single_label("binary-int"))
    heads["multi-output"] = _fit(MultiOutputClassifier(LogisticRegression()), _multi_label())
    heads["classifier-chain"] = _fit(ClassifierChain(LogisticRegression()), _multi_label())
    heads["classifier-chain-random-order"] = _fit(
        ClassifierChain(LogisticRegression(C=0.5), order="random", random_state=3), _multi_label()
    )
    return heads


HEADS = _fitted_heads()


def _assert_same_outputs(expected: Any, actual: Any) -> None:
    """predict_proba of the multi-output wrapper is a list of arrays; compare element-wise."""
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected)
        for e, a in zip(expected, actual, strict=True):
            _assert_same_outputs(e, a)
        return
    assert type(actual) is type(expected)
    assert actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual, expected)


def _plain_params(estimator: BaseEstimator) -> dict[str, Any]:
    return {k: v for k, v in estimator.get_params(deep=True).items() if not isinstance(v, BaseEstimator)}


def _round_trip(estimator: BaseEstimator, tmp_path: Path) -> BaseEstimator:
    save_sklearn_head(estimator, tmp_path)
    return load_sklearn_head(tmp_path)


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HEADS))
def test_round_trip_predictions_are_identical(name: str, tmp_path: Path) -> None:
    head = HEADS[name]
    loaded = _round_trip(head, tmp_path)
    assert type(loaded) is type(head)
    fresh = _x(99)
    _assert_same_outputs(head.predict(fresh), loaded.predict(fresh))
    _assert_same_outputs(head.predict_proba(fresh), loaded.predict_proba(fresh))
    _assert_same_outputs(head.classes_, loaded.classes_)
    assert loaded.n_features_in_ == head.n_features_in_
    assert _plain_params(loaded) == _plain_params(head)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_saved_directory_is_pickle_free_json_and_numeric_tensors(name: str, tmp_path: Path) -> None:
    save_sklearn_head(HEADS[name], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([HEAD_SPEC_FILE, HEAD_WEIGHTS_FILE])
    assert not list(tmp_path.glob("*.pkl"))
    spec = json.loads((tmp_path / HEAD_SPEC_FILE).read_text())
    assert spec["estimator"]["type"] == type(HEADS[name]).__name__
    for tensor in load_file(str(tmp_path / HEAD_WEIGHTS_FILE)).values():
        assert tensor.dtype in (np.float64, np.int64)


def test_logreg_fitted_attributes_restored_with_dtypes(tmp_path: Path) -> None:
    head = HEADS["logreg-4-class-int"]
    loaded = _round_trip(head, tmp_path)
    for attr in ("coef_", "intercept_", "n_iter_", "classes_"):
        _assert_same_outputs(getattr(head, attr), getattr(loaded, attr))
    assert loaded.n_iter_.dtype == np.int32  # stored widened to int64, narrowed back on load


def test_string_classes_live_in_json_not_safetensors(tmp_path: Path) -> None:
    save_sklearn_head(HEADS["logreg-3-class-str"], tmp_path)
    spec = json.loads((tmp_path / HEAD_SPEC_FILE).read_text())
    assert spec["estimator"]["classes"]["values"] == ["negative", "neutral", "positive"]
    assert set(load_file(str(tmp_path / HEAD_WEIGHTS_FILE))) == {"coef_", "intercept_", "n_iter_"}


def test_one_vs_rest_constant_labels_restore_constant_predictors(tmp_path: Path) -> None:
    head = HEADS["one-vs-rest-constant-labels"]
    assert [type(e) for e in head.estimators_] == [LogisticRegression, _ConstantPredictor, _ConstantPredictor]
    loaded = _round_trip(head, tmp_path)
    assert [type(e) for e in loaded.estimators_] == [type(e) for e in head.estimators_]
    assert loaded.label_binarizer_.y_type_ == "multilabel-indicator"
    assert loaded.classes_ is loaded.label_binarizer_.classes_
    predictions = loaded.predict(_x(99))
    assert predictions[:, 1].all() and not predictions[:, 2].any()


def test_classifier_chain_restores_order_and_growing_links(tmp_path: Path) -> None:
    head = HEADS["classifier-chain-random-order"]
    loaded = _round_trip(head, tmp_path)
    np.testing.assert_array_equal(loaded.order_, head.order_)
    assert [e.n_features_in_ for e in loaded.estimators_] == [N_FEATURES, N_FEATURES + 1, N_FEATURES + 2]
    assert loaded.chain_method_ == head.chain_method_


def test_float32_fit_keeps_float32_weights(tmp_path: Path) -> None:
    x = _x(0).astype(np.float32)
    head = _fit(LogisticRegression(), _single_label("binary-int"), x)
    loaded = _round_trip(head, tmp_path)
    assert loaded.coef_.dtype == np.float32
    _assert_same_outputs(head.predict_proba(x), loaded.predict_proba(x))


def test_feature_names_round_trip(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(_x(0), columns=[f"dim_{i}" for i in range(N_FEATURES)])
    head = _fit(OneVsRestClassifier(LogisticRegression()), _multi_label(), frame)
    loaded = _round_trip(head, tmp_path)
    np.testing.assert_array_equal(loaded.feature_names_in_, head.feature_names_in_)
    np.testing.assert_array_equal(loaded.estimators_[0].feature_names_in_, head.estimators_[0].feature_names_in_)
    _assert_same_outputs(head.predict_proba(frame), loaded.predict_proba(frame))


def test_non_default_params_keep_their_types(tmp_path: Path) -> None:
    head = LogisticRegression(C=float("inf"), class_weight={0: 1.0, 1: 2.5}, max_iter=250, tol=1e-6)
    loaded = _round_trip(head, tmp_path)
    assert loaded.get_params() == head.get_params()
    assert list(loaded.class_weight) == [0, 1]  # int keys survive JSON's string-only keys
    json.loads((tmp_path / HEAD_SPEC_FILE).read_text())  # strict JSON despite C=inf


def test_unserialisable_param_is_dropped_with_warning(tmp_path: Path) -> None:
    head = _fit(LogisticRegression(random_state=np.random.RandomState(0)), _single_label("binary-int"))
    with pytest.warns(UserWarning, match="random_state"):
        save_sklearn_head(head, tmp_path)
    loaded = load_sklearn_head(tmp_path)
    assert loaded.random_state is None
    _assert_same_outputs(head.predict(_x(99)), loaded.predict(_x(99)))


@pytest.mark.parametrize(
    "head",
    [
        LogisticRegression(C=0.3),
        OneVsRestClassifier(LogisticRegression(max_iter=7)),
        ClassifierChain(LogisticRegression()),
    ],
    ids=["logreg", "one-vs-rest", "classifier-chain"],
)
def test_unfitted_heads_round_trip_params(head: BaseEstimator, tmp_path: Path) -> None:
    loaded = _round_trip(head, tmp_path)
    assert type(loaded) is type(head)
    assert _plain_params(loaded) == _plain_params(head)
    assert not hasattr(loaded, "classes_")


def test_load_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("load_sklearn_head must not unpickle")

    monkeypatch.setattr(joblib, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    save_sklearn_head(HEADS["one-vs-rest-constant-labels"], tmp_path)
    load_sklearn_head(tmp_path)


# --------------------------------------------------------------------------------------------
# Unsupported estimators and pickle interop
# --------------------------------------------------------------------------------------------


def test_is_supported_sklearn_head() -> None:
    assert all(is_supported_sklearn_head(head) for head in HEADS.values())
    assert is_supported_sklearn_head(LogisticRegression())
    assert not is_supported_sklearn_head(SVC())
    assert not is_supported_sklearn_head(OneVsRestClassifier(SVC()))
    assert not is_supported_sklearn_head(object())


def test_unsupported_estimator_raises_type_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"SVC.*Supported: .*LogisticRegression.*save_pickle_head"):
        save_sklearn_head(SVC(), tmp_path)
    assert not list(tmp_path.iterdir())


def test_wrapper_around_unsupported_estimator_raises_type_error(tmp_path: Path) -> None:
    head = _fit(OneVsRestClassifier(SVC()), _multi_label())
    with pytest.raises(TypeError, match=r"SVC \(inside .*OneVsRestClassifier\)"):
        save_sklearn_head(head, tmp_path)


def test_save_requires_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        save_sklearn_head(HEADS["logreg-binary-int"], tmp_path / "missing")


def test_pickle_head_requires_trust(tmp_path: Path) -> None:
    head = HEADS["multi-output"]
    save_pickle_head(head, tmp_path)
    assert (tmp_path / PICKLE_HEAD_FILE).is_file()
    with pytest.raises(UnsafeHeadError, match="trust_pickle=True") as excinfo:
        load_pickle_head(tmp_path)
    message = str(excinfo.value)
    assert PICKLE_HEAD_FILE in message and "arbitrary code" in message and "save_sklearn_head" in message
    assert isinstance(excinfo.value, ValueError)

    loaded = load_pickle_head(tmp_path, trust_pickle=True)
    _assert_same_outputs(head.predict(_x(99)), loaded.predict(_x(99)))
    _assert_same_outputs(head.predict_proba(_x(99)), loaded.predict_proba(_x(99)))


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
    save_pickle_head(HEADS["multi-output"], tmp_path)
    with pytest.raises(UnsafeHeadError, match=r"a pickled scikit-learn head \(sklearn.multioutput."
                                              r"MultiOutputClassifier; setfit 1.x format\)"):
        load_pickle_head(tmp_path)
    joblib.dump(HEADS["multi-output"], tmp_path / PICKLE_HEAD_FILE, compress=3)  # opcodes unreadable: no guess
    with pytest.raises(UnsafeHeadError, match=r"holds 'model_head.pkl', a pickled head \(setfit 1.x format\)"):
        load_pickle_head(tmp_path)


def test_load_pickle_head_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=PICKLE_HEAD_FILE):
        load_pickle_head(tmp_path, trust_pickle=True)


def test_load_sklearn_head_points_at_pickle_when_only_pickle_exists(tmp_path: Path) -> None:
    save_pickle_head(HEADS["logreg-binary-int"], tmp_path)
    with pytest.raises(FileNotFoundError, match="trust_pickle=True"):
        load_sklearn_head(tmp_path)


# --------------------------------------------------------------------------------------------
# Corrupted or inconsistent files
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
    save_sklearn_head(HEADS["logreg-4-class-int"], tmp_path)
    path = tmp_path / HEAD_WEIGHTS_FILE
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)] if isinstance(keep, float) else data[:keep])
    with pytest.raises(ValueError, match=HEAD_WEIGHTS_FILE):
        load_sklearn_head(tmp_path)


def test_garbage_safetensors_raises_value_error(tmp_path: Path) -> None:
    save_sklearn_head(HEADS["logreg-binary-int"], tmp_path)
    (tmp_path / HEAD_WEIGHTS_FILE).write_bytes(b"\x00" * 7 + b"not safetensors at all" * 10)
    with pytest.raises(ValueError, match=HEAD_WEIGHTS_FILE):
        load_sklearn_head(tmp_path)


def test_missing_weights_file(tmp_path: Path) -> None:
    save_sklearn_head(HEADS["logreg-binary-int"], tmp_path)
    (tmp_path / HEAD_WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=HEAD_WEIGHTS_FILE):
        load_sklearn_head(tmp_path)


def test_invalid_json_raises_value_error(tmp_path: Path) -> None:
    save_sklearn_head(HEADS["logreg-binary-int"], tmp_path)
    (tmp_path / HEAD_SPEC_FILE).write_text('{"format": ')
    with pytest.raises(ValueError, match=f"{HEAD_SPEC_FILE} is not valid JSON"):
        load_sklearn_head(tmp_path)


def test_newer_format_version_is_rejected(tmp_path: Path) -> None:
    save_sklearn_head(HEADS["logreg-binary-int"], tmp_path)
    _edit_spec(tmp_path, lambda spec: spec.update(format_version=99))
    with pytest.raises(ValueError, match="format_version 99"):
        load_sklearn_head(tmp_path)


def test_unknown_estimator_type_is_rejected(tmp_path: Path) -> None:
    save_sklearn_head(HEADS["logreg-binary-int"], tmp_path)
    _edit_spec(tmp_path, lambda spec: spec["estimator"].update(type="os.system"))
    with pytest.raises(ValueError, match=rf"{HEAD_SPEC_FILE}.*unknown or disallowed estimator type 'os.system'"):
        load_sklearn_head(tmp_path)


def test_constant_predictor_not_allowed_at_top_level(tmp_path: Path) -> None:
    save_sklearn_head(HEADS["one-vs-rest-constant-labels"], tmp_path)
    _edit_spec(tmp_path, lambda spec: spec.update(estimator=spec["estimator"]["estimators"][1]))
    with pytest.raises(ValueError, match="disallowed estimator type '_ConstantPredictor'"):
        load_sklearn_head(tmp_path)


def test_missing_tensor_is_reported(tmp_path: Path) -> None:
    save_sklearn_head(HEADS["classifier-chain"], tmp_path)
    _rewrite_tensors(tmp_path, lambda tensors: tensors.pop("estimators.1.coef_"))
    with pytest.raises(ValueError, match=rf"{HEAD_WEIGHTS_FILE} is missing tensor 'estimators.1.coef_'"):
        load_sklearn_head(tmp_path)


def test_tensor_shape_mismatch_with_spec_is_reported(tmp_path: Path) -> None:
    save_sklearn_head(HEADS["logreg-4-class-int"], tmp_path)
    _rewrite_tensors(tmp_path, lambda tensors: tensors.update(coef_=np.zeros((4, 7))))
    with pytest.raises(ValueError, match=r"'coef_'.*shape \(4, 7\).*expects \(4, 8\)"):
        load_sklearn_head(tmp_path)


def test_spec_inconsistent_with_classes_is_reported(tmp_path: Path) -> None:
    save_sklearn_head(HEADS["logreg-4-class-int"], tmp_path)
    _edit_spec(tmp_path, lambda spec: spec["estimator"]["classes"].update(values=[0, 1, 2]))
    with pytest.raises(ValueError, match=rf"{HEAD_SPEC_FILE}.*coef_ has shape \(4, 8\), expected \(3, 8\)"):
        load_sklearn_head(tmp_path)


def test_chain_link_feature_count_is_checked(tmp_path: Path) -> None:
    save_sklearn_head(HEADS["classifier-chain"], tmp_path)
    _edit_spec(tmp_path, lambda spec: spec["estimator"].update(n_features_in=9))
    with pytest.raises(ValueError, match=r"estimators\[0\]: expects 8 features, not 9"):
        load_sklearn_head(tmp_path)


def test_extra_tensor_is_reported(tmp_path: Path) -> None:
    save_sklearn_head(HEADS["logreg-binary-int"], tmp_path)
    _rewrite_tensors(tmp_path, lambda tensors: tensors.update(stray=np.zeros(3)))
    with pytest.raises(ValueError, match="'stray'"):
        load_sklearn_head(tmp_path)


def test_bad_param_value_is_reported(tmp_path: Path) -> None:
    save_sklearn_head(HEADS["logreg-binary-int"], tmp_path)
    _edit_spec(tmp_path, lambda spec: spec["estimator"]["params"].update(no_such_param=1))
    with pytest.raises(ValueError, match=rf"{HEAD_SPEC_FILE}.*cannot restore parameters of LogisticRegression"):
        load_sklearn_head(tmp_path)
