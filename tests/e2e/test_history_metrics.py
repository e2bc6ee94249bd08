"""Every rollout and revert leaves durable history rows and Prometheus counts, read over the operator's HTTP server,
through the API server's service proxy with `deploymind history`, and from the sandbox. The same tests run against
SQLite (the default) and the test world's PostgreSQL; a database outage never stops a rollout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from dm import Cluster, Operator, http_get, wait_for
from prometheus_client.parser import text_string_to_metric_families

from deploymind.history.store import HistoryStore
from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import AppRepo, Health, fail_health
from world.kube import Kube
from world.ports import free_port
from world.postgres import Postgres, pg_bin

pytestmark = pytest.mark.e2e

SECRET_VALUE = "tok-7f3a9c-never-stored"
TOKEN_SECRET = "app-env"


@dataclass(frozen=True)
class HistoryDb:
    kind: str
    url: str | None = None
    server: Postgres | None = None


@pytest.fixture(params=["sqlite", "postgres"])
def history_db(request: pytest.FixtureRequest, world_root: Path) -> Iterator[HistoryDb]:
    """Where the operator keeps history: its SQLite default, the shared PostgreSQL, or (indirect
    "private-postgres") a PostgreSQL of the test's own that it may stop and start."""
    if request.param == "sqlite":
        yield HistoryDb("sqlite")
    elif request.param == "postgres":
        shared: Postgres = request.getfixturevalue("postgres")
        yield HistoryDb("postgres", shared.url, shared)
    else:
        server = Postgres.start(world_root / f"postgres-{uuid.uuid4().hex[:8]}")
        try:
            yield HistoryDb("postgres", server.url, server)
        finally:
            server.stop()


@pytest.fixture
def operator_env(history_db: HistoryDb) -> dict[str, str]:
    return {"DEPLOYMIND_DATABASE_URL": history_db.url} if history_db.url else {}


def deployment(name: str, repo: AppRepo, port: int, bake_seconds: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "deploymind.io/v1alpha1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "source": {"repo": repo.url, "ref": "main"},
            "target": {"transport": "local"},
            "container": {"port": port, "env": [
                {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": TOKEN_SECRET, "key": "token"}}}]},
            "healthCheck": {"path": "/health", "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 2,
                            "startupTimeoutSeconds": 15},
            "rollback": {"auto": True, "bakeSeconds": bake_seconds},
        },
    }


def deploy(cluster: Cluster, repo: AppRepo, port: int, bake_seconds: int = 0) -> dict[str, Any]:
    """Apply `web` with its env Secret and wait until it is Deployed."""
    secret = cluster.run("create", "secret", "generic", TOKEN_SECRET, f"--from-literal=token={SECRET_VALUE}",
                         "--dry-run=client", "-o", "yaml").stdout
    cluster.apply(secret)
    cluster.apply(deployment("web", repo, port, bake_seconds))
    try:
        return cluster.wait_status("web", lambda s: s.get("phase") == "Deployed" and bool(s.get("lastGood")), 90,
                                   "phase Deployed with a last good revision")
    except AssertionError as e:
        raise AssertionError(f"{e}\nstatus: {json.dumps(cluster.status('web'), indent=1)}") from None


def read_history(operator: Operator, namespace: str, name: str = "web") -> dict[str, Any] | None:
    status, body = http_get(operator.http_port, f"/history/{namespace}/{name}")
    return json.loads(body) if status == 200 else None


def wait_history(operator: Operator, namespace: str, check: Callable[[dict[str, Any]], Any], what: str,
                 timeout: float = 30) -> dict[str, Any]:
    """Poll the operator's /history until `check` holds for the body."""

    def ready() -> dict[str, Any] | None:
        body = read_history(operator, namespace)
        return body if body is not None and check(body) else None

    return wait_for(ready, timeout, what)


def scrape(operator: Operator) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, body = http_get(operator.http_port, "/metrics")
    assert status == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], metric: str, /,
           **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def finished(rollout: dict[str, Any]) -> bool:
    return rollout["result"] is not None and {"source", "build", "release"} <= {s["step"] for s in rollout["steps"]}


def test_a_rollout_leaves_its_attempt_with_trigger_steps_and_result(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, history_db: HistoryDb) -> None:
    status = deploy(cluster, app_repo, free_port())

    body = wait_history(operator, cluster.namespace, lambda h: h["rollouts"] and finished(h["rollouts"][0]),
                        "the rollout's history with its steps")
    [rollout] = body["rollouts"]
    assert (rollout["revision"], rollout["commit"], rollout["image"]) == (
        status["revision"]["id"], app_repo.head(), status["revision"]["image"])
    assert (rollout["trigger"], rollout["result"], rollout["reason"]) == ("SpecChange", "Succeeded", "Released")
    assert rollout["uid"] == cluster.get("web")["metadata"]["uid"]
    assert rollout["generation"] == 1 and rollout["strategy"] == "Recreate"
    assert rollout["durationSeconds"] > 0
    steps = {s["step"]: s for s in rollout["steps"]}
    assert [steps[name]["status"] for name in ("source", "build", "release")] == ["Succeeded"] * 3
    assert steps["release"]["reason"] == "Released" and steps["release"]["durationSeconds"] > 0
    assert rollout["envNames"] == ["API_TOKEN"] and re.fullmatch(r"[0-9a-f]{64}", rollout["envHash"])
    assert body["reverts"] == []
    # env values reach the host's env file only: never the history, the metrics or the operator's log
    assert SECRET_VALUE not in json.dumps(body)
    assert SECRET_VALUE not in http_get(operator.http_port, "/metrics")[1]
    assert SECRET_VALUE not in operator.logs()
    key = operator.workdir / "state" / "history-env.key"
    assert key.stat().st_mode & 0o777 == 0o600

    # Stopping the operator writes the health probes aggregated so far (one window, not a row per probe).
    wait_for(lambda: sample(scrape(operator), "deploymind_health_checks_total", namespace=cluster.namespace,
                            name="web", result="Passed"), 30, "a passed health check")
    # docker stats of the stable container, read on the host with the health check
    memory = wait_for(lambda: sample(scrape(operator), "deploymind_container_memory_bytes", namespace=cluster.namespace,
                                     name="web"), 30, "the container's memory in the metrics")
    assert 0 < memory < 512 * 1024 * 1024
    operator.stop()
    assert "not written before shutdown" not in operator.logs()
    store = HistoryStore(history_db.url or f"sqlite:///{operator.workdir / 'state' / 'history.sqlite3'}")
    try:
        windows = store.health_windows(rollout["uid"])
        counts = store.row_counts()
    finally:
        store.dispose()
    assert sum(w.probes_ok for w in windows) >= 1 and {w.revision for w in windows} == {rollout["revision"]}
    assert counts["history_rollouts"] >= 1 and counts["history_steps"] >= 3


def test_a_revision_degrading_while_it_bakes_leaves_a_revert_row_and_metrics_count_it(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, history_db: HistoryDb) -> None:
    port = free_port()
    first = deploy(cluster, app_repo, port)
    bad = app_repo.commit_revision(Health.DEGRADING)
    cluster.apply(deployment("web", app_repo, port, bake_seconds=600))
    cluster.wait_status("web", lambda s: s.get("phase") == "Baking" and s["revision"]["commit"] == bad, 90,
                        "the degrading revision baking")
    fail_health(port)

    status = cluster.wait_status("web", lambda s: s.get("phase") == "RolledBack", 90, "phase RolledBack")

    [failed] = status["failedRevisions"]
    assert failed["commit"] == bad and status["revision"]["id"] == first["revision"]["id"]
    body = wait_history(operator, cluster.namespace, lambda h: h["reverts"] and len(h["rollouts"]) == 2,
                        "a revert row and two rollouts")
    [revert] = body["reverts"]
    newest = body["rollouts"][0]
    assert (newest["commit"], newest["trigger"], newest["generation"]) == (bad, "SpecChange", 2)
    assert (revert["fromRevision"], revert["toRevision"]) == (failed["id"], first["revision"]["id"])
    assert revert["reason"] == "RolledBack" and revert["message"]
    assert revert["attemptId"] == newest["id"]

    samples = scrape(operator)
    ns = cluster.namespace
    assert sample(samples, "deploymind_rollouts_total", result="Succeeded") == 2
    assert sample(samples, "deploymind_reverts_total", namespace=ns, name="web") == 1
    assert sample(samples, "deploymind_phase", namespace=ns, name="web", phase="RolledBack") == 1
    assert sample(samples, "deploymind_phase", namespace=ns, name="web", phase="Deployed") == 0
    assert (sample(samples, "deploymind_health_checks_total", namespace=ns, name="web", result="Failed") or 0) >= 2
    assert (sample(samples, "deploymind_health_checks_total", namespace=ns, name="web", result="Passed") or 0) >= 1
    assert (sample(samples, "deploymind_transport_calls_total", transport="local") or 0) >= 5
    assert sample(samples, "deploymind_rollout_duration_seconds_count", result="Succeeded", strategy="Recreate") == 2
    assert (sample(samples, "deploymind_reconcile_total", result="Succeeded") or 0) >= 2
    assert sample(samples, "deploymind_history_unavailable") == 0


def start_again(server: Postgres) -> None:
    """`pg_ctl start` on the stopped cluster with its port and data (world.postgres has no restart yet)."""
    options = f"-c listen_addresses=127.0.0.1 -p {server.port} -k {server.dir} -c fsync=off -c full_page_writes=off"
    argv = [str(pg_bin() / "pg_ctl"), "-D", str(server.data_dir), "-l", str(server.dir / "postgres.log"),
            "-w", "-t", "60", "-o", options, "start"]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("history_db", ["private-postgres"], indirect=True)
def test_rollouts_go_on_while_the_database_is_down_and_buffered_rows_arrive_when_it_returns(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, history_db: HistoryDb) -> None:
    assert history_db.server is not None
    deploy(cluster, app_repo, free_port())
    wait_history(operator, cluster.namespace, lambda h: h["rollouts"] and finished(h["rollouts"][0]), "first rollout")

    history_db.server.stop()
    second = app_repo.commit_revision(Health.HEALTHY)
    cluster.annotate("web", "deploymind.io/requested-at", "push-1")
    cluster.wait_status("web", lambda s: s.get("revision", {}).get("commit") == second and s.get("phase") == "Deployed",
                        90, "the second revision deployed while the database is down")
    wait_for(lambda: sample(scrape(operator), "deploymind_history_unavailable") == 1, 30, "history unavailable")
    assert http_get(operator.http_port, f"/history/{cluster.namespace}/web")[0] == 503
    assert "HistoryUnavailable" in operator.logs()

    start_again(history_db.server)
    body = wait_history(operator, cluster.namespace,
                        lambda h: len(h["rollouts"]) == 2 and finished(h["rollouts"][0]), "the buffered rows", 60)
    newest = body["rollouts"][0]
    assert (newest["commit"], newest["trigger"], newest["result"]) == (second, "Manual", "Succeeded")
    assert newest["triggerDetail"] == "deploymind.io/requested-at=push-1"
    assert sample(scrape(operator), "deploymind_history_unavailable") == 0
    assert (sample(scrape(operator), "deploymind_history_dropped_records_total") or 0) == 0


@pytest.mark.parametrize("history_db", ["sqlite"], indirect=True)
def test_deploymind_history_prints_the_rows_through_the_api_servers_service_proxy(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, kube: Kube, history_db: HistoryDb) -> None:
    status = deploy(cluster, app_repo, free_port())
    wait_history(operator, cluster.namespace, lambda h: h["rollouts"] and finished(h["rollouts"][0]), "the rollout")
    # The operator's Service, as the chart makes it; the emulator proxies to its targetPort on 127.0.0.1.
    cluster.apply(yaml.safe_dump({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "deploymind"},
                                  "spec": {"ports": [{"name": "http", "port": 80,
                                                      "targetPort": operator.http_port}]}}))
    cli = [sys.executable, "-m", "deploymind", "history", "web", "-n", cluster.namespace,
           "--kubeconfig", str(kube.kubeconfig), "--operator-namespace", cluster.namespace]

    table = subprocess.run(cli, capture_output=True, text=True, check=False, timeout=60)
    as_json = subprocess.run([*cli, "-o", "json", "--limit", "5"], capture_output=True, text=True, check=False,
                             timeout=60)
    direct = subprocess.run([*cli[:7], "--url", f"http://127.0.0.1:{operator.http_port}", "-o", "json", "--limit", "5"],
                            capture_output=True, text=True, check=False, timeout=60)
    missing = subprocess.run([*cli[:4], "nothing", *cli[5:]], capture_output=True, text=True, check=False, timeout=60)

    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[:2]
    assert header.split() == ["STARTED", "REVISION", "TRIGGER", "RESULT", "DURATION", "STEPS", "REASON"]
    assert status["revision"]["id"] in row and "SpecChange" in row and "Succeeded" in row
    assert re.search(r"source \d+\.\ds, build \d+\.\ds, release \d+\.\ds", row)
    assert as_json.returncode == 0 and direct.returncode == 0
    assert json.loads(as_json.stdout) == json.loads(direct.stdout)
    assert json.loads(as_json.stdout)["rollouts"][0]["revision"] == status["revision"]["id"]
    assert missing.returncode == 1 and "NotFound" in missing.stderr


def test_the_sandbox_prints_its_metrics_and_history_urls_and_serves_them(
        docker_engine: DockerEngine, tmp_path: Path) -> None:
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "deploymind", "sandbox", "--state-dir", str(tmp_path / "sandbox"),
         "--http-port", str(free_port()), "--docker-host", docker_engine.host],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert sandbox.stdout is not None
    lines: list[str] = []
    try:
        for line in sandbox.stdout:
            lines.append(line)
            if "history:" in line:
                break
        output = "".join(lines)
        metrics_url = re.search(r"metrics: (http://127\.0\.0\.1:\d+/metrics)", output)
        history_url = re.search(r"history: KUBECONFIG=\S+ deploymind history NAME .*\(or (http://127\.0\.0\.1:(\d+))"
                                r"/history/", output)
        assert metrics_url and history_url, output
        port = int(history_url.group(2))

        status, body = http_get(port, "/metrics")
        assert status == 200 and "# TYPE deploymind_rollouts_total counter" in body
        # 503 (HistoryUnavailable) while the store still opens and migrates, then an honest 404 for no such object.
        assert wait_for(lambda: (code := http_get(port, "/history/default/nothing")[0]) != 503 and code, 30,
                        "the history store open") == 404
    finally:
        os.killpg(sandbox.pid, signal.SIGINT)
        sandbox.wait(60)
