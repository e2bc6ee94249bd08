"""The operator reads only the Secrets its Deployments name: rotating a named Secret redeploys, a Secret no
Deployment names is never requested at all, and no Secret is listed or watched without a selector naming it.

Counted where the requests land, in the API server's audit log."""

from __future__ import annotations

import base64

import pytest
import yaml
from dm import Cluster, Operator, deployment

from world.apps import AppRepo
from world.kube import Kube
from world.ports import free_port

pytestmark = pytest.mark.e2e

NAMED, UNNAMED = "app-token", "unrelated"


def secret(name: str, value: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque",
                           "data": {"token": base64.b64encode(value.encode()).decode()}})


def test_only_the_named_secret_is_read_and_watched_and_rotating_it_redeploys(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, kube: Kube) -> None:
    cluster.run("create", "-f", "-", input=secret(NAMED, "one"))
    cluster.apply(deployment("web", app_repo, free_port(), rollback={"bakeSeconds": 0}, container={"env": [
        {"name": "APP_TOKEN", "valueFrom": {"secretKeyRef": {"name": NAMED, "key": "token"}}}]}))
    first = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "phase Deployed")

    cluster.run("create", "-f", "-", input=secret(UNNAMED, "one"))
    cluster.run("replace", "-f", "-", input=secret(UNNAMED, "two"))
    cluster.run("replace", "-f", "-", input=secret(NAMED, "two"))
    cluster.wait_status("web", lambda s: s.get("phase") == "Deployed" and s["revision"]["id"] != first["revision"]["id"],
                        60, "a redeploy after the rotation")

    audit = kube.emulator.audit
    ours = [r for r in audit.find(resource="secrets") if not r.user_agent.startswith("kubectl")
            and r.namespace in (cluster.namespace, None)]
    assert [r for r in ours if r.name == UNNAMED or UNNAMED in r.params.get("fieldSelector", "")] == [], \
        "the operator asked about a Secret no Deployment names"
    collection = [r for r in ours if r.verb in ("list", "watch")]
    assert [r for r in collection if r.params.get("fieldSelector") != f"metadata.name={NAMED}"] == []
    assert any(r.verb == "watch" for r in collection), "the named Secret was never watched"
