"""List, inspect and garbage-collect the stages of an `ArtifactStore`.

    selection = select_gc(store, GcPolicy(keep_last=3, older_than=timedelta(days=7)))
    selection.candidates                  # what would go, children before parents
    apply_gc(store, selection)            # deletes them (and crashed writers' temp dirs)

The rule: delete only stages that no kept model and no newer manifest references.

* kept models: the ``keep_last`` newest ``model`` stages plus the keys in ``keep``;
* protected: kept models, stages created after the cutoff (``now - older_than``: a running
  pipeline may be building on them), the evaluations of a kept model's head, and every stage
  any of these reference, transitively through ``parents``;
* everything else is a candidate.

Manifests that do not parse are invisible to `ArtifactStore.list_stages` and so are never
deleted here; neither are stage directories without a manifest.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from setfit_core.artifacts.keys import validate_stage_name
from setfit_core.artifacts.manifest import Manifest
from setfit_core.artifacts.store import ArtifactStore

logger = logging.getLogger(__name__)

MODEL_STAGE = "model"
# Stages that report on a head rather than feed a model: kept with the model whose head they
# describe, so rerunning a kept model's job reuses every stage, its evaluation included.
REPORT_STAGES = ("evaluation",)
MIN_PREFIX = 8
# Temp dirs of a writer that is still running must survive even `older_than=0`.
MIN_TEMP_AGE = timedelta(hours=1)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}

StageId = tuple[str, str]  # (stage, key)


@dataclass(frozen=True)
class StageInfo:
    """One stage as `ls` shows it; ``size`` sums the manifest's file sizes."""

    stage: str
    key: str
    size: int
    created_at: str
    parents: dict[str, str]
    n_files: int

    @classmethod
    def of(cls, manifest: Manifest) -> StageInfo:
        size = sum(entry.size for entry in manifest.files)
        return cls(manifest.stage, manifest.key, size, manifest.created_at, dict(manifest.parents), len(manifest.files))

    @property
    def id(self) -> StageId:
        return (self.stage, self.key)


@dataclass(frozen=True)
class StageDetails:
    """`show`: the manifest, where it lives, and what `ArtifactStore.verify` found wrong."""

    manifest: Manifest
    info: StageInfo
    uri: str
    problems: tuple[str, ...]

    @property
    def verified(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class GcPolicy:
    keep_last: int = 3
    keep: tuple[str, ...] = ()  # model keys or unique prefixes (>= 8 hex characters)
    older_than: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        if type(self.keep_last) is not int or self.keep_last < 0:
            raise ValueError(f"keep_last must be an int >= 0; got {self.keep_last!r}")
        if not isinstance(self.older_than, timedelta) or self.older_than < timedelta(0):
            raise ValueError(f"older_than must be a timedelta >= 0; got {self.older_than!r}")
        object.__setattr__(self, "keep", tuple(self.keep))


@dataclass(frozen=True)
class KeptStage:
    info: StageInfo
    reason: str  # e.g. "kept model", "ancestor of kept model 1a2b3c4d"


@dataclass(frozen=True)
class GcSelection:
    policy: GcPolicy  # with `keep` resolved to full keys
    cutoff: datetime
    kept: tuple[KeptStage, ...]
    candidates: tuple[StageInfo, ...]  # in deletion order: children before parents

    @property
    def bytes_freed(self) -> int:
        return sum(info.size for info in self.candidates)

    @property
    def temp_older_than(self) -> timedelta:
        return max(self.policy.older_than, MIN_TEMP_AGE)


@dataclass(frozen=True)
class GcResult:
    deleted: tuple[StageInfo, ...]
    skipped: tuple[StageInfo, ...]  # candidates that a stage published since the selection now protects
    temp_removed: tuple[str, ...] = ()  # paths, or s3:// URIs of remote leftovers

    @property
    def bytes_freed(self) -> int:
        return sum(info.size for info in self.deleted)


# -- ls / show --------------------------------------------------------------------


def list_artifacts(store: ArtifactStore, stage: str | None = None) -> list[StageInfo]:
    """Every stage (or one stage's keys) oldest first, so one run's stages read in pipeline order."""
    infos = [StageInfo.of(m) for m in store.list_stages(stage)]
    return sorted(infos, key=lambda info: (_sort_time(info.created_at), info.stage, info.key))


def show_stage(store: ArtifactStore, stage: str, key_or_prefix: str) -> StageDetails:
    manifests = store.list_stages(validate_stage_name(stage))
    key = resolve_key([m.key for m in manifests], key_or_prefix, stage)
    manifest = next(m for m in manifests if m.key == key)
    problems = tuple(store.verify(manifest))
    return StageDetails(manifest, StageInfo.of(manifest), store.stage_uri(stage, key), problems)


def resolve_key(keys: Iterable[str], key_or_prefix: str, stage: str) -> str:
    """The one key in ``keys`` that is ``key_or_prefix`` or starts with it; ValueError otherwise."""
    text = key_or_prefix.lower() if isinstance(key_or_prefix, str) else ""
    if not re.fullmatch(rf"[0-9a-f]{{{MIN_PREFIX},64}}", text):
        raise ValueError(
            f"a {stage} key must be {MIN_PREFIX} to 64 hex characters (a full key or a prefix as `artifacts ls` "
            f"prints it); got {key_or_prefix!r}"
        )
    matches = sorted(k for k in set(keys) if k.startswith(text))
    if not matches:
        raise ValueError(
            f"no {stage} stage has a key starting with {key_or_prefix!r}; "
            f"list them with `setfit-pipeline artifacts ls ROOT --stage {stage}`"
        )
    if len(matches) > 1:
        shown = ", ".join(k[:16] for k in matches)
        raise ValueError(f"{key_or_prefix!r} matches {len(matches)} {stage} stages ({shown}); give more characters")
    return matches[0]


def parse_duration(text: str, name: str = "older_than") -> timedelta:
    """``7d``, ``12h``, ``30m``, ``45s`` or ``0`` as a timedelta."""
    value = text.strip().lower() if isinstance(text, str) else ""
    if value == "0":
        return timedelta(0)
    if match := _DURATION.fullmatch(value):
        return timedelta(**{_UNITS[match[2]]: float(match[1])})
    raise ValueError(
        f"{name} must be a number followed by d, h, m or s (e.g. 7d, 12h, 30m) or 0 for no age limit; got {text!r}"
    )


# -- gc -----------------------------------------------------------------------------


def select_gc(store: ArtifactStore, policy: GcPolicy | None = None, now: datetime | None = None) -> GcSelection:
    """What `apply_gc` would delete and why everything else stays. Reads manifests only."""
    policy = policy or GcPolicy()
    now = now or datetime.now(timezone.utc)
    cutoff = (now if now.tzinfo else now.replace(tzinfo=timezone.utc)) - policy.older_than  # manifests are UTC
    manifests = {(m.stage, m.key): m for m in store.list_stages()}
    models = [m for m in manifests.values() if m.stage == MODEL_STAGE]
    keep = tuple(resolve_key([m.key for m in models], k, MODEL_STAGE) for k in policy.keep)
    policy = GcPolicy(policy.keep_last, keep, policy.older_than)
    reasons = _protect(manifests, _kept_models(models, policy), cutoff)
    kept = [KeptStage(StageInfo.of(manifests[i]), reason) for i, reason in reasons.items()]
    kept.sort(key=lambda k: (_sort_time(k.info.created_at), k.info.stage, k.info.key))
    doomed = {i: m for i, m in manifests.items() if i not in reasons}
    candidates = tuple(StageInfo.of(doomed[i]) for i in _children_first(doomed))
    return GcSelection(policy, cutoff, tuple(kept), candidates)


def apply_gc(store: ArtifactStore, selection: GcSelection) -> GcResult:
    """Delete the plan's candidates, then crashed writers' temp dirs.

    The selection is recomputed first with the same policy and cutoff: a stage published since
    (a run that reused an old body, say) is newer than the cutoff and protects its ancestors,
    so only stages that are candidates in both plans go. A run that has *started* reusing an
    old stage but published nothing yet is not visible; it fails and the rerun recomputes.
    """
    now = selection.cutoff + selection.policy.older_than
    still = {info.id for info in select_gc(store, selection.policy, now).candidates}
    deleted, skipped = [], []
    # Children before parents (the plan's order): if gc dies half way, every stage left still
    # has all of its parents, so lineage (`show`, a later gc, a rerun reusing a child) never
    # points at a deleted stage. Parents first could leave e.g. a head whose embeddings are gone.
    for info in selection.candidates:
        if info.id not in still:
            skipped.append(info)
            continue
        store.delete_stage(info.stage, info.key)
        logger.info("gc: deleted %s/%s (%d bytes)", info.stage, info.key, info.size)
        deleted.append(info)
    temp = store.cleanup_temp(selection.temp_older_than.total_seconds())
    return GcResult(tuple(deleted), tuple(skipped), tuple(temp))


def _kept_models(models: Sequence[Manifest], policy: GcPolicy) -> dict[str, str]:
    """Kept model key -> reason."""
    newest = sorted(models, key=lambda m: (_sort_time(m.created_at), m.key), reverse=True)[: policy.keep_last]
    kept = {m.key: f"kept model (newest {policy.keep_last})" for m in newest}
    kept.update({key: "kept model (--keep)" for key in policy.keep if key not in kept})
    return kept


def _protect(manifests: dict[StageId, Manifest], kept_models: dict[str, str], cutoff: datetime) -> dict[StageId, str]:
    """Protected stage id -> the first (strongest) reason that reached it."""
    reasons: dict[StageId, str] = {}
    for key, why in kept_models.items():
        _mark(manifests, reasons, (MODEL_STAGE, key), why, f"ancestor of kept model {key[:8]}")
    # Reports on a kept model's head are its children, so the walk above cannot reach them.
    heads = {head: k for k in kept_models if (head := manifests[(MODEL_STAGE, k)].parents.get("head"))}
    for stage_id, m in manifests.items():
        if stage_id[0] in REPORT_STAGES and (model := heads.get(m.parents.get("head"))):
            _mark(
                manifests,
                reasons,
                stage_id,
                f"evaluation of kept model {model[:8]}",
                f"ancestor of kept model {model[:8]}",
            )
    # Newest first and models before other stages, so an ancestor's reason names the most telling referrer.
    newest = sorted(manifests.items(), key=lambda item: _sort_time(item[1].created_at), reverse=True)
    for stage_id, m in sorted(newest, key=lambda item: item[0][0] != MODEL_STAGE):
        created = _parse_time(m.created_at)
        if created is None or created > cutoff:
            why = "newer than cutoff" if created is not None else f"unreadable created_at {m.created_at!r}"
            _mark(manifests, reasons, stage_id, why, f"referenced by newer {m.stage} {m.key[:8]}")
    return reasons


def _mark(
    manifests: dict[StageId, Manifest], reasons: dict[StageId, str], start: StageId, why: str, ancestor_why: str
) -> None:
    """Protect ``start`` and, transitively, every parent it references."""
    todo = [(start, why)]
    while todo:
        current, reason = todo.pop()
        if current in reasons or current not in manifests:
            continue  # protected before means its ancestors are too; a missing parent needs nothing
        reasons[current] = reason
        todo += [(parent, ancestor_why) for parent in manifests[current].parents.items()]


def _children_first(manifests: dict[StageId, Manifest]) -> list[StageId]:
    """Stage ids ordered so every stage comes before the parents it references (among these)."""
    order: list[StageId] = []
    remaining = set(manifests)
    while remaining:
        referenced = {p for i in remaining for p in manifests[i].parents.items() if p in remaining}
        leaves = sorted(remaining - referenced) or sorted(remaining)  # a cycle cannot come from content keys
        order += leaves
        remaining -= set(leaves)
    return order


def _parse_time(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _sort_time(text: str) -> datetime:
    # Unreadable times sort as newest, matching how gc protects them.
    return _parse_time(text) or datetime.max.replace(tzinfo=timezone.utc)


__all__ = [
    "GcSelection",
    "GcPolicy",
    "GcResult",
    "KeptStage",
    "StageDetails",
    "StageInfo",
    "apply_gc",
    "list_artifacts",
    "parse_duration",
    "select_gc",
    "resolve_key",
    "show_stage",
]
