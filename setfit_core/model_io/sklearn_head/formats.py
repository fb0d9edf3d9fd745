"""File names, format identifiers and the value allow-lists of the legacy JSON + safetensors reader."""

from __future__ import annotations

SKOPS_HEAD_FILE = "model_head.skops"
# The JSON + safetensors format written before the switch to skops; read, no longer written.
HEAD_WEIGHTS_FILE = "model_head.safetensors"
HEAD_SPEC_FILE = "model_head.json"
PICKLE_HEAD_FILE = "model_head.pkl"

FORMAT_NAME = "setfit_core.sklearn_head"
FORMAT_VERSION = 1

# Dtype kinds of the legacy format: numbers in safetensors, labels/names in JSON.
_TENSOR_KINDS = "fiub"
_LABEL_KINDS = "fiubUO"
_LABEL_SCALARS = (str, int, float, bool)
# Methods ClassifierChain may feed down the chain (its `chain_method` constraint in sklearn 1.9).
_CHAIN_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function")
# LabelBinarizer.y_type_ values OneVsRestClassifier.fit can produce.
_OVR_Y_TYPES = ("binary", "multiclass", "multilabel-indicator")
