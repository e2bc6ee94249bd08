"""The operator killed (SIGKILL) at each step of a rollout and started again converges: one container, the right
revision, a true status.

One Deployment rolls out three revisions; the operator dies during a different step of each:
- source: inside `git ls-remote` (a `git` first on the operator's PATH holds while a file exists);
- build: while the host runs `docker build` (the revision's Dockerfile has a slow step);
- after the release, before its status is written (the API server holds that status write until the kill).
And over each transport (local, ssh, ssm), during the release: while the detached host job waits for a
slow-starting candidate (the job must finish without us, and through SSM the restarted operator removes what the
killed one left in Parameter Store).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dm import Cluster, Operator, docker, http_get, leave_no_trace, ready, wait_for
from dm import deployment as deployment_of
from kmock._internal.rendering import Request, Response
from targets import Target, operator_env_fixture, over, ssm_leftovers, target_fixture, transport_env_fixture, transport_fixture  # noqa: F401
from test_secrets import ENV_NAME, SECRET, container_env, secret_manifest

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import DEFAULT_PORT, DOCKERFILE, START_SCRIPT, AppRepo
from world.dirs import private_dir
from world.kube import Kube
from world.ports import free_port

pytestmark = pytest.mark.e2e

GIT_WRAPPER = """#!/bin/sh
# Logs each git call of the operator; holds it while {hold} exists; then runs the real git.
echo "$*" >> {log}
while [ -e {hold} ]; do sleep 0.05; done
exec {git} "$@"
"""
SLOW_START = "/bin/busybox rm -f /www/health\n( /bin/busybox sleep {delay}; echo ok > /www/health ) &\n"


class GitGate:
    """The files of the git wrapper: its call log and the hold switch."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.log = directory / "calls.log"
        self.hold = directory / "hold"

    def calls(self, subcommand: str) -> int:
        return self.log.read_text().count(subcommand) if self.log.exists() else 0


@pytest.fixture
def gate(world_root: Path, namespace: str) -> GitGate:
    return GitGate(private_dir(world_root, f"git-{namespace}", mode=0o755))


@pytest.fixture
def crashable(kube: Kube, docker_engine: DockerEngine, namespace: str, world_root: Path,
              gate: GitGate) -> Iterator[Operator]:
    """The operator with the gated `git` first on its PATH."""
    real_git = subprocess.run(["which", "git"], capture_output=True, text=True, check=True).stdout.strip()
    wrapper = gate.dir / "git"
    wrapper.write_text(GIT_WRAPPER.format(log=gate.log, hold=gate.hold, git=real_git))
    wrapper.chmod(0o755)
    env = {**docker_engine.env, "PATH": f"{gate.dir}:{os.environ['PATH']}"}
    op = Operator(kubeconfig=kube.kubeconfig, namespace=namespace,
                  workdir=private_dir(world_root, f"operator-{namespace}", mode=0o755), env=env)
    op.start()
    yield op
    gate.hold.unlink(missing_ok=True)
    op.kill()
    leave_no_trace(op, docker_engine, namespace)


def deployment(name: str, repo: AppRepo, port: int, target: Target | None = None, **spec: Any) -> dict[str, Any]:
    """No bake; on `target` (default: local), probed as often as it allows."""
    return deployment_of(name, repo, port, target=target.spec if target else {"transport": "local"},
                         healthCheck={"startupTimeoutSeconds": 20, "periodSeconds": target.period_s if target else 1},
                         rollback={"bakeSeconds": 0}, **spec)


def commit_slow_build(repo: AppRepo, body: str) -> str:
    repo.commit_revision(body=body)
    # After the unique www layer, so no earlier build has this step cached.
    repo.write_file("Dockerfile", DOCKERFILE.replace("USER", 'RUN ["/bin/busybox", "sleep", "5"]\nUSER', 1))
    return repo.commit_all(f"{body.strip()}: slow build")


def commit_slow_start(repo: AppRepo, body: str, delay: int = 3) -> str:
    repo.commit_revision(body=body)
    repo.write_file("Dockerfile", DOCKERFILE)
    repo.write_file("start.sh", START_SCRIPT.format(comment="slow start", degrade=SLOW_START.format(delay=delay),
                                                     port=DEFAULT_PORT))
    return repo.commit_all(f"{body.strip()}: healthy after {delay} s")


def commit_plain(repo: AppRepo, body: str) -> str:
    repo.commit_revision(body=body)
    repo.write_file("Dockerfile", DOCKERFILE)
    return repo.commit_all(body.strip())


class StatusWriteHold:
    """An API server reaction that holds the status write recording `commit` as the running revision until the
    writer is dead, then fails it, so that write never lands."""

    def __init__(self, kube: Kube, namespace: str, name: str, commit: str) -> None:
        self.held = threading.Event()
        self.writer_dead = threading.Event()
        self._commit = commit
        self._criteria = f"patch /apis/deploymind.io/v1alpha1/namespaces/{namespace}/deployments/{name}/status"
        kube.api.call(self._arm)

    def _arm(self, emulator: Any) -> None:
        # A kmock reaction that passes a request on (returns None) is used up: arm it again until it has held
        # its write.
        emulator[self._criteria] << functools.partial(self._react, emulator)

    async def _react(self, emulator: Any, request: Request) -> Response | None:
        if self.held.is_set():
            return None  # done: a reaction that passes a request on is not asked again
        data = request.data if isinstance(request.data, dict) else {}
        revision = (data.get("status") or {}).get("revision") or {}
        if revision.get("commit") != self._commit:
            self._arm(emulator)
            return None  # on to the emulator
        self.held.set()
        for _ in range(600):
            if self.writer_dead.is_set():
                break
            await asyncio.sleep(0.05)
        return Response(status=503, payload={"kind": "Status", "status": "Failure", "code": 503})


class Host:
    """What the test reads of the host: the app's containers and release files."""

    def __init__(self, engine: DockerEngine, host_dir: Path, uid: str) -> None:
        self.engine = engine
        self.uid = uid
        self.dir = host_dir / uid[:8]

    def containers(self) -> list[dict[str, str]]:
        fmt = '{"name":{{json .Names}},"state":{{json .State}},"image":{{json .Image}},' \
              '"revision":{{json (.Label "deploymind.io/revision")}},"id":{{json .ID}}}'
        out = docker(self.engine, "ps", "-a", "--no-trunc", "--filter", f"label=deploymind.io/uid={self.uid}",
                     "--format", fmt)
        return [json.loads(line) for line in out.splitlines()]

    def stable_id(self) -> str:
        return docker(self.engine, "container", "inspect", "--format", "{{.Id}}", f"dm-{self.uid[:8]}").strip()

    def build_trees(self) -> list[Path]:
        return list((self.dir / "builds").glob("*/tree"))

    def release_file(self, revision: str, name: str) -> Path:
        return self.dir / "releases" / revision / name


def assert_converged(cluster: Cluster, host: Host, port: int, commit: str, body: str,
                     token: str | None = None) -> dict[str, Any]:
    """Exactly one container, `dm-<uid8>`, runs the revision of `commit`, and the status says so, truthfully
    (the redeploy request `token` included)."""
    generation = cluster.get("web")["metadata"]["generation"]
    status = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed" and s.get("revision", {}).get(
        "commit") == commit and s.get("observedGeneration") == generation, 90, f"converged on {commit[:12]}")
    assert ready(status) == "True/Deployed"
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert all(conditions[t] == "True" for t in ("SourceReady", "Built", "Released", "Healthy")), conditions
    assert "Reconciling" not in conditions and "Stalled" not in conditions
    assert status.get("failedRevisions", []) == []
    assert status.get("lastHandledReconcileAt") == token

    def one_container() -> dict[str, str] | None:
        found = host.containers()
        return found[0] if len(found) == 1 else None

    only = wait_for(one_container, 30, "one container left")
    assert only["name"] == f"dm-{host.uid[:8]}" and only["state"] == "running", only
    assert only["revision"] == status["revision"]["id"] and only["image"] == status["revision"]["image"], only
    assert http_get(port) == (200, body)
    return status


def test_an_operator_killed_at_any_step_of_a_rollout_converges_after_a_restart(
        cluster: Cluster, crashable: Operator, app_repo: AppRepo, gate: GitGate, docker_engine: DockerEngine,
        kube: Kube) -> None:
    op = crashable
    port = free_port()
    cluster.apply(deployment("web", app_repo, port))
    uid = cluster.get("web")["metadata"]["uid"]
    host = Host(docker_engine, op.host_dir, uid)
    assert_converged(cluster, host, port, app_repo.head(), "revision 1\n")
    tag = uuid.uuid4().hex[:8]

    # 1. During source: the operator waits for `git ls-remote`.
    body = f"source {tag}\n"
    commit = commit_plain(app_repo, body)
    gate.hold.touch()
    calls = gate.calls("ls-remote")
    cluster.annotate("web", "deploymind.io/requested-at", "during-source")
    wait_for(lambda: gate.calls("ls-remote") > calls, 30, "git ls-remote started")
    op.kill()
    gate.hold.unlink()
    op.start()
    assert_converged(cluster, host, port, commit, body, "during-source")

    # 2. During build: the host runs `docker build`, slowly.
    body = f"build {tag}\n"
    commit = commit_slow_build(app_repo, body)
    cluster.annotate("web", "deploymind.io/requested-at", "during-build")
    wait_for(lambda: cluster.status("web").get("phase") == "Building" and host.build_trees(), 30,
             "the build running on the host")
    op.kill()
    op.start()
    assert_converged(cluster, host, port, commit, body, "during-build")

    # 3. After the release, before the status write that records it.
    body = f"after {tag}\n"
    commit = commit_plain(app_repo, body)
    hold = StatusWriteHold(kube, cluster.namespace, "web", commit)
    cluster.annotate("web", "deploymind.io/requested-at", "after-release")
    wait_for(hold.held.is_set, 60, "the status write of the released revision")
    op.kill()
    hold.writer_dead.set()
    assert cluster.status("web")["revision"]["commit"] != commit, "the held status write landed"
    assert http_get(port) == (200, body)  # the host did switch
    switched = host.stable_id()
    op.start()
    assert_converged(cluster, host, port, commit, body, "after-release")
    assert host.stable_id() == switched


@over("local", "ssh", "ssm")
def test_an_operator_killed_while_the_host_releases_converges_after_a_restart(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, target: Target, docker_engine: DockerEngine,
        namespace: str) -> None:
    value = f"s3cret-{uuid.uuid4().hex}"
    cluster.run("create", "-f", "-", input=secret_manifest(value))
    port = free_port()
    env = [{"name": ENV_NAME, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "token"}}}]
    cluster.apply(deployment("web", app_repo, port, target, container={"port": port, "env": env}))
    host = Host(docker_engine, operator.host_dir, cluster.get("web")["metadata"]["uid"])
    assert_converged(cluster, host, port, app_repo.head(), "revision 1\n")

    # The detached host job waits for a slow candidate and must finish on its own.
    body = "released while the operator was down\n"
    commit = commit_slow_start(app_repo, body)
    cluster.annotate("web", "deploymind.io/requested-at", "during-release")
    revision = wait_for(lambda: (s := cluster.status("web")).get("desiredRevision", "").startswith(commit[:12])
                        and s["desiredRevision"], 30, "the new revision resolved")
    wait_for(lambda: host.release_file(revision, "job.sh").exists(), 30, "the release job started on the host")
    operator.kill()
    if target.ssm:
        # The killed call never removed the env file's copy it had put in Parameter Store.
        left = ssm_leftovers(target, namespace, [value])
        assert left and all(item.startswith("parameter ") for item in left), left
    result_file = host.release_file(revision, "result.json")
    wait_for(result_file.exists, 60, "the orphaned release job's result")
    job = json.loads(result_file.read_text())
    assert job["result"] == "Released", job
    operator.start()
    assert_converged(cluster, host, port, commit, body, "during-release")
    # The restarted operator read the job's result instead of releasing again.
    assert host.stable_id() == job["container_id"]
    assert container_env(docker_engine, f"dm-{host.uid[:8]}")[ENV_NAME] == value
    assert ssm_leftovers(target, namespace, [value]) == []
