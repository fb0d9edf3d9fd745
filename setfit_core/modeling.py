"""`SetFitModel`: a sentence-transformers body plus a classification head."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from setfit_core.differentiable_head import SetFitHead
from setfit_core.engine.inference import (
    HalfPrecisionBody,
    check_inference_dtype,
    embed,
    inference_torch_dtype,
    resolve_batch_size,
)
from setfit_core.engine.onnx_body import OnnxBody
from setfit_core.heads import build_differentiable_head, build_sklearn_head, check_strategy
from setfit_core.model_io.body_loading import (
    default_device,
    default_model_path,
    embedding_dimension,
    load_body,
    locate_model,
    resolve_model_location,
)
from setfit_core.model_io.model_card import (
    SetFitModelCardData,
    card_data_for_loaded_model,
    check_card_data,
)
from setfit_core.model_io.onnx_format import check_backend

logger = logging.getLogger(__name__)

# encode / predict batch size when none is given: setfit's 32 on a CPU (a GPU takes GPU_BATCH_SIZE).
DEFAULT_BATCH_SIZE = 32


class SetFitModel:
    """Body (`SentenceTransformer`) + head (scikit-learn estimator or `SetFitHead`).

    A new differentiable head is created at training time with one output per class (`out_features` in
    `head_params`, if given, must match the class count).

    `inference_dtype` (None: float32; "float16", "bfloat16", or "auto": bfloat16 on a GPU that has it, float16
    on an older GPU, float32 on a CPU) is the precision `encode`, `predict` and `predict_proba` run the body at;
    half precision runs on a CUDA device only. It is not saved with the model.
    """

    def __init__(
        self,
        model_body,
        model_head=None,
        multi_target_strategy: str | None = None,
        normalize_embeddings: bool = False,
        labels: list[Any] | None = None,
        use_differentiable_head: bool | None = None,
        head_params: dict[str, Any] | None = None,
        model_card_data: SetFitModelCardData | None = None,
        inference_dtype: str | None = None,
    ) -> None:
        differentiable = (isinstance(model_head, SetFitHead) if use_differentiable_head is None
                          else use_differentiable_head)
        check_strategy(multi_target_strategy, differentiable)
        if labels is not None and (not isinstance(labels, (list, tuple)) or len(set(labels)) != len(labels)):
            raise ValueError(f"'labels' must be a list of distinct class names; got {labels!r}")
        self.model_body = model_body
        self.multi_target_strategy = multi_target_strategy
        self.normalize_embeddings = bool(normalize_embeddings)
        self.labels = list(labels) if labels is not None else None
        self.head_params = dict(head_params or {})
        self.model_card_data = check_card_data(model_card_data)  # what save_pretrained's README.md says
        self._differentiable = differentiable
        if model_head is None and not differentiable:
            model_head = build_sklearn_head(self.head_params, multi_target_strategy)
        # A new differentiable head is built at the start of phase 2, after seeding, so its initial
        # weights follow TrainingArguments.seed like every other random choice.
        self.model_head = model_head
        self.inference_dtype = inference_dtype
        self._half_body = HalfPrecisionBody()  # the cast copy `inference_dtype` predicts with, made on first use

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        model_id: str | None = None,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        force_download: bool = False,
        use_differentiable_head: bool = False,
        head_params: dict[str, Any] | None = None,
        multi_target_strategy: str | None = None,
        labels: list[Any] | None = None,
        normalize_embeddings: bool | None = None,
        device: str | None = None,
        trust_pickle: bool = False,
        trust_head_types: list[str] | tuple[str, ...] = (),
        trust_remote_code: bool = False,
        backend: str = "torch",
        model_card_data: SetFitModelCardData | None = None,
        inference_dtype: str | None = None,
    ) -> SetFitModel:
        """Load a saved SetFit model, or start a new one from a sentence-transformers body.

        `model_id` is a local directory or a Hugging Face Hub id (default: the bundled offline
        all-MiniLM-L6-v2). A hub id is fetched through huggingface_hub into its cache (`cache_dir`,
        `revision`, `token`, `force_download`), or, offline (`HF_HUB_OFFLINE=1`, `local_files_only=True`),
        read from that cache. Either way a directory or repo holding `config_setfit.json` or a
        `model_head.*` file loads with its head and labels; a pickled head (`model_head.pkl`) only with
        `trust_pickle=True`. A scikit-learn head (`model_head.skops`) holding types that are not trusted by
        default (functions, classes from other packages, decision trees) loads only with those types named in
        `trust_head_types`, e.g. ``["sklearn.tree._tree.Tree"]`` for a random forest. A pipeline model stage
        that references its body stage (``body_ref.json``) loads its body from there, ``../../body/<key>``
        beside it.

        ``backend="onnx"`` (as in sentence-transformers) loads a directory `export_onnx` wrote, or a pipeline
        model stage trained with ``export_onnx``, for prediction through onnxruntime: the body is its ONNX
        graph (no torch weights are loaded), the head the saved one. `device` defaults to "cpu" there.

        `model_card_data` (a `SetFitModelCardData`): what the model card `save_pretrained` writes says (language,
        license, model_id, dataset, ...). Without it, a saved SetFit card's fields are kept; the base model is
        filled in when known (`setfit_core.model_io.model_card`).
        `inference_dtype` ("float16", "bfloat16", "auto"; None: float32) runs prediction in half precision
        on a CUDA device: a faster GPU path whose predictions can differ from float32's on a few borderline
        texts. On a CPU or the ONNX backend "float16" / "bfloat16" are an error and "auto" is float32.
        """
        from setfit_core.model_io.setfit_format import load_saved_head, read_saved_config
        from setfit_core.model_io.sklearn_head import UnsafeHeadError

        check_strategy(multi_target_strategy, use_differentiable_head)
        check_backend(backend)
        check_inference_dtype(inference_dtype)
        location = locate_model(
            model_id if model_id is not None else default_model_path(),
            revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token,
            force_download=force_download,
        )
        saved = read_saved_config(location)
        if backend == "onnx":
            device = device or "cpu"
            body = OnnxBody.load(location, resolve_model_location(location), saved, device=device)
        else:
            device = device or default_device()
            body = load_body(location, device=device, trust_remote_code=trust_remote_code)
        if normalize_embeddings is None:
            normalize_embeddings = saved.get("normalize_embeddings", False)
        labels = labels if labels is not None else saved.get("labels")
        multi_target_strategy = multi_target_strategy or saved.get("multi_target_strategy")
        try:
            head = load_saved_head(location, saved, device=device, trust_pickle=trust_pickle,
                                   trust_head_types=trust_head_types)
        except UnsafeHeadError as exc:
            if model_id is None or os.path.isdir(os.path.expanduser(str(model_id))):
                raise
            # The snapshot's path alone does not say which repo it is: name the hub id the caller gave.
            raise UnsafeHeadError(f"model {model_id!r} from the Hugging Face Hub cache: {exc}") from exc
        if head is not None:
            use_differentiable_head = isinstance(head, SetFitHead)
        card_data = card_data_for_loaded_model(model_card_data, model_id, location)
        model = cls(
            body,
            head,
            multi_target_strategy=multi_target_strategy,
            normalize_embeddings=normalize_embeddings,
            labels=labels,
            use_differentiable_head=use_differentiable_head,
            head_params=head_params,
            model_card_data=card_data,
            inference_dtype=inference_dtype,
        )
        inference_torch_dtype(inference_dtype, model.device, model.backend)  # half precision on a CPU: refused now
        return model

    def new_differentiable_head(self, num_classes: int) -> SetFitHead:
        return build_differentiable_head(
            self.head_params,
            in_features=embedding_dimension(self.model_body),
            num_classes=num_classes,
            multitarget=self.multi_target_strategy is not None,
            device=self.device,
        )

    # ---- properties -----------------------------------------------------------------------------
    @property
    def has_differentiable_head(self) -> bool:
        return self._differentiable

    @property
    def backend(self) -> str:
        """"onnx" for a model loaded with ``backend="onnx"`` (prediction only), else "torch"."""
        return "onnx" if isinstance(self.model_body, OnnxBody) else "torch"

    @property
    def device(self) -> torch.device:
        return self.model_body.device

    @property
    def inference_dtype(self) -> str | None:
        """Precision of the body at prediction: None (float32), "float16", "bfloat16" or "auto" (CUDA only)."""
        return self._inference_dtype

    @inference_dtype.setter
    def inference_dtype(self, value: str | None) -> None:
        self._inference_dtype = check_inference_dtype(value)

    @property
    def multi_label(self) -> bool:
        return self.multi_target_strategy is not None

    @property
    def id2label(self) -> dict[int, Any]:
        """Head index -> label, e.g. `{0: "negative", 1: "positive"}`; `{}` when the model has no labels."""
        return dict(enumerate(self.labels)) if self.labels is not None else {}

    @property
    def label2id(self) -> dict[Any, int]:
        """Label -> head index, the inverse of `id2label`; `{}` when the model has no labels."""
        return {label: i for i, label in enumerate(self.labels)} if self.labels is not None else {}

    def to(self, device: str | torch.device) -> SetFitModel:
        self.model_body.to(device)
        if isinstance(self.model_head, torch.nn.Module):
            self.model_head.to(device)
        return self

    def freeze(self, component: str | None = None) -> None:
        """Stop gradients for "body", "head" or both (None)."""
        for part in ("body", "head") if component is None else (component,):
            module = self.model_body if part == "body" else self.model_head
            if isinstance(module, torch.nn.Module):
                module.requires_grad_(False)

    def unfreeze(self, component: str | None = None, keep_body_frozen: bool | None = None) -> None:
        """Let gradients flow again for "body", "head" or both (None); `keep_body_frozen` is deprecated."""
        if keep_body_frozen is not None:  # setfit 0.x spelling
            suggested = '"head"' if keep_body_frozen else "no argument"
            warnings.warn(f"unfreeze(keep_body_frozen=...) is deprecated; pass {suggested} instead",
                          DeprecationWarning, stacklevel=2)
            if keep_body_frozen and not component:
                component = "head"
        for part in ("body", "head") if component is None else (component,):
            module = self.model_body if part == "body" else self.model_head
            if isinstance(module, torch.nn.Module):
                module.requires_grad_(True)

    # ---- training -------------------------------------------------------------------------------
    def fit(
        self,
        x_train: list[str],
        y_train: list[Any],
        num_epochs: int,
        batch_size: int | None = None,
        body_learning_rate: float | None = None,
        head_learning_rate: float | None = None,
        end_to_end: bool = False,
        l2_weight: float | None = None,
        max_length: int | None = None,
        show_progress_bar: bool = True,
    ) -> None:
        """Train the head on `x_train` with the body as it is (setfit's `SetFitModel.fit`: phase 2 alone).

        `y_train`: ints, strings or multi-hot rows, checked like a Trainer's train_dataset. A differentiable
        head trains for `num_epochs` (the body too with `end_to_end=True`, at `body_learning_rate`); a
        scikit-learn head is fitted once and ignores the epoch, batch and rate arguments. Unset values take
        `TrainingArguments`' classifier-phase defaults (batch 2, head rate 1e-2, body rate 1e-5,
        `l2_weight` 0.01), and the seed is its default 42.
        """
        from setfit_core.training.fit_head import fit_model_head

        fit_model_head(self, x_train, y_train, num_epochs, batch_size=batch_size, body_learning_rate=body_learning_rate,
                       head_learning_rate=head_learning_rate, end_to_end=end_to_end, l2_weight=l2_weight,
                       max_length=max_length, show_progress_bar=show_progress_bar)

    # ---- inference ------------------------------------------------------------------------------
    def encode(
        self,
        inputs: list[str] | str,
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
        as_numpy: bool | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Sentence embeddings (normalised when `normalize_embeddings`), float32 at any `inference_dtype`.

        As in setfit, a torch tensor (on the model's device) for a model with a differentiable head, else a
        numpy array; `as_numpy` (not in setfit) asks for one or the other. `batch_size` None: 32 texts on a
        CPU (setfit's default), 256 on a GPU."""
        single = isinstance(inputs, str)
        texts = [inputs] if single else list(inputs)
        if as_numpy is None:
            as_numpy = not self.has_differentiable_head
        batch_size = resolve_batch_size(batch_size, self.device, DEFAULT_BATCH_SIZE)
        dtype = inference_torch_dtype(self.inference_dtype, self.device, self.backend)
        self.model_body.eval()
        if isinstance(self.model_body, OnnxBody):
            embeddings = torch.from_numpy(self.model_body.embed(texts, batch_size, bool(show_progress_bar)))
            if self.normalize_embeddings and not self.model_body.normalized:  # asked for at load, not in the graph
                embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=1)
        else:
            body = self.model_body if dtype is None else self._half_body.get(self.model_body, dtype)
            embeddings = embed(body, texts, batch_size, self.normalize_embeddings, bool(show_progress_bar), dtype=dtype)
        out = embeddings.cpu().numpy() if as_numpy else embeddings
        return out[0] if single else out

    def _head_outputs(self, inputs: list[str], batch_size: int | None, show_progress_bar: bool | None, proba: bool):
        if self.model_head is None:
            raise RuntimeError("this model has no trained head yet; train it with setfit_core.Trainer first")
        if isinstance(self.model_head, SetFitHead):
            embeddings = self.encode(inputs, batch_size, show_progress_bar, as_numpy=False).to(self.model_head.device)
            out = self.model_head.predict_proba(embeddings) if proba else self.model_head.predict(embeddings)
            return out.cpu().numpy()
        embeddings = self.encode(inputs, batch_size, show_progress_bar, as_numpy=True)
        if proba:
            probs = self.model_head.predict_proba(embeddings)
            if isinstance(probs, list):  # multi-output heads: one (n, 2) array per label
                probs = np.stack([p[:, 1] for p in probs], axis=1)
            return np.asarray(probs, dtype=np.float32)
        return np.asarray(self.model_head.predict(embeddings))

    def predict_proba(
        self, inputs: list[str] | str, batch_size: int | None = None, as_numpy: bool = False,
        show_progress_bar: bool | None = None,
    ) -> np.ndarray | torch.Tensor:
        single = isinstance(inputs, str)
        probs = self._head_outputs([inputs] if single else list(inputs), batch_size, show_progress_bar, proba=True)
        out = probs if as_numpy else torch.from_numpy(probs)
        return out[0] if single else out

    def predict(
        self,
        inputs: list[str] | str,
        batch_size: int | None = None,
        as_numpy: bool = False,
        use_labels: bool = True,
        show_progress_bar: bool | None = None,
    ) -> Any:
        """Class per input: label values when the model knows them, else class ids."""
        single = isinstance(inputs, str)
        ids = self._head_outputs([inputs] if single else list(inputs), batch_size, show_progress_bar, proba=False)
        if use_labels and self.labels is not None and not self.multi_label:
            out: Any = [self.labels[int(i)] for i in ids]
            out = np.asarray(out) if as_numpy else out
        else:
            ids = ids.astype(np.int64)
            out = ids if as_numpy else torch.from_numpy(ids)
        return out[0] if single else out

    __call__ = predict

    # ---- persistence ----------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str, setfit_compatible: bool = False) -> None:
        """Body files + `config_setfit.json` + a head that loads without executing code + the model card
        (`README.md`, from `model_card_data`).

        `setfit_compatible=True` also writes `model_head.pkl` so setfit 1.x can load the directory.
        """
        from setfit_core.model_io.setfit_format import save_model

        save_model(self, save_directory, setfit_compatible=setfit_compatible)

    def generate_model_card(self) -> str:
        """The model card (``README.md``) `save_pretrained` would write, as a string."""
        from setfit_core.model_io.model_card_render import facts_of_model, render_model_card

        return render_model_card(self.model_card_data, facts_of_model(self))

    def create_model_card(self, path: str | os.PathLike, model_name: str | None = None) -> None:
        """setfit's: write the model card (`generate_model_card`) as ``README.md`` in `path` (made if missing).
        `model_name`: the card's title, where `model_card_data` has none."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        if model_name and not self.model_card_data.model_name:
            self.model_card_data.model_name = model_name
        (directory / "README.md").write_text(self.generate_model_card(), encoding="utf-8")

    def export_onnx(self, directory: str | os.PathLike, quantize: str | None = None, opset: int | None = None) -> str:
        """Write a directory that `from_pretrained(directory, backend="onnx")` loads; returns its path.

        It holds what `save_pretrained` writes plus ``onnx/sentence_embedding.onnx`` (``quantize="int8"``:
        ``onnx/sentence_embedding_qint8.onnx``, int8 weights), one graph from token ids to the sentence
        embedding: pooling, the body's ``Normalize`` and `normalize_embeddings` included. The head stays the
        saved scikit-learn or torch head, applied to the graph's embeddings. `opset`: the ONNX opset (default
        17). Needs the ``onnx`` extra (``pip install 'setfit-pipeline[onnx]'``).
        """
        from setfit_core.model_io.onnx_export import export_onnx

        if self.backend == "onnx":
            raise ValueError("this model was loaded with backend='onnx' and is exported already; load it with "
                             "backend='torch' to export it again")
        return export_onnx(self, directory, quantize=quantize, opset=opset)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str = "Push model using huggingface_hub.",
        private: bool | None = None,
        token: str | None = None,
        branch: str | None = None,
        create_pr: bool | None = None,
        allow_patterns: list[str] | str | None = None,
        ignore_patterns: list[str] | str | None = None,
        delete_patterns: list[str] | str | None = None,
        setfit_compatible: bool = False,
    ) -> Any:
        """Upload the directory `save_pretrained` writes to Hub model repo `repo_id` (created if missing), as
        one commit; returns huggingface_hub's `CommitInfo` (a str: the commit's URL).

        `branch`, `create_pr` and the `*_patterns` go to `HfApi.upload_folder`; `setfit_compatible=True` also
        uploads the pickled head setfit 1.x reads. Needs the network: refused while `HF_HUB_OFFLINE` is set.
        """
        from setfit_core.model_io.hub import push_model

        return push_model(
            self, repo_id, commit_message=commit_message, private=private, token=token, branch=branch,
            create_pr=create_pr, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns,
            delete_patterns=delete_patterns, setfit_compatible=setfit_compatible,
        )

    def __repr__(self) -> str:
        head = type(self.model_head).__name__ if self.model_head is not None else "None (built at training)"
        return f"SetFitModel(head={head}, labels={self.labels}, multi_target_strategy={self.multi_target_strategy!r})"

