"""The operator reads a Deployment from its watch: health ticks cost no request to the API server.

The requests are counted where they land, in the API server's audit log; the ticks by the operator's own health
metric (one sample per probe).
"""

from __future__ import annotations

import re

import pytest
from dm import Cluster, Operator, deployment, http_get, wait_for

from world.apps import AppRepo
from world.kube import Kube
from world.ports import free_port

pytestmark = pytest.mark.e2e


def passed_probes(operator: Operator, namespace: str) -> int:
    body = http_get(operator.http_port, "/metrics")[1]
    pattern = (r'^deploymind_health_checks_total\{(?=[^}]*namespace="' + re.escape(namespace) +
               r'")(?=[^}]*name="web")(?=[^}]*result="Passed")[^}]*\} (\S+)$')
    found = re.search(pattern, body, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


def test_health_ticks_read_the_deployment_from_the_watch_not_from_the_api_server(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, kube: Kube) -> None:
    cluster.apply(deployment("web", app_repo, free_port(), rollback={"bakeSeconds": 0}))
    cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "phase Deployed")

    def operator_gets() -> int:
        reads = kube.emulator.audit.find("get", "deployments.deploymind.io", namespace=cluster.namespace,
                                         name="web", subresource="")
        return len([r for r in reads if not r.user_agent.startswith("kubectl")])

    settled = passed_probes(operator, cluster.namespace) + 1  # the first tick after the release may still write
    wait_for(lambda: passed_probes(operator, cluster.namespace) >= settled, 15, "a tick after Deployed")
    gets, probes = operator_gets(), passed_probes(operator, cluster.namespace)
    wait_for(lambda: passed_probes(operator, cluster.namespace) >= probes + 5, 20, "five more health ticks")
    assert operator_gets() == gets, "health ticks read the Deployment from the API server"
