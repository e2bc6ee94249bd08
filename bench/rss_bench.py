"""Benchmark of the operator's memory (issue 10, "operator pod RSS idle and with 100 Deployments").

Parts: the Kubernetes API emulator (the test world's `Kube`), a private Docker engine, the operator as a subprocess
(`python -m deploymind run --namespace bench --allow-local-transport --history-auth none …`, without --verbose, as
a pod runs it) and one image of the fixture app (tests/world/apps.py: busybox httpd), built once on the engine and
deployed as a prebuilt `spec.image`, so no Deployment builds anything. Every Deployment has its own port, `transport:
local`, a health check every `--period` (10) s and no bake window.

Phases, each sampled every second from /proc/<pid>/status (VmRSS, VmHWM) and /proc/<pid>/smaps_rollup (Pss):
  1. idle: `--idle-seconds` (15) once /healthz answers, no Deployments;
  2. rollout: `--deployments` (100) created at once → every one Ready=True (the time is one of the figures), at most
     `--max-concurrent-rollouts` (4) rollouts at a time;
  3. steady: `--steady-seconds` (60) of health ticks with every Deployment Ready (median and max; how many ticks
     ran, and passed, comes from the operator's `deploymind_health_checks_total`);
  4. deleted: every Deployment deleted → all gone (the operator's cleanup), then `--idle-seconds` again.
VmHWM is the process's peak RSS so far, read at the end of each phase. The operator's children (the local
transport's `sh`/`docker` processes, short-lived) are not in VmRSS; their summed RSS at each sample is `children`.
The API requests of each phase (phase 4's with the deletion) are the emulator's audit records whose user agent is
not the benchmark's own.

All the Deployments are on the one local host, so their releases and cleanups take turns under its host Lease
(a waiter polls it, backing off to 5 s): that, more than `--max-concurrent-rollouts`, sets how long phases 2 and 4
take.

Usage (as root: the private Docker engine needs it; loopback only; about 11 minutes on 2 busy cores):
    python bench/rss_bench.py --json bench/rss_bench.results.json
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "operator")]

import kubernetes.client as k8s  # noqa: E402
from common import emit, http_get, summary, wait_for  # noqa: E402

from deploymind.api import GROUP, PLURAL, VERSION  # noqa: E402
from deploymind.controller.kube import load_api_client  # noqa: E402
from deploymind.sandbox.docker_engine import DockerEngine  # noqa: E402
from deploymind.sandbox.kube.audit import AuditRecord  # noqa: E402
from world.apps import build_image, create_app_repo  # noqa: E402
from world.dirs import make_world_root, private_dir, remove_tree  # noqa: E402
from world.kube import Kube  # noqa: E402
from world.ports import free_port  # noqa: E402

COMMAND = "python bench/rss_bench.py --json bench/rss_bench.results.json"
NAMESPACE = "bench"
IMAGE = "deploymind-bench/httpd:1"
BENCH_AGENT = "rss-bench"
"""The benchmark's own API client; every other user agent in the audit log is the operator's."""


# ---------------------------------------------------------------------------------------------- memory
def _kib(text: str, field: str) -> int | None:
    match = re.search(rf"^{field}:\s+(\d+) kB$", text, re.M)
    return int(match.group(1)) if match else None


def children_rss_kib(pid: int) -> int:
    """Summed VmRSS of every live descendant of `pid` (processes come and go while /proc is read)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # The command name in field 2 may hold spaces and parentheses: the ppid follows the last ")".
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    family, grew = {pid}, True
    while grew:
        found = {child for child, parent in parents.items() if parent in family} - family
        family |= found
        grew = bool(found)
    total = 0
    for member in family - {pid}:
        try:
            total += _kib((Path("/proc") / str(member) / "status").read_text(), "VmRSS") or 0
        except OSError:
            continue
    return total


def memory(pid: int) -> dict[str, int | None]:
    """The process's VmRSS, VmHWM and Pss (None when smaps_rollup is not readable), and its children's RSS, in KiB."""
    status = (Path("/proc") / str(pid) / "status").read_text()
    try:
        pss = _kib((Path("/proc") / str(pid) / "smaps_rollup").read_text(), "Pss")
    except OSError:
        pss = None
    return {"rss": _kib(status, "VmRSS"), "hwm": _kib(status, "VmHWM"), "pss": pss, "children": children_rss_kib(pid)}


def mib_summary(samples: list[dict[str, int | None]]) -> dict[str, Any]:
    """Median and max (MiB) of each figure over a phase's samples; VmHWM as of its last sample."""
    out: dict[str, Any] = {"samples": len(samples)}
    for key in ("rss", "pss", "children"):
        values = [v / 1024 for s in samples if (v := s[key]) is not None]
        if values:
            out[f"{key}_mib"] = {"median": round(statistics.median(values), 1), "max": round(max(values), 1)}
    hwm = samples[-1]["hwm"]
    out["hwm_mib"] = round(hwm / 1024, 1) if hwm is not None else None
    return out


def sample_for(pid: int, seconds: float) -> list[dict[str, int | None]]:
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(memory(pid))
        time.sleep(1)
    return samples


# ---------------------------------------------------------------------------------------------- the operator
def start_operator(kube: Kube, root: Path, engine: DockerEngine, http_port: int,
                   max_rollouts: int) -> subprocess.Popen[bytes]:
    log = (root / "operator.log").open("ab")
    operator = subprocess.Popen(
        [sys.executable, "-m", "deploymind", "run", "--kubeconfig", str(kube.kubeconfig), "--namespace", NAMESPACE,
         "--allow-local-transport", "--state-dir", str(private_dir(root, "state")),
         "--host-dir", str(private_dir(root, "host")), "--lease-namespace", NAMESPACE, "--history-auth", "none",
         "--http-host", "127.0.0.1", "--http-port", str(http_port), "--max-concurrent-rollouts", str(max_rollouts)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, **engine.env, "POD_NAME": "rss-bench-operator", "PYTHONPATH": str(ROOT / "operator")})

    def healthy() -> bool:
        if operator.poll() is not None:
            raise RuntimeError(f"the operator exited with {operator.returncode}; see {root / 'operator.log'}")
        return http_get(http_port, "/healthz")[0] == 200

    wait_for(healthy, 60, "the operator's /healthz", interval=0.2)
    return operator


def stop_operator(operator: subprocess.Popen[bytes]) -> None:
    if operator.poll() is not None:
        return
    os.killpg(operator.pid, signal.SIGTERM)
    try:
        operator.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(operator.pid, signal.SIGKILL)
        operator.wait(10)


def metric(http_port: int, name: str, labels: str = "") -> float:
    """The sum of a metric's samples on the operator's /metrics, over those whose labels contain `labels`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(m.group(2)) for m in re.finditer(rf"^{re.escape(name)}(?:{{([^}}]*)}})? ([0-9.e+-]+)$", text, re.M)
               if labels in (m.group(1) or ""))


def requests_of(records: list[AuditRecord]) -> dict[str, Any]:
    """The operator's API requests among `records`: how many, by user agent and by verb and resource."""
    ours = [r for r in records if r.user_agent != BENCH_AGENT]
    kinds = Counter(f"{r.verb} {r.resource or r.path}{'/' + r.subresource if r.subresource else ''}" for r in ours)
    return {"total": len(ours), "by_user_agent": dict(Counter(r.user_agent for r in ours).most_common()),
            "by_verb_and_resource": dict(kinds.most_common())}


# ---------------------------------------------------------------------------------------------- Deployments
def deployment(name: str, port: int, period: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Deployment", "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "image": IMAGE,
            "target": {"transport": "local"},
            "container": {"port": port},
            "healthCheck": {"path": "/health", "periodSeconds": period, "timeoutSeconds": 2, "failureThreshold": 3,
                            "startupTimeoutSeconds": 60},
            "rollback": {"auto": True, "bakeSeconds": 0},
        },
    }


def is_ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def listed(objects: k8s.CustomObjectsApi) -> list[dict[str, Any]]:
    answer: dict[str, Any] = objects.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)  # type: ignore[assignment]
    items: list[dict[str, Any]] = answer["items"]
    return items


def roll_out(objects: k8s.CustomObjectsApi, pid: int, count: int, period: int,
             timeout: float) -> tuple[dict[str, Any], list[dict[str, int | None]]]:
    """Create `count` Deployments at once and wait until every one is Ready=True, sampling memory every second."""
    ports = {f"app-{i:03d}": free_port() for i in range(count)}
    started = time.monotonic()
    for name, port in ports.items():
        objects.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, deployment(name, port, period))
    ready_at: dict[str, float] = {}
    samples = []
    deadline = started + timeout
    while len(ready_at) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {timeout:.0f} s only {len(ready_at)} of {count} Deployments are Ready")
        samples.append(memory(pid))
        now = time.monotonic()
        for obj in listed(objects):
            if is_ready(obj):
                ready_at.setdefault(obj["metadata"]["name"], now - started)
        time.sleep(1)
    answering = sum(http_get(port)[0] == 200 for port in ports.values())
    if answering != count:
        raise RuntimeError(f"only {answering} of {count} apps answer on their ports although all are Ready")
    return {"deployments": count, "create_to_all_ready_s": round(max(ready_at.values()), 1),
            "create_to_ready_s": summary(list(ready_at.values()), 1), "apps_answering": answering}, samples


def delete_all(objects: k8s.CustomObjectsApi, pid: int, timeout: float) -> tuple[dict[str, Any], list[dict[str, int | None]]]:
    """Delete every Deployment and wait until all are gone (the operator has cleaned the host), sampling memory."""
    started = time.monotonic()
    for obj in listed(objects):
        objects.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, obj["metadata"]["name"])
    samples = []
    while listed(objects):
        if time.monotonic() > started + timeout:
            raise TimeoutError(f"after {timeout:.0f} s {len(listed(objects))} Deployments are still there")
        samples.append(memory(pid))
        time.sleep(1)
    return {"delete_to_all_gone_s": round(time.monotonic() - started, 1)}, samples


def containers_left(engine: DockerEngine) -> int:
    done = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=deploymind.io/namespace={NAMESPACE}"],
                          capture_output=True, text=True, check=True, env={**os.environ, **engine.env})
    return len(done.stdout.split())


# ---------------------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--period", type=int, default=10, help="healthCheck.periodSeconds of every Deployment")
    parser.add_argument("--max-concurrent-rollouts", type=int, default=4)
    parser.add_argument("--idle-seconds", type=float, default=15, help="sampling idle, before and after")
    parser.add_argument("--steady-seconds", type=float, default=60, help="sampling with every Deployment Ready")
    parser.add_argument("--ready-timeout", type=float, default=900)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: the private Docker engine needs it", file=sys.stderr)
        return 1
    root = make_world_root("dmbench-")
    started = time.time()
    engine = DockerEngine.start(private_dir(root, "docker"))
    kube = Kube.start(private_dir(root, "kube"))
    operator: subprocess.Popen[bytes] | None = None
    try:
        repo = create_app_repo(private_dir(root, "apps") / "httpd")
        build_image(repo.path, IMAGE, engine.env)
        api_client = load_api_client(str(kube.kubeconfig))
        api_client.user_agent = BENCH_AGENT
        k8s.CoreV1Api(api_client).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=NAMESPACE)))
        objects = k8s.CustomObjectsApi(api_client)
        audit = kube.emulator.audit
        http_port = free_port()
        marks = [len(audit.records)]
        operator = start_operator(kube, root, engine, http_port, args.max_concurrent_rollouts)
        pid = operator.pid
        idle = sample_for(pid, args.idle_seconds)
        marks.append(len(audit.records))
        rollout, during_rollout = roll_out(objects, pid, args.deployments, args.period, args.ready_timeout)
        marks.append(len(audit.records))
        ticks_before = (metric(http_port, "deploymind_health_checks_total"),
                        metric(http_port, "deploymind_health_checks_total", 'result="Passed"'))
        steady = sample_for(pid, args.steady_seconds)
        ticks = metric(http_port, "deploymind_health_checks_total") - ticks_before[0]
        passed = metric(http_port, "deploymind_health_checks_total", 'result="Passed"') - ticks_before[1]
        marks.append(len(audit.records))
        deletion, during_deletion = delete_all(objects, pid, args.ready_timeout)
        after = sample_for(pid, args.idle_seconds)
        marks.append(len(audit.records))
        records = audit.records
        left = containers_left(engine)
    finally:
        if operator is not None:
            stop_operator(operator)
        kube.stop()
        engine.stop()
        remove_tree(root)
    phases = ("idle", "rollout", "steady", "deleted")
    requests = {phase: requests_of(records[marks[i]:marks[i + 1]]) for i, phase in enumerate(phases)}
    results = {
        "command": COMMAND,
        "recorded": datetime.date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                    "note": "2 shared cores: compare ratios, not absolutes"},
        "settings": {"deployments": args.deployments, "period_seconds": args.period,
                     "max_concurrent_rollouts": args.max_concurrent_rollouts, "idle_seconds": args.idle_seconds,
                     "steady_seconds": args.steady_seconds, "image": IMAGE},
        "wall_seconds": round(time.time() - started, 1),
        "memory": {"idle": mib_summary(idle), "rollout": mib_summary(during_rollout),
                   "steady": mib_summary(steady), "deleting": mib_summary(during_deletion),
                   "deleted": mib_summary(after)},
        "rollout": rollout,
        "steady": {"health_ticks": int(ticks), "passed": int(passed),
                   "ticks_per_second": round(ticks / args.steady_seconds, 2),
                   "expected_per_second": round(args.deployments / args.period, 2)},
        "deletion": {**deletion, "containers_left": left},
        "api_requests": requests,
    }
    emit(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
