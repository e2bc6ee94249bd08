"""The controller's side of the history: `record(...)` returns at once, and a background task writes batches.

Recording must never block or fail a reconcile. Records go into a bounded in-memory buffer; one task takes
batches from it and writes each in a worker thread. When the buffer is full the oldest record is dropped and
counted (deploymind_history_dropped_records_total). When the database is down the recorder logs
`HistoryUnavailable` once per outage, sets deploymind_history_unavailable to 1, keeps buffering, retries with
backoff, and writes everything buffered when the database answers again. Migrations run in the same task
before the first write, so a database that is down at startup delays history, not the operator.

`record` may be called from any thread; `probe` and `forget` from the event loop's thread (the controller's
handlers run there). Wiring, at operator start and stop:

    recorder = HistoryRecorder.from_settings(HistorySettings.from_env(state_dir), METRICS)
    recorder.start()                     # returns at once; migrations and writes happen in the background
    add_history_routes(app, recorder.store)
    ...
    await recorder.stop()
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from deploymind.history.aggregate import HealthAggregator
from deploymind.history.config import HistorySettings
from deploymind.history.records import Record, utcnow
from deploymind.history.store import HistoryStore
from deploymind.metrics import Metrics

REASON_UNAVAILABLE: Final = "HistoryUnavailable"
REASON_RECORD_REJECTED: Final = "HistoryRecordRejected"

logger = logging.getLogger(__name__)


def _is_outage(error: BaseException) -> bool:
    """Whether a failed write is worth retrying as is (database down, locked, unreachable, pool exhausted),
    as opposed to a record the database refuses (which would fail forever and block every record after it)."""
    return isinstance(error, OperationalError | InterfaceError | PoolTimeoutError | OSError)


class HistoryRecorder:
    """Buffer records in memory and write them to `store` from one background task."""

    def __init__(
        self,
        store: HistoryStore,
        metrics: Metrics,
        *,
        capacity: int = 10_000,
        batch_size: int = 500,
        retention: timedelta = timedelta(days=90),
        purge_interval: timedelta = timedelta(hours=6),
        health_window_seconds: float = 300.0,
        max_backoff_seconds: float = 30.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self._metrics = metrics
        self._capacity = capacity
        self._batch_size = batch_size
        self._retention = retention
        self._purge_interval = purge_interval
        self._max_backoff = max_backoff_seconds
        self._clock = clock
        self._buffer: collections.deque[Record] = collections.deque()
        self._in_flight = 0
        self._aggregator = HealthAggregator(health_window_seconds)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unavailable_since: float | None = None
        self._migrated = False
        self.dropped = 0

    @classmethod
    def from_settings(cls, settings: HistorySettings, metrics: Metrics) -> HistoryRecorder:
        return cls(HistoryStore(settings.database_url), metrics, retention=timedelta(days=settings.retention_days))

    # The controller's one-liners.

    def record(self, record: Record) -> None:
        """Queue one record for writing; returns at once and never raises."""
        try:
            if len(self._buffer) >= self._capacity:
                self._buffer.popleft()
                self._count_dropped(1)
            self._buffer.append(record)
            self._idle.clear()
            self._wake_writer()
        except Exception:  # history must never fail a reconcile; losing one record is the lesser harm
            logger.exception("could not queue a history record; it is lost")

    def _wake_writer(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not started yet: start() finds the buffer non-empty
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._wake.set()
        else:  # recorded from a worker thread: asyncio.Event is not thread-safe
            loop.call_soon_threadsafe(self._wake.set)

    def probe(
        self,
        uid: str,
        namespace: str,
        name: str,
        *,
        ok: bool,
        latency_seconds: float | None,
        cpu_ratio: float | None = None,
        memory_bytes: int | None = None,
        revision: str = "",
    ) -> None:
        """Fold one health probe into the object's current window; a closed window is queued as a record.

        A transport failure is not a probe: do not call this when the host could not be reached.
        """
        try:
            closed = self._aggregator.add(
                uid,
                namespace,
                name,
                ok=ok,
                latency_seconds=latency_seconds,
                at=self._clock(),
                cpu_ratio=cpu_ratio,
                memory_bytes=memory_bytes,
                revision=revision,
            )
        except Exception:
            logger.exception("could not aggregate a health probe; it is lost")
            return
        if closed is not None:
            self.record(closed)

    def forget(self, uid: str) -> None:
        """The object is gone (or stops being probed): queue its open health window now."""
        try:
            window = self._aggregator.flush(uid)
        except Exception:
            logger.exception("could not close a health window; it is lost")
            return
        if window is not None:
            self.record(window)

    # Lifecycle.

    @property
    def available(self) -> bool:
        return self._unavailable_since is None

    @property
    def pending(self) -> int:
        """Records not yet written (buffered or being written)."""
        return len(self._buffer) + self._in_flight

    def start(self) -> None:
        """Start the writer task on the running loop (migrations run first, inside it); returns at once."""
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._run(), name="history-writer")

    async def wait_flushed(self, within: float) -> bool:
        """Wait until every queued record is written; False if that did not happen `within` seconds."""
        try:
            async with asyncio.timeout(within):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self, flush_within: float = 5.0) -> None:
        """Queue open health windows, give the writer `flush_within` seconds to write them, then stop it."""
        for window in self._aggregator.flush_all():
            self.record(window)
        if self._task is None:
            return
        flushed = await self.wait_flushed(flush_within)
        if not flushed:
            logger.warning(
                "%s: %d history records were not written before shutdown and are lost",
                REASON_UNAVAILABLE,
                self.pending,
            )
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    # The writer task.

    async def _run(self) -> None:
        backoff = 0.5
        next_purge = time.monotonic()
        while True:
            if not self._buffer:
                self._idle.set()
                if self._migrated:
                    self._wake.clear()
                    timeout = next_purge - time.monotonic()
                    if timeout > 0:
                        # asyncio.timeout, not wait_for: wait_for wraps the wait in a task of its own, which Kopf
                        # cancels as a "hung task" at shutdown, and that cancellation would end this writer.
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(timeout):
                                await self._wake.wait()
            healthy = await self._step()
            if healthy:
                backoff = 0.5
                if time.monotonic() >= next_purge:
                    await self._purge()
                    next_purge = time.monotonic() + self._purge_interval.total_seconds()
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    async def _step(self) -> bool:
        """Migrate if needed, then write one batch; False when the database is unavailable."""
        if not self._migrated:
            try:
                await asyncio.to_thread(self.store.migrate)
            except Exception as migrate_error:
                self._mark_unavailable(migrate_error)
                return False
            self._migrated = True
        if not self._buffer:
            self._mark_available()
            return True
        batch = [self._buffer.popleft() for _ in range(min(self._batch_size, len(self._buffer)))]
        self._in_flight = len(batch)
        try:
            failure = await self._write(batch)
            if failure is None:
                self._mark_available()
                return True
            if _is_outage(failure):
                self._mark_unavailable(failure)
                self._requeue(batch)
                return False
            # The database answered but refused the batch: a record in it is bad. Keep the others.
            return await self._write_one_by_one(batch)
        finally:
            self._in_flight = 0

    async def _write(self, batch: list[Record]) -> BaseException | None:
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self.store.write, batch)
        except Exception as error:
            return error
        self._metrics.history_write_seconds.observe(time.perf_counter() - started)
        return None

    async def _write_one_by_one(self, batch: list[Record]) -> bool:
        for index, record in enumerate(batch):
            error = await self._write([record])
            if error is None:
                continue
            if _is_outage(error):
                self._mark_unavailable(error)
                self._requeue(batch[index:])
                return False
            logger.error(
                "%s: the history database refused a %s record (%s); it is dropped. "
                "This is a bug in DeployMind: please report it with this message.",
                REASON_RECORD_REJECTED,
                type(record).__name__,
                error,
            )
            self._count_dropped(1)
        self._mark_available()
        return True

    def _requeue(self, batch: list[Record]) -> None:
        """Put an unwritten batch back in front, still within capacity (the oldest records go first)."""
        self._buffer.extendleft(reversed(batch))
        excess = len(self._buffer) - self._capacity
        for _ in range(max(0, excess)):
            self._buffer.popleft()
        self._count_dropped(max(0, excess))

    async def _purge(self) -> None:
        before = self._clock() - self._retention
        try:
            deleted = await asyncio.to_thread(self.store.purge, before)
        except Exception as error:
            logger.warning("could not purge history older than %s (%s); will try again later", before, error)
            return
        if deleted:
            logger.info("purged %d history rows older than %s", deleted, before.isoformat())

    def _count_dropped(self, count: int) -> None:
        if count:
            self.dropped += count
            self._metrics.history_dropped_records.inc(count)

    def _mark_unavailable(self, error: BaseException) -> None:
        if self._unavailable_since is not None:
            return
        self._unavailable_since = time.monotonic()
        self._metrics.history_unavailable.set(1)
        logger.warning(
            "%s: the history database %s does not answer (%s). Rollouts go on; up to %d history records are "
            "kept in memory and written when it is back. Check the database and DEPLOYMIND_DATABASE_URL.",
            REASON_UNAVAILABLE,
            self.store.url.render_as_string(hide_password=True),
            error,
            self._capacity,
        )

    def _mark_available(self) -> None:
        if self._unavailable_since is None:
            return
        outage = time.monotonic() - self._unavailable_since
        self._unavailable_since = None
        self._metrics.history_unavailable.set(0)
        logger.info("history database is back after %.0f s; buffered records are being written", outage)
