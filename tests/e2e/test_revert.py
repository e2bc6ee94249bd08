"""The bake window decides between revert and restart: a revision failing inside it is reverted and quarantined,
one failing after it is restarted in place and never reverted (an outage of a dependency is not a bad revision)."""

from __future__ import annotations

import time

import pytest
from dm import Cluster, Operator, deployment, http_get, ready, stable_container, wait_for
from targets import Target, operator_env_fixture, over, target_fixture, transport_env_fixture, transport_fixture  # noqa: F401

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import AppRepo, Health, fail_health
from world.ports import free_port

pytestmark = pytest.mark.e2e

PERIOD_S = 1
THRESHOLD = 2


def health_check(**overrides: int) -> dict[str, int]:
    return {"periodSeconds": PERIOD_S, "timeoutSeconds": 1, "failureThreshold": THRESHOLD,
            "startupTimeoutSeconds": 15, **overrides}


@over("ssh", "ssm")
def test_a_revision_failing_inside_the_bake_window_is_reverted_and_stays_reverted(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, target: Target, docker_engine: DockerEngine) -> None:
    port = free_port()
    # Through SSM a probe comes every 30 s at best: one failing probe reverts there, to keep the test near 30 s.
    checks = health_check(periodSeconds=target.period_s, failureThreshold=1 if target.ssm else THRESHOLD)
    # Besides the probes: the revert's release, one more script (through SSM, seen by polls up to 3 s apart).
    slack_s = 15 if target.ssm else 5
    cluster.apply(deployment("web", app_repo, port, target=target.spec, healthCheck=checks,
                             rollback={"bakeSeconds": 0}))
    first = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "first revision deployed")
    assert first["lastGood"]["id"] == first["revision"]["id"]
    # A long bake for what comes next; editing rollback never redeploys.
    cluster.apply(deployment("web", app_repo, port, target=target.spec, healthCheck=checks,
                             rollback={"bakeSeconds": 90}))
    cluster.wait_status("web", lambda s: s.get("observedGeneration") == 2, 30, "the new bake window observed")

    bad = app_repo.commit_revision(Health.DEGRADING)
    cluster.annotate("web", "deploymind.io/requested-at", "push-1")
    cluster.wait_status("web", lambda s: (s.get("revision") or {}).get("commit") == bad and s.get("phase") == "Baking",
                        60, "the degrading revision released and baking")
    fail_health(port)
    failing_since = time.monotonic()
    bound_s = checks["periodSeconds"] * checks["failureThreshold"] + slack_s
    wait_for(lambda: http_get(port, timeout=0.5) == (200, "revision 1\n"), bound_s, "revision 1 answering again",
             interval=0.1)
    print(f"reverted {time.monotonic() - failing_since:.1f} s after the health check started failing")
    assert time.monotonic() - failing_since <= bound_s

    status = cluster.wait_status("web", lambda s: s.get("phase") == "RolledBack", 10, "phase RolledBack")
    assert ready(status) == "False/RolledBack"
    assert status["revision"]["id"] == first["revision"]["id"]
    assert status["lastGood"]["id"] == first["revision"]["id"]
    failed = [f for f in status["failedRevisions"] if f["commit"] == bad]
    assert len(failed) == 1 and failed[0]["reason"] == "RolledBack"
    events = [e for e in cluster.events() if e["involvedObject"]["name"] == "web" and e["reason"] == "RolledBack"]
    assert events and events[0]["type"] == "Warning"
    uid = cluster.get("web")["metadata"]["uid"]
    reverted = stable_container(docker_engine, uid)["Id"]

    # Neither a restart of the operator nor a webhook-style redeploy request brings the bad revision back.
    operator.restart()
    cluster.annotate("web", "deploymind.io/requested-at", "push-2")
    status = cluster.wait_status("web", lambda s: s.get("lastHandledReconcileAt") == "push-2", 30, "push-2 handled")
    assert status["phase"] == "RolledBack" and ready(status) == "False/RolledBack"
    assert status["revision"]["id"] == first["revision"]["id"]
    assert stable_container(docker_engine, uid)["Id"] == reverted
    assert http_get(port) == (200, "revision 1\n")


def test_a_revision_failing_after_the_bake_is_restarted_not_reverted(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, docker_engine: DockerEngine) -> None:
    port = free_port()
    cluster.apply(deployment("web", app_repo, port, healthCheck=health_check(), rollback={"bakeSeconds": 1}))
    cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "first revision deployed")

    late = app_repo.commit_revision(Health.DEGRADING)
    cluster.annotate("web", "deploymind.io/requested-at", "push-1")
    baked = cluster.wait_status("web", lambda s: (s.get("lastGood") or {}).get("commit") == late, 60,
                                "the degrading revision baked into lastGood")
    uid = cluster.get("web")["metadata"]["uid"]
    before = stable_container(docker_engine, uid)
    fail_health(port)

    status = cluster.wait_status("web", lambda s: ready(s) == "False/Unhealthy", 30, "Ready=False reason Unhealthy")
    assert status["phase"] == "Degraded"
    restarted = wait_for(
        lambda: (c := stable_container(docker_engine, uid))["State"]["StartedAt"] != before["State"]["StartedAt"] and c,
        30, "the stable container restarted")
    # Restarted in place: the same container, the same image; nothing reverted, nothing quarantined.
    assert restarted["Id"] == before["Id"]
    assert restarted["Config"]["Image"] == baked["revision"]["image"]
    # The health file stays deleted across a restart: the app keeps failing and is restarted again, and Ready
    # stays False meanwhile (a failing probe below the threshold is no reason to call it Ready again).
    wait_for(lambda: stable_container(docker_engine, uid)["State"]["StartedAt"] != restarted["State"]["StartedAt"],
             30, "a second restart")
    status = cluster.status("web")
    assert status["revision"]["commit"] == late and status["lastGood"]["commit"] == late
    assert status.get("failedRevisions", []) == []
    assert ready(status) == "False/Unhealthy"
    ready_events = [(e["message"].split(":")[0], e["reason"])
                    for e in sorted(cluster.events(), key=lambda e: int(e["metadata"]["resourceVersion"]))
                    if e["involvedObject"]["name"] == "web" and e["message"].startswith("Ready is")]
    since_unhealthy = ready_events[ready_events.index(("Ready is False", "Unhealthy")):]
    assert [e for e in since_unhealthy if e[0] == "Ready is True"] == []
