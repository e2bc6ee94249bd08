"""The recorder behind the controller: records return at once, are written in the background, survive an outage
of the database (here: a real SQLite database locked by another writer) and stay bounded in memory."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deploymind.api.enums import RESULT_SUCCEEDED, STEP_SUCCEEDED, TRIGGER_WEBHOOK
from deploymind.history.config import HistorySettings
from deploymind.history.recorder import HistoryRecorder
from deploymind.history.records import (
    Revert,
    RolloutAttempt,
    StepTransition,
)
from deploymind.history.store import HistoryStore
from deploymind.metrics import Metrics


async def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def attempt(name: str = "app", **overrides: object) -> RolloutAttempt:
    fields: dict[str, object] = dict(
        uid="uid-" + name,
        namespace="ns",
        name=name,
        generation=1,
        revision="0123456789ab-cdef0123",
        trigger=TRIGGER_WEBHOOK,
    )
    fields.update(overrides)
    return RolloutAttempt(**fields)  # type: ignore[arg-type]


def sample(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    return 0.0 if value is None else value


@pytest.fixture
def store(tmp_path: Path) -> HistoryStore:
    return HistoryStore(f"sqlite:///{tmp_path}/history.sqlite3", timeout_seconds=0.1)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def recorder(store: HistoryStore, metrics: Metrics) -> AsyncIterator[HistoryRecorder]:
    recorder = HistoryRecorder(store, metrics, max_backoff_seconds=0.2)
    recorder.start()
    yield recorder
    await recorder.stop(flush_within=2)


async def test_records_are_written_in_the_background_and_migrations_run_first(recorder: HistoryRecorder) -> None:
    started = attempt()
    recorder.record(started)
    recorder.record(StepTransition(attempt_id=started.id, uid=started.uid, step="source", status=STEP_SUCCEEDED))
    recorder.record(started.finish(RESULT_SUCCEEDED, "Deployed"))

    assert await recorder.wait_flushed(within=10)
    history = recorder.store.history("ns", "app")
    assert history is not None
    [entry] = history.rollouts
    assert (entry.attempt.result, entry.attempt.reason) == (RESULT_SUCCEEDED, "Deployed")
    assert [step.step for step in entry.steps] == ["source"]


async def test_a_locked_database_delays_records_and_they_arrive_when_it_is_released(
    recorder: HistoryRecorder, store: HistoryStore, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    recorder.record(attempt("first"))
    assert await recorder.wait_flushed(within=10)
    blocker = sqlite3.connect(store.url.database or "", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with caplog.at_level(logging.WARNING, logger="deploymind.history.recorder"):
            before = time.perf_counter()
            for n in range(20):
                recorder.record(attempt(f"during-{n}"))
            assert time.perf_counter() - before < 0.05  # recording never waits for the database
            await eventually(lambda: sample(metrics, "deploymind_history_unavailable") == 1)
            await asyncio.sleep(0.5)  # a negative check: the retries (every 0.2 s at most) must not log again
            assert not recorder.available
            assert recorder.pending == 20
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    assert await recorder.wait_flushed(within=10)
    unavailable_logs = [r for r in caplog.records if "HistoryUnavailable" in r.getMessage()]
    assert len(unavailable_logs) == 1
    assert "DEPLOYMIND_DATABASE_URL" in unavailable_logs[0].getMessage()
    assert recorder.available and sample(metrics, "deploymind_history_unavailable") == 0
    assert store.row_counts()["history_rollouts"] == 21


async def test_a_full_buffer_drops_the_oldest_records_and_counts_them(store: HistoryStore) -> None:
    metrics = Metrics()
    recorder = HistoryRecorder(store, metrics, capacity=5)  # not started: nothing is written meanwhile
    for n in range(8):
        recorder.record(attempt(f"app-{n}"))

    assert recorder.pending == 5
    assert sample(metrics, "deploymind_history_dropped_records_total") == 3
    recorder.start()
    assert await recorder.wait_flushed(within=10)
    await recorder.stop()
    assert store.history("ns", "app-2") is None
    assert all(store.history("ns", f"app-{n}") is not None for n in range(3, 8))


async def test_a_record_the_database_refuses_is_dropped_and_the_rest_of_its_batch_is_kept(
    recorder: HistoryRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    naive = datetime(2025, 1, 1, 12, 0)  # the store refuses timestamps without a zone
    with caplog.at_level(logging.ERROR, logger="deploymind.history.recorder"):
        recorder.record(attempt("good-1"))
        recorder.record(attempt("bad", started_at=naive))
        recorder.record(attempt("good-2"))
        assert await recorder.wait_flushed(within=10)

    assert recorder.store.history("ns", "good-1") is not None
    assert recorder.store.history("ns", "good-2") is not None
    assert recorder.store.history("ns", "bad") is None
    assert recorder.dropped == 1
    assert any("HistoryRecordRejected" in r.getMessage() for r in caplog.records)


async def test_health_probes_are_stored_as_one_window_not_one_row_each(store: HistoryStore) -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    recorder = HistoryRecorder(store, Metrics(), clock=lambda: now, health_window_seconds=300)
    recorder.start()
    for latency in (0.01, 0.02, 0.03):
        recorder.probe("uid-app", "ns", "app", ok=True, latency_seconds=latency, cpu_ratio=0.1, memory_bytes=2048)
    recorder.probe("uid-app", "ns", "app", ok=False, latency_seconds=None)

    await recorder.stop()  # closes the open window and writes it

    [window] = store.health_windows("uid-app")
    assert (window.probes_ok, window.probes_failed, window.latency_p50_ms) == (3, 1, 20.0)
    assert (window.cpu_ratio, window.memory_bytes) == (0.1, 2048)


async def test_rows_past_the_retention_are_purged_at_start(store: HistoryStore) -> None:
    old = datetime.now(UTC) - timedelta(days=100)
    store.migrate()
    store.write(
        [
            attempt("old", started_at=old),
            Revert(uid="u", namespace="ns", name="old", from_revision="b", to_revision="a", reason="RolledBack", at=old),
        ]
    )
    store.write([attempt("recent")])

    recorder = HistoryRecorder(store, Metrics(), retention=timedelta(days=90))
    recorder.start()
    await eventually(lambda: store.history("ns", "old") is None)
    await recorder.stop()

    assert store.history("ns", "recent") is not None


async def test_records_from_a_worker_thread_reach_the_database_configured_by_the_settings(tmp_path: Path) -> None:
    settings = HistorySettings.from_env(tmp_path / "state", environ={})
    recorder = HistoryRecorder.from_settings(settings, Metrics())
    recorder.start()
    recorder.record(attempt("first"))
    assert await recorder.wait_flushed(within=10)  # migrated, written, and now idle: waiting to be woken

    await asyncio.to_thread(recorder.record, attempt("threaded"))

    await eventually(lambda: recorder.pending == 0 and (tmp_path / "state" / "history.sqlite3").exists())
    await recorder.stop()
    assert recorder.store.history("ns", "threaded") is not None
