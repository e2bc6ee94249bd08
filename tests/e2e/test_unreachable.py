"""A host whose sshd is gone: Ready=False TargetUnreachable, no revert, ticks back off, and recovery by itself.

The host is a private sshd of this test. "Gone" means the listener and every session process it forked, as after a
crash or a reboot. While it is gone a recorder holds its port, accepts each connection attempt and closes it at once
(no SSH spoken), so the test sees when the operator tries again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dm import Cluster, Operator, deployment, http_get, ready, wait_for

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import AppRepo
from world.dirs import private_dir
from world.ports import free_port
from world.sshd import Sshd

pytestmark = pytest.mark.e2e


class AttemptRecorder:
    """Listens on a port, records when each connection arrives and closes it straight away."""

    def __init__(self, port: int) -> None:
        self.attempts: list[float] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.attempts.append(time.monotonic())
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                ppid = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def take_down(server: Sshd) -> None:
    """Stop sshd and the sessions it forked (the operator's kept connection among them)."""
    sessions = descendants(server.pid)
    server.stop()
    for pid in sessions:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def host(world_root: Path, docker_engine: DockerEngine, namespace: str) -> Iterator[dict[str, Any]]:
    directory = private_dir(world_root, f"sshd-{namespace}")
    box: dict[str, Any] = {"server": Sshd.start(directory, docker_host=docker_engine.host), "dir": directory}
    yield box
    take_down(box["server"])


def ssh_deployment(name: str, repo: AppRepo, port: int, sshd: Sshd) -> dict[str, Any]:
    return deployment(name, repo, port, rollback={"bakeSeconds": 0}, healthCheck={"failureThreshold": 2},
                      target={"transport": "ssh", "ssh": {
                          "host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
                          "keySecretRef": {"name": "host-ssh", "key": "id"},
                          "knownHostsSecretRef": {"name": "host-ssh", "key": "known_hosts"}}})


def test_an_unreachable_host_is_reported_backed_off_never_reverted_and_recovered(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, host: dict[str, Any],
        docker_engine: DockerEngine) -> None:
    server: Sshd = host["server"]
    cluster.run("create", "secret", "generic", "host-ssh", f"--from-file=id={server.key_path}",
                f"--from-file=known_hosts={server.known_hosts_path}")
    port = free_port()
    cluster.apply(ssh_deployment("web", app_repo, port, server))
    first = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 60, "first revision deployed")
    # A second revision, in a bake window long enough for the whole outage: failures during a bake revert,
    # unless they are the transport's.
    second = app_repo.commit_revision(body="second\n")
    cluster.run("patch", "dmd", "web", "--type", "merge", "-p", '{"spec": {"rollback": {"bakeSeconds": 15}}}')
    baking = cluster.wait_status("web", lambda s: s.get("phase") == "Baking"
                                 and s["revision"]["commit"] == second, 60, "second revision baking")
    assert baking["lastGood"]["id"] == first["revision"]["id"]

    take_down(server)
    recorder = AttemptRecorder(server.port)
    try:
        down = cluster.wait_status("web", lambda s: ready(s) == "False/TargetUnreachable", 10,
                                   "Ready=False TargetUnreachable")
        assert down["revision"]["commit"] == second
        wait_for(lambda: len(recorder.attempts) >= 3, 30, "three connection attempts")
    finally:
        recorder.close()
    gaps = [b - a for a, b in zip(recorder.attempts, recorder.attempts[1:], strict=False)]
    # periodSeconds is 1: while the host is away the attempts come ever further apart (2, 4, 8 … s).
    assert gaps[0] >= 1.5 and gaps[1] >= 1.5 * gaps[0], f"no backoff between attempts: {gaps}"
    during = cluster.status("web")
    assert during["revision"]["commit"] == second and during.get("failedRevisions", []) == []

    host["server"] = Sshd.start(host["dir"], docker_host=docker_engine.host, port=server.port)
    status = cluster.wait_status("web", lambda s: (ready(s) or "").startswith("True/"), 30, "Ready again")
    assert status["revision"]["commit"] == second
    status = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 30, "the bake finished")
    assert status["lastGood"]["commit"] == second
    assert status.get("failedRevisions", []) == []
    assert http_get(port) == (200, "second\n")


def test_an_unknown_host_key_stalls_until_the_known_hosts_secret_is_fixed(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, sshd: Sshd, tmp_path: Path) -> None:
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    algorithm, material = other.with_suffix(".pub").read_text().split()[:2]
    wrong = f"[127.0.0.1]:{sshd.port} {algorithm} {material}\n"
    cluster.run("create", "secret", "generic", "host-ssh", f"--from-file=id={sshd.key_path}",
                f"--from-literal=known_hosts={wrong}")
    port = free_port()
    cluster.apply(ssh_deployment("web", app_repo, port, sshd))

    status = cluster.wait_status("web", lambda s: ready(s) == "False/HostKeyRejected", 60, "Ready=False HostKeyRejected")
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and "known_hosts Secret does not list" in stalled["message"]
    assert "Reconciling" not in {c["type"] for c in status["conditions"]}

    fixed = cluster.run("create", "secret", "generic", "host-ssh", f"--from-file=id={sshd.key_path}",
                        f"--from-file=known_hosts={sshd.known_hosts_path}", "--dry-run=client", "-o", "yaml").stdout
    cluster.apply(fixed)  # the Secret change wakes the Deployment: no timer, no annotation
    status = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 60, "deployed once the key is pinned")
    assert ready(status) == "True/Deployed" and http_get(port)[0] == 200
