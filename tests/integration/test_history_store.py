"""The history store against real databases: every test runs on SQLite and on PostgreSQL (the test world's)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import make_url, text

from deploymind.api.enums import (
    RESULT_ROLLED_BACK,
    RESULT_SUCCEEDED,
    STEP_RUNNING,
    STEP_SUCCEEDED,
    TRIGGER_DRIFT,
    TRIGGER_SPEC_CHANGE,
    TRIGGER_WEBHOOK,
)
from deploymind.history import migrate
from deploymind.history.models import Base
from deploymind.history.recorder import HistoryRecorder
from deploymind.history.records import (
    CandidateLogs,
    HealthWindow,
    Revert,
    RolloutAttempt,
    ScanSummary,
    StepTransition,
    env_fingerprint,
)
from deploymind.history.store import HistoryStore
from deploymind.metrics import Metrics
from world.postgres import Postgres, pg_bin

T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh schema in the test world's PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/history.sqlite3"
        return
    server: Postgres = request.getfixturevalue("postgres")
    yield from _fresh_schema(server.url)


def _fresh_schema(server_url: str) -> Iterator[str]:
    schema = "t_" + secrets.token_hex(6)
    plain = make_url(server_url).set(drivername="postgresql")
    dsn = plain.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    yield (make_url(server_url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False))
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def store(database_url: str) -> Iterator[HistoryStore]:
    store = HistoryStore(database_url)
    store.migrate()
    yield store
    store.dispose()


def attempt(name: str = "web", uid: str = "uid-web", **overrides: object) -> RolloutAttempt:
    fields: dict[str, object] = dict(
        uid=uid,
        namespace="shop",
        name=name,
        generation=1,
        revision="0123456789ab-cdef0123",
        trigger=TRIGGER_SPEC_CHANGE,
    )
    fields.update(overrides)
    return RolloutAttempt(**fields)  # type: ignore[arg-type]


def test_migrations_build_exactly_the_schema_the_models_describe_and_rerun_as_a_no_op(database_url: str) -> None:
    store = HistoryStore(database_url)
    store.migrate()
    store.migrate()

    assert migrate.current_revision(store.engine) == migrate.head_revision()
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": migrate.VERSION_TABLE})
        differences = [d for d in compare_metadata(context, Base.metadata) if d[0] != "remove_table"]
    store.dispose()
    assert differences == []


# Each process imports everything, then waits at a file barrier so both run `upgrade` at the same moment.
_MIGRATE_AT_THE_BARRIER = """
import logging, sys, time
from pathlib import Path
from deploymind.history.store import HistoryStore
logging.basicConfig(level=logging.INFO, stream=sys.stdout)
url, barrier, me = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
(barrier / me).touch()
deadline = time.monotonic() + 30
while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
    time.sleep(0.001)
HistoryStore(url).migrate()
"""


def test_two_operators_starting_together_migrate_once(database_url: str, tmp_path: Path) -> None:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE_AT_THE_BARRIER, database_url, str(barrier), f"replica-{n}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for n in range(2)
    ]
    outputs = [run.communicate(timeout=60)[0].decode() for run in runs]

    assert [run.returncode for run in runs] == [0, 0], outputs
    assert sum(output.count("Running upgrade  -> 0001") for output in outputs) == 1, outputs
    store = HistoryStore(database_url)
    assert migrate.current_revision(store.engine) == migrate.head_revision()
    store.dispose()


def test_a_rollout_with_its_steps_scan_and_revert_reads_back_as_written(store: HistoryStore) -> None:
    names, env_hash = env_fingerprint({"API_TOKEN": "tok-7f3a9c-never-stored", "PORT": "8080"}, b"k" * 32)
    started = attempt(
        trigger=TRIGGER_WEBHOOK,
        trigger_detail="delivery-72d3",
        commit="0123456789abcdef" * 2 + "01234567",
        image="deploymind/uid-web:0123456789ab-cdef0123",
        digest="sha256:" + "e" * 64,
        env_names=names,
        env_hash=env_hash,
        started_at=T0,
    )
    report = json.dumps({"Results": [{"Target": "requirements.txt", "Vulnerabilities": [{"ID": "CVE-1"}] * 5000}]})
    store.write(
        [
            started,
            StepTransition(attempt_id=started.id, uid=started.uid, step="source", status=STEP_RUNNING, started_at=T0),
            StepTransition(
                attempt_id=started.id,
                uid=started.uid,
                step="source",
                status=STEP_SUCCEEDED,
                started_at=T0,
                finished_at=T0 + timedelta(seconds=1.5),
            ),
            ScanSummary(
                uid=started.uid,
                revision=started.revision,
                attempt_id=started.id,
                counts={"HIGH": 2, "LOW": 7},
                secrets=0,
                misconfigs=1,
                suppressed=3,
                report_json=report,
                at=T0 + timedelta(seconds=5),
            ),
        ]
    )
    store.write(
        [
            started.finish(RESULT_ROLLED_BACK, "CandidateUnhealthy", "x" * 10_000, at=T0 + timedelta(minutes=6)),
            Revert(
                uid=started.uid,
                namespace="shop",
                name="web",
                from_revision=started.revision,
                to_revision="fedcba987654-01234567",
                reason="RolledBack",
                attempt_id=started.id,
                at=T0 + timedelta(minutes=6),
            ),
        ]
    )

    history = store.history("shop", "web")

    assert history is not None
    [entry] = history.rollouts
    assert entry.attempt == started.finish(RESULT_ROLLED_BACK, "CandidateUnhealthy", "x" * 10_000, at=T0 + timedelta(minutes=6))
    assert entry.attempt.duration_seconds == 360.0
    assert [(s.step, s.status, s.duration_seconds) for s in entry.steps] == [
        ("source", STEP_RUNNING, None),
        ("source", STEP_SUCCEEDED, 1.5),
    ]
    [scan] = entry.scans
    assert (scan.counts["HIGH"], scan.counts["LOW"], scan.counts["CRITICAL"], scan.suppressed) == (2, 7, 0, 3)
    [revert] = history.reverts
    assert (revert.from_revision, revert.to_revision, revert.reason) == (
        started.revision,
        "fedcba987654-01234567",
        "RolledBack",
    )
    with store.engine.connect() as connection:
        stored_report = connection.execute(text("SELECT report_json FROM history_scans")).scalar_one()
    assert stored_report == report


def test_env_values_are_never_stored(store: HistoryStore) -> None:
    names, env_hash = env_fingerprint({"API_TOKEN": "tok-7f3a9c-never-stored"}, b"k" * 32)
    store.write([attempt(env_names=names, env_hash=env_hash)])

    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM history_rollouts")).all()
    assert "API_TOKEN" in str(rows)
    assert "tok-7f3a9c-never-stored" not in str(rows)


def test_a_finished_attempt_replaces_its_started_row(store: HistoryStore) -> None:
    started = attempt(started_at=T0)
    store.write([started])
    store.write([started.finish(RESULT_SUCCEEDED, "Deployed", at=T0 + timedelta(seconds=20))])

    assert store.row_counts()["history_rollouts"] == 1
    history = store.history("shop", "web")
    assert history is not None
    assert history.rollouts[0].attempt.result == RESULT_SUCCEEDED


def test_history_is_newest_first_limited_and_spans_a_recreated_object(store: HistoryStore) -> None:
    store.write([attempt(uid="old-uid", trigger=TRIGGER_DRIFT, started_at=T0 + timedelta(hours=h)) for h in range(3)])
    store.write([attempt(uid="new-uid", started_at=T0 + timedelta(days=1))])
    store.write([attempt(name="other", uid="other-uid", started_at=T0 + timedelta(days=2))])

    history = store.history("shop", "web", limit=3)

    assert history is not None
    assert [(e.attempt.uid, e.attempt.started_at) for e in history.rollouts] == [
        ("new-uid", T0 + timedelta(days=1)),
        ("old-uid", T0 + timedelta(hours=2)),
        ("old-uid", T0 + timedelta(hours=1)),
    ]


def test_a_refused_releases_log_lines_read_back_by_revision_for_that_object_only(store: HistoryStore) -> None:
    bad = "badbadbadbad-11111111"
    before, after = attempt(uid="old-uid", revision=bad, started_at=T0), attempt(revision=bad, started_at=T0 + timedelta(days=1))
    lines = ("a NUL \x00 byte", "ünïcødé ✓", "x" * 2_000, "'); DROP TABLE history_rollouts; --")
    store.write(
        [
            before,
            after,
            attempt(name="other", uid="uid-other", revision=bad, started_at=T0),
            CandidateLogs(uid="old-uid", revision=bad, attempt_id=before.id, lines=("first try",), at=T0),
            CandidateLogs(uid="uid-web", revision=bad, attempt_id=after.id, lines=lines, at=T0 + timedelta(days=1)),
            CandidateLogs(uid="uid-other", revision=bad, lines=("another object's",), at=T0),
            CandidateLogs(uid="uid-web", revision="fedcba987654-01234567", lines=("another revision's",), at=T0),
        ]
    )

    history = store.revision_history("shop", "web", bad)

    assert history is not None
    assert [(logs.uid, logs.attempt_id, logs.lines) for logs in history.logs] == [
        ("uid-web", after.id, lines),
        ("old-uid", before.id, ("first try",)),
    ]
    assert [entry.attempt.id for entry in history.rollouts] == [after.id, before.id]
    assert store.revision_history("shop", "web", "never-released") is None


def test_an_object_never_recorded_has_no_history(store: HistoryStore) -> None:
    assert store.history("shop", "ghost") is None


def test_times_in_any_zone_come_back_as_the_same_instant_in_utc(store: HistoryStore) -> None:
    tokyo = timezone(timedelta(hours=9))
    store.write([attempt(started_at=datetime(2025, 6, 1, 17, 0, tzinfo=tokyo))])

    history = store.history("shop", "web")

    assert history is not None
    assert history.rollouts[0].attempt.started_at == T0
    assert history.rollouts[0].attempt.started_at.tzinfo == UTC


def test_health_windows_are_kept_per_object(store: HistoryStore) -> None:
    store.write(
        [
            HealthWindow(
                uid="uid-web",
                namespace="shop",
                name="web",
                window_start=T0 + timedelta(minutes=5 * n),
                window_end=T0 + timedelta(minutes=5 * n + 5),
                probes_ok=30 - n,
                probes_failed=n,
                latency_p50_ms=4.0,
                latency_p90_ms=9.0,
                latency_p99_ms=30.0,
                cpu_ratio=0.02,
                memory_bytes=6 * 1024**3,
            )
            for n in range(3)
        ]
    )

    windows = store.health_windows("uid-web", limit=2)

    assert [(w.probes_ok, w.probes_failed) for w in windows] == [(28, 2), (29, 1)]
    assert windows[0].memory_bytes == 6 * 1024**3  # beyond 32 bits


def test_purge_deletes_only_rows_older_than_the_cutoff(store: HistoryStore) -> None:
    old, recent = T0 - timedelta(days=91), T0
    old_attempt, recent_attempt = attempt(started_at=old), attempt(started_at=recent)
    store.write(
        [
            old_attempt,
            StepTransition(attempt_id=old_attempt.id, uid="uid-web", step="build", status=STEP_SUCCEEDED, started_at=old),
            Revert(
                uid="uid-web",
                namespace="shop",
                name="web",
                from_revision="b",
                to_revision="a",
                reason="RolledBack",
                at=old,
            ),
            CandidateLogs(uid="uid-web", revision=old_attempt.revision, attempt_id=old_attempt.id, lines=("old",), at=old),
            recent_attempt,
            StepTransition(attempt_id=recent_attempt.id, uid="uid-web", step="build", status=STEP_SUCCEEDED, started_at=recent),
        ]
    )

    deleted = store.purge(T0 - timedelta(days=90))

    assert deleted == 4
    history = store.history("shop", "web")
    assert history is not None
    assert [e.attempt.id for e in history.rollouts] == [recent_attempt.id]
    assert history.reverts == ()


# An outage of the database while the operator records: a real stop of a private PostgreSQL server (the shared one
# serves other tests), or a real SQLite database locked by another writer.


@pytest.fixture(params=["sqlite", "postgresql"])
def outage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Callable[[], contextlib.AbstractContextManager[None]]]]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("outage") / "history.sqlite3"

        @contextlib.contextmanager
        def locked() -> Iterator[None]:
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            try:
                yield
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()

        yield f"sqlite:///{path}", locked
        return
    world_root: Path = request.getfixturevalue("world_root")
    server = Postgres.start(world_root / f"postgres-outage-{secrets.token_hex(4)}")

    @contextlib.contextmanager
    def stopped() -> Iterator[None]:
        server.stop()
        try:
            yield
        finally:
            options = f"-c listen_addresses=127.0.0.1 -p {server.port} -k {server.dir} -c fsync=off"
            subprocess.run(
                [
                    "runuser",
                    "-u",
                    "postgres",
                    "--",
                    str(pg_bin() / "pg_ctl"),
                    "-D",
                    str(server.data_dir),
                    "-l",
                    str(server.dir / "postgres.log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    options,
                    "start",
                ],
                check=True,
                capture_output=True,
                cwd="/",
            )

    try:
        yield server.url, stopped
    finally:
        server.stop()


async def _eventually(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_records_made_while_the_database_is_down_are_written_when_it_returns(
    outage: tuple[str, Callable[[], contextlib.AbstractContextManager[None]]],
) -> None:
    url, database_down = outage
    metrics = Metrics()
    store = HistoryStore(url, timeout_seconds=1)
    recorder = HistoryRecorder(store, metrics, max_backoff_seconds=0.5)
    recorder.start()
    recorder.record(attempt(name="before"))
    assert await recorder.wait_flushed(within=20)

    with database_down():
        started = time.perf_counter()
        for n in range(50):
            recorder.record(attempt(name=f"during-{n}"))
        assert time.perf_counter() - started < 0.1  # the controller's calls never wait for the database
        await _eventually(lambda: metrics.registry.get_sample_value("deploymind_history_unavailable") == 1)
        assert recorder.pending == 50

    assert await recorder.wait_flushed(within=30)
    assert metrics.registry.get_sample_value("deploymind_history_unavailable") == 0
    assert store.row_counts()["history_rollouts"] == 51
    await recorder.stop()
    store.dispose()
