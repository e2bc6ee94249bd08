"""A revert restores a whole revision (image, env, port, limits), goes back to the last revision that served healthily
even before any finished its bake, and says so when there is nothing to go back to."""

from __future__ import annotations

from typing import Any

import pytest
from dm import Cluster, Operator, deployment, http_get, ready, stable_container, wait_for

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import AppRepo, Health, env_mode, fail_health
from world.ports import free_port

pytestmark = pytest.mark.e2e

HEALTH = {"periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 2, "startupTimeoutSeconds": 15}


def with_mode(repo: AppRepo, port: int, mode: str, bake: int) -> dict[str, Any]:
    return deployment("web", repo, port, container={"port": port, "env": [{"name": "MODE", "value": mode}]},
                      healthCheck=HEALTH, rollback={"bakeSeconds": bake})


def revision_label(engine: DockerEngine, uid: str) -> str:
    return str(stable_container(engine, uid)["Config"]["Labels"]["deploymind.io/revision"])


def test_an_env_only_change_failing_late_is_reverted_and_the_app_runs_with_the_old_env_value(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, docker_engine: DockerEngine) -> None:
    port = free_port()
    app_repo.commit_revision(Health.DEGRADING)
    cluster.apply(with_mode(app_repo, port, "a", bake=1))
    first = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "MODE=a deployed and baked")
    assert env_mode(port) == "a"

    # The same commit with one plain env value changed: a new revision, the same image content.
    cluster.apply(with_mode(app_repo, port, "b", bake=60))
    second = cluster.wait_status("web", lambda s: s.get("phase") == "Baking"
                                 and s["revision"]["id"] != first["revision"]["id"], 60, "MODE=b released")
    assert second["revision"]["commit"] == first["revision"]["commit"]
    assert env_mode(port) == "b"
    built = next(c for c in second["conditions"] if c["type"] == "Built")
    assert built["reason"] == "ImagePresent" and "reuses" in built["message"], built  # no second build

    fail_health(port)  # fails seconds after the switch, inside the bake
    wait_for(lambda: env_mode(port, timeout=0.5) == "a", 20, "MODE=a serving again", interval=0.1)
    status = cluster.wait_status("web", lambda s: s.get("phase") == "RolledBack", 20, "phase RolledBack")
    assert ready(status) == "False/RolledBack"
    # status.revision names what really runs: the first revision, with its own env, on its own port.
    assert status["revision"]["id"] == first["revision"]["id"]
    assert status["revision"]["run"]["port"] == port
    uid = cluster.get("web")["metadata"]["uid"]
    assert revision_label(docker_engine, uid) == first["revision"]["id"]
    assert [f["reason"] for f in status["failedRevisions"] if f["id"] == second["revision"]["id"]] == ["RolledBack"]
    assert "revert" not in status
    assert http_get(port, "/health")[0] == 200
    # The ticks that follow probe it and leave it alone: still MODE=a, never "repaired" back to MODE=b.
    cluster.wait_status("web", lambda s: s.get("target", {}).get("health") == "Healthy", 20, "probed healthy")
    assert env_mode(port) == "a" and revision_label(docker_engine, uid) == first["revision"]["id"]


def test_a_revision_failing_before_the_previous_one_finished_its_bake_reverts_to_that_one(
        cluster: Cluster, operator: Operator, app_repo: AppRepo) -> None:
    port = free_port()
    cluster.apply(deployment("web", app_repo, port, healthCheck=HEALTH, rollback={"bakeSeconds": 300}))
    first = cluster.wait_status("web", lambda s: s.get("phase") == "Baking", 90, "revision 1 serving, baking")
    assert "lastGood" not in first

    bad = app_repo.commit_revision(Health.DEGRADING)
    cluster.annotate("web", "deploymind.io/requested-at", "push-1")
    cluster.wait_status("web", lambda s: s["revision"]["commit"] == bad and s.get("phase") == "Baking", 60,
                        "the degrading revision released")
    fail_health(port)
    wait_for(lambda: http_get(port, timeout=0.5) == (200, "revision 1\n"), 20, "revision 1 back", interval=0.1)
    status = cluster.wait_status("web", lambda s: s.get("phase") == "RolledBack", 20, "phase RolledBack")
    assert status["revision"]["id"] == first["revision"]["id"]
    assert [f["commit"] for f in status["failedRevisions"]] == [bad]
    assert "reverted to " + first["revision"]["id"] in ready_message(status)


def test_the_first_revision_failing_late_is_degraded_with_a_message_saying_there_is_nothing_to_revert_to(
        cluster: Cluster, operator: Operator, app_repo: AppRepo) -> None:
    port = free_port()
    app_repo.commit_revision(Health.DEGRADING)
    cluster.apply(deployment("web", app_repo, port, healthCheck=HEALTH, rollback={"bakeSeconds": 300}))
    first = cluster.wait_status("web", lambda s: s.get("phase") == "Baking", 90, "the only revision baking")
    fail_health(port)
    status = cluster.wait_status("web", lambda s: s.get("phase") == "Degraded", 30, "phase Degraded")
    assert ready(status) == "False/Unhealthy"
    assert "nothing to revert to" in ready_message(status)
    assert status["revision"]["id"] == first["revision"]["id"]
    assert status.get("failedRevisions", []) == []


def ready_message(status: dict[str, Any]) -> str:
    return str(next(c for c in status["conditions"] if c["type"] == "Ready")["message"])
