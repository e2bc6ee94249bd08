"""A Deployment applied with kubectl becomes a container on a real Docker engine, verified before it serves."""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any

import pytest
from dm import Cluster, Operator, deployment, docker, handled, http_get, ready, wait_for
from targets import Target, operator_env_fixture, over, ssm_leftovers, target_fixture, transport_env_fixture, transport_fixture  # noqa: F401

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import AppRepo, Health
from world.ports import free_port, port_open

pytestmark = pytest.mark.e2e


@over("local", "ssh", "ssm")
def test_a_good_revision_becomes_ready_and_the_app_answers_then_an_update_replaces_it(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, target: Target) -> None:
    port = free_port()
    # No bake: an ssm probe comes every 30 s at best, and the bake is another test's subject.
    cluster.apply(deployment("web", app_repo, port, target=target.spec, rollback={"bakeSeconds": 0},
                             healthCheck={"periodSeconds": target.period_s}))
    status = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "phase Deployed")
    assert ready(status) == "True/Deployed"
    assert status["revision"]["commit"] == app_repo.head()
    assert status["lastGood"]["id"] == status["revision"]["id"]
    assert http_get(port) == (200, "revision 1\n")
    types = {c["type"]: c["status"] for c in status["conditions"]}
    assert types["SourceReady"] == types["Built"] == types["Released"] == types["Healthy"] == "True"
    assert "Reconciling" not in types and "Stalled" not in types
    assert status["observedGeneration"] == cluster.get("web")["metadata"]["generation"]
    uid = cluster.get("web")["metadata"]["uid"]
    address = {"local": "local", "ssh": "127.0.0.1", "ssm": "127.0.0.2"}[target.transport]  # ssm: the private one
    assert {k: status["target"][k] for k in ("address", "container", "health")} == {
        "address": address, "container": f"dm-{uid[:8]}", "health": "Healthy"}
    assert status["target"].get("instanceId") == target.instance_id
    row = cluster.run("get", "dmd", "web", "--no-headers").stdout.split()
    assert row[:5] == ["web", "Deployed", status["revision"]["id"], address, "True"]

    second = app_repo.commit_revision(Health.HEALTHY)
    cluster.annotate("web", "deploymind.io/requested-at", "push-1")
    updated = cluster.wait_status("web", handled("push-1"), 90, "the update rolled out")
    assert ready(updated) == "True/Deployed"
    assert updated["revision"]["commit"] == second and updated["lastGood"]["commit"] == second
    assert http_get(port) == (200, "revision 2\n")


@over("local", "ssh", "ssm")
def test_a_revision_failing_health_is_refused_while_the_old_one_keeps_serving(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, target: Target, namespace: str) -> None:
    port = free_port()
    # No bake: the candidate is refused before the switch, and through SSM a probe comes every 30 s at best.
    cluster.apply(deployment("web", app_repo, port, target=target.spec, rollback={"bakeSeconds": 0},
                             healthCheck={"periodSeconds": target.period_s}))
    first = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "first revision deployed")
    bad = app_repo.commit_revision(Health.UNHEALTHY)
    cluster.annotate("web", "deploymind.io/requested-at", "push-1")
    failures = 0
    probes = 0

    def refused(status: dict[str, Any]) -> bool:
        nonlocal failures, probes
        probes += 1
        if http_get(port)[0] != 200:
            failures += 1
        return any(f["commit"] == bad for f in status.get("failedRevisions", []))

    status = cluster.wait_status("web", refused, 90, "the bad revision quarantined")
    assert failures == 0 and probes > 0
    assert status["revision"]["id"] == first["revision"]["id"]
    assert ready(status) == "False/RevisionQuarantined"
    assert "CandidateUnhealthy" in status["failedRevisions"][0]["reason"]
    assert http_get(port) == (200, "revision 1\n")
    # a redeploy request does not bring the quarantined revision back
    cluster.annotate("web", "deploymind.io/requested-at", "push-2")
    wait_for(lambda: cluster.status("web").get("lastHandledReconcileAt") == "push-2", 30, "push-2 handled")
    assert cluster.status("web")["revision"]["id"] == first["revision"]["id"]
    assert ssm_leftovers(target, namespace) == []  # the refused candidate's payloads are gone too


@over("local", "ssh", "ssm")
def test_a_removed_container_is_put_back_and_reported(cluster: Cluster, operator: Operator, app_repo: AppRepo,
                                                       docker_engine: DockerEngine, target: Target,
                                                       namespace: str) -> None:
    port = free_port()
    cluster.apply(deployment("web", app_repo, port, target=target.spec, healthCheck={"periodSeconds": target.period_s}))
    status = cluster.wait_status("web", lambda s: s.get("phase") in ("Baking", "Deployed"), 90, "released")
    container = status["target"]["container"]
    env = {**os.environ, **docker_engine.env}
    subprocess.run(["docker", "rm", "-f", container], env=env, check=True, capture_output=True)
    assert not port_open(port)
    wait_for(lambda: http_get(port) == (200, "revision 1\n"), 2 * target.period_s + 30, "the app answering again")
    repaired = wait_for(lambda: [e for e in cluster.events() if e["reason"] == "DriftRepaired"], 30, "the Event")
    # The probe may catch the container while docker is still removing it.
    assert re.search(f"container {container} is (missing|removing)", repaired[0]["message"]), repaired[0]["message"]
    assert cluster.status("web")["revision"]["id"] == status["revision"]["id"]
    assert ssm_leftovers(target, namespace) == []  # the repair's payloads are gone too


@over("local", "ssh", "ssm")
def test_a_wiped_host_gets_the_running_revision_back_built_again(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, docker_engine: DockerEngine, target: Target,
        namespace: str) -> None:
    port = free_port()
    cluster.apply(deployment("web", app_repo, port, target=target.spec, rollback={"bakeSeconds": 0},
                             healthCheck={"periodSeconds": target.period_s}))
    status = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "deployed")
    # What `docker system prune -a` after a stop, or a host rebuilt from its image, leaves: no container, no image.
    # The image first (untagged; the container keeps it): no probe may find the container gone and the image there.
    docker(docker_engine, "image", "rm", "-f", status["revision"]["image"])
    docker(docker_engine, "rm", "-f", status["target"]["container"])
    assert not port_open(port)

    wait_for(lambda: http_get(port) == (200, "revision 1\n"), 2 * target.period_s + 60, "the app answering again")
    repaired = wait_for(lambda: [e for e in cluster.events() if e["reason"] == "DriftRepaired"], 30, "the Event")
    assert "image built again" in repaired[0]["message"], repaired[0]["message"]
    # Built again from the same commit: the revision, and so its env and settings, are the ones that ran.
    after = cluster.status("web")
    assert after["revision"]["id"] == status["revision"]["id"] and ready(after) == "True/Deployed"
    assert docker(docker_engine, "image", "inspect", "--format", "{{.Id}}", status["revision"]["image"]).strip()
    assert ssm_leftovers(target, namespace) == []  # the rebuild's tarball went through S3 and is gone


def test_a_redeploy_whose_image_was_removed_from_the_host_builds_it_again(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, docker_engine: DockerEngine) -> None:
    port = free_port()
    cluster.apply(deployment("web", app_repo, port, rollback={"bakeSeconds": 0}))
    status = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "deployed")
    docker(docker_engine, "image", "rm", "-f", status["revision"]["image"])  # untagged; the container keeps running

    cluster.annotate("web", "deploymind.io/requested-at", "after-rmi")
    status = cluster.wait_status("web", handled("after-rmi"), 60, "the redeploy done")
    built = next(c for c in status["conditions"] if c["type"] == "Built")
    assert (built["status"], built["reason"]) == ("True", "Built"), built["message"]
    assert ready(status) == "True/Deployed" and http_get(port) == (200, "revision 1\n")
    assert docker(docker_engine, "image", "inspect", "--format", "{{.Id}}", status["revision"]["image"]).strip()
