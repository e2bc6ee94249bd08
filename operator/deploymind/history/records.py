"""What the history store records: plain immutable facts, built by the controller and written later by the recorder.

Every record is keyed by the Kubernetes object's `metadata.uid` (the deployment's only identity); namespace and
name travel beside it so the history of a deleted object stays readable. Env values are never recorded: an
attempt carries the env names and a hash of the env set (see `env_fingerprint`).

Phases, severities and transports come from the API model (`deploymind.api`), the one source of their spelling;
the enums the API does not define (triggers, results, step names and statuses, probe results) live here, and
everything else imports them from this one place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from deploymind.api.spec import Severity, Transport
from deploymind.api.status import Phase

# What started a rollout attempt. `trigger_detail` says more: the delivery id for Webhook,
# `<annotation>=<value>` for Manual (annotation: rollback-to, requested-at or retry).
TRIGGER_SPEC_CHANGE: Final = "SpecChange"
TRIGGER_WEBHOOK: Final = "Webhook"
TRIGGER_DRIFT: Final = "Drift"
TRIGGER_MANUAL: Final = "Manual"
TRIGGER_RESUME: Final = "Resume"
TRIGGER_SECRET_ROTATION: Final = "SecretRotation"
TRIGGER_POLL: Final = "Poll"  # the source poll found a new commit
TRIGGERS: Final = (
    TRIGGER_SPEC_CHANGE,
    TRIGGER_WEBHOOK,
    TRIGGER_DRIFT,
    TRIGGER_MANUAL,
    TRIGGER_RESUME,
    TRIGGER_SECRET_ROTATION,
    TRIGGER_POLL,
)

# How a rollout attempt ended (also the `result` label of deploymind_rollouts_total).
RESULT_SUCCEEDED: Final = "Succeeded"
RESULT_FAILED: Final = "Failed"
RESULT_ROLLED_BACK: Final = "RolledBack"
RESULT_CANCELLED: Final = "Cancelled"
RESULT_SUPERSEDED: Final = "Superseded"
RESULTS: Final = (RESULT_SUCCEEDED, RESULT_FAILED, RESULT_ROLLED_BACK, RESULT_CANCELLED, RESULT_SUPERSEDED)

# The ordered steps of a reconcile, and what a step transition says about one of them.
STEP_SOURCE: Final = "source"
STEP_SCAN: Final = "scan"
STEP_BUILD: Final = "build"
STEP_RELEASE: Final = "release"
STEP_HEALTH: Final = "health"
STEPS: Final = (STEP_SOURCE, STEP_SCAN, STEP_BUILD, STEP_RELEASE, STEP_HEALTH)

STEP_RUNNING: Final = "Running"
STEP_SUCCEEDED: Final = "Succeeded"
STEP_FAILED: Final = "Failed"
STEP_SKIPPED: Final = "Skipped"
STEP_STATUSES: Final = (STEP_RUNNING, STEP_SUCCEEDED, STEP_FAILED, STEP_SKIPPED)

# status.phase, one spelling everywhere (also the `phase` label of deploymind_phase).
PHASES: Final = tuple(phase.value for phase in Phase)

# Trivy severities, highest first (the `severity` label of deploymind_scan_findings).
SEVERITIES: Final = tuple(severity.value for severity in reversed(Severity))

# spec.target.transport (the `transport` label of deploymind_transport_calls_total).
TRANSPORTS: Final = tuple(transport.value for transport in Transport)

# The outcome of one health probe (the `result` label of deploymind_health_checks_total). Unreachable is a
# transport failure: it is counted, but it is never a failed probe.
PROBE_PASSED: Final = "Passed"
PROBE_FAILED: Final = "Failed"
PROBE_UNREACHABLE: Final = "Unreachable"
PROBE_RESULTS: Final = (PROBE_PASSED, PROBE_FAILED, PROBE_UNREACHABLE)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_attempt_id() -> str:
    """A rollout attempt's id, made by the caller so recording never waits for the database to assign one."""
    return uuid.uuid4().hex


def env_fingerprint(env: Mapping[str, str], key: bytes) -> tuple[tuple[str, ...], str]:
    """The sorted env names and an HMAC-SHA256 of the whole set (names and values) under `key`; values are dropped.

    The hash tells two attempts' environments apart without storing a secret. It is keyed (the operator's key
    file, `history.envkey`) because a bare hash of a low-entropy value (a PIN, a short password) can be found by
    guessing: without the key, a reader of the history database cannot test guesses against it.
    """
    if not key:
        raise ValueError("env_fingerprint needs a non-empty key; load it with history.envkey.load_or_create_key")
    canonical = json.dumps(sorted(env.items()), separators=(",", ":")).encode()
    return tuple(sorted(env)), hmac.new(key, canonical, hashlib.sha256).hexdigest()


def _seconds_between(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else max(0.0, (end - start).total_seconds())


@dataclass(frozen=True)
class RolloutAttempt:
    """One attempt to roll a revision out. Record it when it starts, and record `attempt.finish(...)` when it ends:
    the store keeps one row per `id`, so the finished record replaces the started one (and stands alone if the
    started one was dropped from a full buffer)."""

    uid: str
    namespace: str
    name: str
    generation: int
    revision: str
    trigger: str
    commit: str = ""
    image: str = ""
    digest: str = ""
    trigger_detail: str = ""
    env_names: tuple[str, ...] = ()
    env_hash: str = ""
    strategy: str = "Recreate"
    id: str = dataclasses.field(default_factory=new_attempt_id)
    started_at: datetime = dataclasses.field(default_factory=utcnow)
    finished_at: datetime | None = None
    result: str | None = None
    reason: str = ""
    message: str = ""

    def finish(self, result: str, reason: str = "", message: str = "", at: datetime | None = None) -> RolloutAttempt:
        return dataclasses.replace(
            self, result=result, reason=reason, message=message, finished_at=at if at is not None else utcnow()
        )

    @property
    def duration_seconds(self) -> float | None:
        return _seconds_between(self.started_at, self.finished_at)


@dataclass(frozen=True)
class StepTransition:
    """One step of an attempt changing status (Running, then Succeeded/Failed/Skipped); each is its own row."""

    attempt_id: str
    uid: str
    step: str
    status: str
    reason: str = ""
    message: str = ""
    started_at: datetime = dataclasses.field(default_factory=utcnow)
    finished_at: datetime | None = None

    @property
    def duration_seconds(self) -> float | None:
        return _seconds_between(self.started_at, self.finished_at)


@dataclass(frozen=True)
class ScanSummary:
    """The outcome of scanning one revision: counts by severity (keys from SEVERITIES) and Trivy's full JSON report."""

    uid: str
    revision: str
    attempt_id: str = ""
    counts: Mapping[str, int] = dataclasses.field(default_factory=dict)
    secrets: int = 0
    misconfigs: int = 0
    suppressed: int = 0
    blocked: bool = False
    report_json: str = ""
    at: datetime = dataclasses.field(default_factory=utcnow)


@dataclass(frozen=True)
class HealthWindow:
    """Health probes of one object aggregated over a window: counts, latency percentiles and the last stats seen."""

    uid: str
    namespace: str
    name: str
    window_start: datetime
    window_end: datetime
    probes_ok: int
    probes_failed: int
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_p99_ms: float | None = None
    cpu_ratio: float | None = None
    memory_bytes: int | None = None
    revision: str = ""


@dataclass(frozen=True)
class Revert:
    """The controller put an object back on an earlier revision (an automatic rollback or a `rollback-to`)."""

    uid: str
    namespace: str
    name: str
    from_revision: str
    to_revision: str
    reason: str
    attempt_id: str = ""
    message: str = ""
    at: datetime = dataclasses.field(default_factory=utcnow)


Record = RolloutAttempt | StepTransition | ScanSummary | HealthWindow | Revert
