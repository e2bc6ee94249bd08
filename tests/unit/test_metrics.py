"""The operator's metrics: helpers update the right series, forget() removes an object, nothing ever raises."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from deploymind.api.enums import PHASES, PROBE_FAILED, PROBE_PASSED, RECONCILE_SUCCEEDED, RESULT_ROLLED_BACK
from deploymind.metrics import Metrics, metrics_handler


def value(metrics: Metrics, sample: str, /, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(sample, labels)


def series_of(metrics: Metrics, namespace: str, name: str) -> list[str]:
    return [
        sample.name
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.labels.get("namespace") == namespace and sample.labels.get("name") == name
    ]


def test_reconcile_and_rollout_helpers_count_and_time() -> None:
    metrics = Metrics()

    metrics.reconcile_finished(RECONCILE_SUCCEEDED, 0.3)
    metrics.rollout_finished(RESULT_ROLLED_BACK, "Recreate", 95.0)

    assert value(metrics, "deploymind_reconcile_total", result="Succeeded") == 1
    assert value(metrics, "deploymind_reconcile_duration_seconds_count") == 1
    assert value(metrics, "deploymind_rollouts_total", result="RolledBack") == 1
    assert value(metrics, "deploymind_rollout_duration_seconds_bucket", result="RolledBack", strategy="Recreate", le="60.0") == 0
    assert value(metrics, "deploymind_rollout_duration_seconds_bucket", result="RolledBack", strategy="Recreate", le="120.0") == 1


def test_phase_is_one_for_the_current_phase_and_zero_for_every_other() -> None:
    metrics = Metrics()

    metrics.set_phase("shop", "web", "Deploying")
    metrics.set_phase("shop", "web", "Deployed")

    current = {phase: value(metrics, "deploymind_phase", namespace="shop", name="web", phase=phase) for phase in PHASES}
    assert current.pop("Deployed") == 1
    assert set(current.values()) == {0}


def test_a_new_object_starts_its_revert_counter_at_zero_so_the_first_revert_shows_in_increase() -> None:
    metrics = Metrics()

    metrics.set_phase("shop", "web", "Pending")

    assert value(metrics, "deploymind_reverts_total", namespace="shop", name="web") == 0


def test_scan_findings_set_every_severity_so_fixed_findings_drop_to_zero() -> None:
    metrics = Metrics()

    metrics.set_scan_findings("shop", "web", {"critical": 2, "HIGH": 1})
    metrics.set_scan_findings("shop", "web", {"HIGH": 1})

    assert value(metrics, "deploymind_scan_findings", namespace="shop", name="web", severity="CRITICAL") == 0
    assert value(metrics, "deploymind_scan_findings", namespace="shop", name="web", severity="HIGH") == 1
    assert value(metrics, "deploymind_scan_findings", namespace="shop", name="web", severity="LOW") == 0


def test_health_checks_count_results_and_observe_latency_only_when_answered() -> None:
    metrics = Metrics()

    metrics.health_check("shop", "web", PROBE_PASSED, 0.12)
    metrics.health_check("shop", "web", PROBE_FAILED)

    assert value(metrics, "deploymind_health_checks_total", namespace="shop", name="web", result="Passed") == 1
    assert value(metrics, "deploymind_health_checks_total", namespace="shop", name="web", result="Failed") == 1
    assert value(metrics, "deploymind_health_check_latency_seconds_count", namespace="shop", name="web") == 1


def test_transport_calls_and_errors_are_counted_by_transport_and_reason() -> None:
    metrics = Metrics()

    metrics.transport_call("ssh")
    metrics.transport_call("ssh", error_reason="TargetUnreachable")

    assert value(metrics, "deploymind_transport_calls_total", transport="ssh") == 2
    assert value(metrics, "deploymind_transport_errors_total", transport="ssh", reason="TargetUnreachable") == 1


def test_forget_removes_every_series_of_one_object_and_only_that_object() -> None:
    metrics = Metrics()
    for name in ("web", "api"):
        metrics.set_phase("shop", name, "Deployed")
        metrics.health_check("shop", name, PROBE_PASSED, 0.01)
        metrics.revert("shop", name)
        metrics.set_scan_findings("shop", name, {"HIGH": 1})
        metrics.container_stats("shop", name, 0.25, 64 * 1024 * 1024)

    metrics.forget("shop", "web")

    assert series_of(metrics, "shop", "web") == []
    assert len(series_of(metrics, "shop", "api")) > 20


def test_a_bad_label_value_is_logged_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()

    with caplog.at_level(logging.ERROR, logger="deploymind.metrics"):
        metrics.set_phase("shop", "web", "Exploded")
        metrics.set_scan_findings("shop", "web", {"APOCALYPTIC": 1})
        metrics.reconcile_finished("Exploded", 0.1)

    assert series_of(metrics, "shop", "web") == []
    assert value(metrics, "deploymind_reconcile_total", result="Exploded") is None
    assert len(caplog.records) == 3


def test_registries_are_private_so_two_operators_in_one_process_do_not_collide() -> None:
    one, two = Metrics(), Metrics()

    one.webhook_request("Accepted")

    assert value(one, "deploymind_webhook_requests_total", result="Accepted") == 1
    assert value(two, "deploymind_webhook_requests_total", result="Accepted") is None


async def test_the_metrics_endpoint_serves_the_text_format() -> None:
    metrics = Metrics()
    metrics.history_unavailable.set(1)
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(metrics))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.get("/metrics")
        text = await response.text()

    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["deploymind_history_unavailable"].samples[0].value == 1
