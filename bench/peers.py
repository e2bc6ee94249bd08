"""Benchmark of one update done three ways onto one SSH host (issue 8): DeployMind, Ansible and one bare ssh.

Parts, all real and on loopback: a private Docker engine (`DockerEngine`), the test world's sshd in front of it
(`Sshd`, whose login user's `docker` reaches that engine), the Kubernetes API emulator (`ApiServer` with the CRD
from `render_crd()`), the operator as a subprocess (`python -m deploymind run … --allow-file-repos`; ssh transport,
so no `--allow-local-transport`), ansible-core from PyPI in its own venv, and fixture Git repositories.

The methods, each with its own repository, container and port, one after the other within each round:
  1. deploymind: a Deployment whose target is the sshd host (key and known_hosts in Secrets); an update is a new
     commit on `main` plus a new `deploymind.io/requested-at` annotation;
  2. ansible: `ansible-playbook` against the sshd host (strict host-key checking with the sshd's known_hosts): git
     checkout of the commit on the host, docker build, `docker rm -f` the old container, docker run, `uri` until
     /health answers 200. Two configurations: `ansible` as fast as it goes (facts off, pipelining on) and
     `ansible-defaults` (the same playbook with Ansible's defaults: facts gathered, no pipelining); both keep
     Ansible's default ssh ControlPersist, so a run reuses the previous run's connection;
  3. bare-ssh, the physical limit: `git archive <commit>` here piped into one `ssh` whose remote script
     `docker build`s that tarball (`docker build -`), `docker rm -f`s the old container, `docker run`s the new one
     and polls /health.

Two apps: `pid1-httpd`, the sandbox example app (examples/sandbox/apps/hello: `exec busybox httpd`, a PID 1 that
ignores SIGTERM), and `traps-term`, the fixture app of tests/world/apps.py (a shell PID 1 that traps TERM).

One figure per update: from "the update is requested" (just before the annotation patch, or the start of
`ansible-playbook` or `git archive | ssh`) to "the new version answers": a GET / every 20 ms until its body is the
new commit's. Each method first deploys its app once (not timed); then `--commits` rounds of one fresh commit per
method. Every wait has a deadline, and `--max-seconds` (SIGALRM) stops the whole run.

Usage (as root: the private Docker engine needs it):
    python bench/peers.py [--commits 5] [--json bench/peers.results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "operator")]

import common  # noqa: E402
from common import summary, wait_for  # noqa: E402

from deploymind.api import GROUP, PLURAL, VERSION  # noqa: E402
from deploymind.api.crd import render_crd  # noqa: E402
from deploymind.sandbox.docker_engine import DockerEngine  # noqa: E402
from deploymind.sandbox.kube.apiserver import ApiServer  # noqa: E402
from world.apps import BUSYBOX, AppRepo, Health, create_app_repo  # noqa: E402
from world.ports import free_port  # noqa: E402
from world.sshd import Sshd  # noqa: E402

T = TypeVar("T")
NAMESPACE = "bench"
COMMAND = "python bench/peers.py --json bench/peers.results.json"
METHODS = ("deploymind", "ansible", "ansible-defaults", "bare-ssh")
POLL_S = 0.02
UPDATE_TIMEOUT_S = 120.0
ANSIBLE_VENV = Path.home() / ".cache" / "deploymind-bench" / "ansible-core"
PIP_TIMEOUT_S = 300.0

# examples/sandbox/apps/hello, with httpd bound to loopback: `exec` makes busybox httpd PID 1, which ignores SIGTERM.
HELLO_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
COPY www /www
USER 65534:65534
ENV PORT=8080
CMD ["/bin/busybox", "sh", "-c", "exec /bin/busybox httpd -f -p \\"127.0.0.1:$PORT\\" -h /www"]
"""

PLAYBOOK = """\
- name: Update the app to one commit
  hosts: app
  gather_facts: false
  tasks:
    - name: Check out the commit
      ansible.builtin.git:
        repo: "{{ repo }}"
        dest: "{{ checkout }}"
        version: "{{ commit }}"
    - name: Build the image
      ansible.builtin.command:
        argv: [docker, build, -q, -t, "{{ image }}", "{{ checkout }}"]
    - name: Remove the old container
      ansible.builtin.command:
        argv: [docker, rm, -f, "{{ container }}"]
      register: removed
      failed_when: removed.rc != 0 and 'No such container' not in removed.stderr
    - name: Start the new container
      ansible.builtin.command:
        argv: [docker, run, -d, --name, "{{ container }}", --network, host, -e, "PORT={{ port }}", "{{ image }}"]
    - name: Wait until healthy
      ansible.builtin.uri:
        url: "http://127.0.0.1:{{ port }}/health"
      register: health
      until: health.status == 200
      retries: 300
      delay: 0.1
"""

# The remote half of the bare method; the build context (a tarball) is its stdin.
BARE_SCRIPT = """\
set -e
docker build -q -t {image} - >/dev/null
docker rm -f {container} >/dev/null 2>&1 || true
docker run -d --name {container} --network host -e PORT={port} {image} >/dev/null
i=0
until curl -fs -o /dev/null http://127.0.0.1:{port}/health; do
  i=$((i + 1)); [ "$i" -lt 1500 ] || exit 1; sleep 0.02
done
"""


# ---------------------------------------------------------------------------------------------- small helpers
def http_get(port: int, path: str = "/", timeout: float = 0.5) -> tuple[int, str]:
    return common.http_get(port, path, timeout)


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def until_answers(port: int, body: str, started: float, what: str,
                  process: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> float:
    """Seconds from `started` (monotonic) until GET / on `port` answers `body`; a failed `process` ends it early."""
    deadline = started + UPDATE_TIMEOUT_S
    while True:
        if http_get(port)[1] == body:
            return time.monotonic() - started
        if process is not None and process.poll() not in (None, 0):
            raise RuntimeError(f"{what}: exited with {process.returncode} before the new version answered:\n"
                               f"{tail(log) if log else ''}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: the new version did not answer within {UPDATE_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)


def finish(process: subprocess.Popen[bytes], started: float, what: str, log: Path) -> float:
    """Wait for a method's process to exit successfully; seconds from `started` to its exit."""
    try:
        code = process.wait(max(1.0, started + UPDATE_TIMEOUT_S - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        raise TimeoutError(f"{what}: still running after {UPDATE_TIMEOUT_S:.0f} s:\n{tail(log)}") from None
    if code != 0:
        raise RuntimeError(f"{what}: exited with {code}:\n{tail(log)}")
    return time.monotonic() - started


# ---------------------------------------------------------------------------------------------- the two apps
@dataclass(frozen=True)
class App:
    name: str
    pid1: str
    """What the container's PID 1 does with SIGTERM."""
    make: Callable[[Path], AppRepo]
    commit: Callable[[AppRepo, str], str]
    """Commit a revision whose GET / answers the given body; return its SHA."""


def make_hello(path: Path) -> AppRepo:
    path.mkdir(parents=True)
    shutil.copy2(BUSYBOX, path / "busybox")
    (path / "Dockerfile").write_text(HELLO_DOCKERFILE)
    (path / ".dockerignore").write_text(".git\n")  # as the fixture app: the image never needs the history
    (path / "www").mkdir()
    (path / "www" / "health").write_text("ok\n")
    (path / "www" / "index.html").write_text("first\n")
    repo = AppRepo(path)
    repo.git("init", "-q", "-b", "main")
    repo.commit_all("hello")
    return repo


def commit_hello(repo: AppRepo, body: str) -> str:
    (repo.path / "www" / "index.html").write_text(body)
    return repo.commit_all(body.strip())


APPS = (
    App("pid1-httpd", "ignores SIGTERM (busybox httpd is PID 1)", make_hello, commit_hello),
    App("traps-term", "handles SIGTERM (a shell PID 1 traps TERM)", create_app_repo,
        lambda repo, body: repo.commit_revision(Health.HEALTHY, body=body)),
)


# ---------------------------------------------------------------------------------------------- the world
@dataclass
class World:
    root: Path
    engine: DockerEngine
    sshd: Sshd
    objects: client.CustomObjectsApi
    operator: subprocess.Popen[bytes]
    operator_log: Path
    http_port: int
    """The operator's /healthz, /metrics and /history."""
    remote_dir: Path
    """Owned by the sshd login user: the peers' work files on the host."""
    ansible: Path | None
    """ansible-playbook, or None when ansible-core could not be installed."""

    def status(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.objects.get_namespaced_custom_object(  # type: ignore[assignment]
            GROUP, VERSION, NAMESPACE, PLURAL, name)
        return dict(obj.get("status") or {})

    def history(self, name: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.http_port}/history/{NAMESPACE}/{name}?limit=100"
        with urllib.request.urlopen(url, timeout=10) as r:
            body: dict[str, Any] = json.loads(r.read())
        return body


def install_ansible(venv: Path) -> tuple[Path | None, str]:
    """ansible-playbook from a venv (created and filled from PyPI when missing), or None and why not."""
    playbook = venv / "bin" / "ansible-playbook"
    if not playbook.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True,
                           timeout=120)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "ansible-core"], check=True,
                           capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            return None, f"pip could not install ansible-core into {venv}: {getattr(e, 'stderr', '') or e}"
    done = subprocess.run([str(playbook), "--version"], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "LC_ALL": "C.UTF-8"})
    return (playbook, done.stdout.splitlines()[0]) if done.returncode == 0 else (None, done.stderr.strip())


def close_ssh_masters(root: Path) -> None:
    """End Ansible's ControlPersist ssh masters now rather than 60 s after the run (they hold sshd sessions)."""
    for socket in root.glob("ansible*/cp/*"):
        subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={socket}", "peers"], capture_output=True,
                       timeout=10, check=False)


@contextmanager
def world(root: Path, ansible: Path | None) -> Iterator[World]:
    engine = DockerEngine.start(root / "docker")
    sshd: Sshd | None = None
    api = ApiServer(crds=[render_crd()]).start()
    operator: subprocess.Popen[bytes] | None = None
    try:
        sshd = Sshd.start(root / "sshd", docker_host=engine.host)
        login = pwd.getpwnam(sshd.user)
        remote_dir = root / "remote"
        remote_dir.mkdir()
        os.chown(remote_dir, login.pw_uid, login.pw_gid)
        kubeconfig = api.write_kubeconfig(root / "kubeconfig")
        api_client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        core = client.CoreV1Api(api_client)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        for name, key, path in (("host-key", "key", sshd.key_path),
                                ("host-known", "known_hosts", sshd.known_hosts_path)):
            core.create_namespaced_secret(NAMESPACE, client.V1Secret(
                metadata=client.V1ObjectMeta(name=name), string_data={key: path.read_text()}))
        host_dir = root / "host"
        host_dir.mkdir()
        host_dir.chmod(0o777)  # the login user writes the release files there
        http_port = free_port()
        log_path = root / "operator.log"
        with log_path.open("ab") as log:
            operator = subprocess.Popen(
                [sys.executable, "-m", "deploymind", "run", "--kubeconfig", str(kubeconfig), "--namespace", NAMESPACE,
                 "--allow-file-repos", "--host-dir", str(host_dir), "--state-dir", str(root / "state"),
                 "--lease-namespace", NAMESPACE, "--http-host", "127.0.0.1", "--http-port", str(http_port),
                 "--history-auth", "none"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(ROOT / "operator")})
        wait_for(lambda: http_get(http_port, "/healthz", timeout=1)[0] == 200, 60, "the operator's /healthz")
        yield World(root, engine, sshd, client.CustomObjectsApi(api_client), operator, log_path, http_port,
                    remote_dir, ansible)
    finally:
        if operator is not None and operator.poll() is None:
            os.killpg(operator.pid, signal.SIGTERM)
            try:
                operator.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(operator.pid, signal.SIGKILL)
                operator.wait(10)
        api.stop()
        close_ssh_masters(root)
        if sshd is not None:
            sshd.stop()
        engine.stop()


# ---------------------------------------------------------------------------------------------- the methods
class Method(Protocol):
    name: str

    def deploy(self, sha: str, body: str) -> dict[str, float]:
        """Put commit `sha` (whose GET / answers `body`) on the host; the seconds this took, by figure."""


@dataclass
class DeployMind:
    """A Deployment on the sshd host; an update is a `deploymind.io/requested-at` annotation."""

    w: World
    app: App
    repo: AppRepo
    port: int
    name: str = "deploymind"
    requests: int = 0

    def _manifest(self) -> dict[str, Any]:
        s = self.w.sshd
        return {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Deployment",
            "metadata": {"name": self.app.name, "namespace": NAMESPACE},
            "spec": {
                "source": {"repo": self.repo.url, "ref": "main"},
                "target": {"transport": "ssh", "ssh": {
                    "host": "127.0.0.1", "port": s.port, "user": s.user,
                    "keySecretRef": {"name": "host-key", "key": "key"},
                    "knownHostsSecretRef": {"name": "host-known", "key": "known_hosts"}}},
                "container": {"port": self.port},
                # A long period: ticks of the Deployment must not load the host while the peers are timed.
                "healthCheck": {"path": "/health", "periodSeconds": 30, "timeoutSeconds": 1, "failureThreshold": 3,
                                "startupTimeoutSeconds": 30},
                "rollback": {"auto": True, "bakeSeconds": 0},
            },
        }

    def deploy(self, sha: str, body: str) -> dict[str, float]:
        what = f"deploymind {self.app.name} {sha[:12]}"
        started = time.monotonic()
        if self.requests == 0:
            self.w.objects.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, self._manifest())
        else:
            self.w.objects.patch_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, self.app.name,
                {"metadata": {"annotations": {"deploymind.io/requested-at": f"bench-{self.requests}"}}})
        token = f"bench-{self.requests}" if self.requests else None
        self.requests += 1
        try:
            answers = until_answers(self.port, body, started, what)
        except (TimeoutError, RuntimeError) as e:
            raise RuntimeError(f"{e}\nstatus: {json.dumps(self.w.status(self.app.name))}\n"
                               f"operator log:\n{tail(self.w.operator_log)}") from e

        def settled() -> bool:
            # The next request must find this rollout done: no Reconciling, this token handled, this commit Deployed.
            s = self.w.status(self.app.name)
            conditions = {c["type"]: c["status"] for c in s.get("conditions", [])}
            return (s.get("phase") == "Deployed" and (s.get("revision") or {}).get("commit") == sha
                    and conditions.get("Reconciling") != "True"
                    and (token is None or s.get("lastHandledReconcileAt") == token))

        wait_for(settled, 60, f"{what}: status Deployed and the request handled")
        return {"answers_s": answers, "status_settled_s": time.monotonic() - started}


@dataclass
class Ansible:
    """`ansible-playbook` of PLAYBOOK against the sshd host: `tuned` (facts off, pipelining on) or Ansible's defaults."""

    w: World
    app: App
    repo: AppRepo
    port: int
    name: str
    here: Path
    """This variant's ansible.cfg, inventory, playbook, ANSIBLE_HOME and logs."""
    runs: int = 0

    @classmethod
    def prepare(cls, w: World, app: App, repo: AppRepo, port: int, tuned: bool) -> Ansible:
        name = "ansible" if tuned else "ansible-defaults"
        here = w.root / name
        if not here.exists():
            here.mkdir()
            s = w.sshd
            ssh_args = f"-o UserKnownHostsFile={s.known_hosts_path} -o StrictHostKeyChecking=yes"
            (here / "inventory.ini").write_text(
                "[app]\n"
                f"sshd ansible_host=127.0.0.1 ansible_port={s.port} ansible_user={s.user} "
                f"ansible_ssh_private_key_file={s.key_path} ansible_ssh_common_args='{ssh_args}' "
                "ansible_python_interpreter=/usr/bin/python3\n")
            (here / "ansible.cfg").write_text(
                "[defaults]\n"
                f"inventory = {here / 'inventory.ini'}\n"
                "host_key_checking = True\n"
                "[ssh_connection]\n"
                f"control_path_dir = {here / 'cp'}\n"  # so the run can close its ControlPersist masters
                + ("pipelining = True\n" if tuned else ""))
            (here / "playbook.yml").write_text(PLAYBOOK if tuned else PLAYBOOK.replace("  gather_facts: false\n", ""))
        return cls(w, app, repo, port, name, here)

    def deploy(self, sha: str, body: str) -> dict[str, float]:
        what = f"{self.name} {self.app.name} {sha[:12]}"
        assert self.w.ansible is not None
        variables = {"repo": self.repo.url, "commit": sha,
                     "checkout": str(self.w.remote_dir / f"{self.name}-{self.app.name}"),
                     "image": f"peers/{self.name}-{self.app.name}:{sha[:12]}",
                     "container": f"{self.name}-{self.app.name}", "port": self.port}
        log = self.here / f"{self.app.name}-{self.runs}.log"
        self.runs += 1
        env = {**os.environ, "LC_ALL": "C.UTF-8", "ANSIBLE_CONFIG": str(self.here / "ansible.cfg"),
               "ANSIBLE_HOME": str(self.here / "home")}
        started = time.monotonic()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(self.w.ansible), str(self.here / "playbook.yml"), "-e", json.dumps(variables)],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.here)
        try:
            answers = until_answers(self.port, body, started, what, process, log)
            return {"answers_s": answers, "process_exit_s": finish(process, started, what, log)}
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)


@dataclass
class BareSsh:
    """`git archive <commit> | ssh host '<BARE_SCRIPT>'`."""

    w: World
    app: App
    repo: AppRepo
    port: int
    name: str = "bare-ssh"
    runs: int = 0

    def deploy(self, sha: str, body: str) -> dict[str, float]:
        what = f"bare-ssh {self.app.name} {sha[:12]}"
        script = BARE_SCRIPT.format(image=shlex.quote(f"peers/bare-{self.app.name}:{sha[:12]}"),
                                    container=shlex.quote(f"bare-{self.app.name}"), port=self.port)
        log = self.w.root / f"bare-{self.app.name}-{self.runs}.log"
        self.runs += 1
        started = time.monotonic()
        with log.open("wb") as out:
            archive = subprocess.Popen(["git", "-C", str(self.repo.path), "archive", "--format=tar", sha],
                                       stdout=subprocess.PIPE, stderr=out)
            assert archive.stdout is not None
            process = subprocess.Popen(self.w.sshd.ssh_argv(script), stdin=archive.stdout, stdout=out,
                                       stderr=subprocess.STDOUT)
            archive.stdout.close()  # ssh holds the pipe now; git sees EPIPE if ssh ends early
        try:
            answers = until_answers(self.port, body, started, what, process, log)
            exited = finish(process, started, what, log)
            if archive.wait(10) != 0:
                raise RuntimeError(f"{what}: git archive exited with {archive.returncode}:\n{tail(log)}")
            return {"answers_s": answers, "process_exit_s": exited}
        finally:
            for p in (process, archive):
                if p.poll() is None:
                    p.kill()
                    p.wait(10)


# ---------------------------------------------------------------------------------------------- the run
def bench_app(w: World, app: App, commits: int) -> dict[str, Any]:
    """First deploy of each method (not timed), then `commits` rounds of one fresh commit per method."""
    methods: list[tuple[Method, AppRepo]] = []
    for method in METHODS:
        if method.startswith("ansible") and w.ansible is None:
            continue
        repo = app.make(w.root / "apps" / f"{app.name}-{method}")
        port = free_port()
        m: Method = (DeployMind(w, app, repo, port) if method == "deploymind"
                     else BareSsh(w, app, repo, port) if method == "bare-ssh"
                     else Ansible.prepare(w, app, repo, port, tuned=method == "ansible"))
        methods.append((m, repo))
    first: dict[str, dict[str, float]] = {}
    for m, repo in methods:
        body = f"{m.name} {app.name} first\n"
        first[m.name] = m.deploy(app.commit(repo, body), body)
    updates: dict[str, list[dict[str, Any]]] = {m.name: [] for m, _ in methods}
    for i in range(commits):
        for m, repo in methods:
            body = f"{m.name} {app.name} commit {i + 1}\n"
            sha = app.commit(repo, body)
            timing = m.deploy(sha, body)
            updates[m.name].append({"commit": sha, **{k: round(v, 3) for k, v in timing.items()}})
            print(f"{app.name:>10} {m.name:>10} commit {i + 1}: {timing['answers_s']:.2f} s", flush=True)
    steps = deploymind_steps(w, app.name, updates["deploymind"])
    return {
        "pid1": app.pid1,
        "first_deploy_s": {k: round(v["answers_s"], 3) for k, v in first.items()},
        "update_answers_s": {k: summary([u["answers_s"] for u in v]) for k, v in updates.items()},
        "deploymind_step_s": {k: summary(v) for k, v in steps.items()},
        "updates": updates,
    }


def deploymind_steps(w: World, name: str, updates: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Step durations of each timed DeployMind rollout, from the operator's history (added to `updates` too)."""
    def recorded() -> list[dict[str, Any]] | None:
        rollouts = {r["commit"]: r for r in w.history(name)["rollouts"] if r.get("finishedAt")}
        found = [rollouts.get(u["commit"]) for u in updates]
        return None if None in found else [r for r in found if r is not None]

    # The history is written off the event loop, so the last rollout may land a moment after its status.
    rollouts = wait_for(recorded, 30, f"the history of {name}'s timed rollouts", interval=0.2)
    steps: dict[str, list[float]] = {}
    for update, rollout in zip(updates, rollouts, strict=True):
        update["steps_s"] = {s["step"]: s["durationSeconds"] for s in rollout["steps"]
                             if s.get("durationSeconds") is not None}
        update["rollout_s"] = rollout["durationSeconds"]
        for step, seconds in [*update["steps_s"].items(), ("rollout", rollout["durationSeconds"])]:
            steps.setdefault(step, []).append(float(seconds))
    return steps


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    med = {k: v["median"] for k, v in result["update_answers_s"].items()}
    out: dict[str, Any] = {"deploymind_over_limit": round(med["deploymind"] / med["bare-ssh"], 2),
                           "goal_deploymind_within_2x_limit": med["deploymind"] <= 2 * med["bare-ssh"]}
    for peer in ("ansible", "ansible-defaults"):
        if peer in med:
            key = peer.replace("-", "_")
            out[f"{key}_over_deploymind"] = round(med[peer] / med["deploymind"], 2)
            out[f"goal_3x_faster_than_{key}"] = med[peer] >= 3 * med["deploymind"]
    return out


def table(results: dict[str, Any]) -> str:
    lines = ["| App (PID 1) | Method | requested -> new version answers: median (min-max), n | ratio |",
             "|---|---|---|---|"]
    for app_name, result in results["apps"].items():
        r = result["ratios"]
        for method, s in result["update_answers_s"].items():
            ratio = {"deploymind": f"{r['deploymind_over_limit']}x the limit",
                     "ansible": f"{r.get('ansible_over_deploymind', '-')}x DeployMind",
                     "ansible-defaults": f"{r.get('ansible_defaults_over_deploymind', '-')}x DeployMind",
                     "bare-ssh": "the limit"}[method]
            lines.append(f"| {app_name} ({result['pid1'].split(' (')[0]}) | {method} | "
                         f"{s['median']:.2f} s ({s['min']:.2f}-{s['max']:.2f}), n={s['n']} | {ratio} |")
    return "\n".join(lines)


def on_alarm(signum: int, frame: FrameType | None) -> None:
    raise TimeoutError("the whole run took longer than --max-seconds; stopping")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=5, help="fresh commits per method per app")
    parser.add_argument("--max-seconds", type=int, default=780, help="the whole run stops after this")
    parser.add_argument("--ansible-venv", type=Path, default=ANSIBLE_VENV, help="venv with ansible-core (made if missing)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: the private Docker engine needs it", file=sys.stderr)
        return 1
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.max_seconds)
    started = time.time()
    ansible, ansible_version = install_ansible(args.ansible_venv)
    print(f"ansible: {ansible_version}", flush=True)
    # Traversable by the sshd login user (its keys, the repositories it clones, its work directory).
    root = Path(tempfile.mkdtemp(prefix="dmpeers-", dir="/tmp"))
    root.chmod(0o711)
    try:
        with world(root, ansible) as w:
            docker_version = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                                            capture_output=True, text=True, env={**os.environ, **w.engine.env},
                                            check=False).stdout.strip()
            apps = {app.name: bench_app(w, app, args.commits) for app in APPS}
    finally:
        signal.alarm(0)
        shutil.rmtree(root, ignore_errors=True)
    for result in apps.values():
        result["ratios"] = ratios(result)
    results = {
        "command": COMMAND,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
                    "docker": docker_version, "ansible": ansible_version,
                    "note": "2 shared cores: compare ratios, not absolutes"},
        "wall_seconds": round(time.time() - started, 1),
        "figure": "requested → GET / answers the new commit's body (polled every 20 ms), per fresh commit",
        "apps": apps,
    }
    print(table(results))
    text = json.dumps(results, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
