"""The status writer meets a real 409 (the object changed between the operator's read and its write) and still converges.

The conflict is provoked the way it happens in a cluster: while a release runs, someone annotates the Deployment,
so the resourceVersion the writer holds is stale when the rollout's result is written. The emulator's audit log
shows the 409 and the retry that followed it.
"""

from __future__ import annotations

from typing import Any

import pytest
from dm import Cluster, Operator, http_get, ready
from dm import deployment as deployment_of

from world.apps import DEFAULT_PORT, START_SCRIPT, AppRepo
from world.kube import Kube
from world.ports import free_port

pytestmark = pytest.mark.e2e

TOUCH = "e2e.deploymind.io/touched"
# The app's health file appears only after a delay: the release takes that long, which leaves room to touch the object.
SLOW_START = "/bin/busybox rm -f /www/health\n( /bin/busybox sleep {delay}; echo ok > /www/health ) &\n"


def deployment(name: str, repo: AppRepo, port: int) -> dict[str, Any]:
    return deployment_of(name, repo, port, healthCheck={"startupTimeoutSeconds": 20}, rollback={"bakeSeconds": 0})


def commit_slow_start(repo: AppRepo, delay: int, body: str) -> str:
    """A revision that answers / at once but /health only after `delay` seconds."""
    repo.commit_revision(body=body)
    repo.write_file("start.sh", START_SCRIPT.format(comment="slow start", degrade=SLOW_START.format(delay=delay),
                                                     port=DEFAULT_PORT))
    return repo.commit_all(f"{body.strip()}: healthy after {delay} s")


def test_a_status_write_that_meets_a_409_is_retried_and_the_status_converges(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, kube: Kube) -> None:
    port = free_port()
    cluster.apply(deployment("web", app_repo, port))
    cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 60, "first revision deployed")
    second = commit_slow_start(app_repo, 3, "second\n")
    cluster.annotate("web", "deploymind.io/requested-at", "push-1")

    def releasing(status: dict[str, Any]) -> bool:
        released = next((c for c in status.get("conditions", []) if c["type"] == "Released"), None)
        return released is not None and released["reason"] == "Releasing"

    cluster.wait_status("web", releasing, 30, "the release under way")
    # The operator read the object before the release; this write makes that read stale.
    cluster.annotate("web", TOUCH, "during-release")

    # push-1 handled too: a reconcile already queued before the annotation may roll the new commit out first.
    status = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed" and s.get("lastHandledReconcileAt")
                                 == "push-1" and s.get("revision", {}).get("commit") == second, 60,
                                 "second revision deployed")
    assert ready(status) == "True/Deployed"
    assert http_get(port) == (200, "second\n")
    status_patches = [r for r in kube.emulator.audit.find("patch", "deployments.deploymind.io",
                                                          namespace=cluster.namespace, name="web",
                                                          subresource="status")]
    codes = [r.code for r in status_patches]
    assert 409 in codes, codes
    assert 200 in codes[codes.index(409) + 1:], f"no successful status write after the 409: {codes}"
    obj = cluster.get("web")
    # The retry patched status only: the user's annotation survives it.
    assert obj["metadata"]["annotations"][TOUCH] == "during-release"
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["lastHandledReconcileAt"] == "push-1"
