"""A health tick on an unchanged, healthy Deployment costs one round trip to the host and nothing else.

Each cost is counted outside the operator, where it lands: Git calls by a logging `git` first on the operator's
PATH, round trips by the host's sshd (LogLevel VERBOSE logs one "Starting session" per script), ticks by the app
itself (busybox httpd -v logs one line per request, and only the health tick asks the stable container), and
status writes by the API server's audit log.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chart_rbac import chart_operator_kubeconfig
from dm import Cluster, Operator, deployment, handled, http_get, leave_no_trace, wait_for

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import DEFAULT_PORT, START_SCRIPT, AppRepo
from world.dirs import private_dir
from world.kube import Kube
from world.ports import free_port, port_open
from world.sshd import SSHD, Sshd

pytestmark = pytest.mark.e2e

GIT_WRAPPER = """#!/bin/sh
# Logs each git call of the operator, then runs the real git.
echo "$*" >> {log}
exec {git} "$@"
"""


@dataclass
class VerboseSshd:
    """A private sshd (set up by world.sshd) restarted with LogLevel VERBOSE, which logs every session it starts."""

    server: Sshd
    log: Path
    proc: subprocess.Popen[bytes]

    @classmethod
    def start(cls, directory: Path, docker_host: str) -> VerboseSshd:
        server = Sshd.start(directory, docker_host=docker_host)
        server.stop()
        log = directory / "verbose.log"
        proc = subprocess.Popen([SSHD, "-D", "-f", str(directory / "sshd_config"), "-o", "LogLevel=VERBOSE",
                                 "-E", str(log)], start_new_session=True)
        wait_for(lambda: port_open(server.port), 15, "the verbose sshd")
        return cls(server, log, proc)

    def count(self, marker: str) -> int:
        return self.log.read_text(errors="replace").count(marker)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)


@pytest.fixture
def host(world_root: Path, docker_engine: DockerEngine, namespace: str) -> Iterator[VerboseSshd]:
    server = VerboseSshd.start(private_dir(world_root, f"sshd-{namespace}"), docker_engine.host)
    yield server
    server.stop()


@pytest.fixture
def git_log(world_root: Path, namespace: str) -> Path:
    return private_dir(world_root, f"git-{namespace}") / "calls.log"


@pytest.fixture
def traced_operator(kube: Kube, docker_engine: DockerEngine, namespace: str, world_root: Path,
                    git_log: Path) -> Iterator[Operator]:
    """The operator with a logging `git` first on its PATH."""
    bin_dir = private_dir(world_root, f"bin-{namespace}", mode=0o755)
    wrapper = bin_dir / "git"
    real_git = subprocess.run(["which", "git"], capture_output=True, text=True, check=True).stdout.strip()
    wrapper.write_text(GIT_WRAPPER.format(log=git_log, git=real_git))
    wrapper.chmod(0o755)
    env = {**docker_engine.env, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    op = Operator(kubeconfig=chart_operator_kubeconfig(kube, namespace), namespace=namespace,
                  workdir=private_dir(world_root, f"operator-{namespace}", mode=0o755), env=env)
    op.start()
    yield op
    op.kill()  # a clean shutdown is not what this test is about, and SIGTERM costs seconds
    leave_no_trace(op, docker_engine, namespace)


def ssh_deployment(name: str, repo: AppRepo, port: int, sshd: Sshd) -> dict[str, Any]:
    return deployment(name, repo, port, rollback={"bakeSeconds": 0}, healthCheck={"failureThreshold": 3},
                      target={"transport": "ssh", "ssh": {
                          "host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
                          "keySecretRef": {"name": "host-ssh", "key": "id"},
                          "knownHostsSecretRef": {"name": "host-ssh", "key": "known_hosts"}}})


def commit_verbose_app(repo: AppRepo) -> str:
    """A healthy revision whose httpd logs every request it answers."""
    script = START_SCRIPT.format(comment="logs each request", degrade="", port=DEFAULT_PORT)
    repo.write_file("start.sh", script.replace("httpd -f", "httpd -f -v"))
    return repo.commit_all("verbose httpd")


def probes(engine: DockerEngine, container: str) -> int:
    done = subprocess.run(["docker", "logs", container], capture_output=True, text=True,
                          env={**os.environ, **engine.env}, check=True)
    return (done.stdout + done.stderr).count("response:")


def test_a_health_tick_on_a_healthy_object_makes_one_round_trip_and_no_git_call(
        cluster: Cluster, traced_operator: Operator, app_repo: AppRepo, host: VerboseSshd, git_log: Path,
        docker_engine: DockerEngine, kube: Kube) -> None:
    commit_verbose_app(app_repo)
    cluster.run("create", "secret", "generic", "host-ssh", f"--from-file=id={host.server.key_path}",
                f"--from-file=known_hosts={host.server.known_hosts_path}")
    port = free_port()
    cluster.apply(ssh_deployment("web", app_repo, port, host.server))
    cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 60, "phase Deployed")
    assert http_get(port)[0] == 200
    stable = f"dm-{cluster.get('web')['metadata']['uid'][:8]}"
    assert git_log.read_text().count("ls-remote") >= 1, "the git wrapper saw no call: is it on the PATH?"
    # Let the first ticks after the release settle what they write.
    settled = probes(docker_engine, stable) + 2
    wait_for(lambda: probes(docker_engine, stable) >= settled, 15, "two health ticks after Deployed")

    def counts() -> tuple[int, int, int, int, int]:
        writes = kube.emulator.audit.find("patch", "deployments.deploymind.io", namespace=cluster.namespace,
                                          name="web")
        return (len(git_log.read_text().splitlines()), host.count("Starting session"), probes(docker_engine, stable),
                host.count("Accepted publickey"), len(writes))

    git0, sessions0, probes0, logins0, writes0 = counts()
    wait_for(lambda: probes(docker_engine, stable) >= probes0 + 6, 20, "six health ticks")
    git1, sessions1, probes1, logins1, writes1 = counts()
    ticks, round_trips = probes1 - probes0, sessions1 - sessions0
    assert git1 - git0 == 0, "a health tick called git"
    # A tick in flight at either end may be counted by one side only.
    assert abs(round_trips - ticks) <= 1, f"{round_trips} round trips for {ticks} health ticks"
    assert logins1 - logins0 == 0, "the ssh transport logged in again instead of keeping its connection"
    assert writes1 - writes0 == 0, "an unchanged, healthy object had its status or metadata written"

    # A redeploy request of the running revision: one round trip (the release answers Unchanged), no build and
    # no source tarball sent. Probes every 60 s keep ticks out of the count.
    generation = cluster.get("web")["metadata"]["generation"]
    cluster.run("patch", "dmd", "web", "--type", "merge", "-p", '{"spec": {"healthCheck": {"periodSeconds": 60}}}')
    cluster.wait_status("web", lambda s: s.get("observedGeneration") == generation + 1, 30,
                        "the slower probe period observed")
    sessions = host.count("Starting session")
    cluster.annotate("web", "deploymind.io/requested-at", "redeploy-1")
    status = cluster.wait_status("web", handled("redeploy-1"), 30, "the redeploy done")
    assert host.count("Starting session") - sessions == 1
    built = next(c for c in status["conditions"] if c["type"] == "Built")
    assert (built["reason"], built["status"]) == ("ImagePresent", "True") and "kept on the host" in built["message"]
