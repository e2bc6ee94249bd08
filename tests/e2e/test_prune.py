"""Each release prunes the host: after more rollouts than revisionHistoryLimit, the host keeps the images and release
files of the last N revisions plus lastGood, and status.history lists N entries."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from dm import Cluster, Operator, deployment, http_get, wait_for

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import AppRepo, Health
from world.ports import free_port

pytestmark = pytest.mark.e2e

LIMIT = 2


def image_tags(engine: DockerEngine, uid: str) -> set[str]:
    done = subprocess.run(["docker", "images", "--format", "{{.Tag}}", f"deploymind/{uid[:8]}"],
                          capture_output=True, text=True, check=False, env={**os.environ, **engine.env})
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def released(commit: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: (status.get("revision") or {}).get("commit") == commit


def answering(port: int, body: str) -> Callable[[], bool]:
    return lambda: http_get(port, timeout=0.5) == (200, body)


def test_rollouts_beyond_the_history_limit_leave_n_revisions_plus_last_good_on_the_host(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, docker_engine: DockerEngine) -> None:
    port = free_port()
    cluster.apply(deployment("web", app_repo, port, revisionHistoryLimit=LIMIT, rollback={"bakeSeconds": 0}))
    first = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "revision 1 deployed")
    last_good = first["lastGood"]["id"]
    # From now on revisions stay in their bake window, so lastGood stays revision 1 and falls out of the history.
    cluster.apply(deployment("web", app_repo, port, revisionHistoryLimit=LIMIT, rollback={"bakeSeconds": 3600}))
    cluster.wait_status("web", lambda s: s.get("observedGeneration") == 2, 30, "the long bake observed")

    deployed = [first["revision"]["id"]]
    for number in range(2, LIMIT + 4):  # N+3 rollouts in all
        commit = app_repo.commit_revision(Health.HEALTHY)
        cluster.annotate("web", "deploymind.io/requested-at", f"push-{number}")
        status = cluster.wait_status("web", released(commit), 60, f"revision {number} released")
        deployed.append(status["revision"]["id"])
        wait_for(answering(port, f"revision {number}\n"), 15, f"revision {number} answering")

    status = cluster.status("web")
    assert status["lastGood"]["id"] == last_good
    assert [h["id"] for h in status["history"]] == deployed[::-1][:LIMIT]
    uid = cluster.get("web")["metadata"]["uid"]
    kept = {*deployed[-LIMIT:], last_good}
    assert image_tags(docker_engine, uid) == kept
    releases = operator.host_dir / uid[:8] / "releases"
    assert {p.name for p in releases.iterdir()} == kept
