"""Benchmark of the ssm transport through the real operator (issue 9, "Benchmark").

Parts: the test world's moto server (SSM commands run over SSH on its sshd, on a private Docker engine), the
Kubernetes API emulator, the operator as a subprocess (`python -m deploymind run … --ssm-poll-initial-seconds S`),
and a fixture app repository. AWS calls are counted on the moto server (`MotoServer.calls()`: the operator's
botocore clients only; the host's AWS CLI and curl are counted apart as `host`).

For each poll start (and once over ssh, to compare), one Deployment goes through:
  1. first rollout: create → phase Deployed (build through S3, release with its env through Parameter Store);
  2. warm update: an env-only change (MODE=a → MODE=b, the same commit: no build) → the app answers MODE=b;
  3. revert: `deploymind.io/rollback-to` the first revision → the app answers MODE=a again (one release);
each with its wall time (from the kubectl call) and the AWS calls it cost. The probe period is long (300 s) so no
health tick falls inside these windows. Then, once, with the default poll schedule and the 30 s SSM minimum period:
  4. one health tick: the AWS calls between the end of a rollout's last call and the next tick's send.

Usage (as root: the private Docker engine needs it; loopback only; about 4 minutes):
    python bench/ssm_bench.py --json bench/ssm_bench.results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "e2e"), str(ROOT / "tests"), str(ROOT / "operator")]

from dm import Cluster, Operator, deployment, http_get, wait_for  # noqa: E402
from targets import aws_client, ssh_target, ssm_instance  # noqa: E402

from deploymind.sandbox.docker_engine import DockerEngine  # noqa: E402
from deploymind.settings import Settings  # noqa: E402
from world.apps import AppRepo, create_app_repo, env_mode  # noqa: E402
from world.dirs import make_world_root, private_dir, remove_tree  # noqa: E402
from world.kube import Kube  # noqa: E402
from world.kubetools import Kubectl  # noqa: E402
from world.moto_ssm import MotoServer  # noqa: E402
from world.ports import free_port  # noqa: E402
from world.sshd import Sshd  # noqa: E402
from world.tools import kubectl_path  # noqa: E402

COMMAND = "python bench/ssm_bench.py --json bench/ssm_bench.results.json"
ROLLBACK_TO = "deploymind.io/rollback-to"
STEP_TIMEOUT_S = 120.0
# Long enough that no tick falls inside a rollout's window; the tick is measured apart at the SSM minimum.
QUIET_PERIOD_S = 300
TICK_PERIOD_S = 30


@dataclass
class World:
    root: Path
    engine: DockerEngine
    sshd: Sshd
    moto: MotoServer
    kube: Kube
    kubectl: Kubectl

    def stop(self) -> None:
        for part in (self.kube, self.moto, self.sshd, self.engine):
            part.stop()
        remove_tree(self.root)


def start_world() -> World:
    root = make_world_root()
    engine = DockerEngine.start(private_dir(root, "docker"))
    sshd = Sshd.start(private_dir(root, "sshd"), docker_host=engine.host)
    moto = MotoServer.start(private_dir(root, "moto"), sshd)
    kube = Kube.start(private_dir(root, "kube"))
    kubectl = Kubectl(binary=kubectl_path(), kubeconfig=kube.kubeconfig, cache_dir=private_dir(root, "kubecache"))
    return World(root, engine, sshd, moto, kube, kubectl)


@dataclass
class BenchOperator(Operator):
    """The e2e Operator with extra `deploymind run` arguments (the poll schedule)."""

    extra: list[str] = field(default_factory=list)

    def start(self) -> BenchOperator:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host_dir.mkdir(parents=True, exist_ok=True)
        self.host_dir.chmod(0o777)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deploymind", "run", "--kubeconfig", str(self.kubeconfig),
             "--namespace", self.namespace, "--state-dir", str(self.workdir / "state"),
             "--host-dir", str(self.host_dir), "--lease-namespace", self.namespace, "--http-host", "127.0.0.1",
             "--http-port", str(self.http_port), "--allow-file-repos", *self.extra],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            # This tree's package, whatever copy of deploymind the interpreter has installed.
            env={**os.environ, **self.env, "PYTHONPATH": str(ROOT / "operator")})
        wait_for(self._healthy, 30, "the operator's /healthz")
        return self


def total(calls: dict[str, int]) -> int:
    return sum(calls.values())


def measured(world: World, action: Callable[[], None], done: Callable[[], object], what: str) -> dict[str, Any]:
    """Run `action`, wait for `done`; the wall time and the operator's AWS calls in between (settled: the last
    cleanup call may land just after the outcome is visible)."""
    world.moto.reset_calls()
    start = time.monotonic()
    action()
    wait_for(done, STEP_TIMEOUT_S, what, interval=0.05)
    wall = time.monotonic() - start
    calls = settled_calls(world.moto)
    return {"wall_s": round(wall, 2), "aws_calls": total(calls), "by_operation": calls,
            "host_calls": world.moto.calls("host")}


def settled_calls(moto: MotoServer, quiet_s: float = 1.5) -> dict[str, int]:
    """The operator's call counts once they have not changed for `quiet_s`."""
    last, since = moto.calls(), time.monotonic()
    while time.monotonic() - since < quiet_s:
        time.sleep(0.1)
        now = moto.calls()
        if now != last:
            last, since = now, time.monotonic()
    return last


def deployed_with(cluster: Cluster, port: int, mode: str, revision: str | None = None) -> Callable[[], bool]:
    def check() -> bool:
        status = cluster.status("web")
        if status.get("phase") != "Deployed" or any(c["type"] == "Reconciling" for c in status.get("conditions", [])):
            return False
        if revision is not None and (status.get("revision") or {}).get("id") != revision:
            return False
        return env_mode(port) == mode and http_get(port)[0] == 200
    return check


def manifest(repo: AppRepo, port: int, target: dict[str, Any], mode: str, period: int) -> dict[str, Any]:
    return deployment("web", repo, port, target=target, rollback={"auto": True, "bakeSeconds": 0},
                      healthCheck={"periodSeconds": period},
                      container={"port": port, "env": [{"name": "MODE", "value": mode}]})


def prepare(world: World, transport: str) -> tuple[Cluster, dict[str, Any], dict[str, str]]:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    assert world.kubectl("create", "namespace", namespace).returncode == 0
    cluster = Cluster(world.kubectl, namespace)
    env = dict(world.engine.env)
    if transport == "ssh":
        return cluster, ssh_target(cluster, world.sshd), env
    bucket = f"dm-bench-{uuid.uuid4().hex[:12]}"
    aws_client("s3", world.moto).create_bucket(Bucket=bucket)
    env.update({**world.moto.env, "DEPLOYMIND_BUILD_BUCKET": bucket})
    return cluster, {"transport": "ssm", "instanceId": ssm_instance(world.moto, namespace)}, env


def scenario(world: World, transport: str, poll: tuple[float, float] | None) -> dict[str, Any]:
    """First rollout, warm update, revert of one Deployment; `poll` = (initial, max) or the operator's default."""
    cluster, target, env = prepare(world, transport)
    extra = [] if poll is None else ["--ssm-poll-initial-seconds", str(poll[0]), "--ssm-poll-max-seconds", str(poll[1])]
    repo = create_app_repo(private_dir(world.root, "apps") / uuid.uuid4().hex[:12])
    op = BenchOperator(kubeconfig=world.kube.kubeconfig, namespace=cluster.namespace,
                       workdir=private_dir(world.root, f"operator-{cluster.namespace}", mode=0o755), env=env,
                       extra=extra)
    op.start()
    port = free_port()
    try:
        first = measured(world, lambda: cluster.apply(manifest(repo, port, target, "a", QUIET_PERIOD_S)),
                         deployed_with(cluster, port, "a"), "first rollout")
        first_id = cluster.status("web")["revision"]["id"]
        update = measured(world, lambda: cluster.apply(manifest(repo, port, target, "b", QUIET_PERIOD_S)),
                          deployed_with(cluster, port, "b"), "warm update")
        revert = measured(world, lambda: cluster.annotate("web", ROLLBACK_TO, first_id),
                          deployed_with(cluster, port, "a", first_id), "revert")
        return {"first_rollout": first, "update": update, "revert": revert}
    finally:
        cleanup(world, cluster, op)


def tick(world: World) -> dict[str, Any]:
    """The AWS calls of one health tick through SSM (default poll schedule, 30 s period)."""
    cluster, target, env = prepare(world, "ssm")
    repo = create_app_repo(private_dir(world.root, "apps") / uuid.uuid4().hex[:12])
    op = BenchOperator(kubeconfig=world.kube.kubeconfig, namespace=cluster.namespace,
                       workdir=private_dir(world.root, f"operator-{cluster.namespace}", mode=0o755), env=env)
    op.start()
    port = free_port()
    try:
        cluster.apply(manifest(repo, port, target, "a", TICK_PERIOD_S))
        wait_for(deployed_with(cluster, port, "a"), STEP_TIMEOUT_S, "deployed", interval=0.05)
        settled_calls(world.moto)
        world.moto.reset_calls()
        # The last count with one send is the first tick complete: the next one is 30 s later.
        last: dict[str, int] = {}
        deadline = time.monotonic() + 3 * TICK_PERIOD_S
        while time.monotonic() < deadline:
            now = world.moto.calls()
            if now.get("ssm:SendCommand", 0) >= 2:
                return {"aws_calls": total(last), "by_operation": last, "period_s": TICK_PERIOD_S}
            last = now
            time.sleep(0.05)
        raise AssertionError(f"no second health tick within {3 * TICK_PERIOD_S} s; calls: {last}")
    finally:
        cleanup(world, cluster, op)


def cleanup(world: World, cluster: Cluster, op: BenchOperator) -> None:
    cluster.run("delete", "dmd", "web", "--ignore-not-found", "--wait=false", check=False)
    wait_for(lambda: cluster.run("get", "dmd", "web", check=False).returncode != 0, STEP_TIMEOUT_S, "deleted")
    op.stop()


def table(results: dict[str, Any]) -> str:
    ssh = results["ssh"]
    lines = ["| transport, poll start / max s | first rollout: calls, s | warm update: calls, s | "
             "update - ssh s | revert: calls, s |", "|---|---|---|---|---|"]
    for name, run in results["runs"].items():
        cells = [f"{run[k]['aws_calls']}, {run[k]['wall_s']:.2f}" for k in ("first_rollout", "update", "revert")]
        above = run["update"]["wall_s"] - ssh["update"]["wall_s"]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {above:+.2f} | {cells[2]} |")
    cells = [f"0, {ssh[k]['wall_s']:.2f}" for k in ("first_rollout", "update", "revert")]
    lines.append(f"| ssh (reference) | {cells[0]} | {cells[1]} | 0 | {cells[2]} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--starts", default="0.25,0.5,1,2", help="poll starts to measure (s, comma-separated)")
    args = parser.parse_args()
    defaults = Settings()
    began = time.monotonic()
    world = start_world()
    try:
        results: dict[str, Any] = {"ssh": scenario(world, "ssh", None), "runs": {}}
        results["runs"][f"ssm default ({defaults.ssm_poll_initial_seconds:g} / {defaults.ssm_poll_max_seconds:g})"] \
            = scenario(world, "ssm", None)
        for start in (float(s) for s in args.starts.split(",")):
            results["runs"][f"ssm {start:g} / {defaults.ssm_poll_max_seconds:g}"] = scenario(
                world, "ssm", (start, max(start, defaults.ssm_poll_max_seconds)))
        results["tick"] = tick(world)
    finally:
        world.stop()
    results.update(command=COMMAND, wall_s=round(time.monotonic() - began, 1), python=platform.python_version(),
                   cores=os.cpu_count(), recorded=time.strftime("%Y-%m-%d"),
                   default_poll={"initial_s": defaults.ssm_poll_initial_seconds,
                                 "max_s": defaults.ssm_poll_max_seconds})
    print(table(results))
    print(f"health tick through SSM: {results['tick']['aws_calls']} calls {results['tick']['by_operation']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
