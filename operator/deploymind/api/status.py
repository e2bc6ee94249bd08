"""The `Deployment.deploymind.io` status: what the controller observed, in Kubernetes API conventions (and kstatus)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field

from deploymind.api.base import ApiModel

REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(StrEnum):
    """Every condition type. `Reconciling` and `Stalled` are present only while True (kstatus)."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    SOURCE_READY = "SourceReady"
    SCANNED = "Scanned"
    BUILT = "Built"
    RELEASED = "Released"
    HEALTHY = "Healthy"


STEP_CONDITIONS = (
    ConditionType.SOURCE_READY,
    ConditionType.SCANNED,
    ConditionType.BUILT,
    ConditionType.RELEASED,
    ConditionType.HEALTHY,
)


class Phase(StrEnum):
    """A one-word summary derived from the conditions, for printer columns and dashboards only."""

    PENDING = "Pending"
    SCANNING = "Scanning"
    BUILDING = "Building"
    DEPLOYING = "Deploying"
    BAKING = "Baking"
    DEPLOYED = "Deployed"
    DEGRADED = "Degraded"
    FAILED = "Failed"
    ROLLED_BACK = "RolledBack"
    SUSPENDED = "Suspended"


class StatusModel(ApiModel):
    """Status parts are mutable: the controller edits one working copy per reconcile and writes it once."""

    model_config = ConfigDict(frozen=False, validate_assignment=True)


class Condition(StatusModel):
    """One observation, as metav1.Condition."""

    type: ConditionType
    status: ConditionStatus
    reason: str = Field(min_length=1, max_length=1024, pattern=REASON)
    """CamelCase reason."""
    message: str = Field(default="", max_length=32768)
    """What happened and what to do next."""
    last_transition_time: str
    """When status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """The generation this condition was computed for."""


class RunRecord(StatusModel):
    """How a revision's container runs, as its release started it. A revert or `rollback-to` runs the revision
    exactly so; its resolved env file is kept on the host next to its image (mode 0600), never here."""

    port: int = Field(ge=1, le=65535)
    """The port the stable container listens on ($PORT); health ticks probe it."""
    memory: str | None = None
    """Memory limit, as Docker takes it."""
    cpus: float | None = None
    """CPU limit in cores."""
    init: bool = True
    """Started with Docker's init as PID 1."""
    stop_grace_period_seconds: int = 10
    """Seconds a stop waits before docker kills the app."""


class Revision(StatusModel):
    """The revision running on the host."""

    id: str
    """`<commit[:12]>-<config[:8]>` (or `<digest[:12]>-<config[:8]>` for a prebuilt image)."""
    commit: str | None = None
    image: str
    """The image on the host (`deploymind/<uid8>:<revision>` when built from source)."""
    digest: str | None = None
    """Tree digest (sha256 of the source tarball) or image digest."""
    deployed_at: str | None = None
    run: RunRecord | None = None
    """How it runs (absent in a status written before revisions kept this: then the spec's container settings)."""
    build_key: str | None = None
    """What its image was built from (tree digest, Dockerfile, context): a revision with the same key (an env-only
    change) reuses the image instead of building it again."""


class RevisionRef(StatusModel):
    id: str
    commit: str | None = None
    image: str
    digest: str | None = None
    run: RunRecord | None = None
    """How it ran, so a revert runs it the same way."""
    build_key: str | None = None


class FailedRevision(StatusModel):
    """A quarantined revision: never redeployed by a resync, a resume or a webhook."""

    id: str
    commit: str | None = None
    image: str | None = None
    reason: str
    at: str


class HistoryEntry(StatusModel):
    """A revision that was released on the host (newest first, at most revisionHistoryLimit)."""

    id: str
    commit: str | None = None
    image: str
    deployed_at: str
    result: str
    """Released, RolledBack, …"""
    digest: str | None = None
    run: RunRecord | None = None
    """How it ran, so a revert or `rollback-to` runs it the same way."""
    build_key: str | None = None
    passed_every_probe: bool = True
    """No health probe failed while it ran: with no last good revision yet, a revert may go back to it."""


class TargetStatus(StatusModel):
    instance_id: str | None = None
    address: str | None = None
    container: str | None = None
    """Name of the stable container on the host."""
    health: str | None = None
    """Last probe outcome: Healthy, Unhealthy or Unknown."""


class ScanStatus(StatusModel):
    critical: int = 0
    high: int = 0
    medium: int = 0
    low: int = 0
    unknown: int = 0
    secrets: int = 0
    misconfigs: int = 0
    suppressed: int = 0
    tree_digest: str | None = None


class RollbackPin(StatusModel):
    """A handled `deploymind.io/rollback-to` annotation."""

    requested: str
    """The annotation's value (a revision id or an image)."""
    revision: str | None = None
    """The revision it resolved to."""
    spec_revision: str | None = None
    """The revision the spec named when the pin was set."""
    generation: int | None = None
    """The spec's generation when the pin was set: only a change of the spec itself releases the pin (a new
    commit on the branch does not)."""
    active: bool = True
    """False once released by a change of the spec."""


class RevertIntent(StatusModel):
    """A revert that was decided and written down before the host was asked: finished on the next tick, after a
    crash or a dropped connection too, and never undone by a drift repair."""

    from_revision: str
    """The revision that failed its health checks (quarantined)."""
    to: HistoryEntry
    """The revision being put back, as it ran."""
    message: str
    """Why: the failing probes."""
    at: str
    """When it was decided."""
    tries: int = 0
    """Host jobs that ran for it and failed (each try is a new job); the next waits longer."""
    next_try_at: str | None = None
    """Not tried again before this time (backoff after a failed try)."""


class DeploymentStatus(StatusModel):
    """What the controller observed. Written only when something in it changes."""

    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    phase: Phase | None = None
    revision: Revision | None = None
    last_good: RevisionRef | None = None
    failed_revisions: list[FailedRevision] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    target: TargetStatus | None = None
    scan: ScanStatus | None = None
    last_handled_reconcile_at: str | None = None
    """The last `deploymind.io/requested-at` token handled."""
    rollback_to: RollbackPin | None = None
    """The pin set by `deploymind.io/rollback-to`, held until the spec names a new revision."""
    bake_started_at: str | None = None
    """When the running revision started its bake window; cleared when it becomes last good."""
    baked_seconds: int | None = None
    """Seconds of the bake window actually observed healthy so far (gaps while the host was unreachable or the
    operator down do not count); saved every little while, so a restart loses at most one step of it."""
    revert: RevertIntent | None = None
    """A revert in progress (written before the host job runs)."""
    desired_revision: str | None = None
    """The revision the spec resolves to (what the controller is driving toward)."""
    handled_retry: str | None = None
    """The last `deploymind.io/retry` token handled."""
