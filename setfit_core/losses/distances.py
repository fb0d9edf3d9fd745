"""Distance functions selected by name.

Names: ``"cosine_distance"`` (1 - cosine similarity; setfit's default ``distance_metric``), ``"euclidean"``,
``"manhattan"``. sentence-transformers' function names ``"euclidean_distance"`` / ``"eucledian_distance"`` are
accepted as aliases, and so are its functions themselves (setfit's form of ``distance_metric``), matched by identity:
``BatchHardTripletLossDistanceFunction.cosine_distance`` / ``.euclidean_distance`` / ``.eucledian_distance`` and
``SiameseDistanceMetric.COSINE_DISTANCE`` / ``.EUCLIDEAN`` / ``.MANHATTAN``. A function becomes its name here, at
the boundary, so configs hold names only.

* ``pairwise_distances(name, embeddings [B, D]) -> [B, B]``: all-pairs distance matrix, computed exactly like
  ``BatchHardTripletLossDistanceFunction`` (euclidean via the Gram matrix with a zero-safe sqrt, computed in
  float32 for float16/bfloat16 inputs).
* ``paired_distances(name, a [B, D], b [B, D]) -> [B]``: row-wise distance, exactly like
  ``SiameseDistanceMetric`` (``F.pairwise_distance``, which adds ``eps=1e-6`` to the difference).

Example:
    >>> import torch
    >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> pairwise_distances("cosine_distance", x)
    tensor([[0., 1.],
            [1., 0.]])
    >>> paired_distances("manhattan", x, torch.zeros(2, 2))
    tensor([1.0000, 1.0000])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

DISTANCE_METRICS: tuple[str, ...] = ("cosine_distance", "euclidean", "manhattan")
_ALIASES = {"euclidean_distance": "euclidean", "eucledian_distance": "euclidean"}


def canonical_distance(metric: str | Callable[..., Any]) -> str:
    """Return the canonical metric name for ``metric``: a name, an alias, or one of sentence-transformers'
    distance functions."""
    if callable(metric):
        return _function_name(metric)
    name = _ALIASES.get(metric, metric) if isinstance(metric, str) else metric
    if name not in DISTANCE_METRICS:
        raise ValueError(f"distance_metric must be one of {list(DISTANCE_METRICS)}; got {name!r}")
    return name


# sentence-transformers' distance functions, which setfit passes as `distance_metric`: (class, attribute, our name).
_ST_FUNCTIONS = (
    ("BatchHardTripletLossDistanceFunction", "cosine_distance", "cosine_distance"),
    ("BatchHardTripletLossDistanceFunction", "euclidean_distance", "euclidean"),
    ("BatchHardTripletLossDistanceFunction", "eucledian_distance", "euclidean"),
    ("SiameseDistanceMetric", "COSINE_DISTANCE", "cosine_distance"),
    ("SiameseDistanceMetric", "EUCLIDEAN", "euclidean"),
    ("SiameseDistanceMetric", "MANHATTAN", "manhattan"),
)


def known_distance_functions() -> dict[str, tuple[Callable[..., Any], str]]:
    """``"Class.attribute"`` -> (sentence-transformers' function, our name); empty without sentence-transformers."""
    try:  # the current path; the old one (sentence_transformers.losses) warns where both exist
        from sentence_transformers.sentence_transformer import losses
    except ImportError:
        try:
            from sentence_transformers import losses
        except ImportError:
            return {}
    known = {}
    for owner, attribute, name in _ST_FUNCTIONS:
        function = getattr(getattr(losses, owner, None), attribute, None)
        if function is not None:
            known[f"{owner}.{attribute}"] = (function, name)
    return known


def _function_name(function: Callable[..., Any]) -> str:
    """Our name for one of sentence-transformers' distance functions, matched by identity: a function of one's
    own with the same ``__name__`` may compute something else, so it is refused, not renamed."""
    known = known_distance_functions()
    for candidate, name in known.values():
        if candidate is function:
            return name
    shown = f"{getattr(function, '__module__', None)}.{getattr(function, '__qualname__', repr(function))}"
    raise ValueError(
        f"distance_metric must be one of {list(DISTANCE_METRICS)} or one of sentence-transformers' distance "
        f"functions ({', '.join(known) or 'none: sentence-transformers is not installed'}); got the function "
        f"{shown}. setfit_core computes the distance itself, so it cannot run another function: pass the name "
        "of the distance it computes"
    )


def _pairwise_euclidean(embeddings: Tensor) -> Tensor:
    # Like sentence-transformers: the Gram-matrix trick cancels badly in half precision, so use float32.
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        if embeddings.dtype in (torch.float16, torch.bfloat16):
            embeddings = embeddings.float()
        dot = embeddings @ embeddings.t()
    sq_norm = torch.diagonal(dot)
    dist = (sq_norm.unsqueeze(0) - 2.0 * dot + sq_norm.unsqueeze(1)).clamp(min=0)
    zero = dist.eq(0).to(dist.dtype)  # keep sqrt's gradient finite where the distance is 0
    return (1.0 - zero) * torch.sqrt(dist + zero * 1e-16)


def pairwise_distances(name: str, embeddings: Tensor) -> Tensor:
    """All-pairs distance matrix ``[B, B]`` of ``embeddings [B, D]`` under metric ``name``."""
    name = canonical_distance(name)
    if name == "cosine_distance":
        normed = F.normalize(embeddings, p=2, dim=-1)
        return 1 - normed @ normed.t()
    if name == "euclidean":
        return _pairwise_euclidean(embeddings)
    return torch.cdist(embeddings, embeddings, p=1)


def paired_distances(name: str, a: Tensor, b: Tensor) -> Tensor:
    """Row-wise distance ``[B]`` between ``a [B, D]`` and ``b [B, D]`` under metric ``name``."""
    name = canonical_distance(name)
    if name == "cosine_distance":
        return 1 - F.cosine_similarity(a, b)
    return F.pairwise_distance(a, b, p=2 if name == "euclidean" else 1)
