"""The history tables (SQLAlchemy 2 typed declarative), one per record type of `history.records`.

Rows reference each other by id and uid but carry no foreign keys on purpose: the recorder drops the oldest
records when its buffer is full, and a step or scan row whose attempt row was dropped must still be written
rather than fail its whole batch. Timestamps are stored as naive UTC (SQLite keeps no zone) and read back aware.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Dialect, Float, Index, Integer, String, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on the Python side, naive UTC in the database (same on SQLite and PostgreSQL)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("history timestamps must be timezone-aware; use datetime.now(UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


# Kubernetes bounds: uid 36, namespace 63, name 253. Revision ids are `<commit12>-<config8>`, but a rollback-to
# may name an image, so revisions get the room of an image reference.
_UID = String(36)
_NAMESPACE = String(63)
_NAME = String(253)
_REF = String(512)
_ENUM = String(32)
_ID = String(32)


class RolloutRow(Base):
    __tablename__ = "history_rollouts"

    id: Mapped[str] = mapped_column(_ID, primary_key=True)
    uid: Mapped[str] = mapped_column(_UID)
    namespace: Mapped[str] = mapped_column(_NAMESPACE)
    name: Mapped[str] = mapped_column(_NAME)
    generation: Mapped[int] = mapped_column(Integer)
    revision: Mapped[str] = mapped_column(_REF)
    commit: Mapped[str] = mapped_column(String(64))
    image: Mapped[str] = mapped_column(_REF)
    digest: Mapped[str] = mapped_column(String(128))
    trigger: Mapped[str] = mapped_column(_ENUM)
    trigger_detail: Mapped[str] = mapped_column(Text)
    strategy: Mapped[str] = mapped_column(_ENUM)
    env_names: Mapped[str] = mapped_column(Text)  # JSON list of names; values are never stored
    env_hash: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[str | None] = mapped_column(_ENUM)
    reason: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text)
    duration_seconds: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        Index("ix_history_rollouts_object", "namespace", "name", "started_at"),
        Index("ix_history_rollouts_uid", "uid", "started_at"),
    )


class StepRow(Base):
    __tablename__ = "history_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    attempt_id: Mapped[str] = mapped_column(_ID, index=True)
    uid: Mapped[str] = mapped_column(_UID)
    step: Mapped[str] = mapped_column(_ENUM)
    status: Mapped[str] = mapped_column(_ENUM)
    reason: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_seconds: Mapped[float | None] = mapped_column(Float)


class ScanRow(Base):
    __tablename__ = "history_scans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(_UID, index=True)
    attempt_id: Mapped[str] = mapped_column(_ID, index=True)
    revision: Mapped[str] = mapped_column(_REF)
    critical: Mapped[int] = mapped_column(Integer)
    high: Mapped[int] = mapped_column(Integer)
    medium: Mapped[int] = mapped_column(Integer)
    low: Mapped[int] = mapped_column(Integer)
    unknown: Mapped[int] = mapped_column(Integer)
    secrets: Mapped[int] = mapped_column(Integer)
    misconfigs: Mapped[int] = mapped_column(Integer)
    suppressed: Mapped[int] = mapped_column(Integer)
    blocked: Mapped[bool] = mapped_column(Boolean)
    report_json: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class HealthWindowRow(Base):
    __tablename__ = "history_health_windows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(_UID)
    namespace: Mapped[str] = mapped_column(_NAMESPACE)
    name: Mapped[str] = mapped_column(_NAME)
    revision: Mapped[str] = mapped_column(_REF)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    probes_ok: Mapped[int] = mapped_column(Integer)
    probes_failed: Mapped[int] = mapped_column(Integer)
    latency_p50_ms: Mapped[float | None] = mapped_column(Float)
    latency_p90_ms: Mapped[float | None] = mapped_column(Float)
    latency_p99_ms: Mapped[float | None] = mapped_column(Float)
    cpu_ratio: Mapped[float | None] = mapped_column(Float)
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_history_health_windows_uid", "uid", "window_start"),)


class RevertRow(Base):
    __tablename__ = "history_reverts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(_UID)
    namespace: Mapped[str] = mapped_column(_NAMESPACE)
    name: Mapped[str] = mapped_column(_NAME)
    attempt_id: Mapped[str] = mapped_column(_ID)
    from_revision: Mapped[str] = mapped_column(_REF)
    to_revision: Mapped[str] = mapped_column(_REF)
    reason: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_history_reverts_object", "namespace", "name", "at"),)


class CleanupRow(Base):
    __tablename__ = "history_cleanups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(_UID)
    namespace: Mapped[str] = mapped_column(_NAMESPACE)
    name: Mapped[str] = mapped_column(_NAME)
    result: Mapped[str] = mapped_column(_ENUM)
    message: Mapped[str] = mapped_column(Text)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_history_cleanups_object", "namespace", "name", "at"),)


class CandidateLogRow(Base):
    __tablename__ = "history_candidate_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(_UID)
    attempt_id: Mapped[str] = mapped_column(_ID)
    revision: Mapped[str] = mapped_column(_REF)
    # A JSON list (records.MAX_LOG_LINES of MAX_LOG_LINE_CHARS at most): JSON escapes the NUL bytes a log may hold,
    # which a PostgreSQL text value cannot.
    lines: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_history_candidate_logs_revision", "uid", "revision", "at"),)
