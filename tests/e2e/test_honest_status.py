"""Status never says Ready while the current spec is failing: a generation that waits for a retry is Reconciling
(ProgressingWithRetry) and not Ready, without flapping or an Event pair per retry, while the running revision keeps
being probed where it really runs."""

from __future__ import annotations

import time
from typing import Any

import pytest
from dm import Cluster, Operator, deployment, http_get, ready

from world.apps import AppRepo
from world.ports import free_port

pytestmark = pytest.mark.e2e

SAMPLING_S = 30


def condition(status: dict[str, Any], type_: str) -> str | None:
    cond = next((c for c in status.get("conditions", []) if c["type"] == type_), None)
    return f"{cond['status']}/{cond['reason']}" if cond else None


def test_a_missing_secret_never_shows_ready_for_that_generation_and_creating_it_rolls_out(
        cluster: Cluster, operator: Operator, app_repo: AppRepo) -> None:
    port = free_port()
    cluster.apply(deployment("web", app_repo, port, rollback={"bakeSeconds": 1}))
    first = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "revision 1 deployed")

    # Generation 2 needs a Secret that does not exist yet, and moves the port.
    new_port = free_port()
    env = [{"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}]
    cluster.apply(deployment("web", app_repo, new_port, rollback={"bakeSeconds": 1},
                             container={"port": new_port, "env": env}))
    seen: list[tuple[str | None, str | None]] = []
    deadline = time.monotonic() + SAMPLING_S
    while time.monotonic() < deadline:
        status = cluster.status("web")
        if status.get("observedGeneration") == 2:
            assert ready(status) != "True/Deployed" and condition(status, "Ready") != "True/Baking", status
            seen.append((ready(status), condition(status, "Reconciling")))
            # The running revision is still probed where it runs (the old port), and still answers there.
            assert status["revision"]["id"] == first["revision"]["id"]
        time.sleep(0.5)
    assert seen, "generation 2 was never observed"
    assert set(seen) == {("False/SecretNotFound", "True/ProgressingWithRetry")}
    assert http_get(port, "/health")[0] == 200
    status = cluster.status("web")
    assert status["target"]["health"] == "Healthy"

    # No flapping: since generation 2, Ready went False once and never came back True in between.
    ready_events = [e for e in sorted(cluster.events(), key=lambda e: int(e["metadata"]["resourceVersion"]))
                    if e["involvedObject"]["name"] == "web" and e["message"].startswith("Ready is")]
    since = [(e["message"].split(":")[0], e["reason"]) for e in ready_events]
    after = since[max(i for i, e in enumerate(since) if e == ("Ready is True", "Deployed")) + 1:]
    assert after == [("Ready is False", "SecretNotFound")]

    cluster.run("create", "secret", "generic", "api", "--from-literal=token=s3cr3t-token-value")
    done = cluster.wait_status("web", lambda s: ready(s) == "True/Deployed" and s.get("observedGeneration") == 2
                               and condition(s, "Reconciling") is None, 90, "generation 2 rolled out")
    assert done["revision"]["id"] != first["revision"]["id"]
    assert done["revision"]["run"]["port"] == new_port
    assert http_get(new_port, "/health")[0] == 200
