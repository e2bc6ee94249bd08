"""`deploymind sandbox`: the Kubernetes API emulator, a private Docker engine and the operator, in one process.

No cluster and no AWS account: Deployments with `transport: local` run their containers on this machine's private
Docker engine. In files given to `--apply`, `file://SANDBOX/` means the sandbox's state directory, and every
directory under `examples/sandbox/apps/` (or `--apps`) is committed into a Git repository there first.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from deploymind.controller.hooks import Hooks
from deploymind.controller.operator import Endpoints, run_operator
from deploymind.sandbox.apiserver import ApiServer
from deploymind.sandbox.apply import apply_documents
from deploymind.sandbox.docker_engine import DockerEngine
from deploymind.sandbox.watch import StatusPrinter
from deploymind.settings import Settings

SANDBOX_URL = "file://SANDBOX/"


@dataclass
class SandboxOptions:
    state_dir: Path
    port: int = 0
    http_port: int = 8080
    apply: Sequence[Path] = ()
    apps: Path | None = None
    docker_host: str | None = None
    extra_hooks: Hooks = field(default_factory=Hooks)


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


async def run_sandbox(options: SandboxOptions) -> int:
    state = options.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    engine = None
    docker_host = options.docker_host
    if docker_host is None:
        print("starting a private Docker engine …", flush=True)
        engine = await asyncio.to_thread(DockerEngine.start, state / "docker")
        docker_host = engine.host
    if options.apps is not None and options.apps.is_dir():
        await asyncio.to_thread(seed_app_repos, options.apps, state / "repos")
    api = ApiServer(port=options.port, crds=[render_crd()]).start()
    kubeconfig = api.write_kubeconfig(state / "kubeconfig")
    settings = Settings(state_dir=state / "operator", host_dir=str(state / "host"), allow_local_transport=True,
                        local_docker_host=docker_host)
    stop = asyncio.Event()
    ready = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    operator = asyncio.create_task(run_operator(
        settings, kubeconfig=str(kubeconfig), endpoints=Endpoints(port=options.http_port),
        hooks=options.extra_hooks, stop_flag=stop, ready_flag=ready))
    printer = StatusPrinter(str(kubeconfig))
    watcher: asyncio.Task[None] | None = None
    try:
        await _first_of(ready.wait(), operator)
        print(f"sandbox ready: KUBECONFIG={kubeconfig}", flush=True)
        operator_url = f"http://127.0.0.1:{options.http_port}"
        print(f"  operator health: {operator_url}/healthz", flush=True)
        print(f"  metrics: {operator_url}/metrics", flush=True)
        print(f"  history: {operator_url}/history/<namespace>/<name>  "
              f"(or: deploymind history NAME -n NAMESPACE --url {operator_url})", flush=True)
        if options.apply:
            for line in await asyncio.to_thread(apply_documents, str(kubeconfig),
                                                load_documents(options.apply, state)):
                print(line, flush=True)
        watcher = asyncio.create_task(printer.run(stop))
        await _first_of(stop.wait(), operator)
    finally:
        stop.set()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        with contextlib.suppress(Exception):
            await asyncio.wait_for(operator, 30)
        removed = await asyncio.to_thread(remove_app_containers, docker_host)
        print(f"sandbox stopped; removed {removed} app container(s)", flush=True)
        api.stop()
        if engine is not None:
            await asyncio.to_thread(engine.stop)
    return 0


async def _first_of(awaitable: Any, task: asyncio.Task[None]) -> None:
    waiter = asyncio.ensure_future(awaitable)
    await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    if task.done() and not waiter.done():
        waiter.cancel()
        task.result()  # the operator stopped early: show why
        raise RuntimeError("the operator stopped")


def remove_app_containers(docker_host: str) -> int:
    """Remove every container DeployMind started on this engine (they carry the deploymind.io/uid label)."""
    env = {**os.environ, "DOCKER_HOST": docker_host}
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", "label=deploymind.io/uid"], env=env,
                         capture_output=True, text=True, check=False).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], env=env, capture_output=True, check=False)
    return len(ids)


def main(options: SandboxOptions) -> int:
    try:
        return asyncio.run(run_sandbox(options))
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # the sandbox is a user's first contact: say what failed, not a traceback
        print(f"sandbox failed: {e}", file=sys.stderr)
        return 1
