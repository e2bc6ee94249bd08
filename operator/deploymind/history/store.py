"""The history database behind a small blocking API: write records in one transaction, read one object's history
(or one revision's, with its refused releases' log lines), purge old rows. Every method blocks: call it from a
worker thread (the recorder and the HTTP endpoint do).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, delete, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, defer, sessionmaker

from deploymind.history import migrate, rows
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
    cleanups: tuple[Cleanup, ...] = ()
    """What each delete did on the host (newest first)."""


@dataclass(frozen=True)
class RevisionHistory:
    """What the store knows about one revision of namespace/name: the attempts that released it (newest first, with
    their steps and scans), the reverts from or to it, and the last log lines of each refused release of it."""

    namespace: str
    name: str
    revision: str
    rollouts: tuple[AttemptHistory, ...]
    reverts: tuple[Revert, ...]
    logs: tuple[CandidateLogs, ...]


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


def _with_steps_and_scans(session: Session, rollouts: Sequence[RolloutRow]) -> tuple[AttemptHistory, ...]:
    ids = [row.id for row in rollouts]
    steps: dict[str, list[StepTransition]] = {attempt_id: [] for attempt_id in ids}
    for step_row in session.scalars(
        select(StepRow).where(StepRow.attempt_id.in_(ids)).order_by(StepRow.started_at, StepRow.id)
    ):
        steps[step_row.attempt_id].append(rows.step(step_row))
    scans: dict[str, list[ScanSummary]] = {attempt_id: [] for attempt_id in ids}
    for scan_row in session.scalars(
        select(ScanRow)
        .options(defer(ScanRow.report_json))  # reports can be megabytes; the list view shows counts
        .where(ScanRow.attempt_id.in_(ids))
        .order_by(ScanRow.at, ScanRow.id)
    ):
        scans[scan_row.attempt_id].append(rows.scan(scan_row))
    return tuple(
        AttemptHistory(attempt=rows.attempt(row), steps=tuple(steps[row.id]), scans=tuple(scans[row.id])) for row in rollouts
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
                row = rows.to_row(record)
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
            cleanups = session.scalars(
                select(CleanupRow)
                .where(CleanupRow.namespace == namespace, CleanupRow.name == name)
                .order_by(CleanupRow.at.desc(), CleanupRow.id.desc())
                .limit(limit)
            ).all()
            if not rollouts and not reverts and not cleanups:
                return None
            return ObjectHistory(
                namespace=namespace,
                name=name,
                rollouts=_with_steps_and_scans(session, rollouts),
                reverts=tuple(rows.revert(row) for row in reverts),
                cleanups=tuple(rows.cleanup(row) for row in cleanups),
            )

    def revision_history(self, namespace: str, name: str, revision: str, limit: int = 20) -> RevisionHistory | None:
        """The newest `limit` attempts, reverts and refused releases' log lines of one revision of namespace/name;
        None if the store knows nothing of that revision."""
        with self._sessions() as session:
            rollouts = session.scalars(
                select(RolloutRow)
                .where(RolloutRow.namespace == namespace, RolloutRow.name == name, RolloutRow.revision == revision)
                .order_by(RolloutRow.started_at.desc(), RolloutRow.id.desc())
                .limit(limit)
            ).all()
            reverts = session.scalars(
                select(RevertRow)
                .where(
                    RevertRow.namespace == namespace,
                    RevertRow.name == name,
                    (RevertRow.from_revision == revision) | (RevertRow.to_revision == revision),
                )
                .order_by(RevertRow.at.desc(), RevertRow.id.desc())
                .limit(limit)
            ).all()
            # Log rows carry the uid only (a revert's release has no attempt): the object's uids come from its rollouts.
            uids = select(RolloutRow.uid).where(RolloutRow.namespace == namespace, RolloutRow.name == name).distinct()
            logs = session.scalars(
                select(CandidateLogRow)
                .where(CandidateLogRow.uid.in_(uids), CandidateLogRow.revision == revision)
                .order_by(CandidateLogRow.at.desc(), CandidateLogRow.id.desc())
                .limit(limit)
            ).all()
            if not rollouts and not reverts and not logs:
                return None
            return RevisionHistory(
                namespace=namespace,
                name=name,
                revision=revision,
                rollouts=_with_steps_and_scans(session, rollouts),
                reverts=tuple(rows.revert(row) for row in reverts),
                logs=tuple(rows.candidate_logs(row) for row in logs),
            )

    def health_windows(self, uid: str, limit: int = 100) -> list[HealthWindow]:
        """The newest `limit` health windows of one object, newest first."""
        with self._sessions() as session:
            windows = session.scalars(
                select(HealthWindowRow)
                .where(HealthWindowRow.uid == uid)
                .order_by(HealthWindowRow.window_start.desc(), HealthWindowRow.id.desc())
                .limit(limit)
            ).all()
            return [rows.health_window(row) for row in windows]

    def purge(self, before: datetime) -> int:
        """Delete every row older than `before` (retention); returns how many rows went."""
        with self._sessions.begin() as session:
            deleted = 0
            for statement in (
                delete(StepRow).where(StepRow.started_at < before),
                delete(ScanRow).where(ScanRow.at < before),
                delete(HealthWindowRow).where(HealthWindowRow.window_end < before),
                delete(RevertRow).where(RevertRow.at < before),
                delete(CleanupRow).where(CleanupRow.at < before),
                delete(CandidateLogRow).where(CandidateLogRow.at < before),
                delete(RolloutRow).where(RolloutRow.started_at < before),
            ):
                deleted += session.connection().execute(statement).rowcount
            return deleted

    def row_counts(self) -> dict[str, int]:
        """Rows per history table (the benchmark and the tests count what a rollout leaves)."""
        with self._sessions() as session:
            return {
                model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in (RolloutRow, StepRow, ScanRow, HealthWindowRow, RevertRow, CleanupRow, CandidateLogRow)
            }

    def dispose(self) -> None:
        self.engine.dispose()
