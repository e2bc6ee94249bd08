"""End-to-end helpers: the operator as a real process, Deployments through kubectl, the app through HTTP."""

from __future__ import annotations

import functools
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from deploymind.api import GROUP, PLURAL, VERSION
from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import AppRepo
from world.kubetools import Kubectl
from world.ports import free_port

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds. A check that
    raises (a refused connection, a failed kubectl) counts as not yet, and its error is named at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except (subprocess.SubprocessError, OSError, KeyError, ValueError) as e:
            last = e
        else:
            if last:
                return last  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


@dataclass
class Operator:
    """`deploymind run` as a child process, restricted to one namespace, with its own state and host dirs."""

    kubeconfig: Path
    namespace: str
    workdir: Path
    env: dict[str, str]
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    allow_file_repos: bool = True
    """The fixture repositories are local (file://); a test of the URL rules turns this off."""
    extra_args: list[str] = field(default_factory=list)
    """More `deploymind run` flags (leader election, history authorization, …)."""
    history_auth: str = "none"
    """`--history-auth`: tests read /history without tokens unless they test its authorization."""

    @property
    def log_path(self) -> Path:
        return self.workdir / "operator.log"

    @property
    def host_dir(self) -> Path:
        return self.workdir / "host"

    def start(self) -> Operator:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host_dir.mkdir(parents=True, exist_ok=True)
        self.host_dir.chmod(0o777)
        self.starts += 1
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deploymind", "run", "--kubeconfig", str(self.kubeconfig),
             "--namespace", self.namespace, "--allow-local-transport", "--state-dir", str(self.workdir / "state"),
             "--host-dir", str(self.host_dir), "--lease-namespace", self.namespace,
             "--http-host", "127.0.0.1", "--http-port", str(self.http_port), "--verbose",
             "--history-auth", self.history_auth,
             *(["--allow-file-repos"] if self.allow_file_repos else []), *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}, start_new_session=True)
        wait_for(self._healthy, 30, "the operator's /healthz")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the operator exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def kill(self) -> None:
        """As a crash would: SIGKILL, no cleanup."""
        self.stop(signal.SIGKILL)

    def restart(self) -> Operator:
        self.stop()
        return self.start()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Cluster:
    """kubectl bound to one test namespace, with status helpers."""

    kubectl: Kubectl
    namespace: str

    def run(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = self.kubectl(*args, "-n", self.namespace, input=input)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    def apply(self, manifest: dict[str, Any] | str) -> None:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        self.run("apply", "-f", "-", input=text)

    def get(self, name: str, kind: str = "dmd") -> dict[str, Any]:
        if kind == "dmd":
            return self._get_deployment(name)
        obj: dict[str, Any] = json.loads(self.run("get", kind, name, "-o", "json").stdout)
        return obj

    def _get_deployment(self, name: str) -> dict[str, Any]:
        """The object `kubectl get dmd NAME -o json` prints, read straight from the API server: tests poll status
        every 0.2 s, and a kubectl process per poll costs ~65 ms of CPU that the operator under test then lacks."""
        url = f"{self._server}/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{PLURAL}/{name}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                obj: dict[str, Any] = json.load(r)
        except urllib.error.HTTPError as e:
            raise AssertionError(f"kubectl get dmd {name} failed: HTTP {e.code} {e.read()[:300]!r}") from e
        return obj

    @functools.cached_property
    def _server(self) -> str:
        config = yaml.safe_load(self.kubectl.kubeconfig.read_text())
        return str(config["clusters"][0]["cluster"]["server"]).rstrip("/")

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        return next((c for c in self.status(name).get("conditions", []) if c["type"] == type_), None)

    def annotate(self, name: str, key: str, value: str) -> None:
        self.run("annotate", "dmd", name, f"{key}={value}", "--overwrite")

    def events(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(self.run("get", "events", "-o", "json").stdout)["items"]
        return items

    def wait_status(self, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float,
                    what: str) -> dict[str, Any]:
        return wait_for(lambda: s if (s := self.status(name)) and predicate(s) else None, timeout, f"{name}: {what}")


def ready(status: dict[str, Any]) -> str | None:
    cond = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)
    return f"{cond['status']}/{cond['reason']}" if cond else None


def handled(token: str) -> Callable[[dict[str, Any]], bool]:
    """A status predicate: the redeploy request `token` was taken and its rollout has finished (no Reconciling)."""
    return lambda s: (s.get("lastHandledReconcileAt") == token
                      and all(c["type"] != "Reconciling" for c in s.get("conditions", [])))


def http_get(port: int, path: str = "/", timeout: float = 2) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, ""
    except http.client.HTTPException as e:
        # The app's container was replaced mid-answer (a switch, a revert): no answer, as a refused connection.
        raise ConnectionResetError(f"the app's answer broke off: {e!r}") from e


def docker(engine: DockerEngine, *args: str) -> str:
    """`docker ARGS` against the test world's engine; its stdout (the test fails if docker does)."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=60,
                          env={**os.environ, **engine.env})
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout


def remove_containers(engine: DockerEngine, namespace: str) -> None:
    """Remove what a test's Deployments left on the engine (by the namespace label every container carries)."""
    env = {**os.environ, **engine.env}
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=deploymind.io/namespace={namespace}"],
                         capture_output=True, text=True, env=env, check=False).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, env=env, check=False)


def leave_no_trace(op: Operator, engine: DockerEngine, namespace: str) -> None:
    """After a test whose operator has stopped: print its log (pytest shows it only when the test failed) and remove
    the containers the test's Deployments left."""
    print("---- operator log ----\n" + "\n".join(line for line in op.logs().splitlines() if " DEBUG " not in line))
    remove_containers(engine, namespace)


def stable_container(engine: DockerEngine, uid: str) -> dict[str, Any]:
    """`docker inspect` of the object's stable container dm-<uid8>."""
    inspected: list[dict[str, Any]] = json.loads(docker(engine, "inspect", f"dm-{uid[:8]}"))
    return inspected[0]


def deployment(name: str, repo: AppRepo, port: int, **spec: Any) -> dict[str, Any]:
    """A Deployment of `repo` on the local transport with 1-second probes; `spec` keys are merged over it."""
    body: dict[str, Any] = {
        "source": {"repo": repo.url, "ref": "main"},
        "target": {"transport": "local"},
        "container": {"port": port},
        "healthCheck": {"path": "/health", "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 3,
                        "startupTimeoutSeconds": 15},
        "rollback": {"auto": True, "bakeSeconds": 5},
    }
    for key, value in spec.items():
        body[key] = {**body.get(key, {}), **value} if isinstance(value, dict) else value
    return {"apiVersion": "deploymind.io/v1alpha1", "kind": "Deployment", "metadata": {"name": name}, "spec": body}
