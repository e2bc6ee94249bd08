"""Conditions as Kubernetes API conventions want them, and the one place Ready, Reconciling, Stalled and phase are derived."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from deploymind.api import reasons
from deploymind.api.status import STEP_CONDITIONS, Condition, ConditionStatus, ConditionType, Phase

T, F, U = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
ORDER = [ConditionType.READY, ConditionType.RECONCILING, ConditionType.STALLED, *STEP_CONDITIONS]
# Reasons after which the phase says what happened rather than "Failed".
PHASE_BY_REASON = {reasons.ROLLED_BACK: Phase.ROLLED_BACK}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Conditions:
    """A working set of conditions: lastTransitionTime moves only when status moves."""

    def __init__(self, existing: list[Condition], generation: int) -> None:
        self._by_type = {c.type: c.model_copy() for c in existing}
        self._generation = generation

    def set(self, type_: ConditionType, status: ConditionStatus, reason: str, message: str = "") -> None:
        old = self._by_type.get(type_)
        changed_at = old.last_transition_time if old and old.status == status else now()
        self._by_type[type_] = Condition(
            type=type_, status=status, reason=reason, message=message[:32768],
            last_transition_time=changed_at, observed_generation=self._generation,
        )

    def remove(self, type_: ConditionType) -> None:
        self._by_type.pop(type_, None)

    def get(self, type_: ConditionType) -> Condition | None:
        return self._by_type.get(type_)

    def is_true(self, type_: ConditionType) -> bool:
        c = self._by_type.get(type_)
        return c is not None and c.status == T

    def reason(self, type_: ConditionType) -> str | None:
        c = self._by_type.get(type_)
        return c.reason if c else None

    def as_list(self) -> list[Condition]:
        return [self._by_type[t] for t in ORDER if t in self._by_type]


@dataclass(frozen=True)
class Outcome:
    """How a reconcile or tick ended, as the summary needs it."""

    in_progress: bool = False
    """A rollout is under way (Reconciling=True)."""
    stalled_reason: str | None = None
    stalled_message: str = ""
    waiting_reason: str | None = None
    waiting_message: str = ""
    suspended: bool = False
    baking: bool = False
    retrying: bool = False
    """The current generation's rollout failed and is retried (`waiting_reason` says why): it is not done, so
    Ready is False and Reconciling True, whatever the running revision's health."""


def summarize(conds: Conditions, outcome: Outcome) -> Phase:
    """Set Ready, Reconciling and Stalled from the step conditions and the outcome; return the derived phase."""
    retry = outcome.retrying and bool(outcome.waiting_reason) and not outcome.stalled_reason
    if retry:
        # One reason for the whole retry, in progress or between attempts: no condition flips, no Event pairs.
        conds.set(ConditionType.RECONCILING, T, reasons.PROGRESSING_WITH_RETRY,
                  f"retrying: {outcome.waiting_message}")
    elif outcome.in_progress:
        conds.set(ConditionType.RECONCILING, T, reasons.PROGRESSING, "a rollout is in progress")
    else:
        conds.remove(ConditionType.RECONCILING)
    if outcome.stalled_reason:
        conds.set(ConditionType.STALLED, T, outcome.stalled_reason, outcome.stalled_message)
    else:
        conds.remove(ConditionType.STALLED)

    healthy = conds.get(ConditionType.HEALTHY)
    released = conds.is_true(ConditionType.RELEASED)
    if outcome.suspended:
        phase = Phase.SUSPENDED
        ready = (U, reasons.SUSPENDED, "reconciliation is suspended (spec.suspend); the app keeps running")
    elif outcome.stalled_reason:
        phase = PHASE_BY_REASON.get(outcome.stalled_reason, Phase.FAILED)
        ready = (F, outcome.stalled_reason, outcome.stalled_message)
    elif retry:
        phase = _progress_phase(conds) if outcome.in_progress or not released else Phase.DEGRADED
        ready = (F, outcome.waiting_reason or reasons.PROGRESSING_WITH_RETRY, outcome.waiting_message)
    elif outcome.in_progress:
        phase = _progress_phase(conds)
        ready = (F, reasons.PROGRESSING, "a rollout is in progress")
    elif outcome.waiting_reason:
        phase = Phase.DEGRADED if released else _progress_phase(conds)
        ready = (F, outcome.waiting_reason, outcome.waiting_message)
    elif healthy is not None and healthy.status == F:
        phase = Phase.DEGRADED
        ready = (F, healthy.reason, healthy.message)
    elif released and outcome.baking:
        phase = Phase.BAKING
        ready = (T, reasons.BAKING, "the new revision is serving and in its bake window")
    elif released and healthy is not None and healthy.status == T:
        phase = Phase.DEPLOYED
        ready = (T, reasons.DEPLOYED, healthy.message or "the revision is serving and healthy")
    elif released:
        phase = Phase.DEPLOYING
        ready = (U, reasons.PENDING, "waiting for the first health probe")
    else:
        phase = _progress_phase(conds)
        ready = (F, reasons.PENDING, "nothing released yet")
    conds.set(ConditionType.READY, *ready)
    return phase


def _progress_phase(conds: Conditions) -> Phase:
    if not conds.is_true(ConditionType.SOURCE_READY):
        return Phase.PENDING
    if conds.get(ConditionType.SCANNED) is not None and not conds.is_true(ConditionType.SCANNED):
        return Phase.SCANNING
    if not conds.is_true(ConditionType.BUILT):
        return Phase.BUILDING
    return Phase.DEPLOYING


def transitions(before: list[Condition], after: list[Condition]) -> list[Condition]:
    """Conditions whose status or reason changed: the only moments an Event is posted."""
    old = {c.type: (c.status, c.reason) for c in before}
    return [c for c in after if old.get(c.type) != (c.status, c.reason)]
