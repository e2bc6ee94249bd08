"""Benchmark of leader failover (issue 10, "Two replicas, one leader"): how long reconciling stops when the leader
dies, and when it is stopped on purpose.

Parts: the Kubernetes API emulator (the test world's `Kube`), a private Docker engine, two operator processes
(`python -m deploymind run --leader-election --leader-lease-seconds S …`, POD_NAME replica-0 and replica-1, one
watched namespace, one operator namespace, one host directory) and a fixture app repository. One Deployment
(`transport: local`) is deployed first.

Each round kills the leader with SIGKILL and, at once, asks for a redeploy (`deploymind.io/requested-at`), which
only a leader acts on. Times are taken from the API server's audit log, polled every 10 ms, where every request
names the replica that sent it (its user agent is `deploymind (<POD_NAME>)`):
  1. kill → the standby's first successful write of the Lease `deploymind-leader` (it leads);
  2. the leader's last renewal (`renewTime` of the Lease, read just after the kill) → that write: at most the
     Lease's duration by design;
  3. kill → the standby's first status write of the Deployment (Kopf started, the object resumed, reconciled);
  4. kill → the redeploy request handled (`status.lastHandledReconcileAt`; the release answers `Unchanged`).
The killed replica is started again (as the standby) before the next round, which starts once that standby has
read the Lease before and after one of the leader's renewals (a standby that has just started cannot know when the
Lease last changed, so it counts a whole duration from its first read). Last, the leader is stopped with
SIGTERM: its exit → the standby leads (the Lease was released, so no waiting for it to expire).

Usage (as root: the private Docker engine needs it; loopback only; about 2 minutes with the default 15 s Lease):
    python bench/failover_bench.py --json bench/failover_bench.results.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "e2e"), str(ROOT / "tests"), str(ROOT / "operator")]

import kubernetes.client as k8s  # noqa: E402
from common import emit, summary  # noqa: E402
from dm import Cluster, Operator, deployment, handled, http_get, wait_for  # noqa: E402

from deploymind.controller.kube import load_api_client  # noqa: E402
from deploymind.controller.leader import LEASE_NAME  # noqa: E402
from deploymind.sandbox.docker_engine import DockerEngine  # noqa: E402
from deploymind.sandbox.kube.audit import AuditRecord  # noqa: E402
from world.apps import create_app_repo  # noqa: E402
from world.dirs import make_world_root, private_dir, remove_tree  # noqa: E402
from world.kube import Kube  # noqa: E402
from world.kubetools import Kubectl  # noqa: E402
from world.ports import free_port  # noqa: E402
from world.tools import kubectl_path  # noqa: E402

COMMAND = "python bench/failover_bench.py --json bench/failover_bench.results.json"
NAMESPACE = "bench"
REPLICAS = ("replica-0", "replica-1")


def agent(replica: str) -> str:
    return f"deploymind ({replica})"


def leading(op: Operator) -> bool:
    status, body = http_get(op.http_port, "/healthz")
    return status == 200 and bool(json.loads(body).get("leader"))


class Audit:
    """The emulator's audit log, polled for the first request matching a predicate after a mark."""

    def __init__(self, kube: Kube) -> None:
        self.log = kube.emulator.audit

    def mark(self) -> int:
        return len(self.log.records)

    def first_after(self, mark: int, match: Callable[[AuditRecord], bool], timeout: float, what: str) -> float:
        """time.time() when a matching record first appeared after `mark` (polled every 10 ms)."""
        def found() -> float | None:
            return time.time() if any(match(r) for r in self.log.records[mark:]) else None

        return wait_for(found, timeout, what, interval=0.01)


def lease_write_by(replica: str) -> Callable[[AuditRecord], bool]:
    return lambda r: (r.verb in ("update", "create") and r.resource == "leases.coordination.k8s.io"
                      and r.code in (200, 201) and r.user_agent == agent(replica)
                      and (r.name == LEASE_NAME or r.verb == "create"))


def status_write_by(replica: str) -> Callable[[AuditRecord], bool]:
    return lambda r: (r.verb == "patch" and r.resource == "deployments.deploymind.io" and r.subresource == "status"
                      and r.code == 200 and r.user_agent == agent(replica))


def seen_a_renewal(records: list[AuditRecord], standby: str, leader: str) -> bool:
    """The standby read the Lease, the leader renewed it, the standby read it again: from then on the standby
    knows when the Lease changed last (a standby that has just started counts a whole duration from its first
    read)."""
    def reads(r: AuditRecord) -> bool:
        return r.verb == "get" and r.name == LEASE_NAME and r.code == 200 and r.user_agent == agent(standby)

    steps = [reads, lease_write_by(leader), reads]
    for record in records:
        if steps and steps[0](record):
            steps.pop(0)
    return not steps


def failover_round(token: str, ops: dict[str, Operator], started: dict[str, int], cluster: Cluster, audit: Audit,
                   leases: k8s.CoordinationV1Api, lease_seconds: int) -> dict[str, Any]:
    leader = next(name for name, op in ops.items() if leading(op))
    standby = next(name for name in ops if name != leader)
    wait_for(lambda: seen_a_renewal(audit.log.records[started[standby]:], standby, leader), 3 * lease_seconds,
             f"{standby} standing by")
    mark = audit.mark()
    killed_at = time.time()
    ops[leader].kill()
    cluster.annotate("web", "deploymind.io/requested-at", token)
    renewed = leases.read_namespaced_lease(LEASE_NAME, NAMESPACE).spec.renew_time.timestamp()
    acquired = audit.first_after(mark, lease_write_by(standby), 3 * lease_seconds, f"{standby} leading")
    first_status = audit.first_after(mark, status_write_by(standby), 60, f"{standby}'s first status write")
    cluster.wait_status("web", handled(token), 60, f"redeploy {token} handled")
    handled_at = time.time()
    started[leader] = audit.mark()
    ops[leader].start()  # again, as the standby
    return {"killed": leader, "took_over": standby,
            "kill_to_acquire_s": round(acquired - killed_at, 3),
            "last_renewal_to_acquire_s": round(acquired - renewed, 3),
            "kill_to_first_status_write_s": round(first_status - killed_at, 3),
            "acquire_to_first_status_write_s": round(first_status - acquired, 3),
            "kill_to_redeploy_handled_s": round(handled_at - killed_at, 3)}


def sigterm_handover(ops: dict[str, Operator], audit: Audit, lease_seconds: int) -> dict[str, Any]:
    leader = next(name for name, op in ops.items() if leading(op))
    standby = next(name for name in ops if name != leader)
    mark = audit.mark()
    signalled = time.time()
    ops[leader].stop()
    exited = time.time()
    acquired = audit.first_after(mark, lease_write_by(standby), 3 * lease_seconds, f"{standby} leading")
    return {"stopped": leader, "took_over": standby, "sigterm_to_exit_s": round(exited - signalled, 3),
            "exit_to_acquire_s": round(acquired - exited, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="leader kills to time")
    parser.add_argument("--lease-seconds", type=int, default=15, help="--leader-lease-seconds of both replicas")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: the private Docker engine needs it", file=sys.stderr)
        return 1
    root = make_world_root()
    started = time.time()
    engine = DockerEngine.start(private_dir(root, "docker"))
    kube = Kube.start(private_dir(root, "kube"))
    ops: dict[str, Operator] = {}
    try:
        kubectl = Kubectl(binary=kubectl_path(), kubeconfig=kube.kubeconfig, cache_dir=private_dir(root, "kubecache"))
        cluster = Cluster(kubectl, NAMESPACE)
        kubectl("create", "namespace", NAMESPACE)
        host_dir = private_dir(root, "host", mode=0o777)
        flags = ["--leader-election", "--leader-lease-seconds", str(args.lease_seconds), "--host-dir", str(host_dir)]
        for name in REPLICAS:
            ops[name] = Operator(kubeconfig=kube.kubeconfig, namespace=NAMESPACE,
                                 workdir=private_dir(root, name, mode=0o755), extra_args=flags,
                                 env={**engine.env, "POD_NAME": name, "POD_NAMESPACE": NAMESPACE}).start()
            if name == REPLICAS[0]:
                wait_for(lambda: leading(ops[REPLICAS[0]]), 3 * args.lease_seconds, "replica-0 leading")
        repo = create_app_repo(private_dir(root, "apps") / "web")
        cluster.apply(deployment("web", repo, free_port(), rollback={"bakeSeconds": 0}))
        cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 120, "web deployed")
        audit = Audit(kube)
        leases = k8s.CoordinationV1Api(load_api_client(str(kube.kubeconfig)))
        standing_by_since = dict.fromkeys(REPLICAS, 0)
        rounds = [failover_round(f"round-{i}", ops, standing_by_since, cluster, audit, leases, args.lease_seconds)
                  for i in range(args.rounds)]
        handover = sigterm_handover(ops, audit, args.lease_seconds)
    finally:
        for op in ops.values():
            op.stop()
        kube.stop()
        engine.stop()
        remove_tree(root)
    results = {
        "command": COMMAND,
        "recorded": datetime.date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                    "note": "2 shared cores: compare ratios, not absolutes"},
        "lease_seconds": args.lease_seconds,
        "wall_seconds": round(time.time() - started, 1),
        "summary": {key: summary([r[key] for r in rounds]) for key in (
            "kill_to_acquire_s", "last_renewal_to_acquire_s", "kill_to_first_status_write_s",
            "acquire_to_first_status_write_s", "kill_to_redeploy_handled_s")},
        "rounds": rounds,
        "sigterm_handover": handover,
    }
    emit(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
