"""What a health observation means for the object: count, promote after the bake, revert, restart or repair.

Pure: the tick feeds it one observation, the bake time observed so far and the object's state, and carries out the
decision it returns.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from deploymind.api import reasons
from deploymind.api.spec import DeploymentSpec
from deploymind.api.status import DeploymentStatus
from deploymind.controller import revisions


class Action(enum.Enum):
    NONE = "None"
    PROMOTE = "Promote"
    """The bake window passed with passing probes: the revision becomes last good."""
    REVERT = "Revert"
    """Failed during the bake: put the revert target back and quarantine the revision."""
    DEGRADE = "Degrade"
    """Failed during the bake with no revert possible (rollback.auto off, or nothing to revert to)."""
    RESTART = "Restart"
    """Failed after the bake: restart the container, never revert."""
    REPAIR = "Repair"
    """The container is missing, stopped or runs another revision: release the running revision again."""


class Observed(Protocol):
    """What the rules read of one health round trip (transport failures never get here: they are not probes)."""

    @property
    def probe_ok(self) -> bool: ...
    @property
    def latency_ms(self) -> float | None: ...
    @property
    def container_ok(self) -> bool: ...
    @property
    def detail(self) -> str: ...
    @property
    def crashed(self) -> bool:
        """The running revision's own container is there but not running (it exited, or docker is restarting it)."""
        ...


@dataclass(frozen=True)
class Observation:
    """A plain Observed, for tests and callers without a host result."""

    probe_ok: bool
    latency_ms: float | None
    container_ok: bool
    detail: str
    crashed: bool = False


@dataclass(frozen=True)
class Decision:
    action: Action
    failures: int
    """Consecutive failed probes after this observation."""
    healthy: bool
    reason: str
    message: str


def baking(status: DeploymentStatus) -> bool:
    return status.bake_started_at is not None and status.revision is not None and (
        status.last_good is None or status.last_good.id != status.revision.id)


def decide(obs: Observed, failures: int, spec: DeploymentSpec, status: DeploymentStatus, baked_s: float) -> Decision:
    """`baked_s`: seconds of the bake window observed healthy so far, this observation included."""
    if not obs.container_ok and not (obs.crashed and baking(status)):
        return Decision(Action.REPAIR, failures, False, reasons.CONTAINER_MISSING, obs.detail)
    # From here on a revision that crashes during its bake counts as failing its probes: released again and again
    # by repairs, it would otherwise bake into lastGood between its crashes.
    path = spec.health_check.path
    bake = spec.rollback.bake_seconds
    if obs.probe_ok:
        if baking(status):
            quarantined = status.revision is not None and revisions.quarantined(status, status.revision.id)
            if baked_s >= bake and not quarantined:
                return Decision(Action.PROMOTE, 0, True, reasons.HEALTHY, f"{path} answered; baked for {bake} s")
            # No elapsed counter in the message: status is written only when something in it changes.
            return Decision(Action.NONE, 0, True, reasons.HEALTHY,
                            f"{path} answered; baking for {bake} s from {status.bake_started_at}")
        return Decision(Action.NONE, 0, True, reasons.HEALTHY, f"{path} answered")
    failures += 1
    threshold = spec.health_check.failure_threshold
    message = f"{obs.detail} ({failures}/{threshold} consecutive failures)"
    if failures < threshold:
        return Decision(Action.NONE, failures, True, reasons.HEALTHY, message)
    if baking(status):
        if not spec.rollback.auto:
            return Decision(Action.DEGRADE, failures, False, reasons.UNHEALTHY,
                            f"{message}; automatic rollback is off (spec.rollback.auto): fix the revision or set "
                            "deploymind.io/rollback-to")
        if revisions.revert_target(status) is None:
            return Decision(Action.DEGRADE, failures, False, reasons.UNHEALTHY,
                            f"{message}; nothing to revert to: no earlier revision of this Deployment passed its "
                            "health checks; fix the revision (push a fix or change the spec)")
        return Decision(Action.REVERT, 0, False, reasons.ROLLED_BACK, message)
    return Decision(Action.RESTART, 0, False, reasons.UNHEALTHY, message)
