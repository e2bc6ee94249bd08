"""`deploymind sandbox`: the Kubernetes API emulator, a private Docker engine and the operator, in one process.

No cluster and no AWS account: Deployments with `transport: local` run their containers on this machine's private
Docker engine. In files given to `--apply`, `file://SANDBOX/` means the sandbox's state directory, and every
directory under `examples/sandbox/apps/` (or `--apps`) is committed into a Git repository there first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deploymind.api.crd import render_crd
from deploymind.api.targetpolicy import TargetPolicy
from deploymind.cli_history import DEFAULT_OPERATOR_NAMESPACE, DEFAULT_OPERATOR_PORT, DEFAULT_OPERATOR_SERVICE
from deploymind.controller.hooks import Hooks
from deploymind.controller.operator import Endpoints, run_operator
from deploymind.sandbox.apply import apply_documents
from deploymind.sandbox.docker_engine import DockerEngine
from deploymind.sandbox.kube.apiserver import ApiServer
from deploymind.sandbox.reaper import Reaper, remove_app_containers
from deploymind.sandbox.watch import StatusPrinter
from deploymind.settings import Settings

SANDBOX_URL = "file://SANDBOX/"
# How long a stopping operator may take (an interrupted release unwinds) before its app containers are removed anyway.
OPERATOR_STOP_TIMEOUT_S = 10.0


@dataclass
class SandboxOptions:
    state_dir: Path
    port: int = 0
    http_port: int = 8080
    apply: Sequence[Path] = ()
    apps: Path | None = None
    docker_host: str | None = None
    extra_hooks: Hooks = field(default_factory=Hooks)
    aws_region: str | None = None
    """Overrides AWS_REGION / AWS_DEFAULT_REGION for instances without `target.region`."""
    target_policy: TargetPolicy | None = None
    """Overrides DEPLOYMIND_TARGET_POLICY (docs/tenancy.md)."""
    ssm_settings: dict[str, Any] = field(default_factory=dict)
    """Settings of the ssm transport, as `deploymind run` takes them (build_bucket, parameter_prefix, kms_key_id, …)."""


def seed_app_repos(apps: Path, repos: Path) -> list[Path]:
    """Commit each app directory into `repos/<name>.git` (with Debian's static busybox, the app's only binary)."""
    made = []
    busybox = shutil.which("busybox") or "/bin/busybox"
    for app in sorted(p for p in apps.iterdir() if p.is_dir()):
        work = repos / f"{app.name}.work"
        bare = repos / f"{app.name}.git"
        if bare.exists():
            made.append(bare)
            continue
        shutil.copytree(app, work, dirs_exist_ok=True)
        if (work / "Dockerfile").exists() and "busybox" in (work / "Dockerfile").read_text():
            shutil.copy2(busybox, work / "busybox")
        git = ["git", "-c", "user.name=DeployMind sandbox", "-c", "user.email=sandbox@deploymind.io"]
        subprocess.run([*git, "init", "-q", "-b", "main", str(work)], check=True)
        subprocess.run([*git, "-C", str(work), "add", "-A"], check=True)
        subprocess.run([*git, "-C", str(work), "commit", "-q", "-m", f"{app.name}: first revision"], check=True)
        subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
        shutil.rmtree(work)
        made.append(bare)
    return made


def load_documents(paths: Sequence[Path], state_dir: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    files = [f for p in paths for f in (sorted(p.glob("*.yaml")) if p.is_dir() else [p])]
    for path in files:
        text = path.read_text().replace(SANDBOX_URL, f"file://{state_dir.resolve()}/")
        docs += [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    return docs


def operator_service(http_port: int) -> list[dict[str, Any]]:
    """What `deploymind history` reaches through the API server's service proxy, named as a cluster install names
    it: Service `deploymind`, port `http`, in `deploymind-system`. Its targetPort is the operator's HTTP port, where
    the emulator forwards on 127.0.0.1."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DEFAULT_OPERATOR_NAMESPACE}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": DEFAULT_OPERATOR_SERVICE, "namespace": DEFAULT_OPERATOR_NAMESPACE,
                      "labels": {"app.kubernetes.io/name": "deploymind"}},
         "spec": {"ports": [{"name": DEFAULT_OPERATOR_PORT, "port": 8080, "targetPort": http_port,
                             "protocol": "TCP"}]}},
    ]


async def run_sandbox(options: SandboxOptions) -> int:
    state = options.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    engine_root = None if options.docker_host is not None else state / "docker"
    docker_host = options.docker_host or DockerEngine.host_of(state / "docker")
    # Started before anything it cleans up: a sandbox killed at any point leaves no engine and no container running.
    reaper = Reaper.start(state / "reaper.log", docker_host, engine_root)
    engine: DockerEngine | None = None
    api: ApiServer | None = None
    operator: asyncio.Task[None] | None = None
    watcher: asyncio.Task[None] | None = None
    stop = asyncio.Event()
    try:
        if engine_root is not None:
            print("starting a private Docker engine …", flush=True)
            engine = await asyncio.to_thread(DockerEngine.start, engine_root, spawned=reaper.engine_spawned)
        if options.apps is not None and options.apps.is_dir():
            await asyncio.to_thread(seed_app_repos, options.apps, state / "repos")
        api = ApiServer(port=options.port, crds=[render_crd()]).start()
        for obj in operator_service(options.http_port):
            api.create(obj)
        kubeconfig = api.write_kubeconfig(state / "kubeconfig")
        targets: dict[str, Any] = {"aws_region": options.aws_region} if options.aws_region else {}
        if options.target_policy is not None:
            targets["target_policy"] = options.target_policy
        # Local targets keep their files in the state dir; ssm and ssh hosts (AWS_ENDPOINT_URL's instances too)
        # choose their own directory, as under `deploymind run`. History is open: the sandbox's one user is its
        # token-less admin, and it prints the direct URL for anyone on this machine.
        settings = Settings(state_dir=state / "operator", local_host_dir=str(state / "host"),
                            allow_local_transport=True, allow_file_repos=True, local_docker_host=docker_host,
                            history_auth="none", **targets, **options.ssm_settings)
        ready = asyncio.Event()
        reaper.apps_may_run()
        operator = asyncio.create_task(run_operator(
            settings, kubeconfig=str(kubeconfig), endpoints=Endpoints(port=options.http_port),
            hooks=options.extra_hooks, stop_flag=stop, ready_flag=ready))
        await _first_of(ready.wait(), operator)
        if operator.done():
            return 0  # signalled while starting
        # Kopf installs its own handlers as it starts. Ours set `stop`, which stops Kopf and the status printer
        # together: with Kopf's, the printer would run on and Kopf would wait 5 s for it as a hung task.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"sandbox ready: KUBECONFIG={kubeconfig}", flush=True)
        operator_url = f"http://127.0.0.1:{options.http_port}"
        print(f"  operator health: {operator_url}/healthz", flush=True)
        print(f"  metrics: {operator_url}/metrics", flush=True)
        print(f"  history: KUBECONFIG={kubeconfig} deploymind history NAME -n NAMESPACE  "
              f"(or {operator_url}/history/<namespace>/<name>)", flush=True)
        if options.apply:
            for line in await asyncio.to_thread(apply_documents, str(kubeconfig),
                                                load_documents(options.apply, state)):
                print(line, flush=True)
        watcher = asyncio.create_task(StatusPrinter(str(kubeconfig)).run(stop))
        await _first_of(stop.wait(), operator)
    finally:
        stop.set()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if operator is not None:  # only an operator that ran can have started app containers
            with contextlib.suppress(Exception):
                await asyncio.wait_for(operator, OPERATOR_STOP_TIMEOUT_S)
            removed = await asyncio.to_thread(remove_app_containers, docker_host)
            print(f"sandbox stopped; removed {removed} app container(s)", flush=True)
        if api is not None:
            api.stop()
        if engine is not None:
            await asyncio.to_thread(engine.stop)
        reaper.release()
    return 0


async def _first_of(awaitable: Any, task: asyncio.Task[None]) -> None:
    """Wait for `awaitable` or the operator's end; an operator that failed raises its error here."""
    waiter = asyncio.ensure_future(awaitable)
    await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    if task.done() and not waiter.done():
        waiter.cancel()
        task.result()


def main(options: SandboxOptions) -> int:
    try:
        code = asyncio.run(run_sandbox(options))
    except KeyboardInterrupt:
        code = 130
    except Exception as e:  # the sandbox is a user's first contact: say what failed, not a traceback
        print(f"sandbox failed: {e}", file=sys.stderr)
        code = 1
    # Everything the sandbox owns is stopped by now. The interpreter's own teardown would then spend 2-3 s collecting
    # the heap (Kopf, the Kubernetes client, the emulator) before the process ends: a Ctrl-C need not wait for that.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
