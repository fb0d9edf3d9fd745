"""Garbage-collect the stages of an `ArtifactStore` (`setfit_core.artifacts.listing` lists and inspects them).

    selection = select_gc(store, GcPolicy(keep_last=3, older_than=timedelta(days=7)))
    selection.candidates                  # what would go, children before parents
    apply_gc(store, selection)            # deletes them (and crashed writers' temp dirs)

The rule: delete only stages that no kept model and no newer manifest references.

* kept models: every model an alias points to, its previous holder and its rollback target
  (`setfit_core.artifacts.aliases`), the ``keep_last`` newest ``model`` stages *of each lineage*, plus the
  keys in ``keep``.
  A lineage is the training setup a model came from (training data location, `TrainingArguments`,
  head settings, base model), recorded by the export stage as ``metrics["lineage"] = {"id", "label"}``
  (`setfit_core.pipeline.lineage`): a nightly retrain and a head-only experiment are two lineages, so a
  newer experiment never pushes the nightly model out. Models without one (published before lineages
  were recorded) form one "unknown lineage" group;
* protected: kept models, stages created after the cutoff (``now - older_than``: a running
  pipeline may be building on them), the evaluations of a kept model's head, and every stage
  any of these reference, transitively through ``parents`` (so a model's body, which a model stage
  references instead of copying, is kept with it);
* everything else is a candidate, with the reason it goes (`GcSelection.delete_reasons`).

Manifests that do not parse are invisible to `ArtifactStore.list_stages` and so are never
deleted here; neither are stage directories without a manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from setfit_core.artifacts.aliases import AliasStore
from setfit_core.artifacts.listing import (
    MIN_PREFIX,
    StageId,
    StageInfo,
    format_duration,
    parse_time,
    resolve_key,
    sort_time,
)
from setfit_core.artifacts.manifest import Manifest
from setfit_core.artifacts.store import ArtifactStore

logger = logging.getLogger(__name__)

MODEL_STAGE = "model"
# Stages that report on a head rather than feed a model: kept with the model whose head they
# describe, so rerunning a kept model's job reuses every stage, its evaluation included.
REPORT_STAGES = ("evaluation",)
UNKNOWN_LINEAGE = "unknown lineage"  # models published before the export stage recorded lineages
_USERS_SHOWN = 3  # model keys a deletion reason names before "and N more"
# Temp dirs of a writer that is still running must survive even `older_than=0`.
MIN_TEMP_AGE = timedelta(hours=1)

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
    reason: str  # e.g. "kept model: newest of lineage sst2-train · LogisticRegression [3f2a9c1e] (--keep-last 1)"


@dataclass(frozen=True)
class Lineage:
    """The models of one training setup, newest first; ``id`` is None for models published without one."""

    id: str | None
    label: str
    models: tuple[str, ...]  # model keys, newest first
    kept: int  # how many of them keep_last keeps

    @property
    def name(self) -> str:
        """How gc's reasons name it: ``lineage <label> [<id8>]``, or ``unknown lineage``."""
        return f"lineage {self.label} [{self.id[:MIN_PREFIX]}]" if self.id else UNKNOWN_LINEAGE


@dataclass(frozen=True)
class GcSelection:
    policy: GcPolicy  # with `keep` resolved to full keys
    cutoff: datetime
    kept: tuple[KeptStage, ...]
    candidates: tuple[StageInfo, ...]  # in deletion order: children before parents
    delete_reasons: Mapping[StageId, str] = field(default_factory=dict)  # why each candidate goes
    lineages: tuple[Lineage, ...] = ()  # the models grouped by lineage, newest lineage first

    @property
    def bytes_freed(self) -> int:
        return sum(info.size for info in self.candidates)

    def reason_to_delete(self, info: StageInfo) -> str:
        return self.delete_reasons.get(info.id, "")

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
    lineages = _lineages(models, policy.keep_last)
    kept_models, dropped_models = _rank_models(lineages, policy)
    held = _alias_models(store, models)  # an alias's reason comes first: it outranks its lineage's rule
    kept_models = {**held, **{k: v for k, v in kept_models.items() if k not in held}}
    dropped_models = {k: v for k, v in dropped_models.items() if k not in held}
    reasons = _protect(manifests, kept_models, cutoff, policy.older_than)
    kept = [KeptStage(StageInfo.of(manifests[i]), reason) for i, reason in reasons.items()]
    kept.sort(key=lambda k: (sort_time(k.info.created_at), k.info.stage, k.info.key))
    doomed = {i: m for i, m in manifests.items() if i not in reasons}
    candidates = tuple(StageInfo.of(doomed[i]) for i in _children_first(doomed))
    why = _delete_reasons(manifests, doomed, dropped_models)
    return GcSelection(policy, cutoff, tuple(kept), candidates, why, lineages)


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


def model_lineage(manifest: Manifest) -> tuple[str | None, str]:
    """``(id, label)`` a model manifest records, or ``(None, "")`` for a model published without one."""
    value: Any = manifest.metrics.get("lineage")
    if isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"]:
        return value["id"], str(value.get("label") or "")
    return None, ""


def _lineages(models: Sequence[Manifest], keep_last: int) -> tuple[Lineage, ...]:
    """Models grouped by lineage, each newest first; the lineage with the newest model comes first."""
    newest_first = sorted(models, key=lambda m: (sort_time(m.created_at), m.key), reverse=True)
    groups: dict[str | None, list[Manifest]] = {}
    for m in newest_first:
        groups.setdefault(model_lineage(m)[0], []).append(m)
    return tuple(
        # A label may differ between a lineage's models only if the label format changed; show the newest.
        Lineage(lineage_id, model_lineage(members[0])[1], tuple(m.key for m in members), min(keep_last, len(members)))
        for lineage_id, members in groups.items()
    )


def _rank_models(lineages: Sequence[Lineage], policy: GcPolicy) -> tuple[dict[str, str], dict[str, str]]:
    """(kept model key -> reason, dropped model key -> reason): the ``keep_last`` newest of each lineage
    stay, plus ``keep``."""
    kept: dict[str, str] = {}
    dropped: dict[str, str] = {}
    rule = f"--keep-last {policy.keep_last}"
    for lineage in lineages:
        for rank, key in enumerate(lineage.models, start=1):
            if rank <= policy.keep_last:
                kept[key] = f"kept model: {_nth_newest(rank)} of {lineage.name} ({rule})"
            else:
                dropped[key] = f"{_nth_newest(rank)} model of {lineage.name} ({rule})"
    for key in policy.keep:
        if key not in kept:
            kept[key] = "kept model (--keep)"
            dropped.pop(key, None)
    return kept, dropped


def _alias_models(store: ArtifactStore, models: Sequence[Manifest]) -> dict[str, str]:
    """Model key -> why an alias needs it (``kept model: held by alias production``), for the models of this
    store that an alias points to now, pointed to before (rollback), or would roll back to."""
    by_uri = {store.stage_uri(MODEL_STAGE, m.key): m.key for m in models}
    kept = {}
    for uri, whys in AliasStore(store).held_models().items():
        if (key := by_uri.get(uri.rstrip("/"))) is not None:
            kept[key] = f"kept model: {', '.join(whys)}"
    return kept


def _nth_newest(rank: int) -> str:
    if rank == 1:
        return "newest"
    suffix = "th" if 10 <= rank % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(rank % 10, "th")
    return f"{rank}{suffix} newest"


def _delete_reasons(
    manifests: dict[StageId, Manifest], doomed: dict[StageId, Manifest], dropped_models: dict[str, str]
) -> dict[StageId, str]:
    """Why each candidate goes: a model by its rank in its lineage, any other stage by the models using it.

    Every model that uses a candidate is a candidate too (a kept or newer one would have protected it)."""
    users = _model_users(manifests)
    reasons = {}
    for stage_id in doomed:
        if stage_id[0] == MODEL_STAGE:
            reasons[stage_id] = dropped_models.get(stage_id[1], "not kept")
            continue
        models = sorted(users.get(stage_id, ()))
        if not models:
            reasons[stage_id] = "used by no model"
            continue
        shown = ", ".join(key[:MIN_PREFIX] for key in models[:_USERS_SHOWN])
        more = f" and {len(models) - _USERS_SHOWN} more" if len(models) > _USERS_SHOWN else ""
        noun = "model" if len(models) == 1 else "models"
        reasons[stage_id] = f"only used by deleted {noun} {shown}{more}"
    return reasons


def _model_users(manifests: dict[StageId, Manifest]) -> dict[StageId, set[str]]:
    """Stage id -> keys of the models built from it (its descendants), and of the models whose head it reports on."""
    users: dict[StageId, set[str]] = {}
    heads: dict[str, set[str]] = {}
    for (stage, key), m in manifests.items():
        if stage != MODEL_STAGE:
            continue
        if head := m.parents.get("head"):
            heads.setdefault(head, set()).add(key)
        todo, seen = list(m.parents.items()), set()
        while todo:
            current = todo.pop()
            if current in seen or current not in manifests:
                continue
            seen.add(current)
            users.setdefault(current, set()).add(key)
            todo += list(manifests[current].parents.items())
    for stage_id, m in manifests.items():
        if stage_id[0] in REPORT_STAGES and (models := heads.get(m.parents.get("head", ""))):
            users.setdefault(stage_id, set()).update(models)
    return users


def _protect(
    manifests: dict[StageId, Manifest], kept_models: dict[str, str], cutoff: datetime, older_than: timedelta
) -> dict[StageId, str]:
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
    newest = sorted(manifests.items(), key=lambda item: sort_time(item[1].created_at), reverse=True)
    fresh = f"newer than {format_duration(older_than)}" if older_than else "created after the cutoff"
    for stage_id, m in sorted(newest, key=lambda item: item[0][0] != MODEL_STAGE):
        created = parse_time(m.created_at)
        if created is None or created > cutoff:
            why = fresh if created is not None else f"unreadable created_at {m.created_at!r}"
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


__all__ = [
    "UNKNOWN_LINEAGE",
    "GcSelection",
    "GcPolicy",
    "GcResult",
    "KeptStage",
    "Lineage",
    "apply_gc",
    "model_lineage",
    "select_gc",
]
