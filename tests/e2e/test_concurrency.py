"""Two Deployments on one host: their releases never interleave (a Lease per host), and a port is claimed once."""

from __future__ import annotations

import itertools
import os
import subprocess
import threading

import pytest
from dm import Cluster, Operator, deployment, http_get, ready

from world.apps import AppRepo, create_app_repo
from world.kubetools import Kubectl
from world.ports import free_port

pytestmark = pytest.mark.e2e


def test_two_deployments_on_one_host_release_one_at_a_time(cluster: Cluster, operator: Operator, app_repo: AppRepo,
                                                           kubectl: Kubectl) -> None:
    # The Lease's holderIdentity is the operator process; its annotation deploymind.io/uid the Deployment.
    other_repo = create_app_repo(app_repo.path.parent / (app_repo.path.name + "-b"))
    holders: list[str] = []
    watch = subprocess.Popen(
        [str(kubectl.binary), "get", "leases", "-n", cluster.namespace, "--watch", "-o",
         "jsonpath={.metadata.annotations.deploymind\\.io/uid}{'|'}{.spec.holderIdentity}{'\\n'}"],
        stdout=subprocess.PIPE, text=True, env=kubectl.env)
    assert watch.stdout is not None
    reader = threading.Thread(target=lambda: holders.extend(iter(watch.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        ports = free_port(), free_port()
        cluster.apply(deployment("one", app_repo, ports[0]))
        cluster.apply(deployment("two", other_repo, ports[1]))
        for name in ("one", "two"):
            cluster.wait_status(name, lambda s: s.get("phase") in ("Baking", "Deployed"), 120, "released")
        assert http_get(ports[0])[0] == http_get(ports[1])[0] == 200
    finally:
        watch.terminate()
        watch.wait(10)
        reader.join(5)
    rows = [line.strip().split("|") for line in holders if line.strip()]
    sequence = [uid for uid, _ in rows]
    uids = {cluster.get(n)["metadata"]["uid"] for n in ("one", "two")}
    assert uids <= set(sequence), f"both releases took the host's Lease: {sequence}"
    assert operator.proc is not None
    assert {holder for uid, holder in rows if uid} == {f"{os.environ.get('HOSTNAME', 'deploymind')}-{operator.proc.pid}"}
    # Between two different holders the Lease is always released first: never handed over while held.
    for before, after in itertools.pairwise(sequence):
        assert not (before and after and before != after), f"the Lease passed from {before} to {after} while held"


def test_a_second_deployment_claiming_the_same_port_on_the_host_is_stalled(cluster: Cluster, operator: Operator,
                                                                           app_repo: AppRepo) -> None:
    port = free_port()
    cluster.apply(deployment("first", app_repo, port))
    cluster.wait_status("first", lambda s: s.get("phase") in ("Baking", "Deployed"), 90, "first released")
    cluster.apply(deployment("second", app_repo, port))
    status = cluster.wait_status("second", lambda s: ready(s) == "False/PortConflict", 60, "PortConflict")
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert f"{cluster.namespace}/first" in stalled["message"] and "spec.container.port" in stalled["message"]
    assert http_get(port) == (200, "revision 1\n")


def test_a_spec_changed_during_a_rollout_rolls_out_next_and_nothing_is_lost(cluster: Cluster, operator: Operator,
                                                                          app_repo: AppRepo) -> None:
    from world.apps import Health

    port = free_port()
    cluster.apply(deployment("web", app_repo, port))
    cluster.wait_status("web", lambda s: s.get("phase") in ("Baking", "Deployed"), 90, "first released")
    slow = app_repo.commit_revision(Health.UNHEALTHY)  # its candidate waits the whole startup timeout
    cluster.apply(deployment("web", app_repo, port, healthCheck={"startupTimeoutSeconds": 8},
                             container={"env": [{"name": "GEN", "value": "2"}]}))
    cluster.wait_status("web", lambda s: s.get("phase") == "Deploying", 60, "the slow rollout under way")
    good = app_repo.commit_revision(body="revision 3\n")
    cluster.apply(deployment("web", app_repo, port, healthCheck={"startupTimeoutSeconds": 8},
                             container={"env": [{"name": "GEN", "value": "3"}]}))
    status = cluster.wait_status("web", lambda s: (s.get("revision") or {}).get("commit") == good
                                 and s.get("phase") in ("Baking", "Deployed"), 120, "the newest spec released")
    assert status["observedGeneration"] == cluster.get("web")["metadata"]["generation"]
    assert http_get(port) == (200, "revision 3\n")
    assert all(f["commit"] != good for f in status.get("failedRevisions", []))
    assert slow != good
