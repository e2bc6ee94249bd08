"""Fold single health probes into per-window aggregates (counts, latency percentiles, last stats): pure, no I/O.

A health timer probes every few seconds; storing each probe would grow the database by a row per object per period.
Windows are aligned to multiples of the window length since the epoch, so every object's windows line up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from deploymind.history.records import HealthWindow


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (0 < q <= 100) of an ascending, non-empty list."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class _Open:
    namespace: str
    name: str
    start: datetime
    revision: str = ""
    ok: int = 0
    failed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    cpu_ratio: float | None = None
    memory_bytes: int | None = None


class HealthAggregator:
    """Per-object open windows; `add` returns the window a probe closed, if any."""

    def __init__(self, window_seconds: float = 300.0) -> None:
        self._window = window_seconds
        self._open: dict[str, _Open] = {}

    def _window_start(self, at: datetime) -> datetime:
        stamp = at.timestamp()
        return datetime.fromtimestamp(stamp - stamp % self._window, UTC)

    def add(
        self,
        uid: str,
        namespace: str,
        name: str,
        *,
        ok: bool,
        latency_seconds: float | None,
        at: datetime,
        cpu_ratio: float | None = None,
        memory_bytes: int | None = None,
        revision: str = "",
    ) -> HealthWindow | None:
        start = self._window_start(at)
        closed: HealthWindow | None = None
        current = self._open.get(uid)
        if current is not None and current.start != start:
            closed = self._close(uid, current)
            current = None
        if current is None:
            current = self._open[uid] = _Open(namespace=namespace, name=name, start=start)
        current.namespace, current.name = namespace, name
        current.revision = revision or current.revision
        if ok:
            current.ok += 1
        else:
            current.failed += 1
        if latency_seconds is not None:
            current.latencies_ms.append(latency_seconds * 1000.0)
        if cpu_ratio is not None:
            current.cpu_ratio = cpu_ratio
        if memory_bytes is not None:
            current.memory_bytes = memory_bytes
        return closed

    def flush(self, uid: str) -> HealthWindow | None:
        """Close the object's open window now (on delete or shutdown); None when it has none."""
        current = self._open.get(uid)
        return None if current is None else self._close(uid, current)

    def flush_all(self) -> list[HealthWindow]:
        return [self._close(uid, current) for uid, current in list(self._open.items())]

    def _close(self, uid: str, current: _Open) -> HealthWindow:
        del self._open[uid]
        latencies = sorted(current.latencies_ms)
        p50, p90, p99 = (percentile(latencies, q) if latencies else None for q in (50, 90, 99))
        return HealthWindow(
            uid=uid,
            namespace=current.namespace,
            name=current.name,
            window_start=current.start,
            window_end=datetime.fromtimestamp(current.start.timestamp() + self._window, UTC),
            probes_ok=current.ok,
            probes_failed=current.failed,
            latency_p50_ms=p50,
            latency_p90_ms=p90,
            latency_p99_ms=p99,
            cpu_ratio=current.cpu_ratio,
            memory_bytes=current.memory_bytes,
            revision=current.revision,
        )
