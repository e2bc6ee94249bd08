"""A refused candidate's last log lines go to the history only: `deploymind history NAME --revision R` prints them,
and no status field and no Event of the namespace carries them (both are readable far more widely than Secrets)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
from dm import Cluster, Operator, deployment, http_get, ready, wait_for

from world.apps import AppRepo, Health
from world.ports import free_port

pytestmark = pytest.mark.e2e

LOG_LINE = "refused-logs-7d41: cannot reach the database at db:5432"
MARKER = "refused-logs-7d41"


def test_a_refused_candidates_log_lines_are_in_its_history_and_in_no_status_field_or_event(
        cluster: Cluster, operator: Operator, app_repo: AppRepo) -> None:
    bad = app_repo.commit_revision(Health.UNHEALTHY, log_line=LOG_LINE)
    cluster.apply(deployment("web", app_repo, free_port(), healthCheck={"startupTimeoutSeconds": 2}))

    status = cluster.wait_status("web", lambda s: any(f["commit"] == bad for f in s.get("failedRevisions", [])), 90,
                                 "the revision refused and quarantined")
    assert ready(status) == "False/RevisionQuarantined"
    [refused] = status["failedRevisions"]
    revision = refused["id"]
    released = next(c for c in status["conditions"] if c["type"] == "Released")
    assert f"deploymind history web -n {cluster.namespace} --revision {revision}" in released["message"]

    def logs_recorded() -> dict[str, Any] | None:
        code, body = http_get(operator.http_port, f"/history/{cluster.namespace}/web?revision={revision}")
        return parsed if code == 200 and (parsed := json.loads(body))["logs"] else None

    recorded = wait_for(logs_recorded, 30, "the refused release's log lines in the history")
    assert LOG_LINE in recorded["logs"][0]["lines"]
    cli = subprocess.run([sys.executable, "-m", "deploymind", "history", "web", "-n", cluster.namespace,
                          "--revision", revision, "--url", f"http://127.0.0.1:{operator.http_port}"],
                         capture_output=True, text=True, check=False, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert f"last log lines of {revision}" in cli.stdout and f"  {LOG_LINE}\n" in cli.stdout
    assert re.search(r"\nsource +Succeeded .*\nbuild +Succeeded .*\nrelease +Failed +CandidateUnhealthy ", cli.stdout), cli.stdout

    def quarantine_posted() -> list[dict[str, Any]] | None:
        events = cluster.events()
        return events if any(e["reason"] == "RevisionQuarantined" for e in events) else None

    events = wait_for(quarantine_posted, 30, "the RevisionQuarantined Event")
    assert MARKER not in json.dumps(cluster.get("web"))
    assert [e["reason"] for e in events if MARKER in json.dumps(e)] == []
