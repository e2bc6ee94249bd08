"""The operator's Prometheus metrics on a private registry, the one-line helpers that update them, and /metrics.

Labels are bounded: results, phases, severities and transports come from fixed sets (`deploymind.api.enums`, the
one source of their spelling), and per-object series are labelled namespace/name only (never SHAs, revisions or
messages). `forget(namespace, name)` removes every series of one object when it is deleted, so a cluster's churn
does not grow the registry forever.

The helpers never raise: a metric is not worth failing a reconcile for.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Final, ParamSpec

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from deploymind.api.enums import PHASES, PROBE_RESULTS, RECONCILE_RESULTS, SEVERITIES
from deploymind.aws import session

logger = logging.getLogger(__name__)

# `*_created` samples would add one series per counter/histogram child (a third more series per object) that the
# dashboards and rules never read; the switch is process-wide, and this module owns the process's metrics.
disable_created_metrics()  # type: ignore[no-untyped-call]

_P = ParamSpec("_P")

_RECONCILE_BUCKETS: Final = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0)
_ROLLOUT_BUCKETS: Final = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0)
# Few buckets: this histogram exists once per object.
_HEALTH_BUCKETS: Final = (0.05, 0.25, 1.0, 5.0)
_WRITE_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)

_OBJECT: Final = ("namespace", "name")


def _never_raises(method: Callable[_P, None]) -> Callable[_P, None]:
    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            method(*args, **kwargs)
        except Exception:
            logger.exception("could not update metric in %s", method.__name__)

    return wrapper


class Metrics:
    """All DeployMind metrics, registered on `registry` (a fresh private one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconcile_total = Counter(
            "deploymind_reconcile", "Reconciles by result (Succeeded, Waiting, Stalled, Error).", ["result"], registry=r
        )
        self.reconcile_duration_seconds = Histogram(
            "deploymind_reconcile_duration_seconds",
            "Wall time of one reconcile.",
            buckets=_RECONCILE_BUCKETS,
            registry=r,
        )
        self.rollout_duration_seconds = Histogram(
            "deploymind_rollout_duration_seconds",
            "Wall time of a rollout attempt, from start to result.",
            ["result", "strategy"],
            buckets=_ROLLOUT_BUCKETS,
            registry=r,
        )
        self.rollouts_total = Counter("deploymind_rollouts", "Finished rollout attempts by result.", ["result"], registry=r)
        self.phase = Gauge(
            "deploymind_phase",
            "1 for the object's current status.phase, 0 for the others.",
            [*_OBJECT, "phase"],
            registry=r,
        )
        self.health_checks_total = Counter(
            "deploymind_health_checks",
            "Health probes by result (Passed, Failed, Unreachable: the host could not be reached).",
            [*_OBJECT, "result"],
            registry=r,
        )
        self.health_check_latency_seconds = Histogram(
            "deploymind_health_check_latency_seconds",
            "Latency of the application's health endpoint, measured on its host.",
            list(_OBJECT),
            buckets=_HEALTH_BUCKETS,
            registry=r,
        )
        self.reverts_total = Counter(
            "deploymind_reverts", "Times an object was put back on an earlier revision.", list(_OBJECT), registry=r
        )
        self.scan_findings = Gauge(
            "deploymind_scan_findings",
            "Findings of the last scan of the object's revision, by severity (suppressed ones excluded).",
            [*_OBJECT, "severity"],
            registry=r,
        )
        self.transport_calls_total = Counter(
            "deploymind_transport_calls",
            "Round trips to hosts by transport (ssm, ssh, local).",
            ["transport"],
            registry=r,
        )
        self.transport_errors_total = Counter(
            "deploymind_transport_errors",
            "Round trips that failed to run or whose outcome is unknown, by transport and CamelCase reason.",
            ["transport", "reason"],
            registry=r,
        )
        self.webhook_requests_total = Counter(
            "deploymind_webhook_requests", "GitHub webhook requests by result.", ["result"], registry=r
        )
        self.container_cpu_ratio = Gauge(
            "deploymind_container_cpu_ratio",
            "CPU used by the app's container, in cores (1 = one full core), from docker stats.",
            list(_OBJECT),
            registry=r,
        )
        self.container_memory_bytes = Gauge(
            "deploymind_container_memory_bytes",
            "Memory used by the app's container, from docker stats.",
            list(_OBJECT),
            registry=r,
        )
        self.leader = Gauge(
            "deploymind_leader",
            "1 while this replica holds the leader Lease and reconciles, 0 while it stands by "
            "(1 without --leader-election).",
            registry=r,
        )
        self.history_unavailable = Gauge(
            "deploymind_history_unavailable", "1 while the history database does not answer.", registry=r
        )
        self.history_dropped_records = Counter(
            "deploymind_history_dropped_records",
            "History records lost because the buffer was full (or the database refused them).",
            registry=r,
        )
        r.register(_AwsThrottled())
        self.history_write_seconds = Histogram(
            "deploymind_history_write_seconds",
            "Time to write one batch of history records.",
            buckets=_WRITE_BUCKETS,
            registry=r,
        )

    @_never_raises
    def reconcile_finished(self, result: str, seconds: float) -> None:
        if result not in RECONCILE_RESULTS:
            raise ValueError(f"unknown reconcile result {result!r}; expected one of {', '.join(RECONCILE_RESULTS)}")
        self.reconcile_total.labels(result).inc()
        self.reconcile_duration_seconds.observe(seconds)

    @_never_raises
    def rollout_finished(self, result: str, strategy: str, seconds: float) -> None:
        self.rollouts_total.labels(result).inc()
        self.rollout_duration_seconds.labels(result, strategy).observe(seconds)

    @_never_raises
    def set_phase(self, namespace: str, name: str, phase: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(PHASES)}")
        for candidate in PHASES:
            self.phase.labels(namespace, name, candidate).set(1 if candidate == phase else 0)
        # Start the object's revert counter at 0: increase() cannot see a series whose first sample is already 1.
        self.reverts_total.labels(namespace, name)

    @_never_raises
    def health_check(self, namespace: str, name: str, result: str, latency_seconds: float | None = None) -> None:
        """Count one probe (a PROBE_* result); a latency is observed only when the endpoint answered."""
        if result not in PROBE_RESULTS:
            raise ValueError(f"unknown probe result {result!r}; expected one of {', '.join(PROBE_RESULTS)}")
        self.health_checks_total.labels(namespace, name, result).inc()
        if latency_seconds is not None:
            self.health_check_latency_seconds.labels(namespace, name).observe(latency_seconds)

    @_never_raises
    def revert(self, namespace: str, name: str) -> None:
        self.reverts_total.labels(namespace, name).inc()

    @_never_raises
    def set_scan_findings(self, namespace: str, name: str, counts: Mapping[str, int]) -> None:
        """Set every severity (absent ones to 0) so a fixed finding disappears from the graph."""
        normalized = {severity.upper(): count for severity, count in counts.items()}
        unknown = set(normalized) - set(SEVERITIES)
        if unknown:
            raise ValueError(f"unknown severities {sorted(unknown)}; expected {', '.join(SEVERITIES)}")
        for severity in SEVERITIES:
            self.scan_findings.labels(namespace, name, severity).set(normalized.get(severity, 0))

    @_never_raises
    def transport_call(self, transport: str, error_reason: str | None = None) -> None:
        """Count one round trip; pass the TransportError's reason when it failed."""
        self.transport_calls_total.labels(transport).inc()
        if error_reason is not None:
            self.transport_errors_total.labels(transport, error_reason).inc()

    @_never_raises
    def set_leader(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)

    @_never_raises
    def webhook_request(self, result: str) -> None:
        self.webhook_requests_total.labels(result).inc()

    @_never_raises
    def container_stats(self, namespace: str, name: str, cpu_ratio: float, memory_bytes: int) -> None:
        self.container_cpu_ratio.labels(namespace, name).set(cpu_ratio)
        self.container_memory_bytes.labels(namespace, name).set(memory_bytes)

    @_never_raises
    def forget(self, namespace: str, name: str) -> None:
        """Remove every series of one object (call it when the object is deleted)."""
        for metric in (
            self.phase,
            self.health_checks_total,
            self.health_check_latency_seconds,
            self.reverts_total,
            self.scan_findings,
            self.container_cpu_ratio,
            self.container_memory_bytes,
        ):
            metric.remove_by_labels({"namespace": namespace, "name": name})

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


class _AwsThrottled(Collector):
    """deploymind_aws_throttled_total, read from the counts the AWS edge keeps (aws.session)."""

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "deploymind_aws_throttled",
            "AWS API attempts answered with throttling (botocore retried them with backoff), by service and operation.",
            labels=["service", "operation"],
        )
        for (service, operation), count in sorted(session.throttled_calls().items()):
            family.add_metric([service, operation], count)
        yield family


METRICS: Final = Metrics()
"""The process's metrics; tests build their own `Metrics()` to start from zero."""


def metrics_handler(metrics: Metrics) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler serving `metrics` at GET /metrics."""

    async def handle(_request: web.Request) -> web.Response:
        # Rendering 1,000 objects' series takes a fraction of a second: keep it off the event loop.
        body = await asyncio.to_thread(metrics.exposition)
        # The classic 0.0.4 text format: what every Prometheus (Debian's 2.42 included) and promtool parse.
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    return handle
