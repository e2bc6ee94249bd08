"""What the history store records: plain immutable facts, built by the controller and written later by the recorder.

Every record is keyed by the Kubernetes object's `metadata.uid` (the deployment's only identity); namespace and
name travel beside it so the history of a deleted object stays readable. Env values are never recorded: an
attempt carries the env names and a hash of the env set (see `env_fingerprint`).

The value sets of its enum columns (triggers, results, step names and statuses, phases) are the API's
(`deploymind.api.enums`), the one source of their spelling for the store, the metrics and the docs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

# What is kept of a refused candidate's log per release: its last lines (the host sends 50), each cut to what a
# screen shows, so one noisy container cannot fill the database.
MAX_LOG_LINES: Final = 50
MAX_LOG_LINE_CHARS: Final = 2_000
_CUT: Final = "…"


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


@dataclass(frozen=True)
class Cleanup:
    """What a delete did to the object's app on its host: `result` is the Event's reason (CleanedUp, CleanupFailed
    when the operator gave up and left containers behind, Orphaned), `message` what it removed or left."""

    uid: str
    namespace: str
    name: str
    result: str
    message: str = ""
    duration_seconds: float | None = None
    at: datetime = dataclasses.field(default_factory=utcnow)


def bounded_lines(lines: Iterable[str]) -> tuple[str, ...]:
    """The last MAX_LOG_LINES of `lines`, each at most MAX_LOG_LINE_CHARS long (a cut line ends with "…")."""
    return tuple(
        line if len(line) <= MAX_LOG_LINE_CHARS else line[: MAX_LOG_LINE_CHARS - len(_CUT)] + _CUT
        for line in tuple(lines)[-MAX_LOG_LINES:]
    )


@dataclass(frozen=True)
class CandidateLogs:
    """The last log lines of a revision's container that the release refused (it never got healthy, or the switch
    to it failed). The host has already replaced every env value in them with `***`. They are kept here, and never
    in status or Events, which are readable far more widely. `attempt_id` is the rollout attempt that released the
    revision ("" for a revert or repair, which has no attempt of its own); the lines are bounded on construction."""

    uid: str
    revision: str
    lines: tuple[str, ...]
    attempt_id: str = ""
    at: datetime = dataclasses.field(default_factory=utcnow)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lines", bounded_lines(self.lines))  # frozen: the bound holds for every instance


Record = RolloutAttempt | StepTransition | ScanSummary | HealthWindow | Revert | Cleanup | CandidateLogs
