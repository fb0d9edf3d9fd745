from __future__ import annotations

import doctest
import importlib
import warnings

import pytest
import torch
from torch import nn

from setfit_core.losses import (
    LOSSES,
    BatchAllTripletLoss,
    BatchCosineSimilarityLoss,
    BatchHardSoftMarginTripletLoss,
    BatchHardTripletLoss,
    BatchSemiHardTripletLoss,
    ContrastiveLoss,
    CosineSimilarityLoss,
    GroupLoss,
    PairLoss,
    SupConLoss,
    build_loss,
    paired_distances,
    pairwise_distances,
    resolve_loss,
)

st_losses = pytest.importorskip("sentence_transformers.sentence_transformer.losses")
DistFn = st_losses.BatchHardTripletLossDistanceFunction
SiameseMetric = st_losses.SiameseDistanceMetric

B, D = 16, 8


class StandIn(nn.Module):
    """Fake SentenceTransformer: features ``{"column": i}`` -> precomputed embeddings of column i."""

    def __init__(self, *columns: torch.Tensor) -> None:
        super().__init__()
        self.columns = columns

    def forward(self, features: dict) -> dict:
        return {"sentence_embedding": self.columns[features["column"]]}


def reference(loss_cls, columns: list[torch.Tensor], labels: torch.Tensor, **kwargs) -> torch.Tensor:
    loss = loss_cls(StandIn(*columns), **kwargs)
    return loss([{"column": i} for i in range(len(columns))], labels)


def leaf(seed: int, rows: int = B, scale: float = 1.0) -> torch.Tensor:
    torch.manual_seed(seed)
    return (torch.randn(rows, D) * scale).requires_grad_(True)


def grouped_labels(seed: int, num_classes: int, singleton: bool = False) -> torch.Tensor:
    torch.manual_seed(seed)
    base = torch.arange(B) % num_classes
    if singleton:
        base[-1] = num_classes  # one label that occurs only once
    return base[torch.randperm(B)]


def assert_same_value_and_grad(ours_fn, ref_fn, emb: list[torch.Tensor]) -> None:
    ours = ours_fn()
    ours_grads = torch.autograd.grad(ours, emb)
    ref = ref_fn()
    ref_grads = torch.autograd.grad(ref, emb)
    torch.testing.assert_close(ours, ref)
    for a, b in zip(ours_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b)


# --- pair losses -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1])
def test_cosine_similarity_matches_reference(seed: int) -> None:
    e1, e2 = leaf(seed), leaf(seed + 100)
    labels = torch.randint(0, 2, (B,)).float()
    assert_same_value_and_grad(
        lambda: CosineSimilarityLoss()(e1, e2, labels),
        lambda: reference(st_losses.CosineSimilarityLoss, [e1, e2], labels),
        [e1, e2],
    )


@pytest.mark.parametrize(
    "metric, st_metric, margin, size_average",
    [
        ("cosine_distance", SiameseMetric.COSINE_DISTANCE, 0.5, True),
        ("euclidean", SiameseMetric.EUCLIDEAN, 4.0, True),
        ("manhattan", SiameseMetric.MANHATTAN, 9.0, False),
    ],
)
def test_contrastive_matches_reference(metric, st_metric, margin: float, size_average: bool) -> None:
    e1, e2 = leaf(2), leaf(3)
    labels = torch.randint(0, 2, (B,)).float()
    assert_same_value_and_grad(
        lambda: ContrastiveLoss(metric, margin, size_average)(e1, e2, labels),
        lambda: reference(
            st_losses.ContrastiveLoss, [e1, e2], labels,
            distance_metric=st_metric, margin=margin, size_average=size_average,
        ),
        [e1, e2],
    )


# --- triplet losses ----------------------------------------------------------------------------------------------

TRIPLETS = [
    (BatchAllTripletLoss, st_losses.BatchAllTripletLoss),
    (BatchHardTripletLoss, st_losses.BatchHardTripletLoss),
    (BatchSemiHardTripletLoss, st_losses.BatchSemiHardTripletLoss),
    (BatchHardSoftMarginTripletLoss, st_losses.BatchHardSoftMarginTripletLoss),
]
METRICS = [("euclidean", DistFn.euclidean_distance, 5.0), ("cosine_distance", DistFn.cosine_distance, 0.25)]


@pytest.mark.parametrize("ours_cls, ref_cls", TRIPLETS, ids=[c.__name__ for c, _ in TRIPLETS])
@pytest.mark.parametrize("metric, st_metric, margin", METRICS, ids=[m for m, _, _ in METRICS])
@pytest.mark.parametrize("num_classes, singleton", [(2, False), (3, False), (4, False), (3, True)])
def test_triplet_matches_reference(ours_cls, ref_cls, metric, st_metric, margin, num_classes, singleton) -> None:
    emb = leaf(num_classes, scale=0.5)
    labels = grouped_labels(num_classes, num_classes, singleton)
    kwargs = {"distance_metric": metric}
    ref_kwargs = {"distance_metric": st_metric}
    if ours_cls is not BatchHardSoftMarginTripletLoss:
        kwargs["margin"] = ref_kwargs["margin"] = margin
    assert_same_value_and_grad(
        lambda: ours_cls(**kwargs)(emb, labels),
        lambda: reference(ref_cls, [emb], labels, **ref_kwargs),
        [emb],
    )


def test_triplet_defaults_match_reference() -> None:
    emb = leaf(7)
    labels = grouped_labels(7, 4)
    for ours_cls, ref_cls in TRIPLETS:
        torch.testing.assert_close(ours_cls()(emb, labels), reference(ref_cls, [emb], labels))


def test_semi_hard_covers_both_branches() -> None:
    # Well-separated classes: no negative lies beyond some positive distances -> fallback branch; and vice versa.
    emb = leaf(11, scale=0.3)
    labels = torch.arange(B) % 2
    emb_sep = (emb + labels.unsqueeze(1) * 3.0).detach().requires_grad_(True)
    for e in (emb, emb_sep):
        torch.testing.assert_close(
            BatchSemiHardTripletLoss(margin=1.0)(e, labels),
            reference(st_losses.BatchSemiHardTripletLoss, [e], labels, margin=1.0),
        )


# --- SupCon ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_classes", [2, 3, 4])
@pytest.mark.parametrize("temperature, base_temperature", [(0.07, 0.07), (0.5, 0.1)])
def test_supcon_matches_setfit(num_classes: int, temperature: float, base_temperature: float) -> None:
    setfit_losses = pytest.importorskip("setfit.losses")
    emb = leaf(num_classes + 20)
    labels = grouped_labels(num_classes, num_classes)
    assert_same_value_and_grad(
        lambda: SupConLoss(temperature, base_temperature)(emb, labels),
        lambda: reference(
            setfit_losses.SupConLoss, [emb], labels, temperature=temperature, base_temperature=base_temperature
        ),
        [emb],
    )


def naive_supcon(emb: torch.Tensor, labels: torch.Tensor, t: float = 0.07) -> torch.Tensor:
    z = nn.functional.normalize(emb, dim=1)
    terms = []
    for a in range(len(labels)):
        others = [j for j in range(len(labels)) if j != a]
        positives = [p for p in others if labels[p] == labels[a]]
        if not positives:
            continue  # anchors without positives are excluded
        log_den = torch.logsumexp(torch.stack([z[a] @ z[j] / t for j in others]), 0)
        terms.append(-torch.stack([z[a] @ z[p] / t - log_den for p in positives]).mean())
    return torch.stack(terms).mean()


def test_supcon_singleton_label_is_finite_and_excluded() -> None:
    emb = leaf(5)
    labels = grouped_labels(5, 3, singleton=True)
    loss = SupConLoss()(emb, labels)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, naive_supcon(emb, labels))
    loss.backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all()


def test_supcon_setfit_is_nan_with_singleton() -> None:
    """Documents upstream behaviour we deliberately do not copy."""
    setfit_losses = pytest.importorskip("setfit.losses")
    emb, labels = leaf(5), grouped_labels(5, 3, singleton=True)
    assert torch.isnan(reference(setfit_losses.SupConLoss, [emb], labels))


def test_supcon_degenerate_batches() -> None:
    emb = leaf(6, rows=4)
    all_unique = SupConLoss()(emb, torch.arange(4))
    assert all_unique.item() == 0.0
    all_unique.backward()
    assert torch.isfinite(emb.grad).all()
    single = SupConLoss()(leaf(6, rows=1), torch.tensor([0]))
    assert single.item() == 0.0


# --- gradients, config, kinds ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(LOSSES))
def test_gradients_flow(name: str) -> None:
    loss = LOSSES[name]()
    torch.manual_seed(0)
    if loss.kind == "pair":
        e1, e2 = leaf(1), leaf(2)
        out = loss(e1, e2, torch.randint(0, 2, (B,)).float())
        out.backward()
        assert e1.grad is not None and e2.grad is not None
        assert e1.grad.abs().sum() > 0
    else:
        emb = leaf(3, scale=0.3)
        out = loss(emb, grouped_labels(3, 3))
        out.backward()
        assert emb.grad is not None and torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0
    assert out.dim() == 0


def test_names_kinds_and_config_roundtrip() -> None:
    assert set(LOSSES) == {
        "CosineSimilarityLoss", "ContrastiveLoss", "BatchAllTripletLoss", "BatchHardTripletLoss",
        "BatchSemiHardTripletLoss", "BatchHardSoftMarginTripletLoss", "SupConLoss", "BatchCosineSimilarityLoss",
    }
    for name, cls in LOSSES.items():
        assert cls.name == name
        assert cls.kind == ("pair" if issubclass(cls, PairLoss) else "group")
        assert issubclass(cls, GroupLoss) != issubclass(cls, PairLoss)
        assert LOSSES[name](**cls().config()).config() == cls().config()
    assert ContrastiveLoss().config() == {"distance_metric": "cosine_distance", "margin": 0.5, "size_average": True}
    assert BatchHardTripletLoss().config() == {"distance_metric": "euclidean", "margin": 5.0}
    assert BatchHardSoftMarginTripletLoss().config() == {"distance_metric": "euclidean"}
    assert SupConLoss().config() == {"temperature": 0.07, "base_temperature": 0.07}
    assert CosineSimilarityLoss().config() == {}


# --- distances ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["cosine_distance", "euclidean", "manhattan"])
def test_pairwise_and_paired_agree(metric: str) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(B, D), torch.randn(B, D)
    full = pairwise_distances(metric, torch.cat([x, y]))
    assert full.shape == (2 * B, 2 * B)
    torch.testing.assert_close(torch.diagonal(full[:B, B:]), paired_distances(metric, x, y), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(full, full.t())


def test_distance_aliases_and_unknown() -> None:
    emb = torch.randn(4, D)
    torch.testing.assert_close(pairwise_distances("euclidean", emb), DistFn.euclidean_distance(emb))
    assert BatchHardTripletLoss(distance_metric=DistFn.cosine_distance).distance_metric == "cosine_distance"
    assert BatchHardTripletLoss(distance_metric=DistFn.euclidean_distance).distance_metric == "euclidean"
    msg = r"distance_metric must be one of \['cosine_distance', 'euclidean', 'manhattan'\]; got 'xyz'"
    with pytest.raises(ValueError, match=msg):
        pairwise_distances("xyz", emb)
    with pytest.raises(ValueError, match=msg):
        paired_distances("xyz", emb, emb)
    with pytest.raises(ValueError, match=msg):
        ContrastiveLoss(distance_metric="xyz")


# --- resolve_loss / build_loss -----------------------------------------------------------------------------------

def test_resolve_loss_accepts_names_classes_and_foreign_classes() -> None:
    for name, cls in LOSSES.items():
        assert resolve_loss(name) is cls
        assert resolve_loss(name.lower()) is cls
        assert resolve_loss(name.upper()) is cls
        assert resolve_loss(cls) is cls
        assert resolve_loss(cls()) is cls
    assert resolve_loss(st_losses.CosineSimilarityLoss) is CosineSimilarityLoss
    assert resolve_loss(st_losses.BatchSemiHardTripletLoss) is BatchSemiHardTripletLoss
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy path setfit itself uses
        legacy = importlib.import_module("sentence_transformers.losses")
    assert resolve_loss(legacy.ContrastiveLoss) is ContrastiveLoss


def test_resolve_loss_accepts_custom_subclass() -> None:
    class MyLoss(GroupLoss):
        def forward(self, embeddings, labels):
            return embeddings.sum()

    assert resolve_loss(MyLoss) is MyLoss
    assert MyLoss.name == "MyLoss"


def test_resolve_loss_setfit_supcon_class() -> None:
    setfit_losses = pytest.importorskip("setfit.losses")
    assert resolve_loss(setfit_losses.SupConLoss) is SupConLoss


def test_resolve_loss_unknown() -> None:
    with pytest.raises(
        ValueError,
        match=r"^loss 'CosineLoss' is not a supported loss; did you mean 'CosineSimilarityLoss'\? "
        r"Valid: CosineSimilarityLoss, ContrastiveLoss, BatchAllTripletLoss, .*SupConLoss, BatchCosineSimilarityLoss$",
    ):
        resolve_loss("CosineLoss")
    with pytest.raises(ValueError, match=r"did you mean 'SupConLoss'\?"):
        resolve_loss("supcon")
    with pytest.raises(ValueError, match=r"^loss 'zzz' is not a supported loss; Valid: "):
        resolve_loss("zzz")
    with pytest.raises(ValueError, match=r"MultipleNegativesRankingLoss.* is not a supported loss"):
        resolve_loss(st_losses.MultipleNegativesRankingLoss)
    with pytest.raises(ValueError, match=r"loss 3 is not a supported loss"):
        resolve_loss(3)


def test_build_loss_follows_setfit() -> None:
    kw = {"margin": 0.3, "distance_metric": "manhattan"}
    assert build_loss("CosineSimilarityLoss", **kw).config() == {}
    assert build_loss(ContrastiveLoss, **kw).config() == ContrastiveLoss().config()
    assert build_loss("SupConLoss", **kw).config() == SupConLoss().config()
    assert build_loss("BatchHardSoftMarginTripletLoss", **kw).config() == {"distance_metric": "manhattan"}
    for name in ("BatchAllTripletLoss", "BatchHardTripletLoss", "BatchSemiHardTripletLoss"):
        assert build_loss(name, **kw).config() == kw | {"margin": 0.3}
    # setfit's TrainingArguments defaults
    default = build_loss(st_losses.BatchAllTripletLoss)
    assert isinstance(default, BatchAllTripletLoss)
    assert default.config() == {"distance_metric": "cosine_distance", "margin": 0.25}
    built = SupConLoss(temperature=0.1)
    assert build_loss(built) is built


# --- docstring examples ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "module",
    ["", ".base", ".distances", ".cosine_similarity", ".contrastive", ".batch_all_triplet", ".batch_hard_triplet",
     ".batch_semi_hard_triplet", ".batch_hard_soft_margin_triplet", ".supcon"],
)
def test_docstring_examples(module: str) -> None:
    mod = importlib.import_module("setfit_core.losses" + module)
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_batch_cosine_similarity_is_the_pair_loss_over_every_pair_with_kinds_weighted_equally() -> None:
    torch.manual_seed(0)
    emb = torch.randn(7, 5, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    pairs = [(i, j) for i in range(7) for j in range(i + 1, 7)]
    pos = [(i, j) for i, j in pairs if labels[i] == labels[j]]
    neg = [(i, j) for i, j in pairs if labels[i] != labels[j]]

    def pair_loss(chosen, target):
        first, second = zip(*chosen, strict=True)
        return CosineSimilarityLoss()(emb[list(first)], emb[list(second)], torch.full((len(chosen),), target))

    expected = (pair_loss(pos, 1.0) + pair_loss(neg, 0.0)) / 2
    got = BatchCosineSimilarityLoss()(emb, labels)
    torch.testing.assert_close(got, expected)
    got.backward()
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0


def test_batch_cosine_similarity_with_one_kind_of_pair_or_one_text() -> None:
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    only_negatives = BatchCosineSimilarityLoss()(emb, torch.tensor([0, 1, 2]))
    cos = torch.tensor([0.6, 0.0, 0.8])  # pairs (0,1), (0,2), (1,2)
    torch.testing.assert_close(only_negatives, (cos**2).mean())
    only_positives = BatchCosineSimilarityLoss()(emb, torch.tensor([4, 4, 4]))
    torch.testing.assert_close(only_positives, ((cos - 1) ** 2).mean())
    assert float(BatchCosineSimilarityLoss()(emb[:1], torch.tensor([0]))) == 0.0
