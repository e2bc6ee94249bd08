"""Health probes folded into aligned windows: counts, nearest-rank percentiles, last stats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from deploymind.history.aggregate import HealthAggregator, percentile

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)  # a multiple of 60 s since the epoch


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]

    assert (percentile(values, 50), percentile(values, 90), percentile(values, 99)) == (50.0, 90.0, 99.0)
    assert percentile([7.0], 99) == 7.0


def test_a_probe_in_the_next_window_closes_the_previous_one_with_its_counts_and_latencies() -> None:
    aggregator = HealthAggregator(window_seconds=60)
    for second, (ok, latency) in enumerate([(True, 0.010), (True, 0.020), (False, None), (True, 0.030)]):
        closed = aggregator.add("u1", "ns", "app", ok=ok, latency_seconds=latency, at=T0 + timedelta(seconds=second))
        assert closed is None

    window = aggregator.add("u1", "ns", "app", ok=True, latency_seconds=0.5, at=T0 + timedelta(seconds=61), cpu_ratio=0.2)

    assert window is not None
    assert (window.window_start, window.window_end) == (T0, T0 + timedelta(seconds=60))
    assert (window.probes_ok, window.probes_failed) == (3, 1)
    assert window.latency_p50_ms == 20.0
    assert window.latency_p99_ms == 30.0
    assert window.cpu_ratio is None  # the stats of the probe that opened the next window belong to that window


def test_windows_keep_the_last_container_stats_seen() -> None:
    aggregator = HealthAggregator(window_seconds=60)
    aggregator.add("u1", "ns", "app", ok=True, latency_seconds=0.01, at=T0, cpu_ratio=0.5, memory_bytes=100)
    aggregator.add("u1", "ns", "app", ok=True, latency_seconds=0.01, at=T0 + timedelta(seconds=5), memory_bytes=300)

    window = aggregator.flush("u1")

    assert window is not None
    assert (window.cpu_ratio, window.memory_bytes) == (0.5, 300)
    assert aggregator.flush("u1") is None


def test_objects_are_aggregated_separately() -> None:
    aggregator = HealthAggregator(window_seconds=60)
    aggregator.add("u1", "ns", "one", ok=True, latency_seconds=0.01, at=T0)
    aggregator.add("u2", "ns", "two", ok=False, latency_seconds=None, at=T0)

    windows = {window.uid: window for window in aggregator.flush_all()}

    assert (windows["u1"].probes_ok, windows["u1"].probes_failed) == (1, 0)
    assert (windows["u2"].probes_ok, windows["u2"].probes_failed, windows["u2"].latency_p50_ms) == (0, 1, None)
    assert aggregator.flush_all() == []
