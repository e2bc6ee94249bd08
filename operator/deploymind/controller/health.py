"""What a health observation means for the object: count, promote after the bake, revert, restart or repair.

Pure: the actor feeds it one observation and the object's state, and carries out the decision it returns.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Protocol

from deploymind.api import reasons
from deploymind.api.spec import DeploymentSpec
from deploymind.api.status import DeploymentStatus


class Action(enum.Enum):
    NONE = "None"
    PROMOTE = "Promote"
    """The bake window passed with passing probes: the revision becomes last good."""
    REVERT = "Revert"
    """Failed during the bake: put last good back and quarantine the revision."""
    DEGRADE = "Degrade"
    """Failed during the bake with no revert possible (rollback.auto off, or nothing to revert to)."""
    RESTART = "Restart"
    """Failed after the bake: restart the container, never revert."""
    REPAIR = "Repair"
    """The container is missing, stopped or runs the wrong image: release the running revision again."""


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


@dataclass(frozen=True)
class Observation:
    """A plain Observed, for tests and callers without a host result."""

    probe_ok: bool
    latency_ms: float | None
    container_ok: bool
    detail: str


@dataclass(frozen=True)
class Decision:
    action: Action
    failures: int
    """Consecutive failed probes after this observation."""
    healthy: bool
    reason: str
    message: str


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def baking(status: DeploymentStatus) -> bool:
    return status.bake_started_at is not None and status.revision is not None and (
        status.last_good is None or status.last_good.id != status.revision.id)


def decide(obs: Observed, failures: int, spec: DeploymentSpec, status: DeploymentStatus,
           now: datetime.datetime) -> Decision:
    if not obs.container_ok:
        return Decision(Action.REPAIR, failures, False, reasons.CONTAINER_MISSING, obs.detail)
    if obs.probe_ok:
        latency = ""  # per-probe figures go to metrics: status changes only when something in it changes
        if baking(status) and status.bake_started_at is not None:
            elapsed = (now - parse_time(status.bake_started_at)).total_seconds()
            if elapsed >= spec.rollback.bake_seconds:
                return Decision(Action.PROMOTE, 0, True, reasons.HEALTHY,
                                f"{spec.health_check.path} answered{latency}; baked for {spec.rollback.bake_seconds} s")
            # No elapsed counter here: status is written only when something in it changes.
            return Decision(Action.NONE, 0, True, reasons.HEALTHY,
                            f"{spec.health_check.path} answered{latency}; baking for {spec.rollback.bake_seconds} s "
                            f"from {status.bake_started_at}")
        return Decision(Action.NONE, 0, True, reasons.HEALTHY, f"{spec.health_check.path} answered{latency}")
    failures += 1
    threshold = spec.health_check.failure_threshold
    message = f"{obs.detail} ({failures}/{threshold} consecutive failures)"
    if failures < threshold:
        return Decision(Action.NONE, failures, True, reasons.HEALTHY, message)
    if baking(status):
        if spec.rollback.auto and status.last_good is not None:
            return Decision(Action.REVERT, 0, False, reasons.ROLLED_BACK, message)
        return Decision(Action.DEGRADE, failures, False, reasons.UNHEALTHY, message)
    return Decision(Action.RESTART, 0, False, reasons.UNHEALTHY, message)
