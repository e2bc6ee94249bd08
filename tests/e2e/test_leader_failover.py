"""Two operator processes with --leader-election on one namespace: only the leader reconciles; killed mid-rollout,
its standby takes over within the Lease's duration and finishes the rollout; stopped with SIGTERM, it hands the
Lease over at once.

The replicas share what two pods of one Deployment share: the namespace they watch, the operator namespace (the
leader Lease and the revision key) and the host (its release files and lock); each names itself with POD_NAME.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest
from dm import Cluster, Operator, deployment, docker, http_get, leave_no_trace, ready, wait_for

from deploymind.controller.kube import load_api_client
from deploymind.controller.leader import LEASE_NAME
from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import DEFAULT_PORT, DOCKERFILE, START_SCRIPT, AppRepo
from world.dirs import private_dir
from world.kube import Kube
from world.ports import free_port

pytestmark = pytest.mark.e2e

LEASE_S = 4  # the standby polls every 0.67 s, the leader renews every 1.33 s
# The app's /health answers only this long after it started: the release job is still waiting for it when the
# leader dies.
SLOW_START = "/bin/busybox rm -f /www/health\n( /bin/busybox sleep 3; echo ok > /www/health ) &\n"


def replica(kube: Kube, engine: DockerEngine, namespace: str, world_root: Path, name: str,
            host_dir: Path | None = None) -> Operator:
    args = ["--leader-election", "--leader-lease-seconds", str(LEASE_S)]
    if host_dir is not None:
        args += ["--host-dir", str(host_dir)]  # the last --host-dir counts
    return Operator(kubeconfig=kube.kubeconfig, namespace=namespace,
                    workdir=private_dir(world_root, f"{name}-{namespace}", mode=0o755),
                    env={**engine.env, "POD_NAME": name, "POD_NAMESPACE": namespace}, extra_args=args)


def healthz(op: Operator) -> dict[str, Any]:
    status, body = http_get(op.http_port, "/healthz")
    assert status == 200, (status, body)
    answer: dict[str, Any] = json.loads(body)
    return answer


def leader_metric(op: Operator) -> float:
    _, body = http_get(op.http_port, "/metrics")
    return next(float(line.split()[1]) for line in body.splitlines() if line.startswith("deploymind_leader "))


@pytest.fixture
def replicas(kube: Kube, docker_engine: DockerEngine, namespace: str,
             world_root: Path) -> Iterator[tuple[Operator, Operator]]:
    """Replica a, leading, and replica b, standing by (started after a leads, so which one leads is known)."""
    a = replica(kube, docker_engine, namespace, world_root, "deploymind-a").start()
    started = [a]
    try:
        wait_for(lambda: healthz(a)["leader"], 20, "replica a leading")
        b = replica(kube, docker_engine, namespace, world_root, "deploymind-b", host_dir=a.host_dir).start()
        started.append(b)
        yield a, b
    finally:
        for op in started:
            op.stop()
            leave_no_trace(op, docker_engine, namespace)


def writers(kube: Kube, namespace: str) -> set[str]:
    """The user agents of every status write and Event in `namespace` (each replica's names its POD_NAME)."""
    audit = kube.emulator.audit
    writes = audit.find("patch", "deployments.deploymind.io", namespace=namespace, subresource="status")
    writes += audit.find("create", "events", namespace=namespace)
    return {r.user_agent for r in writes}


def commit_slow_start(repo: AppRepo, body: str) -> str:
    repo.commit_revision(body=body)
    repo.write_file("Dockerfile", DOCKERFILE)
    repo.write_file("start.sh", START_SCRIPT.format(comment="slow start", degrade=SLOW_START, port=DEFAULT_PORT))
    return repo.commit_all(f"{body.strip()}: healthy after 3 s")


def containers(engine: DockerEngine, uid: str) -> list[dict[str, str]]:
    fmt = '{"name":{{json .Names}},"state":{{json .State}},"revision":{{json (.Label "deploymind.io/revision")}}}'
    out = docker(engine, "ps", "-a", "--filter", f"label=deploymind.io/uid={uid}", "--format", fmt)
    return [json.loads(line) for line in out.splitlines()]


def test_only_the_leader_reconciles_and_its_standby_finishes_the_rollout_it_was_killed_in(
        cluster: Cluster, replicas: tuple[Operator, Operator], app_repo: AppRepo, docker_engine: DockerEngine,
        kube: Kube) -> None:
    a, b = replicas
    port = free_port()
    cluster.apply(deployment("web", app_repo, port, healthCheck={"startupTimeoutSeconds": 20},
                             rollback={"bakeSeconds": 0}))
    uid = cluster.get("web")["metadata"]["uid"]
    cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "the first revision deployed")
    assert healthz(a) == {"status": "ok", "leader": True, "identity": "deploymind-a", "objects": 1}
    assert healthz(b) == {"status": "ok", "leader": False, "identity": "deploymind-b", "objects": 0}
    assert (leader_metric(a), leader_metric(b)) == (1, 0)
    assert writers(kube, cluster.namespace) == {"deploymind (deploymind-a)"}

    body = "finished by the standby\n"
    commit = commit_slow_start(app_repo, body)
    cluster.annotate("web", "deploymind.io/requested-at", "during-release")
    revision = wait_for(lambda: (s := cluster.status("web")).get("desiredRevision", "").startswith(commit[:12])
                        and s["desiredRevision"], 30, "the new revision resolved")
    job = a.host_dir / uid[:8] / "releases" / revision / "job.sh"
    wait_for(job.exists, 30, "the release job started on the host")
    a.kill()
    killed = time.monotonic()
    wait_for(lambda: healthz(b)["leader"], LEASE_S + 5, "replica b leading")
    assert time.monotonic() - killed <= LEASE_S + 1

    generation = cluster.get("web")["metadata"]["generation"]
    status = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed" and s["revision"]["commit"] == commit
                                 and s.get("lastHandledReconcileAt") == "during-release", 90, "the rollout finished")
    assert ready(status) == "True/Deployed" and status["observedGeneration"] == generation
    assert "Reconciling" not in {c["type"] for c in status["conditions"]}
    assert containers(docker_engine, uid) == [
        {"name": f"dm-{uid[:8]}", "state": "running", "revision": status["revision"]["id"]}]
    assert http_get(port) == (200, body)
    assert writers(kube, cluster.namespace) == {"deploymind (deploymind-a)", "deploymind (deploymind-b)"}
    assert healthz(b)["objects"] == 1


def test_a_leader_stopped_with_sigterm_hands_the_lease_over_at_once(
        replicas: tuple[Operator, Operator], kube: Kube, namespace: str) -> None:
    a, b = replicas
    a.stop()
    exited = time.monotonic()
    assert a.proc is not None and a.proc.returncode == 0, a.logs()[-2000:]
    wait_for(lambda: healthz(b)["leader"], LEASE_S, "replica b leading")
    # Without the release, b would wait for the Lease to expire: at least 2.7 s after a's last renewal.
    assert time.monotonic() - exited < LEASE_S / 2
    lease = k8s.CoordinationV1Api(load_api_client(str(kube.kubeconfig))).read_namespaced_lease(LEASE_NAME, namespace)
    assert (lease.spec.holder_identity, lease.spec.lease_transitions) == ("deploymind-b", 1)
