"""Records to rows and back: the mapping between `history.records` and the tables of `history.models`.

Reading a row back drops nothing but what is never read back whole (a scan's full report stays in its row).
"""

from __future__ import annotations

import json

from deploymind.history.models import (
    CandidateLogRow,
    CleanupRow,
    HealthWindowRow,
    RevertRow,
    RolloutRow,
    ScanRow,
    StepRow,
)
from deploymind.history.records import (
    CandidateLogs,
    Cleanup,
    HealthWindow,
    Record,
    Revert,
    RolloutAttempt,
    ScanSummary,
    StepTransition,
)


def _attempt_row(record: RolloutAttempt) -> RolloutRow:
    return RolloutRow(
        id=record.id,
        uid=record.uid,
        namespace=record.namespace,
        name=record.name,
        generation=record.generation,
        revision=record.revision,
        commit=record.commit,
        image=record.image,
        digest=record.digest,
        trigger=record.trigger,
        trigger_detail=record.trigger_detail,
        strategy=record.strategy,
        env_names=json.dumps(list(record.env_names)),
        env_hash=record.env_hash,
        started_at=record.started_at,
        finished_at=record.finished_at,
        result=record.result,
        reason=record.reason,
        message=record.message,
        duration_seconds=record.duration_seconds,
    )


def to_row(record: Record) -> RolloutRow | StepRow | ScanRow | HealthWindowRow | RevertRow | CleanupRow | CandidateLogRow:
    match record:
        case RolloutAttempt():
            return _attempt_row(record)
        case StepTransition():
            return StepRow(
                attempt_id=record.attempt_id,
                uid=record.uid,
                step=record.step,
                status=record.status,
                reason=record.reason,
                message=record.message,
                started_at=record.started_at,
                finished_at=record.finished_at,
                duration_seconds=record.duration_seconds,
            )
        case ScanSummary():
            counts = {severity.lower(): int(n) for severity, n in record.counts.items()}
            return ScanRow(
                uid=record.uid,
                attempt_id=record.attempt_id,
                revision=record.revision,
                critical=counts.get("critical", 0),
                high=counts.get("high", 0),
                medium=counts.get("medium", 0),
                low=counts.get("low", 0),
                unknown=counts.get("unknown", 0),
                secrets=record.secrets,
                misconfigs=record.misconfigs,
                suppressed=record.suppressed,
                blocked=record.blocked,
                report_json=record.report_json,
                at=record.at,
            )
        case HealthWindow():
            return HealthWindowRow(
                uid=record.uid,
                namespace=record.namespace,
                name=record.name,
                revision=record.revision,
                window_start=record.window_start,
                window_end=record.window_end,
                probes_ok=record.probes_ok,
                probes_failed=record.probes_failed,
                latency_p50_ms=record.latency_p50_ms,
                latency_p90_ms=record.latency_p90_ms,
                latency_p99_ms=record.latency_p99_ms,
                cpu_ratio=record.cpu_ratio,
                memory_bytes=record.memory_bytes,
            )
        case Revert():
            return RevertRow(
                uid=record.uid,
                namespace=record.namespace,
                name=record.name,
                attempt_id=record.attempt_id,
                from_revision=record.from_revision,
                to_revision=record.to_revision,
                reason=record.reason,
                message=record.message,
                at=record.at,
            )
        case Cleanup():
            return CleanupRow(
                uid=record.uid,
                namespace=record.namespace,
                name=record.name,
                result=record.result,
                message=record.message,
                duration_seconds=record.duration_seconds,
                at=record.at,
            )
        case CandidateLogs():
            return CandidateLogRow(
                uid=record.uid,
                attempt_id=record.attempt_id,
                revision=record.revision,
                lines=json.dumps(list(record.lines)),
                at=record.at,
            )


def attempt(row: RolloutRow) -> RolloutAttempt:
    return RolloutAttempt(
        id=row.id,
        uid=row.uid,
        namespace=row.namespace,
        name=row.name,
        generation=row.generation,
        revision=row.revision,
        commit=row.commit,
        image=row.image,
        digest=row.digest,
        trigger=row.trigger,
        trigger_detail=row.trigger_detail,
        strategy=row.strategy,
        env_names=tuple(json.loads(row.env_names)),
        env_hash=row.env_hash,
        started_at=row.started_at,
        finished_at=row.finished_at,
        result=row.result,
        reason=row.reason,
        message=row.message,
    )


def step(row: StepRow) -> StepTransition:
    return StepTransition(
        attempt_id=row.attempt_id,
        uid=row.uid,
        step=row.step,
        status=row.status,
        reason=row.reason,
        message=row.message,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def scan(row: ScanRow) -> ScanSummary:
    counts = {"CRITICAL": row.critical, "HIGH": row.high, "MEDIUM": row.medium, "LOW": row.low, "UNKNOWN": row.unknown}
    return ScanSummary(
        uid=row.uid,
        revision=row.revision,
        attempt_id=row.attempt_id,
        counts=counts,
        secrets=row.secrets,
        misconfigs=row.misconfigs,
        suppressed=row.suppressed,
        blocked=row.blocked,
        at=row.at,
    )


def revert(row: RevertRow) -> Revert:
    return Revert(
        uid=row.uid,
        namespace=row.namespace,
        name=row.name,
        from_revision=row.from_revision,
        to_revision=row.to_revision,
        reason=row.reason,
        attempt_id=row.attempt_id,
        message=row.message,
        at=row.at,
    )


def candidate_logs(row: CandidateLogRow) -> CandidateLogs:
    return CandidateLogs(
        uid=row.uid, revision=row.revision, lines=tuple(json.loads(row.lines)), attempt_id=row.attempt_id, at=row.at
    )


def cleanup(row: CleanupRow) -> Cleanup:
    return Cleanup(uid=row.uid, namespace=row.namespace, name=row.name, result=row.result, message=row.message,
                   duration_seconds=row.duration_seconds, at=row.at)


def health_window(row: HealthWindowRow) -> HealthWindow:
    return HealthWindow(
        uid=row.uid,
        namespace=row.namespace,
        name=row.name,
        window_start=row.window_start,
        window_end=row.window_end,
        probes_ok=row.probes_ok,
        probes_failed=row.probes_failed,
        latency_p50_ms=row.latency_p50_ms,
        latency_p90_ms=row.latency_p90_ms,
        latency_p99_ms=row.latency_p99_ms,
        cpu_ratio=row.cpu_ratio,
        memory_bytes=row.memory_bytes,
        revision=row.revision,
    )
