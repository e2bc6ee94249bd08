"""The one status writer: a merge patch with a resourceVersion precondition, sent only when something changed, retried on 409.

Events are posted here too, one per condition that changed status or reason, so no code path can post an Event
without a condition change or change a condition without its Event.
"""

from __future__ import annotations

import logging
from typing import Any

from deploymind.api import lenient, reasons
from deploymind.api.conditions import transitions
from deploymind.api.status import Condition, ConditionStatus, ConditionType, DeploymentStatus, Phase
from deploymind.controller.kube import Conflict, Kube, NotFound

log = logging.getLogger(__name__)
MAX_CONFLICT_RETRIES = 5
# Conditions whose False is bad news (a Warning Event); the others are progress.
WARN_WHEN_TRUE = {ConditionType.STALLED}
# False with these reasons means "under way", not "failed".
PROGRESS_REASONS = {reasons.PROGRESSING, reasons.RELEASING, reasons.PENDING, reasons.BAKING}


def merge_patch(old: Any, new: Any) -> Any:
    """RFC 7386 merge patch turning `old` into `new` (None: nothing to change)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return None if old == new else new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            sub = merge_patch(old[key], value)
            patch[key] = value if not isinstance(value, dict) else sub
    return patch or None


def _event_type(cond: Condition) -> str:
    if cond.reason in PROGRESS_REASONS:
        return "Normal"
    if cond.type in WARN_WHEN_TRUE:
        return "Warning" if cond.status == ConditionStatus.TRUE else "Normal"
    return "Warning" if cond.status == ConditionStatus.FALSE and cond.type != ConditionType.RECONCILING else "Normal"


class StatusWriter:
    """Holds the last status written for one object, so unchanged status is never sent."""

    def __init__(self, kube: Kube, obj: dict[str, Any]) -> None:
        self._kube = kube
        self._obj = obj
        self.conflicts = 0

    @property
    def obj(self) -> dict[str, Any]:
        return self._obj

    def current(self) -> DeploymentStatus:
        """The stored status, fields this operator does not know ignored. Raises StatusUnreadable rather than
        return an empty status: writing that back would erase lastGood and every quarantine."""
        try:
            return lenient.read(DeploymentStatus, _known_values(self._obj.get("status") or {}))
        except ValueError as e:
            meta = self._obj["metadata"]
            raise StatusUnreadable(f"the stored status of {meta['namespace']}/{meta['name']} cannot be read "
                                   f"({str(e).splitlines()[0]}); it is left as it is and nothing is released "
                                   "until it is fixed or removed") from None

    def refresh(self, obj: dict[str, Any]) -> None:
        self._obj = obj

    async def write(self, status: DeploymentStatus) -> bool:
        """Write `status` if it differs from what the API server has; post Events for changed conditions."""
        meta = self._obj["metadata"]
        before = self.current()
        new = status.wire()
        for _ in range(MAX_CONFLICT_RETRIES):
            old = lenient.known_fields(DeploymentStatus, self._obj.get("status") or {})
            patch = merge_patch(old, new)
            if patch is None:
                return False
            try:
                self._obj = await self._kube.patch_status(meta["namespace"], meta["name"], patch,
                                                          self._obj["metadata"]["resourceVersion"])
                break
            except Conflict:
                # Someone (a user, GitOps, the operator's other handlers) wrote the object since we read it.
                self.conflicts += 1
                self._obj = await self._kube.get_deployment(meta["namespace"], meta["name"])
            except NotFound:
                return False
        else:
            raise Conflict(f"status of {meta['namespace']}/{meta['name']} kept conflicting")
        for cond in transitions(before.conditions, status.conditions):
            try:
                await self._kube.post_event(self._obj, _event_type(cond), cond.reason,
                                            f"{cond.type} is {cond.status}: {cond.message}" if cond.message
                                            else f"{cond.type} is {cond.status}")
            except Exception:  # an Event is informative; losing one must not fail the reconcile
                log.warning("could not post an Event for %s/%s", meta["namespace"], meta["name"], exc_info=True)
        return True


def _known_values(stored: dict[str, Any]) -> dict[str, Any]:
    """Conditions of a type and a phase this operator does not know (a newer one wrote them) are left out when
    reading: the phase is derived anyway, and a condition of an unknown type is not this operator's to judge."""
    data = dict(stored)
    if data.get("phase") not in {p.value for p in Phase}:
        data.pop("phase", None)
    types = {t.value for t in ConditionType}
    if isinstance(data.get("conditions"), list):
        data["conditions"] = [c for c in data["conditions"] if isinstance(c, dict) and c.get("type") in types]
    return data


class StatusUnreadable(Exception):
    """The stored status does not parse even with unknown fields ignored (a hand edit, a corrupt write)."""

    reason = reasons.STATUS_UNREADABLE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
