"""Benchmark of a rollout end to end, with real parts only (issue 3, "Benchmarks").

Parts: the Kubernetes API emulator with the CRD from `render_crd()`, a private Docker engine, the operator as a
subprocess (`python -m deploymind run … --allow-local-transport`), and fixture Git repositories of the test app.

Measures:
  1. create of a Deployment (Kubernetes client) → the operator's first write (the finalizer) and the first status
     change, from a watch on the object;
  2. create → status Ready=True/Baking (the whole first rollout), and the operator's own share: that time minus the
     host's `build_s` (docker build, from the build script's result) and the release job's `total_s` (candidate
     start, health wait, switch, from the release script's result);
  3. transport round trips per rollout by kind (first rollout, a redeploy request of the same revision, and
     `deploymind.io/rollback-to` to a revision still on the host), cross-checked against the operator's
     `deploymind_transport_calls_total` on /metrics;
  4. a revision that degrades inside the bake window (periodSeconds 1, failureThreshold 2): from the first failing
     /health answer (seen by a 20 ms HTTP poller) to the last good revision answering again;
  5. the same for an env-only change (the same commit, MODE=a → MODE=b, failing after its switch): from the first
     failing /health answer to the app answering MODE=a again (the revert restores the revision's env);
  6. an env change of the sandbox's example app (examples/sandbox/apps/hello, `exec busybox httpd`: a PID 1 that
     ignores SIGTERM): patch → the new revision Ready, and the release job's switch time.

Round trips are counted by a `bash` wrapper first on the operator's PATH: the local transport runs `sh -c`, and every
host script is `exec bash -c '<script>' deploymind`, so each call passes the wrapper once. The wrapper logs the
script's kind, start and end times and its last output line (the script's JSON result), then exits with bash's code.
It costs one extra exec per call (about a millisecond).

Usage (as root: the private Docker engine needs it):
    python bench/rollout_bench.py [--rollouts 5] [--degrades 3] [--json bench/rollout_bench.results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, config, watch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "operator")]

from common import emit, http_get, summary, wait_for  # noqa: E402

from deploymind.api import GROUP, PLURAL, VERSION  # noqa: E402
from deploymind.api.crd import render_crd  # noqa: E402
from deploymind.sandbox.docker_engine import DockerEngine  # noqa: E402
from deploymind.sandbox.kube.apiserver import ApiServer  # noqa: E402
from world.apps import AppRepo, Health, create_app_repo, env_mode, fail_health  # noqa: E402
from world.ports import free_port  # noqa: E402

T = TypeVar("T")
NAMESPACE = "bench"
COMMAND = "python bench/rollout_bench.py --json bench/rollout_bench.results.json"

# Logs one line per host script the local transport runs: kind, the Deployment's uid[:8], start and end (epoch µs),
# exit code, last output line.
WRAPPER = r"""#!/bin/bash
if [ "${!#}" != deploymind ]; then exec /bin/bash "$@"; fi
case "$2" in
  *"# Release, foreground part"*) kind=release ;;
  *"# Build: save the context"*) kind=build ;;
  *"# Health tick"*) kind=health ;;
  *"# Restart the stable container"*) kind=restart ;;
  *"# Cleanup on delete"*) kind=cleanup ;;
  *) kind=other ;;
esac
uid=""
[[ $2 =~ deploymind/([0-9a-f]{8}) || $2 =~ dm-([0-9a-f]{8}) ]] && uid=${BASH_REMATCH[1]}
t0=${EPOCHREALTIME/./}
out=$(/bin/bash "$@")
rc=$?
t1=${EPOCHREALTIME/./}
[ -z "$out" ] || printf '%s\n' "$out"
last=$(printf '%s' "$out" | tail -n 1)
printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$uid" "$t0" "$t1" "$rc" "$last" >> "$DM_BENCH_CALLS"
exit $rc
"""


# ---------------------------------------------------------------------------------------------- small helpers
# ---------------------------------------------------------------------------------------------- host calls
@dataclass(frozen=True)
class Call:
    kind: str
    uid8: str
    start: float
    """Epoch seconds."""
    end: float
    code: int
    result: dict[str, Any]


class CallLog:
    """Reads what the bash wrapper wrote."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def calls(self) -> list[Call]:
        out = []
        for line in self.path.read_text().splitlines():
            kind, uid8, t0, t1, code, last = (line.split("\t", 5) + [""] * 6)[:6]
            try:
                result = json.loads(last) if last.startswith("{") else {}
            except ValueError:
                result = {}
            out.append(Call(kind, uid8, int(t0) / 1e6, int(t1) / 1e6, int(code), result))
        return out

    def mark(self) -> int:
        return len(self.calls())

    def since(self, mark: int) -> list[Call]:
        return self.calls()[mark:]


def by_kind(calls: list[Call], exclude: tuple[str, ...] = ("health",)) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in calls:
        if call.kind not in exclude:
            counts[call.kind] = counts.get(call.kind, 0) + 1
    return counts


# ---------------------------------------------------------------------------------------------- the world
@dataclass
class World:
    root: Path
    engine: DockerEngine
    api: ApiServer
    kubeconfig: Path
    calls: CallLog
    operator: subprocess.Popen[bytes]
    http_port: int
    host_dir: Path
    objects: client.CustomObjectsApi
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        return sum(float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M))

    def get(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.objects.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)  # type: ignore[assignment]
        return obj

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def wait_status(self, name: str, check: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            s = self.status(name)
            return s if check(s) else None

        return wait_for(probe, timeout, f"{name}: {what}")

    def annotate(self, name: str, key: str, value: str) -> None:
        self.objects.patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name,
                                                    {"metadata": {"annotations": {key: value}}})

    def delete(self, name: str) -> None:
        """Delete a Deployment and wait until the operator has cleaned the host, so measurements do not overlap."""
        self.objects.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)

        def gone() -> bool:
            try:
                self.get(name)
            except client.ApiException as e:
                return bool(e.status == 404)
            return False

        wait_for(gone, 120, f"{name} deleted")

    def uid8(self, name: str) -> str:
        return str(self.get(name)["metadata"]["uid"])[:8]

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.objects.patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name, {"spec": spec})

    def watch_events(self, stop: threading.Event) -> None:
        """Record every watch event on Deployments with its arrival time (monotonic)."""
        w = watch.Watch()  # type: ignore[no-untyped-call]
        while not stop.is_set():
            try:
                for event in w.stream(self.objects.list_namespaced_custom_object, GROUP, VERSION,  # type: ignore[no-untyped-call]
                                      NAMESPACE, PLURAL, timeout_seconds=5):
                    with self.lock:
                        self.events.append((time.monotonic(), dict(event["object"])))
                    if stop.is_set():
                        w.stop()  # type: ignore[no-untyped-call]
                        break
            except Exception:  # a dropped watch is restarted; the bench only needs arrival times
                time.sleep(0.05)

    def events_of(self, name: str, since: float) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return [(t, o) for t, o in self.events if t >= since and o["metadata"]["name"] == name]


def deployment(name: str, repo: AppRepo, port: int, *, period: int, threshold: int, bake: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Deployment", "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "source": {"repo": repo.url, "ref": "main"},
            "target": {"transport": "local"},
            "container": {"port": port},
            "healthCheck": {"path": "/health", "periodSeconds": period, "timeoutSeconds": 1,
                            "failureThreshold": threshold, "startupTimeoutSeconds": 20},
            "rollback": {"auto": True, "bakeSeconds": bake},
        },
    }


def ready(status: dict[str, Any]) -> str:
    cond = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)
    return f"{cond['status']}/{cond['reason']}" if cond else "-"


@contextmanager
def world(root: Path) -> Iterator[World]:
    engine = DockerEngine.start(root / "docker")
    api = ApiServer(crds=[render_crd()]).start()
    operator: subprocess.Popen[bytes] | None = None
    stop = threading.Event()
    try:
        kubeconfig = api.write_kubeconfig(root / "kubeconfig")
        api_client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        client.CoreV1Api(api_client).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        wrappers = root / "bin"
        wrappers.mkdir()
        (wrappers / "bash").write_text(WRAPPER)
        (wrappers / "bash").chmod(0o755)
        calls = CallLog(root / "calls.tsv")
        host_dir = root / "host"
        http_port = free_port()
        env = {**os.environ, **engine.env, "PATH": f"{wrappers}:{os.environ['PATH']}",
               "DM_BENCH_CALLS": str(calls.path), "PYTHONPATH": str(ROOT / "operator")}
        log = (root / "operator.log").open("ab")
        operator = subprocess.Popen(
            [sys.executable, "-m", "deploymind", "run", "--kubeconfig", str(kubeconfig), "--namespace", NAMESPACE,
             "--allow-local-transport", "--allow-file-repos", "--host-dir", str(host_dir), "--state-dir", str(root / "state"),
             "--lease-namespace", NAMESPACE, "--http-host", "127.0.0.1", "--http-port", str(http_port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        wait_for(lambda: http_get(http_port, "/healthz")[0] == 200, 60, "the operator's /healthz")
        objects = client.CustomObjectsApi(api_client)
        w = World(root, engine, api, kubeconfig, calls, operator, http_port, host_dir, objects)
        watcher = threading.Thread(target=w.watch_events, args=(stop,), daemon=True)
        watcher.start()
        yield w
    finally:
        stop.set()
        if operator is not None and operator.poll() is None:
            os.killpg(operator.pid, signal.SIGTERM)
            try:
                operator.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(operator.pid, signal.SIGKILL)
                operator.wait(10)
        api.stop()
        engine.stop()


# ---------------------------------------------------------------------------------------------- measurements
def first_rollout(w: World, repo: AppRepo, name: str, docker_costs: bool = False) -> dict[str, Any]:
    """Create → finalizer, first status, Baking; the operator's share; round trips by kind."""
    port = free_port()
    mark = w.calls.mark()
    metric_before = w.metric("deploymind_transport_calls_total")
    t0 = time.monotonic()
    w.objects.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL,
                                              deployment(name, repo, port, period=30, threshold=3, bake=3600))
    status = w.wait_status(name, lambda s: ready(s) == "True/Baking", 180, "Ready=True/Baking")
    metric_after = w.metric("deploymind_transport_calls_total")
    baking_seen = time.monotonic()
    events = w.events_of(name, t0)
    finalizer_at = next((t for t, o in events if o["metadata"].get("finalizers")), None)
    status_at = next((t for t, o in events if o.get("status")), None)
    baking_at = next((t for t, o in events if ready(o.get("status") or {}) == "True/Baking"), baking_seen)
    phases: list[tuple[str, float]] = []
    for t, o in events:
        phase = (o.get("status") or {}).get("phase")
        if phase and (not phases or phases[-1][0] != phase):
            phases.append((phase, round(t - t0, 3)))
    calls = [c for c in w.calls.since(mark) if c.kind != "health"]
    build = next(c for c in calls if c.kind == "build")
    release = next(c for c in calls if c.kind == "release")
    timings = release.result.get("timings") or {}
    total = baking_at - t0
    host_work = float(build.result.get("build_s") or 0) + float(timings.get("total_s") or 0)
    assert http_get(port)[0] == 200, "the app answers once Baking"
    costs = docker_command_costs(w, name) if docker_costs else None
    w.delete(name)
    return {
        "health_tick_docker_commands": costs,
        "revision": status["revision"]["id"],
        "create_to_finalizer_s": round((finalizer_at or baking_at) - t0, 3),
        "create_to_first_status_s": round((status_at or baking_at) - t0, 3),
        "create_to_baking_s": round(total, 3),
        "phases": phases,
        "build": {"result": build.result.get("result"), "build_s": build.result.get("build_s"),
                  "round_trip_s": round(build.end - build.start, 3)},
        "release": {"result": release.result.get("result"), "timings": timings,
                    "round_trip_s": round(release.end - release.start, 3)},
        "host_docker_and_health_s": round(host_work, 3),
        "operator_overhead_s": round(total - host_work, 3),
        "round_trips": by_kind(calls),
        "metric_transport_calls_delta": metric_after - metric_before,
        "name": name,
        "port": port,
    }


def redeploy_and_rollback(w: World, repo: AppRepo) -> dict[str, Any]:
    """Round trips of a redeploy request of the running revision, a new commit, and rollback-to a kept revision."""
    port = free_port()
    w.objects.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL,
                                              deployment("rollback", repo, port, period=30, threshold=3, bake=0))
    first = w.wait_status("rollback", lambda s: ready(s) == "True/Deployed", 180, "first revision Deployed")

    mark = w.calls.mark()
    t0 = time.monotonic()
    w.annotate("rollback", "deploymind.io/requested-at", "bench-1")
    w.wait_status("rollback", lambda s: s.get("lastHandledReconcileAt") == "bench-1" and not any(
        c["type"] == "Reconciling" for c in s.get("conditions", [])), 120, "redeploy handled")
    redeploy = {"round_trips": by_kind(w.calls.since(mark)), "seconds": round(time.monotonic() - t0, 3),
                "results": [c.result.get("result") for c in w.calls.since(mark) if c.kind != "health"]}

    repo.commit_revision(Health.HEALTHY)
    mark = w.calls.mark()
    t0 = time.monotonic()
    w.annotate("rollback", "deploymind.io/requested-at", "bench-2")
    second = w.wait_status("rollback", lambda s: ready(s) == "True/Deployed" and s["revision"]["id"] != first["revision"]["id"],
                           120, "second revision Deployed")
    new_commit = {"round_trips": by_kind(w.calls.since(mark)), "seconds": round(time.monotonic() - t0, 3)}

    mark = w.calls.mark()
    t0 = time.monotonic()
    w.annotate("rollback", "deploymind.io/rollback-to", first["revision"]["id"])
    w.wait_status("rollback", lambda s: s["revision"]["id"] == first["revision"]["id"] and ready(s).startswith("True/"),
                  120, "rolled back to the first revision")
    seconds = time.monotonic() - t0
    assert http_get(port)[1] == "revision 1\n"
    calls = w.calls.since(mark)
    w.delete("rollback")
    release = next(c for c in calls if c.kind == "release")
    return {
        "redeploy_same_revision": redeploy,
        "new_commit": new_commit,
        "rollback_to": {"round_trips": by_kind(calls), "seconds": round(seconds, 3),
                        "release_timings": release.result.get("timings"), "from": second["revision"]["id"],
                        "to": first["revision"]["id"]},
    }


class Poller:
    """GETs /health and / every 20 ms; records (time, health status, body of /)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.samples: list[tuple[float, int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.time()
            health = http_get(self.port, "/health", timeout=0.5)[0]
            body = http_get(self.port, "/", timeout=0.5)[1]
            self.samples.append((t, health, body))
            self._stop.wait(0.02)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def degrade(w: World, repo: AppRepo, name: str, fail_after: int) -> dict[str, Any]:
    """A revision healthy for `fail_after` s after it starts, then failing, inside the bake window → reverted."""
    port = free_port()
    w.objects.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL,
                                              deployment(name, repo, port, period=1, threshold=2, bake=0))
    good = w.wait_status(name, lambda s: ready(s) == "True/Deployed", 180, "last good revision Deployed")
    uid8 = w.uid8(name)
    w.patch_spec(name, {"rollback": {"bakeSeconds": 300}})  # editing rollback never redeploys
    repo.commit_revision(Health.DEGRADING, fail_after=fail_after)
    mark = w.calls.mark()
    with Poller(port) as poller:
        w.annotate(name, "deploymind.io/requested-at", "degrade")
        w.wait_status(name, lambda s: ready(s) == "False/RolledBack" and s["revision"]["id"] == good["revision"]["id"],
                      120, "reverted to the last good revision")
        wait_for(lambda: poller.samples and poller.samples[-1][2] == "revision 1\n", 30, "revision 1 answering")
    samples = poller.samples
    serving_bad = next(t for t, _, body in samples if body.startswith("revision ") and body != "revision 1\n")
    first_fail = next(t for t, health, _ in samples if t > serving_bad and health != 200)
    good_again = next(t for t, _, body in samples if t > first_fail and body == "revision 1\n")
    down = [t for t, health, body in samples if first_fail <= t <= good_again and health == 0 and body == ""]
    calls = [c for c in w.calls.since(mark) if c.uid8 == uid8]
    revert_release = next(c for c in calls if c.kind == "release" and c.start > first_fail)
    ticks = [c for c in calls if c.kind == "health" and first_fail - 3 <= c.start < revert_release.start]
    w.delete(name)
    return {
        "first_failing_probe_to_last_good_answering_s": round(good_again - first_fail, 3),
        "first_failing_probe_to_revert_release_start_s": round(revert_release.start - first_fail, 3),
        "revert_release_round_trip_s": round(revert_release.end - revert_release.start, 3),
        "revert_release_timings": revert_release.result.get("timings"),
        "health_ticks_around_the_failure": [
            {"start_s": round(c.start - first_fail, 3), "took_s": round(c.end - c.start, 3),
             "probe_status": (c.result.get("probe") or {}).get("status")} for c in ticks],
        "no_answer_window_s": round(down[-1] - down[0], 3) if down else 0.0,
        "bound_period_x_threshold_plus_5_s": 1 * 2 + 5,
    }


def env_revert(w: World, repo: AppRepo, name: str) -> dict[str, Any]:
    """An env-only change failing after its switch, inside the bake window → reverted with the old env value."""
    port = free_port()
    repo.commit_revision(Health.DEGRADING)

    def spec(mode: str, bake: int) -> dict[str, Any]:
        body = deployment(name, repo, port, period=1, threshold=2, bake=bake)
        body["spec"]["container"]["env"] = [{"name": "MODE", "value": mode}]
        return body

    w.objects.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, spec("a", 0))
    good = w.wait_status(name, lambda s: ready(s) == "True/Deployed", 180, "MODE=a Deployed")
    w.patch_spec(name, spec("b", 300)["spec"])
    w.wait_status(name, lambda s: ready(s) == "True/Baking" and s["revision"]["id"] != good["revision"]["id"], 120,
                  "MODE=b baking")
    samples: list[tuple[float, int, str | None]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            samples.append((time.time(), http_get(port, "/health", timeout=0.5)[0], env_mode(port, timeout=0.5)))
            stop.wait(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        fail_health(port)
        w.wait_status(name, lambda s: ready(s) == "False/RolledBack" and s["revision"]["id"] == good["revision"]["id"],
                      120, "reverted to MODE=a")
        wait_for(lambda: samples and samples[-1][2] == "a", 30, "MODE=a answering")
    finally:
        stop.set()
        poller.join(5)
    first_fail = next(t for t, health, _ in samples if health != 200)
    back = next(t for t, _, mode in samples if t > first_fail and mode == "a")
    w.delete(name)
    return {"first_failing_probe_to_old_env_answering_s": round(back - first_fail, 3)}


def sandbox_app_env_update(w: World, root: Path) -> dict[str, Any]:
    """The sandbox example app (PID 1 `busybox httpd`, ignores SIGTERM): an env change, patch → new revision Ready."""
    path = root / "apps" / "hello"
    shutil.copytree(ROOT / "examples" / "sandbox" / "apps" / "hello", path)
    shutil.copy2("/bin/busybox", path / "busybox")
    repo = AppRepo(path)
    repo.git("init", "-q", "-b", "main")
    repo.commit_all("hello")
    name, port = "hello", free_port()
    body = deployment(name, repo, port, period=5, threshold=3, bake=0)
    body["spec"]["container"]["env"] = [{"name": "GREETING", "value": "hello"}]
    w.objects.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
    first = w.wait_status(name, lambda s: ready(s) == "True/Deployed", 180, "hello Deployed")
    updates = []
    for i in range(3):
        mark = w.calls.mark()
        body["spec"]["container"]["env"] = [{"name": "GREETING", "value": f"bye-{i}"}]
        t0 = time.time()
        w.patch_spec(name, body["spec"])
        before = first["revision"]["id"]
        done = w.wait_status(name, lambda s, b=before: ready(s) == "True/Deployed" and s["revision"]["id"] != b,
                             120, "the env change released")
        took = time.time() - t0
        release = next(c for c in w.calls.since(mark) if c.kind == "release")
        updates.append({"patch_to_ready_s": round(took, 3),
                        "switch_s": (release.result.get("timings") or {}).get("switch_s")})
        first = done
    w.delete(name)
    return {"updates": updates,
            "patch_to_ready_s": summary([u["patch_to_ready_s"] for u in updates]),
            "switch_s": summary([float(u["switch_s"] or 0) for u in updates])}


def health_tick_cost(w: World) -> dict[str, float]:
    ticks = [c.end - c.start for c in w.calls.calls() if c.kind == "health"]
    return summary(ticks) if ticks else {}


def docker_command_costs(w: World, name: str, repeat: int = 5) -> dict[str, dict[str, float]]:
    """What the health tick's docker commands cost on their own, against one running app container."""
    container = "dm-" + str(w.get(name)["metadata"]["uid"])[:8]
    env = {**os.environ, **w.engine.env}
    commands = {
        "docker_stats_no_stream_s": ["docker", "stats", "--no-stream", "--format", "{{json .}}", container],
        "docker_inspect_s": ["docker", "container", "inspect", container],
    }
    costs = {}
    for key, argv in commands.items():
        seconds = []
        for _ in range(repeat):
            t0 = time.monotonic()
            subprocess.run(argv, env=env, capture_output=True, check=True)
            seconds.append(time.monotonic() - t0)
        costs[key] = summary(seconds)
    return costs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=5, help="first rollouts to time (fresh Deployments)")
    parser.add_argument("--degrades", type=int, default=3, help="degrading revisions to revert")
    parser.add_argument("--fail-after", type=int, default=4, help="seconds a degrading revision stays healthy")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: the private Docker engine needs it", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="dmbench-", dir="/tmp"))
    root.chmod(0o711)
    started = time.time()
    try:
        with world(root) as w:
            rollouts = [first_rollout(w, create_app_repo(root / "apps" / f"r{i}"), f"app-{i}", docker_costs=i == 0)
                        for i in range(args.rollouts)]
            manual = redeploy_and_rollback(w, create_app_repo(root / "apps" / "rollback"))
            degrades = [degrade(w, create_app_repo(root / "apps" / f"d{i}"), f"degrade-{i}", args.fail_after)
                        for i in range(args.degrades)]
            env_reverts = [env_revert(w, create_app_repo(root / "apps" / f"e{i}"), f"env-{i}")
                           for i in range(args.degrades)]
            sandbox_app = sandbox_app_env_update(w, root)
            ticks = health_tick_cost(w)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    total = [r["create_to_baking_s"] for r in rollouts]
    overhead = [r["operator_overhead_s"] for r in rollouts]
    results = {
        "command": COMMAND,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
                    "note": "2 shared cores: compare ratios, not absolutes"},
        "wall_seconds": round(time.time() - started, 1),
        "summary": {
            "create_to_finalizer_s": summary([r["create_to_finalizer_s"] for r in rollouts]),
            "create_to_first_status_s": summary([r["create_to_first_status_s"] for r in rollouts]),
            "create_to_baking_s": summary(total),
            "host_docker_and_health_s": summary([r["host_docker_and_health_s"] for r in rollouts]),
            "operator_overhead_s": summary(overhead),
            "operator_overhead_ratio": summary([o / t for o, t in zip(overhead, total, strict=True)]),
            "first_rollout_round_trips": rollouts[0]["round_trips"],
            "rollback_to_round_trips": manual["rollback_to"]["round_trips"],
            "redeploy_same_revision_round_trips": manual["redeploy_same_revision"]["round_trips"],
            "first_failing_probe_to_last_good_answering_s": summary(
                [d["first_failing_probe_to_last_good_answering_s"] for d in degrades]),
            "env_only_change_first_failing_probe_to_old_env_answering_s": summary(
                [d["first_failing_probe_to_old_env_answering_s"] for d in env_reverts]),
            "sandbox_app_env_change_patch_to_ready_s": sandbox_app["patch_to_ready_s"],
            "sandbox_app_env_change_switch_s": sandbox_app["switch_s"],
            "health_tick_round_trip_s": ticks,
            "health_tick_docker_commands": rollouts[0]["health_tick_docker_commands"],
        },
        "first_rollouts": rollouts,
        "manual_operations": manual,
        "degrading_revisions": degrades,
        "env_only_reverts": env_reverts,
        "sandbox_app_env_updates": sandbox_app,
    }
    emit(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
