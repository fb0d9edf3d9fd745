"""Any scikit-learn head saved as `model_head.skops`: round trips, and what loading refuses to trust."""

from __future__ import annotations

import builtins
import copy
import importlib
import logging
import pickle
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import skops.io
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier, _ConstantPredictor
from sklearn.multioutput import ClassifierChain, MultiOutputClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC, LinearSVC

from setfit_core.model_io.sklearn_head import (
    SKOPS_HEAD_FILE,
    UnsafeHeadError,
    load_sklearn_head,
    save_sklearn_head,
    trusted_by_default,
)

TREE = "sklearn.tree._tree.Tree"
X = np.random.default_rng(0).normal(size=(40, 8))
X_NEW = np.random.default_rng(1).normal(size=(15, 8))
Y_3 = np.array(["neg", "neu", "pos"])[np.random.default_rng(2).integers(0, 3, 40)]
Y_MULTI = np.random.default_rng(3).integers(0, 2, (40, 3))


def _fit(head: BaseEstimator, y: np.ndarray) -> BaseEstimator:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # OneVsRest on a constant label column says so
        warnings.simplefilter("ignore", FutureWarning)  # SVC(probability=True), deprecated in sklearn 1.9
        return head.fit(X, y)


def _constant_columns(y: np.ndarray) -> np.ndarray:
    y = y.copy()
    y[:, 1] = 1
    return y


HEADS: dict[str, tuple[BaseEstimator, np.ndarray, tuple[str, ...]]] = {
    # name: (unfitted head, targets, types to trust at load)
    "svc": (SVC(), Y_3, ()),
    "svc-probability": (SVC(probability=True, random_state=0), Y_3, ()),
    "random-forest": (RandomForestClassifier(n_estimators=4, random_state=0), Y_3, (TREE,)),
    "scaler-logreg-pipeline": (make_pipeline(StandardScaler(), LogisticRegression()), Y_3, ()),
    "calibrated-linear-svc": (CalibratedClassifierCV(LinearSVC(), cv=2), Y_3, ()),
    "numpy-function-pipeline": (make_pipeline(FunctionTransformer(np.tanh), SVC()), Y_3, ()),
    "one-vs-rest-svc": (OneVsRestClassifier(SVC()), Y_MULTI, ()),
    "one-vs-rest-constant-column": (OneVsRestClassifier(LogisticRegression()), _constant_columns(Y_MULTI), ()),
    "multi-output-forest": (MultiOutputClassifier(RandomForestClassifier(3, random_state=0)), Y_MULTI, (TREE,)),
    "classifier-chain-svc": (ClassifierChain(SVC(probability=True, random_state=0), random_state=0), Y_MULTI, ()),
}


@pytest.fixture(scope="module")
def fitted() -> dict[str, BaseEstimator]:
    return {name: _fit(head, y) for name, (head, y, _) in HEADS.items()}


def _outputs(head: BaseEstimator) -> dict[str, Any]:
    methods = ("predict", "predict_proba", "decision_function")
    return {m: getattr(head, m)(X_NEW) for m in methods if hasattr(head, m)}


def _assert_same(expected: Any, actual: Any) -> None:
    if isinstance(expected, list):  # MultiOutputClassifier.predict_proba: one array per label
        assert len(actual) == len(expected)
        for e, a in zip(expected, actual, strict=True):
            _assert_same(e, a)
        return
    assert actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_round_trip_gives_identical_outputs(name, fitted, tmp_path):
    head, trust = fitted[name], HEADS[name][2]
    assert save_sklearn_head(head, tmp_path) == tmp_path / SKOPS_HEAD_FILE
    assert [p.name for p in tmp_path.iterdir()] == [SKOPS_HEAD_FILE]
    loaded = load_sklearn_head(tmp_path, trust_head_types=trust)
    assert type(loaded) is type(head)
    assert loaded.get_params().keys() == head.get_params().keys()
    expected, actual = _outputs(head), _outputs(loaded)
    assert actual.keys() == expected.keys() and "predict" in actual
    for method in expected:
        _assert_same(expected[method], actual[method])


@pytest.mark.parametrize("name", ["random-forest", "classifier-chain-svc"])
def test_the_same_head_gives_the_same_bytes(name, fitted, tmp_path):
    """skops numbers objects by id() and stamps the time; trees hold uninitialised padding. None of it shows."""
    saved = []
    for copy_dir in (tmp_path / "a", tmp_path / "b"):  # deep copies: other objects, other id()s
        copy_dir.mkdir()
        saved.append(save_sklearn_head(copy.deepcopy(fitted[name]), copy_dir).read_bytes())
    assert saved[0] == saved[1]
    first = tmp_path / "a" / SKOPS_HEAD_FILE
    assert {info.date_time for info in zipfile.ZipFile(first).infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_a_private_scikit_learn_class_is_trusted_without_asking(fitted, tmp_path):
    head = fitted["one-vs-rest-constant-column"]
    assert _ConstantPredictor in {type(link) for link in head.estimators_}
    save_sklearn_head(head, tmp_path)
    loaded = load_sklearn_head(tmp_path)  # no trust_head_types: _ConstantPredictor is a Python sklearn class
    assert [type(e) for e in loaded.estimators_] == [type(e) for e in head.estimators_]


def test_unfitted_head_round_trips_its_params(tmp_path):
    save_sklearn_head(OneVsRestClassifier(SVC(C=0.3, kernel="linear")), tmp_path)
    loaded = load_sklearn_head(tmp_path)
    assert loaded.estimator.C == 0.3 and loaded.estimator.kernel == "linear"
    assert not hasattr(loaded, "estimators_")


def test_a_forest_needs_its_tree_type_named(fitted, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        save_sklearn_head(fitted["random-forest"], tmp_path)
    assert f"load only with trust_head_types=['{TREE}']" in caplog.text
    with pytest.raises(UnsafeHeadError, match=rf"not trusted by default: \['{TREE}'\].*crash the process.*"
                                              rf"pass trust_head_types=\['{TREE}'\]"):
        load_sklearn_head(tmp_path)


def test_load_never_unpickles(fitted, tmp_path, monkeypatch):
    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("loading a skops head must not unpickle")

    save_sklearn_head(fitted["classifier-chain-svc"], tmp_path)
    for module, name in ((joblib, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(module, name, forbidden)
    load_sklearn_head(tmp_path)


# ---- what is refused, and that refusing runs no code -------------------------------------------

SIDE_EFFECT_MODULE = '''
from pathlib import Path
from sklearn.base import BaseEstimator, ClassifierMixin
MARKER = Path({marker!r})
MARKER.with_suffix(".imported").touch()  # importing this module is running its code


class MarkerHead(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        self.classes_ = sorted(set(y))
        return self

    def predict(self, X):
        return [self.classes_[0]] * len(X)

    def __setstate__(self, state):
        MARKER.touch()  # building an instance from the file is running its code
        self.__dict__.update(state)
'''


@pytest.fixture
def custom_head(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A head whose class lives in a module that marks its import and every unpickle-like rebuild."""
    code_dir, model_dir, marker = tmp_path / "code", tmp_path / "model", tmp_path / "ran"
    code_dir.mkdir()
    model_dir.mkdir()
    (code_dir / "marker_head.py").write_text(SIDE_EFFECT_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(code_dir))
    save_sklearn_head(importlib.import_module("marker_head").MarkerHead().fit(X, Y_3), model_dir)
    sys.modules.pop("marker_head")  # as in a fresh process that loads the file
    marker.with_suffix(".imported").unlink()
    yield model_dir, marker
    sys.modules.pop("marker_head", None)


def test_a_custom_class_is_refused_and_no_code_runs(custom_head):
    model_dir, marker = custom_head
    with pytest.raises(UnsafeHeadError, match=r"\['marker_head.MarkerHead'\].*"
                                              r"pass trust_head_types=\['marker_head.MarkerHead'\]"):
        load_sklearn_head(model_dir)
    assert "marker_head" not in sys.modules, "the module was not even imported"
    assert not marker.exists() and not marker.with_suffix(".imported").exists()
    # Positive control: named, the class is imported and rebuilt, so its code really runs.
    loaded = load_sklearn_head(model_dir, trust_head_types=["marker_head.MarkerHead"])
    assert loaded.predict(X_NEW[:2]) == ["neg", "neg"]
    assert marker.exists() and marker.with_suffix(".imported").exists()


@pytest.mark.parametrize("func", [builtins.eval, __import__("os").system], ids=["eval", "os.system"])
def test_a_dangerous_function_is_refused(func, tmp_path):
    head = make_pipeline(FunctionTransformer(func, validate=False), LogisticRegression())
    save_sklearn_head(head, tmp_path)  # unfitted: FunctionTransformer would call it
    with pytest.raises(UnsafeHeadError, match=rf"\['[a-z]+\.{func.__name__}'\]"):
        load_sklearn_head(tmp_path)


def test_a_lambda_is_refused_at_save_time_and_at_load_time(tmp_path):
    head = _fit(make_pipeline(FunctionTransformer(lambda x: x * 2), LogisticRegression()), Y_3)
    with pytest.raises(TypeError, match=r"holds \['.*<lambda>'\], which cannot be loaded back by name"):
        save_sklearn_head(head, tmp_path)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / SKOPS_HEAD_FILE).write_bytes(skops.io.dumps(head))  # written by skops itself
    with pytest.raises(UnsafeHeadError, match=r"not trusted by default: \['.*<lambda>'\]"):
        load_sklearn_head(tmp_path)


@pytest.mark.parametrize(
    ("name", "trusted"),
    [
        ("sklearn.multiclass._ConstantPredictor", True),
        ("sklearn.calibration._CalibratedClassifier", True),
        (TREE, False),  # C extension type with raw node indices
        ("sklearn.neighbors._kd_tree.KDTree", False),  # a Python class on a Cython base
        ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor", False),  # flagged by skops
        ("sklearn.preprocessing._data.normalize", False),  # a function, not a class
        ("sklearn.no_such_module.Thing", False),
        ("sklearnx.evil.Thing", False),
        ("builtins.eval", False),
    ],
)
def test_trusted_by_default(name, trusted):
    assert trusted_by_default(name) is trusted


@pytest.mark.parametrize("value", [TREE, True, [TREE, 3]], ids=["a-string", "a-bool", "a-non-string"])
def test_trust_head_types_must_be_a_list_of_names(value, fitted, tmp_path):
    save_sklearn_head(fitted["random-forest"], tmp_path)
    with pytest.raises(TypeError, match=r"'trust_head_types' must be a list of fully qualified type names"):
        load_sklearn_head(tmp_path, trust_head_types=value)


@pytest.mark.parametrize("keep", [0, 100, 0.5], ids=["empty", "header", "half"])
def test_a_damaged_file_is_an_error_naming_it(keep, fitted, tmp_path):
    path = save_sklearn_head(fitted["svc"], tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)] if isinstance(keep, float) else data[:keep])
    with pytest.raises(ValueError, match=rf"could not read the scikit-learn head .*{SKOPS_HEAD_FILE}.*damaged"):
        load_sklearn_head(tmp_path)
