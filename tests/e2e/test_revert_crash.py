"""A revert is never undone: the operator killed (SIGKILL) at each step of a revert or of a drift repair, or the host's
sshd gone in the middle of one, converges on the revert target serving, the bad revision quarantined and never
promoted (bakeSeconds > 0 throughout).

The revert target starts slowly (healthy 3 s after it starts), so its host job lasts long enough to kill the operator
in the middle of it; the API server holds chosen requests until the operator is dead (and then fails them):
- after the revert's intent is in status, before the host is asked (the host Lease request is held);
- while the host job runs;
- after the host job, before the status write that records it.
The host's sshd is also taken down in the middle of a revert and of a repair.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chart_rbac import chart_operator_kubeconfig
from dm import Cluster, Operator, deployment, docker, http_get, leave_no_trace, ready, wait_for
from kmock._internal.rendering import Request, Response
from test_crash_recovery import Host, commit_slow_start
from test_unreachable import take_down

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import AppRepo, Health, fail_health
from world.dirs import private_dir
from world.kube import Kube
from world.ports import free_port
from world.sshd import Sshd

pytestmark = pytest.mark.e2e

HEALTH = {"periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 2, "startupTimeoutSeconds": 20}
GOOD = "good\n"


class Hold:
    """An API server reaction holding the first request on `criteria` that `wanted` accepts (once `armed` is set)
    until `dead` is set, then failing it (503) so it never takes effect, or, with `pass_on`, letting it through."""

    def __init__(self, kube: Kube, criteria: str | re.Pattern[str], wanted: Callable[[Request], bool] = lambda r: True, *,
                 armed: threading.Event | None = None, pass_on: bool = False) -> None:
        self.held = threading.Event()
        self.dead = threading.Event()
        self._criteria = criteria
        self._wanted = wanted
        self._armed = armed
        self._pass_on = pass_on
        kube.api.call(self._arm)

    def _arm(self, emulator: Any) -> None:
        # A kmock reaction that passes a request on is used up: arm it again until it has held one.
        emulator[self._criteria] << functools.partial(self._react, emulator)

    async def _react(self, emulator: Any, request: Request) -> Response | None:
        if self.held.is_set():
            return None
        if (self._armed is not None and not self._armed.is_set()) or not self._wanted(request):
            self._arm(emulator)
            return None
        self.held.set()
        for _ in range(600):
            if self.dead.is_set():
                break
            await asyncio.sleep(0.05)
        if self._pass_on:
            return None
        return Response(status=503, payload={"kind": "Status", "status": "Failure", "code": 503})


def healthy(status: dict[str, Any]) -> str | None:
    cond = next((c for c in status.get("conditions", []) if c["type"] == "Healthy"), None)
    return f"{cond['status']}/{cond['reason']}" if cond else None


def lease_requests(namespace: str) -> re.Pattern[str]:
    """Every request on the Leases of the test's namespace (the host Leases live there)."""
    return re.compile(rf"/apis/coordination\.k8s\.io/v1/namespaces/{namespace}/leases(/.*)?")


def status_patch(request: Request) -> dict[str, Any]:
    data = request.data if isinstance(request.data, dict) else {}
    return dict(data.get("status") or {})


class IntentWatch:
    """Sets `landed` when a status write carrying a revert's intent reaches the API server (it goes through)."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.landed = threading.Event()
        self._criteria = f"patch /apis/deploymind.io/v1alpha1/namespaces/{namespace}/deployments/web/status"
        kube.api.call(self._arm)

    def _arm(self, emulator: Any) -> None:
        emulator[self._criteria] << functools.partial(self._react, emulator)

    async def _react(self, emulator: Any, request: Request) -> None:
        if status_patch(request).get("revert"):
            self.landed.set()
        else:
            self._arm(emulator)


@pytest.fixture
def crashable(kube: Kube, docker_engine: DockerEngine, namespace: str, world_root: Path) -> Iterator[Operator]:
    op = Operator(kubeconfig=chart_operator_kubeconfig(kube, namespace), namespace=namespace,
                  workdir=private_dir(world_root, f"operator-{namespace}", mode=0o755), env=dict(docker_engine.env))
    op.start()
    yield op
    op.kill()
    leave_no_trace(op, docker_engine, namespace)


class Scene:
    """One Deployment whose good revision starts slowly; each round releases a new degrading revision and fails it."""

    def __init__(self, cluster: Cluster, repo: AppRepo, engine: DockerEngine, host_dir: Path,
                 target: dict[str, Any] | None = None) -> None:
        self.cluster, self.repo, self.port = cluster, repo, free_port()
        extra = {"target": target} if target else {}
        self.good_commit = commit_slow_start(repo, GOOD)
        cluster.apply(deployment("web", repo, self.port, healthCheck=HEALTH, rollback={"bakeSeconds": 1}, **extra))
        self.good = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "good baked")["revision"]
        # A long bake for the bad revisions to fail in; editing rollback never redeploys.
        cluster.apply(deployment("web", repo, self.port, healthCheck=HEALTH, rollback={"bakeSeconds": 600}, **extra))
        cluster.wait_status("web", lambda s: s.get("observedGeneration") == 2, 30, "the long bake observed")
        self.host = Host(engine, host_dir, cluster.get("web")["metadata"]["uid"])
        self.bad: list[str] = []

    def release_bad(self) -> str:
        bad = self.repo.commit_revision(Health.DEGRADING)
        token = uuid.uuid4().hex[:8]
        self.cluster.annotate("web", "deploymind.io/requested-at", token)
        self.cluster.wait_status("web", lambda s: s["revision"]["commit"] == bad and s.get("phase") == "Baking", 60,
                                 "the degrading revision released")
        self.bad.append(bad)
        return bad

    def converged(self) -> dict[str, Any]:
        """The good revision serves, exactly as it ran; every bad one is quarantined, none promoted."""
        status = self.cluster.wait_status(
            "web", lambda s: s.get("phase") == "RolledBack" and s["revision"]["id"] == self.good["id"]
            and "revert" not in s, 90, "reverted to the good revision")
        assert ready(status) == "False/RolledBack"
        assert status["lastGood"]["id"] == self.good["id"]
        assert {f["commit"] for f in status["failedRevisions"]} == set(self.bad)
        assert all(f["reason"] == "RolledBack" for f in status["failedRevisions"])
        stable = f"dm-{self.host.uid[:8]}"
        only = wait_for(lambda: (c := self.host.containers()) and len(c) == 1 and c[0]["name"] == stable
                        and c[0]["state"] == "running" and c[0], 60, "one container left, the stable one, running")
        assert only["revision"] == self.good["id"], only
        wait_for(lambda: http_get(self.port, timeout=0.5) == (200, GOOD), 30, "the good revision answering")
        return status


def test_an_operator_killed_at_each_step_of_a_revert_converges_on_the_revert_target(
        cluster: Cluster, crashable: Operator, app_repo: AppRepo, docker_engine: DockerEngine, kube: Kube) -> None:
    op = crashable
    scene = Scene(cluster, app_repo, docker_engine, op.host_dir)
    leases = lease_requests(cluster.namespace)
    deployment_status = f"patch /apis/deploymind.io/v1alpha1/namespaces/{cluster.namespace}/deployments/web/status"

    # 1. The intent is written; the operator dies before the host is asked (its host Lease request is held).
    scene.release_bad()
    intent = IntentWatch(kube, cluster.namespace)
    hold = Hold(kube, leases, armed=intent.landed)
    fail_health(scene.port)
    wait_for(hold.held.is_set, 30, "the revert's host Lease request")
    assert cluster.status("web")["revert"]["to"]["id"] == scene.good["id"]
    op.kill()
    hold.dead.set()
    op.start()
    scene.converged()

    # 2. The host job runs (the slow good revision is starting) when the operator dies.
    scene.release_bad()
    fail_health(scene.port)
    result = scene.host.release_file(scene.good["id"], "result.json")
    wait_for(lambda: "revert" in cluster.status("web") and not result.exists(), 30, "the revert's host job running")
    op.kill()
    op.start()
    scene.converged()

    # 3. The host switched back; the operator dies before the status write that records it.
    scene.release_bad()
    hold = Hold(kube, deployment_status, lambda request: "revert" in status_patch(request)
                and status_patch(request)["revert"] is None)
    fail_health(scene.port)
    wait_for(hold.held.is_set, 60, "the status write recording the revert")
    op.kill()
    hold.dead.set()
    assert cluster.status("web")["revert"]["fromRevision"].startswith(scene.bad[-1][:12]), "the held write landed"
    wait_for(lambda: http_get(scene.port, timeout=0.5) == (200, GOOD), 30, "the host switched back")
    op.start()
    scene.converged()


def test_an_operator_killed_during_a_drift_repair_converges_on_the_running_revision(
        cluster: Cluster, crashable: Operator, app_repo: AppRepo, docker_engine: DockerEngine) -> None:
    op = crashable
    scene = Scene(cluster, app_repo, docker_engine, op.host_dir)
    scene.release_bad()
    fail_health(scene.port)
    scene.converged()
    # Drift: the serving container goes away; the repair's host job (the slow start) is under way when we kill.
    docker(docker_engine, "rm", "-f", f"dm-{scene.host.uid[:8]}")
    result = scene.host.release_file(scene.good["id"], "result.json")
    wait_for(lambda: not result.exists(), 30, "the repair's host job running")
    op.kill()
    op.start()
    status = scene.converged()
    assert status["revision"]["id"] == scene.good["id"]


def test_a_revert_or_a_repair_whose_host_goes_away_finishes_when_the_host_is_back(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, docker_engine: DockerEngine, kube: Kube,
        world_root: Path, namespace: str) -> None:
    directory = private_dir(world_root, f"sshd-{namespace}")
    server = Sshd.start(directory, docker_host=docker_engine.host)
    try:
        cluster.run("create", "secret", "generic", "host-key", f"--from-file=key={server.key_path}")
        cluster.run("create", "secret", "generic", "host-known",
                    f"--from-file=known_hosts={server.known_hosts_path}")
        target = {"transport": "ssh", "ssh": {"host": "127.0.0.1", "port": server.port, "user": server.user,
                                              "keySecretRef": {"name": "host-key", "key": "key"},
                                              "knownHostsSecretRef": {"name": "host-known", "key": "known_hosts"}}}
        scene = Scene(cluster, app_repo, docker_engine, operator.host_dir, target=target)
        scene.release_bad()
        # The intent is in status and the revert waits for its host Lease: then sshd goes away.
        intent = IntentWatch(kube, cluster.namespace)
        hold = Hold(kube, lease_requests(cluster.namespace), armed=intent.landed, pass_on=True)
        fail_health(scene.port)
        wait_for(hold.held.is_set, 30, "the revert's host Lease request")
        take_down(server)
        hold.dead.set()
        waiting = cluster.wait_status("web", lambda s: ready(s) in ("False/TargetUnreachable",
                                                                    "False/TransportTimeout"), 60,
                                      "the revert waiting for its host")
        assert waiting["revert"]["to"]["id"] == scene.good["id"]
        assert waiting["revision"]["commit"] == scene.bad[-1]  # what still runs, truthfully
        server = Sshd.start(directory, docker_host=docker_engine.host, port=server.port)
        scene.converged()

        # A drift repair whose host goes away while its job starts the (slow) revision again.
        docker(docker_engine, "rm", "-f", f"dm-{scene.host.uid[:8]}")
        result = scene.host.release_file(scene.good["id"], "result.json")
        wait_for(lambda: not result.exists(), 30, "the repair's host job running")
        take_down(server)
        # Still Stalled RolledBack (a quarantine does not end because the host is away); Healthy says why it waits.
        away = cluster.wait_status("web", lambda s: healthy(s) in ("Unknown/TargetUnreachable",
                                                                   "Unknown/TransportTimeout"), 60,
                                   "the repair waiting for its host")
        assert ready(away) == "False/RolledBack"
        server = Sshd.start(directory, docker_host=docker_engine.host, port=server.port)
        scene.converged()
    finally:
        take_down(server)
