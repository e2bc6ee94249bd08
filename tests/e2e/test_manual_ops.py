"""Manual operations are annotations: `deploymind.io/rollback-to` pins a kept revision until the spec names a new one,
`deploymind.io/retry` lifts a quarantine once; both are acted on when set while the operator is down. `spec.suspend`
stops every change to the host while health is still reported, across an operator restart."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

import pytest
from dm import Cluster, Operator, deployment, http_get, ready, stable_container, wait_for

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import DEFAULT_PORT, START_SCRIPT, AppRepo, Health, fail_health
from world.ports import free_port

pytestmark = pytest.mark.e2e

ROLLBACK_TO = "deploymind.io/rollback-to"
REQUESTED_AT = "deploymind.io/requested-at"
RETRY = "deploymind.io/retry"


def health_checks(operator: Operator) -> float:
    """How many health probes the operator has made (its /metrics): proof that ticks ran."""
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("deploymind_health_checks_total{"))


def serving(cluster: Cluster, port: int, commit: str, body: str) -> Callable[[], bool]:
    """A check: the object's status runs `commit` and the app answers `body`."""
    return lambda: ((cluster.status("web").get("revision") or {}).get("commit") == commit
                    and http_get(port, timeout=0.5) == (200, body))


def test_rollback_to_holds_across_ticks_restarts_and_new_commits_until_the_spec_changes(
        cluster: Cluster, operator: Operator, app_repo: AppRepo) -> None:
    port = free_port()
    first_commit = app_repo.head()
    cluster.apply(deployment("web", app_repo, port, rollback={"bakeSeconds": 0}))
    first = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "revision 1 deployed")
    second = app_repo.commit_revision(Health.HEALTHY)
    cluster.annotate("web", REQUESTED_AT, "push-1")
    wait_for(serving(cluster, port, second, "revision 2\n"), 60, "revision 2 serving")

    # Set while the operator is down: acted on when it comes back.
    operator.kill()
    cluster.annotate("web", ROLLBACK_TO, first["revision"]["id"])
    operator.start()
    wait_for(serving(cluster, port, first_commit, "revision 1\n"), 60, "rolled back to revision 1")
    status = cluster.status("web")
    assert status["rollbackTo"]["active"] is True and status["rollbackTo"]["revision"] == first["revision"]["id"]

    # It holds across health ticks, a restart and a redeploy request, while the spec still names revision 2.
    ticks = health_checks(operator)
    wait_for(lambda: health_checks(operator) >= ticks + 3, 30, "three more health ticks")
    operator.kill()
    operator.start()
    cluster.annotate("web", REQUESTED_AT, "push-2")
    status = cluster.wait_status("web", lambda s: s.get("lastHandledReconcileAt") == "push-2", 60, "push-2 handled")
    assert status["revision"]["id"] == first["revision"]["id"] and status["desiredRevision"] != first["revision"]["id"]
    assert http_get(port) == (200, "revision 1\n")

    # A new commit on the branch does not lift the pin (the spec did not change) ...
    third = app_repo.commit_revision(Health.HEALTHY)
    cluster.annotate("web", REQUESTED_AT, "push-3")
    status = cluster.wait_status("web", lambda s: s.get("lastHandledReconcileAt") == "push-3", 60, "push-3 handled")
    assert status["revision"]["id"] == first["revision"]["id"] and status["rollbackTo"]["active"] is True
    assert http_get(port) == (200, "revision 1\n")
    # ... a change of the spec does.
    cluster.apply(deployment("web", app_repo, port, rollback={"bakeSeconds": 0},
                             container={"port": port, "env": [{"name": "MODE", "value": "three"}]}))
    wait_for(serving(cluster, port, third, "revision 3\n"), 60, "revision 3 serving")
    assert cluster.status("web")["rollbackTo"]["active"] is False

    # Removing the annotation forgets the pin; the same value set again pins again.
    cluster.run("annotate", "dmd", "web", f"{ROLLBACK_TO}-")
    cluster.wait_status("web", lambda s: "rollbackTo" not in s, 30, "status.rollbackTo cleared")
    cluster.annotate("web", ROLLBACK_TO, first["revision"]["id"])
    wait_for(serving(cluster, port, first_commit, "revision 1\n"), 60, "pinned to revision 1 again")


def test_rollback_to_a_revision_that_is_gone_is_stalled(cluster: Cluster, operator: Operator,
                                                        app_repo: AppRepo) -> None:
    port = free_port()
    cluster.apply(deployment("web", app_repo, port, rollback={"bakeSeconds": 0}))
    first = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "revision 1 deployed")
    cluster.annotate("web", ROLLBACK_TO, "0123456789ab-deadbeef")
    status = cluster.wait_status("web", lambda s: ready(s) == "False/RollbackTargetGone", 30,
                                 "Ready=False reason RollbackTargetGone")
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "RollbackTargetGone"
    assert "0123456789ab-deadbeef" in stalled["message"]
    assert status["revision"]["id"] == first["revision"]["id"]
    assert http_get(port) == (200, "revision 1\n")


def commit_slow_starter(repo: AppRepo, healthy_after: int) -> str:
    """A revision whose /health answers only `healthy_after` seconds after it starts (a slow warm-up)."""
    repo.commit_revision(Health.UNHEALTHY)
    warm_up = f"( /bin/busybox sleep {healthy_after}; echo ok > /www/health ) &\n"
    repo.write_file("start.sh", START_SCRIPT.format(comment="Slow to start.", degrade=warm_up, port=DEFAULT_PORT))
    return repo.commit_all("a revision that warms up slowly")


def test_retry_lifts_the_quarantine_once_even_when_set_while_the_operator_is_down(
        cluster: Cluster, operator: Operator, app_repo: AppRepo) -> None:
    port = free_port()
    short = {"startupTimeoutSeconds": 2}
    cluster.apply(deployment("web", app_repo, port, rollback={"bakeSeconds": 0}, healthCheck=short))
    cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "revision 1 deployed")
    slow = commit_slow_starter(app_repo, healthy_after=4)
    cluster.annotate("web", REQUESTED_AT, "push-1")
    status = cluster.wait_status("web", lambda s: any(f["commit"] == slow for f in s.get("failedRevisions", [])),
                                 60, "the slow revision quarantined")
    assert ready(status) == "False/RevisionQuarantined"

    # A longer startup timeout alone does not lift the quarantine (healthCheck is not part of the revision).
    cluster.apply(deployment("web", app_repo, port, rollback={"bakeSeconds": 0},
                             healthCheck={"startupTimeoutSeconds": 20}))
    status = cluster.wait_status("web", lambda s: s.get("observedGeneration") == 2, 30, "the new timeout observed")
    assert ready(status) == "False/RevisionQuarantined"
    assert status["revision"]["commit"] != slow and http_get(port) == (200, "revision 1\n")

    operator.kill()
    cluster.annotate("web", RETRY, "try-1")
    operator.start()
    wait_for(serving(cluster, port, slow, "revision 2\n"), 60, "the slow revision serving after the retry")
    status = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 30, "phase Deployed")
    assert not any(f["commit"] == slow for f in status.get("failedRevisions", []))


def test_a_suspended_deployment_changes_nothing_on_the_host_but_its_health_is_still_reported(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, docker_engine: DockerEngine) -> None:
    port = free_port()
    degrading = app_repo.commit_revision(Health.DEGRADING)
    cluster.apply(deployment("web", app_repo, port, rollback={"bakeSeconds": 0}))
    deployed = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "the revision deployed")
    assert deployed["revision"]["commit"] == degrading
    cluster.run("patch", "dmd", "web", "--type", "merge", "-p", '{"spec": {"suspend": true}}')
    status = cluster.wait_status("web", lambda s: s.get("phase") == "Suspended", 30, "phase Suspended")
    assert ready(status) == "Unknown/Suspended"
    uid = cluster.get("web")["metadata"]["uid"]
    before = stable_container(docker_engine, uid)

    # Probed after a restart too; a failing app is reported, and neither restarted nor reverted.
    operator.restart()
    fail_health(port)
    status = cluster.wait_status("web", lambda s: s["target"].get("health") == "Unhealthy", 30, "health reported")
    healthy = next(c for c in status["conditions"] if c["type"] == "Healthy")
    assert (healthy["status"], status["phase"]) == ("False", "Suspended")
    newer = app_repo.commit_revision(Health.HEALTHY, body="newer\n")
    cluster.annotate("web", REQUESTED_AT, "push-while-suspended")
    ticks = health_checks(operator)
    wait_for(lambda: health_checks(operator) >= ticks + 4, 30, "four more health ticks")
    status = cluster.status("web")
    assert status["revision"]["commit"] == degrading and status.get("failedRevisions", []) == []
    now = stable_container(docker_engine, uid)
    assert (now["Id"], now["State"]["StartedAt"]) == (before["Id"], before["State"]["StartedAt"])  # not restarted

    cluster.run("patch", "dmd", "web", "--type", "merge", "-p", '{"spec": {"suspend": false}}')
    wait_for(serving(cluster, port, newer, "newer\n"), 60, "the newer revision serving once resumed")
    assert stable_container(docker_engine, uid)["Config"]["Image"] == cluster.status("web")["revision"]["image"]
