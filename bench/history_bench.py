"""Benchmark of the history store and the metrics registry.

Measures:
  1. rows and bytes a typical rollout writes (attempt, 5 steps x Running/done, a scan with its report, a revert
     for one in ten, one health window);
  2. history write latency under 100 concurrent rollouts' worth of records, through the real recorder: the
     controller-side `record()` call, each batch's database write, and enqueue-to-commit per record (p50/p99);
  3. memory of a metrics registry holding 1,000 objects' series, and the size and time of one scrape.

Usage: python bench/history_bench.py [--database-url URL] [--report-kib 20] [--json OUT]
Default database: a fresh SQLite file in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from deploymind.api.enums import (
    PROBE_PASSED,
    RESULT_ROLLED_BACK,
    RESULT_SUCCEEDED,
    STEP_RUNNING,
    STEP_SUCCEEDED,
    STEPS,
    TRIGGER_WEBHOOK,
)
from deploymind.history.recorder import HistoryRecorder
from deploymind.history.records import (
    HealthWindow,
    Record,
    Revert,
    RolloutAttempt,
    ScanSummary,
    StepTransition,
    env_fingerprint,
)
from deploymind.history.store import HistoryStore
from deploymind.metrics import Metrics


def rollout_records(n: int, report: str, at: datetime) -> list[Record]:
    """What the controller records for one rollout attempt, in the order it records it."""
    uid = f"{n:08d}-0000-4000-8000-000000000000"
    names, env_hash = env_fingerprint({f"VAR_{i}": f"value-{i}" for i in range(8)}, b"k" * 32)
    attempt = RolloutAttempt(
        uid=uid,
        namespace=f"team-{n % 20}",
        name=f"app-{n}",
        generation=n % 7 + 1,
        revision=f"{n:012x}-cafebabe",
        trigger=TRIGGER_WEBHOOK,
        trigger_detail=f"delivery-{n:08x}",
        commit=f"{n:040x}",
        image=f"deploymind/{uid[:8]}:{n:012x}-cafebabe",
        digest="sha256:" + "a" * 64,
        env_names=names,
        env_hash=env_hash,
        started_at=at,
    )
    records: list[Record] = [attempt]
    for index, step in enumerate(STEPS):
        step_at = at + timedelta(seconds=10 * index)
        records.append(StepTransition(attempt_id=attempt.id, uid=uid, step=step, status=STEP_RUNNING, started_at=step_at))
        records.append(
            StepTransition(
                attempt_id=attempt.id,
                uid=uid,
                step=step,
                status=STEP_SUCCEEDED,
                started_at=step_at,
                finished_at=step_at + timedelta(seconds=9),
            )
        )
        if step == "scan":
            records.append(
                ScanSummary(
                    uid=uid,
                    revision=attempt.revision,
                    attempt_id=attempt.id,
                    counts={"HIGH": 1, "LOW": 4},
                    misconfigs=2,
                    report_json=report,
                    at=step_at,
                )
            )
    reverted = n % 10 == 0
    records.append(
        attempt.finish(RESULT_ROLLED_BACK if reverted else RESULT_SUCCEEDED, "Deployed", at=at + timedelta(seconds=60))
    )
    if reverted:
        records.append(
            Revert(
                uid=uid,
                namespace=attempt.namespace,
                name=attempt.name,
                from_revision=attempt.revision,
                to_revision="000000000000-cafebabe",
                reason="RolledBack",
                attempt_id=attempt.id,
            )
        )
    records.append(
        HealthWindow(
            uid=uid,
            namespace=attempt.namespace,
            name=attempt.name,
            window_start=at,
            window_end=at + timedelta(minutes=5),
            probes_ok=30,
            probes_failed=0,
            latency_p50_ms=3.1,
            latency_p90_ms=7.9,
            latency_p99_ms=21.4,
            cpu_ratio=0.02,
            memory_bytes=48 * 1024 * 1024,
            revision=attempt.revision,
        )
    )
    return records


def fake_report(kib: int) -> str:
    finding = {
        "VulnerabilityID": "CVE-2024-00000",
        "PkgName": "openssl",
        "InstalledVersion": "3.0.11-1",
        "FixedVersion": "3.0.13-1",
        "Severity": "HIGH",
        "Title": "a plausible title of moderate length",
    }
    findings: list[dict[str, str]] = []
    while len(json.dumps(findings)) < kib * 1024:
        findings.append(finding)
    return json.dumps({"SchemaVersion": 2, "Results": [{"Target": "app", "Vulnerabilities": findings}]})


def database_bytes(store: HistoryStore) -> int:
    with store.engine.connect() as connection:
        if store.engine.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()
            size = connection.exec_driver_sql("PRAGMA page_size").scalar_one()
            return int(pages) * int(size)
        total = connection.execute(
            text(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'r' AND c.relname LIKE 'history_%' AND n.nspname = current_schema()"
            )
        ).scalar_one()
        return int(total)


def per_rollout_footprint(store: HistoryStore, report: str, rollouts: int = 200) -> dict[str, float]:
    rows_before, bytes_before = sum(store.row_counts().values()), database_bytes(store)
    now = datetime.now(UTC)
    for n in range(rollouts):
        store.write(rollout_records(n, report, now))
    rows = sum(store.row_counts().values()) - rows_before
    size = database_bytes(store) - bytes_before
    return {
        "rollouts": rollouts,
        "rows_per_rollout": rows / rollouts,
        "bytes_per_rollout": size / rollouts,
        "report_bytes": len(report),
    }


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


class TimedStore(HistoryStore):
    """The real store, timing each batch write and remembering when each record was committed."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.batches: list[tuple[float, int]] = []
        self.committed: dict[int, float] = {}

    def write(self, records: Sequence[Record]) -> None:
        started = time.perf_counter()
        super().write(records)
        finished = time.perf_counter()
        self.batches.append((finished - started, len(records)))
        for record in records:
            self.committed[id(record)] = finished


async def concurrent_rollouts(url: str, report: str, concurrency: int = 100) -> dict[str, Any]:
    """`concurrency` rollouts at once, each recording its records over ~2 s, through the recorder."""
    store = TimedStore(url)
    store.migrate()
    recorder = HistoryRecorder(store, Metrics())
    recorder.start()
    enqueued: dict[int, float] = {}
    record_calls: list[float] = []
    keep: list[Record] = []  # id()s stay valid only while the records live
    now = datetime.now(UTC)

    async def one_rollout(n: int) -> None:
        rng = random.Random(n)
        for record in rollout_records(10_000 + n, report, now):
            await asyncio.sleep(rng.uniform(0.0, 0.2))  # the steps of a rollout happen over time
            keep.append(record)
            started = time.perf_counter()
            recorder.record(record)
            record_calls.append(time.perf_counter() - started)
            enqueued[id(record)] = started

    wall = time.perf_counter()
    await asyncio.gather(*(one_rollout(n) for n in range(concurrency)))
    flushed = await recorder.wait_flushed(within=120)
    wall = time.perf_counter() - wall
    await recorder.stop()
    store.dispose()
    latencies = [store.committed[key] - enqueued[key] for key in enqueued if key in store.committed]
    batch_seconds = [seconds for seconds, _ in store.batches]
    return {
        "concurrent_rollouts": concurrency,
        "records": len(enqueued),
        "flushed": flushed,
        "wall_seconds": round(wall, 2),
        "batches": len(store.batches),
        "mean_batch_size": round(statistics.mean(size for _, size in store.batches), 1),
        "record_call_p99_us": round(percentile(record_calls, 99) * 1e6, 1),
        "batch_write_p50_ms": round(percentile(batch_seconds, 50) * 1000, 2),
        "batch_write_p99_ms": round(percentile(batch_seconds, 99) * 1000, 2),
        "enqueue_to_commit_p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "enqueue_to_commit_p99_ms": round(percentile(latencies, 99) * 1000, 2),
    }


def registry_memory(objects: int = 1000) -> dict[str, Any]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    metrics = Metrics()
    for n in range(objects):
        namespace, name = f"team-{n % 20}", f"app-{n}"
        metrics.set_phase(namespace, name, "Deployed")
        for _ in range(3):
            metrics.health_check(namespace, name, PROBE_PASSED, 0.004)
        metrics.revert(namespace, name)
        metrics.set_scan_findings(namespace, name, {"HIGH": 1})
        metrics.container_stats(namespace, name, 0.02, 48 * 1024 * 1024)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    allocated = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    started = time.perf_counter()
    scrape = metrics.exposition()
    scrape_seconds = time.perf_counter() - started
    series = sum(1 for line in scrape.decode().splitlines() if line and not line.startswith("#"))
    return {
        "objects": objects,
        "series": series,
        "python_heap_mib": round(allocated / 2**20, 2),
        "bytes_per_object": round(allocated / objects),
        "scrape_bytes": len(scrape),
        "scrape_ms": round(scrape_seconds * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="SQLAlchemy URL of an empty database (default: a temp SQLite file)")
    parser.add_argument("--report-kib", type=int, default=20, help="size of each scan's Trivy report")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
        store = HistoryStore(url)
        store.migrate()
        report = fake_report(args.report_kib)
        results: dict[str, Any] = {
            "database": store.engine.dialect.name,
            "footprint": per_rollout_footprint(store, report),
            "footprint_without_report": per_rollout_footprint(store, "{}"),
        }
        store.dispose()
        results["concurrency"] = asyncio.run(concurrent_rollouts(url, report))
    results["registry"] = registry_memory()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
