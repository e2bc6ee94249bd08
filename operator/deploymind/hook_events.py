"""The events the controller tells its hooks (controller.hooks.Hooks.emit), one frozen dataclass each.

They are plain data over `deploymind.api` only, so every producer (the controller) and every consumer (the history
listener, metrics) may import them; `.importlinter` holds them to that. Value sets come from `deploymind.api.enums`
(`AttemptResult`, `StepStatus`, TRIGGERS) and the API's own enums (Phase, StrategyType).
"""

from __future__ import annotations

from dataclasses import dataclass

from deploymind.api.enums import AttemptResult, StepStatus
from deploymind.api.spec import StrategyType
from deploymind.api.status import Phase


@dataclass(frozen=True)
class RolloutStarted:
    """The plan decided to release `revision`: a rollout attempt begins."""

    namespace: str
    name: str
    uid: str
    trigger: str
    """One of enums.TRIGGERS."""
    revision: str
    generation: int
    trigger_detail: str = ""
    commit: str = ""
    image: str = ""
    digest: str = ""
    env_names: tuple[str, ...] = ()
    env_hash: str = ""
    """A keyed hash of the resolved env (Hooks.env_fingerprint); the values never leave the controller."""
    strategy: StrategyType = StrategyType.RECREATE


@dataclass(frozen=True)
class RolloutFinished:
    """A rollout attempt ended; `reason` is the CamelCase reason of its result."""

    namespace: str
    name: str
    uid: str
    revision: str
    result: AttemptResult
    reason: str
    seconds: float


@dataclass(frozen=True)
class StepFinished:
    """One step of a reconcile ran; `reason` is its outcome (a host script's result word, or a reason)."""

    uid: str
    step: str
    """One of enums.STEPS."""
    status: StepStatus
    reason: str
    seconds: float
    message: str = ""


@dataclass(frozen=True)
class CandidateLogsCaptured:
    """A refused release's last log lines, scrubbed on the host."""

    uid: str
    revision: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class ReconcileFinished:
    """One reconcile ended: Stalled when `stalled` is set, else Waiting when `waiting` is, else Succeeded."""

    namespace: str
    name: str
    uid: str
    trigger: str
    stalled: str | None
    """The Stalled reason, if any."""
    waiting: str | None
    """The Waiting reason, if any."""
    seconds: float


@dataclass(frozen=True)
class PhaseChanged:
    """The object's status.phase changed (or was first seen by this process)."""

    namespace: str
    name: str
    phase: Phase


@dataclass(frozen=True)
class HealthProbed:
    """One health tick's round trip answered: the probe's outcome and the container's stats (None: not sampled)."""

    namespace: str
    name: str
    uid: str
    ok: bool
    latency_ms: float | None
    """None when the endpoint did not answer."""
    revision: str
    cpu_percent: float | None = None
    memory_bytes: int | None = None


@dataclass(frozen=True)
class HostUnreachable:
    """One health tick could not reach the host: counted, but never a failed probe."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class Reverted:
    """The object was put back from `from_revision` to `to_revision`; `message` says why."""

    namespace: str
    name: str
    uid: str
    from_revision: str
    to_revision: str
    message: str


@dataclass(frozen=True)
class DriftRepaired:
    """The running revision's container was missing or wrong and was released again."""

    namespace: str
    name: str
    uid: str
    revision: str


@dataclass(frozen=True)
class CleanupFinished:
    """What a delete did on the host; `result` is its reason."""

    namespace: str
    name: str
    uid: str
    result: str
    message: str
    seconds: float


@dataclass(frozen=True)
class TransportCalled:
    """One round trip to a host; `error_reason` is the TransportError's reason when it failed."""

    transport: str
    error_reason: str | None = None


@dataclass(frozen=True)
class WebhookHandled:
    """One request to the GitHub webhook receiver, by result."""

    result: str


@dataclass(frozen=True)
class ObjectForgotten:
    """The object was deleted: its per-object series and held state go."""

    namespace: str
    name: str


HookEvent = (
    RolloutStarted
    | RolloutFinished
    | StepFinished
    | CandidateLogsCaptured
    | ReconcileFinished
    | PhaseChanged
    | HealthProbed
    | HostUnreachable
    | Reverted
    | DriftRepaired
    | CleanupFinished
    | TransportCalled
    | WebhookHandled
    | ObjectForgotten
)
"""Everything Hooks.emit takes; a listener matches on the type (mypy checks the match is exhaustive)."""
