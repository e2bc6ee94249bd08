"""The history database behind a small blocking API: write records in one transaction, read one object's history,
purge old rows. Every method blocks: call it from a worker thread (the recorder and the HTTP endpoint do).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, delete, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import defer, sessionmaker

from deploymind.history import migrate
from deploymind.history.models import HealthWindowRow, RevertRow, RolloutRow, ScanRow, StepRow
from deploymind.history.records import (
    HealthWindow,
    Record,
    Revert,
    RolloutAttempt,
    ScanSummary,
    StepTransition,
)

# A database that does not answer within this long is treated as down; the recorder keeps buffering meanwhile.
DEFAULT_TIMEOUT_SECONDS: Final = 5.0


@dataclass(frozen=True)
class AttemptHistory:
    """One rollout attempt with its step transitions (oldest first) and scans (their reports left out)."""

    attempt: RolloutAttempt
    steps: tuple[StepTransition, ...]
    scans: tuple[ScanSummary, ...]


@dataclass(frozen=True)
class ObjectHistory:
    """What the store knows about one namespace/name (possibly several uids, if it was deleted and recreated)."""

    namespace: str
    name: str
    rollouts: tuple[AttemptHistory, ...]
    reverts: tuple[Revert, ...]


def _engine(url: URL, timeout: float) -> Engine:
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": timeout})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets the HTTP endpoint read while the recorder writes; busy_timeout waits out the other's lock.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            cursor.close()

        return engine
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = max(1, round(timeout))
    # pre_ping: after an outage, pooled connections are dead; test each before use instead of failing a batch.
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


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


def _row(record: Record) -> RolloutRow | StepRow | ScanRow | HealthWindowRow | RevertRow:
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


def _attempt(row: RolloutRow) -> RolloutAttempt:
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


def _step(row: StepRow) -> StepTransition:
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


def _scan(row: ScanRow) -> ScanSummary:
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


def _revert(row: RevertRow) -> Revert:
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


class HistoryStore:
    """Blocking access to the history database at `url` (SQLAlchemy URL: `sqlite:///…` or `postgresql+psycopg://…`)."""

    def __init__(self, url: str | URL, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.url = make_url(url)
        self.engine = _engine(self.url, timeout_seconds)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self) -> None:
        """`alembic upgrade head`, serialized across replicas; a no-op when the schema is current."""
        migrate.upgrade(self.engine)

    def write(self, records: Sequence[Record]) -> None:
        """Write all records in one transaction (all or nothing). A finished attempt replaces its started row."""
        with self._sessions.begin() as session:
            for record in records:
                row = _row(record)
                if isinstance(row, RolloutRow):
                    session.merge(row)
                else:
                    session.add(row)

    def history(self, namespace: str, name: str, limit: int = 20) -> ObjectHistory | None:
        """The newest `limit` rollouts (with steps and scans) and reverts of namespace/name; None if never seen."""
        with self._sessions() as session:
            rollouts = session.scalars(
                select(RolloutRow)
                .where(RolloutRow.namespace == namespace, RolloutRow.name == name)
                .order_by(RolloutRow.started_at.desc(), RolloutRow.id.desc())
                .limit(limit)
            ).all()
            reverts = session.scalars(
                select(RevertRow)
                .where(RevertRow.namespace == namespace, RevertRow.name == name)
                .order_by(RevertRow.at.desc(), RevertRow.id.desc())
                .limit(limit)
            ).all()
            if not rollouts and not reverts:
                return None
            ids = [row.id for row in rollouts]
            steps: dict[str, list[StepTransition]] = {attempt_id: [] for attempt_id in ids}
            for step_row in session.scalars(
                select(StepRow).where(StepRow.attempt_id.in_(ids)).order_by(StepRow.started_at, StepRow.id)
            ):
                steps[step_row.attempt_id].append(_step(step_row))
            scans: dict[str, list[ScanSummary]] = {attempt_id: [] for attempt_id in ids}
            for scan_row in session.scalars(
                select(ScanRow)
                .options(defer(ScanRow.report_json))  # reports can be megabytes; the list view shows counts
                .where(ScanRow.attempt_id.in_(ids))
                .order_by(ScanRow.at, ScanRow.id)
            ):
                scans[scan_row.attempt_id].append(_scan(scan_row))
            return ObjectHistory(
                namespace=namespace,
                name=name,
                rollouts=tuple(
                    AttemptHistory(attempt=_attempt(row), steps=tuple(steps[row.id]), scans=tuple(scans[row.id]))
                    for row in rollouts
                ),
                reverts=tuple(_revert(row) for row in reverts),
            )

    def health_windows(self, uid: str, limit: int = 100) -> list[HealthWindow]:
        """The newest `limit` health windows of one object, newest first."""
        with self._sessions() as session:
            rows = session.scalars(
                select(HealthWindowRow)
                .where(HealthWindowRow.uid == uid)
                .order_by(HealthWindowRow.window_start.desc(), HealthWindowRow.id.desc())
                .limit(limit)
            ).all()
            return [
                HealthWindow(
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
                for row in rows
            ]

    def purge(self, before: datetime) -> int:
        """Delete every row older than `before` (retention); returns how many rows went."""
        with self._sessions.begin() as session:
            deleted = 0
            for statement in (
                delete(StepRow).where(StepRow.started_at < before),
                delete(ScanRow).where(ScanRow.at < before),
                delete(HealthWindowRow).where(HealthWindowRow.window_end < before),
                delete(RevertRow).where(RevertRow.at < before),
                delete(RolloutRow).where(RolloutRow.started_at < before),
            ):
                deleted += session.connection().execute(statement).rowcount
            return deleted

    def row_counts(self) -> dict[str, int]:
        """Rows per history table (the benchmark and the tests count what a rollout leaves)."""
        with self._sessions() as session:
            return {
                model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in (RolloutRow, StepRow, ScanRow, HealthWindowRow, RevertRow)
            }

    def dispose(self) -> None:
        self.engine.dispose()
