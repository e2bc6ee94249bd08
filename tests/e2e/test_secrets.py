"""A Secret-valued env var reaches the app's container and nothing else; rotating the Secret redeploys (over ssh and
ssm, and through SSM nothing is left in Parameter Store or S3, nor a value in SSM's command history).

"Nothing else" is checked where a value could leak: the object's status and Events, the operator's log and files,
the host's release files, every process command line on the host while releases run (the release script text
among them), the `docker inspect` output the operator reads, and the logs a failed candidate returns.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dm import Cluster, Operator, docker, http_get, ready, wait_for
from targets import Target, operator_env_fixture, over, ssm_leftovers, target_fixture, transport_env_fixture, transport_fixture  # noqa: F401

from deploymind.commands.docker import INSPECT_FORMAT, STATE_FORMAT
from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import DEFAULT_PORT, START_SCRIPT, AppRepo, Health
from world.ports import free_port

pytestmark = pytest.mark.e2e

SECRET = "app-secret"
ENV_NAME = "APP_TOKEN"
# Printed by a revision that fails its health check: the returned logs must show it masked.
LEAK_LINE = 'echo "token is ${APP_TOKEN}"\n'


def deployment(name: str, repo: AppRepo, port: int, target: Target | None = None) -> dict[str, Any]:
    """On `target` (default: local), probed as often as it allows."""
    return {"apiVersion": "deploymind.io/v1alpha1", "kind": "Deployment", "metadata": {"name": name}, "spec": {
        "source": {"repo": repo.url, "ref": "main"},
        "target": target.spec if target else {"transport": "local"},
        "container": {"port": port, "env": [
            {"name": ENV_NAME, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "token"}}},
            {"name": "GREETING", "value": "hello"},
        ]},
        "healthCheck": {"path": "/health", "periodSeconds": target.period_s if target else 1, "timeoutSeconds": 1,
                        "failureThreshold": 3,
                        "startupTimeoutSeconds": 5},
        "rollback": {"auto": True, "bakeSeconds": 0},
    }}


def secret_manifest(value: str) -> str:
    # Through stdin, base64 in `data`, and create/replace rather than apply: the value never sits on a command
    # line of ours or in a last-applied annotation.
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}, "type": "Opaque",
                           "data": {"token": base64.b64encode(value.encode()).decode()}})


def new_value() -> str:
    return f"s3cret-{uuid.uuid4().hex}"


def container_env(engine: DockerEngine, container: str) -> dict[str, str]:
    lines = docker(engine, "exec", container, "/bin/busybox", "env").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def container_id(engine: DockerEngine, container: str) -> str:
    return docker(engine, "container", "inspect", "--format", "{{.Id}}", container).strip()


class CmdlineSampler:
    """Reads every process's command line on this host (the local transport's host) in a loop, in a thread."""

    def __init__(self, needle: bytes) -> None:
        self._needles = [needle]
        self.leaks: list[str] = []
        self.release_scripts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, needle: bytes) -> None:
        self._needles.append(needle)

    def __enter__(self) -> CmdlineSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        seen_scripts: set[int] = set()
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    cmdline = Path(entry.path, "cmdline").read_bytes()
                except OSError:
                    continue
                if b"write_job" in cmdline and int(entry.name) not in seen_scripts:
                    seen_scripts.add(int(entry.name))
                    self.release_scripts += 1
                if any(n in cmdline for n in self._needles):
                    self.leaks.append(f"pid {entry.name}: {cmdline[:200]!r}")
            self._stop.wait(0.01)


def files_containing(root: Path, needles: list[bytes]) -> list[str]:
    found: list[str] = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                found.extend(f"{path}" for n in needles if n in data)
        except OSError:
            continue
    return found


def leak_forms(value: str) -> list[bytes]:
    return [value.encode(), base64.b64encode(value.encode())]


@pytest.fixture
def secret_value(cluster: Cluster) -> Iterator[str]:
    value = new_value()
    cluster.run("create", "-f", "-", input=secret_manifest(value))
    yield value


def test_a_secret_env_value_reaches_the_container_and_nowhere_else(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, docker_engine: DockerEngine,
        secret_value: str) -> None:
    port = free_port()
    needles = leak_forms(secret_value)
    with CmdlineSampler(secret_value.encode()) as sampler:
        cluster.apply(deployment("web", app_repo, port))
        status = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 60, "phase Deployed")
        stable = f"dm-{cluster.get('web')['metadata']['uid'][:8]}"
        env = container_env(docker_engine, stable)
        assert env[ENV_NAME] == secret_value
        assert env["GREETING"] == "hello"
        assert http_get(port) == (200, "revision 1\n")

        # A revision that prints the value and never gets healthy: its logs come back, masked.
        app_repo.commit_revision(Health.UNHEALTHY)
        app_repo.write_file("start.sh", START_SCRIPT.format(comment="leaks its token", degrade=LEAK_LINE,
                                                             port=DEFAULT_PORT))
        bad = app_repo.commit_all("prints the token and fails health")
        cluster.annotate("web", "deploymind.io/requested-at", "push-1")
        status = cluster.wait_status(
            "web", lambda s: any(f["commit"] == bad for f in s.get("failedRevisions", [])), 60, "bad revision refused")
    assert ready(status) == "False/RevisionQuarantined"
    released = next(c for c in status["conditions"] if c["type"] == "Released")
    assert "deploymind history web" in released["message"], released["message"]
    # Its log lines are in the history only, masked; never in status or Events.
    refused = next(f["id"] for f in status["failedRevisions"] if f["commit"] == bad)
    code, body = http_get(operator.http_port, f"/history/{cluster.namespace}/web?revision={refused}")
    assert code == 200 and "token is ***" in body, body
    assert http_get(port) == (200, "revision 1\n")

    assert sampler.release_scripts >= 2, "the sampler never saw a release script's command line"
    assert sampler.leaks == []
    text = json.dumps(cluster.get("web"))
    assert not any(n.decode() in text for n in needles), "the value is in the Deployment (status or metadata)"
    events = json.dumps(cluster.events())
    assert not any(n.decode() in events for n in needles), "the value is in an Event"
    assert not any(n.decode() in operator.logs() for n in needles), "the value is in the operator's log"
    # The operator's state (source cache, history) and the host's release files (job scripts, results). Only each
    # revision's own env file (mode 0600, kept so a revert runs it exactly as it ran) holds the value.
    kept = files_containing(operator.workdir, needles)
    assert kept and all(Path(f).name == "env" and Path(f).parent.parent.name == "releases" for f in kept), kept
    assert all(Path(f).stat().st_mode & 0o777 == 0o600 for f in kept)
    for fmt in (INSPECT_FORMAT, STATE_FORMAT):
        assert secret_value not in docker(docker_engine, "container", "inspect", "--format", fmt, stable)
    # ...while a plain `docker inspect` does show it: the formats above leave it out on purpose.
    assert secret_value in docker(docker_engine, "container", "inspect", stable)


@over("ssh", "ssm")
def test_rotating_the_secret_redeploys_and_editing_the_health_check_does_not(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, docker_engine: DockerEngine, target: Target,
        namespace: str, secret_value: str) -> None:
    port = free_port()
    cluster.apply(deployment("web", app_repo, port, target))
    first = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 60, "phase Deployed")
    stable = f"dm-{cluster.get('web')['metadata']['uid'][:8]}"
    first_container = container_id(docker_engine, stable)

    cluster.run("patch", "dmd", "web", "--type", "merge", "-p",
                json.dumps({"spec": {"healthCheck": {"failureThreshold": 4, "startupTimeoutSeconds": 6}}}))
    generation = cluster.get("web")["metadata"]["generation"]
    # observedGeneration is written when the reconcile of that generation ended, release included.
    edited = cluster.wait_status("web", lambda s: s.get("observedGeneration") == generation, 30,
                                 "the health check edit reconciled")
    assert edited["revision"] == first["revision"]
    assert container_id(docker_engine, stable) == first_container
    assert ready(edited) == "True/Deployed"

    rotated = new_value()
    cluster.run("replace", "-f", "-", input=secret_manifest(rotated))
    status = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed"
                                 and s["revision"]["id"] != first["revision"]["id"], 60, "redeployed after rotation")
    assert status["revision"]["commit"] == first["revision"]["commit"]
    assert container_id(docker_engine, stable) != first_container
    assert container_env(docker_engine, stable)[ENV_NAME] == rotated
    assert http_get(port) == (200, "revision 1\n")
    wait_for(lambda: ready(cluster.status("web")) == "True/Deployed", 10, "Ready after the rotation")
    values = [form.decode() for value in (secret_value, rotated) for form in leak_forms(value)]
    assert ssm_leftovers(target, namespace, values) == []
