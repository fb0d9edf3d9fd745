"""File names, format identifiers and value allow-lists shared by saving and loading.

They live apart from the code so that the writer and the reader cannot drift: both sides of the
on-disk format read the same constants.
"""

from __future__ import annotations

HEAD_WEIGHTS_FILE = "model_head.safetensors"
HEAD_SPEC_FILE = "model_head.json"
PICKLE_HEAD_FILE = "model_head.pkl"

FORMAT_NAME = "setfit_core.sklearn_head"
FORMAT_VERSION = 1

# Dtype kinds we can round-trip: numbers go to safetensors, labels/names go to JSON.
_TENSOR_KINDS = "fiub"
_LABEL_KINDS = "fiubUO"
_LABEL_SCALARS = (str, int, float, bool)
# Methods ClassifierChain may feed down the chain (its `chain_method` constraint in sklearn 1.9).
_CHAIN_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function")
# LabelBinarizer.y_type_ values OneVsRestClassifier.fit can produce.
_OVR_Y_TYPES = ("binary", "multiclass", "multilabel-indicator")
