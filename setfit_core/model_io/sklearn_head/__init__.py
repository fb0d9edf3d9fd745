"""Save and load scikit-learn classification heads without pickle.

setfit 1.x stores its scikit-learn head as `model_head.pkl` (a joblib pickle), and unpickling can
run arbitrary code. Here a fitted head is written as two files instead:

* `model_head.safetensors`: every fitted array (coefficients, intercepts, ...), stored as float64
  or int64 because safetensors has no object arrays;
* `model_head.json`: the structure — estimator types, constructor parameters, class labels,
  feature counts — and, for each array, its tensor name, shape and original dtype.

Loading rebuilds a real, fitted scikit-learn estimator from an allow-list of types, so `predict`,
`predict_proba` and `classes_` behave exactly as before saving. Supported heads are
`LogisticRegression` and the three multi-label wrappers SetFit builds around it for
`multi_target_strategy` ("one-vs-rest", "multi-output", "classifier-chain"). Unfitted heads of
those types are supported too (parameters only), since a SetFit model can be saved before training.

The pickle format is still available for setfit 1.x interop: writing it is safe, but loading it
needs an explicit `trust_pickle=True`.
"""

# The implementation is split by direction: `encode` writes, `spec` + `rebuild` read, `support`
# holds the allow-list, `values` the JSON value encoding and `pickle_io` the setfit 1.x format.
# FORMAT_NAME/FORMAT_VERSION stay importable from here (not in __all__), as before the split.
from setfit_core.model_io.sklearn_head.encode import save_sklearn_head
from setfit_core.model_io.sklearn_head.formats import (  # noqa: F401
    FORMAT_NAME,
    FORMAT_VERSION,
    HEAD_SPEC_FILE,
    HEAD_WEIGHTS_FILE,
    PICKLE_HEAD_FILE,
)
from setfit_core.model_io.sklearn_head.pickle_io import UnsafeHeadError, load_pickle_head, save_pickle_head
from setfit_core.model_io.sklearn_head.rebuild import load_sklearn_head
from setfit_core.model_io.sklearn_head.support import is_supported_sklearn_head

__all__ = [
    "HEAD_SPEC_FILE",
    "HEAD_WEIGHTS_FILE",
    "PICKLE_HEAD_FILE",
    "UnsafeHeadError",
    "is_supported_sklearn_head",
    "load_pickle_head",
    "load_sklearn_head",
    "save_pickle_head",
    "save_sklearn_head",
]
