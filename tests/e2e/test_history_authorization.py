"""With `--history-auth kubernetes`, a Deployment's history is read only by users whom RBAC lets `get` that
Deployment, through the API server's service proxy with their own kubeconfig; with `--metrics-auth kubernetes`,
/metrics only by users allowed `get` on the non-resource URL /metrics. Everyone else gets a 401 or a 403 that says
what to do."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_rbac import chart_operator_kubeconfig
from dm import Cluster, Operator, leave_no_trace, wait_for

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import AppRepo
from world.dirs import private_dir
from world.kube import Kube
from world.kubetools import Kubectl
from world.ports import free_port

pytestmark = pytest.mark.e2e

RBAC = "rbac.authorization.k8s.io/v1"


@pytest.fixture
def operator(kube: Kube, docker_engine: DockerEngine, namespace: str, world_root: Path) -> Iterator[Operator]:
    """The operator as the chart runs it: history and metrics for authorized users only."""
    op = Operator(kubeconfig=chart_operator_kubeconfig(kube, namespace), namespace=namespace,
                  workdir=private_dir(world_root, f"operator-{namespace}", mode=0o755), env=docker_engine.env,
                  history_auth="kubernetes", extra_args=["--metrics-auth", "kubernetes"])
    op.start()
    yield op
    op.stop()
    leave_no_trace(op, docker_engine, namespace)


def grant(cluster: Cluster, namespace: str, user: str, rule: dict[str, Any]) -> None:
    """A Role with `rule` in `namespace`, bound to `user`."""
    name = f"{user}-{rule['resources'][0].replace('/', '-')}"
    for obj in ({"apiVersion": RBAC, "kind": "Role", "metadata": {"name": name, "namespace": namespace},
                 "rules": [rule]},
                {"apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": name, "namespace": namespace},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                 "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}):
        done = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(obj))
        assert done.returncode == 0, done.stderr


VIEW_DEPLOYMENTS: dict[str, Any] = {"apiGroups": ["deploymind.io"], "resources": ["deployments"], "verbs": ["get"]}
PROXY: dict[str, Any] = {"apiGroups": [""], "resources": ["services/proxy"], "verbs": ["get"]}


def history(kubeconfig: Path, name: str, namespace: str, operator_namespace: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deploymind", "history", name, "-n", namespace,
                           "--kubeconfig", str(kubeconfig), "--operator-namespace", operator_namespace, "-o", "json"],
                          capture_output=True, text=True, check=False, timeout=60)


def get(port: int, path: str, token: str | None = None) -> tuple[int, dict[str, Any] | str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_history_is_read_only_by_users_allowed_to_get_that_deployment(
        cluster: Cluster, kubectl: Kubectl, operator: Operator, kube: Kube, app_repo: AppRepo) -> None:
    ns_a, ns_b = cluster.namespace, f"{cluster.namespace}-b"
    assert kubectl("create", "namespace", ns_b).returncode == 0
    alice, bob = f"alice-{ns_a}", f"bob-{ns_a}"
    # The operator's Service sits in namespace A; both users may reach it through the proxy.
    cluster.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "deploymind"},
                   "spec": {"ports": [{"name": "http", "port": 80, "targetPort": operator.http_port}]}})
    for user in (alice, bob):
        grant(cluster, ns_a, user, PROXY)
    grant(cluster, ns_a, alice, VIEW_DEPLOYMENTS)
    grant(cluster, ns_b, bob, VIEW_DEPLOYMENTS)
    alice_config, bob_config = kube.kubeconfig_for(alice), kube.kubeconfig_for(bob)
    cluster.apply({"apiVersion": "deploymind.io/v1alpha1", "kind": "Deployment", "metadata": {"name": "web"},
                   "spec": {"source": {"repo": app_repo.url, "ref": "main"}, "target": {"transport": "local"},
                            "container": {"port": free_port()},
                            "healthCheck": {"path": "/health", "periodSeconds": 1, "timeoutSeconds": 1,
                                            "startupTimeoutSeconds": 15},
                            "rollback": {"bakeSeconds": 0}}})
    revision = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "Deployed")["revision"]["id"]

    own = wait_for(lambda: r if (r := history(alice_config, "web", ns_a, ns_a)).returncode == 0
                   and json.loads(r.stdout)["rollouts"] else None, 30, "alice reads web's history")
    other = history(alice_config, "web", ns_b, ns_a)
    bobs = history(bob_config, "web", ns_b, ns_a)
    tokenless = history(kube.kubeconfig, "web", ns_a, ns_a)
    direct_status, direct_body = get(operator.http_port, f"/history/{ns_a}/web")

    assert json.loads(own.stdout)["rollouts"][0]["revision"] == revision
    assert other.returncode == 1 and other.stderr == (
        f"error: Forbidden: {alice} may not get deployments.deploymind.io web in namespace {ns_b}, which reading its "
        "history needs: ask your cluster administrator for a Role there granting get on deployments.deploymind.io "
        "(the view ClusterRole does).\n")
    assert bobs.returncode == 1 and bobs.stderr.startswith("error: NotFound: No history for")  # allowed; none yet
    assert tokenless.returncode == 1 and tokenless.stderr.startswith("error: BearerTokenRequired: ")
    assert "kubectl create token" in tokenless.stderr and tokenless.stderr.count("\n") == 1
    assert direct_status == 401 and isinstance(direct_body, dict) and direct_body["reason"] == "Unauthenticated"
    assert not any(token in operator.logs() for token in tokens_of(alice_config, bob_config))


def tokens_of(*kubeconfigs: Path) -> list[str]:
    return [user["user"]["token"] for path in kubeconfigs for user in yaml.safe_load(path.read_text())["users"]]


def test_metrics_are_served_only_to_users_allowed_to_get_the_metrics_url(
        kubectl: Kubectl, operator: Operator, kube: Kube, namespace: str) -> None:
    scraper, other = f"prometheus-{namespace}", f"other-{namespace}"
    scraper_token, other_token = f"tok-{uuid.uuid4().hex}", f"tok-{uuid.uuid4().hex}"
    kube.emulator.add_token(scraper_token, scraper)
    kube.emulator.add_token(other_token, other)
    role = f"metrics-reader-{namespace}"
    for obj in ({"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": role},
                 "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]},
                {"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": role},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                 "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": scraper}]}):
        assert kubectl("apply", "-f", "-", input=yaml.safe_dump(obj)).returncode == 0

    anonymous = get(operator.http_port, "/metrics")
    allowed = get(operator.http_port, "/metrics", scraper_token)
    refused = get(operator.http_port, "/metrics", other_token)

    assert anonymous[0] == 401 and isinstance(anonymous[1], dict) and anonymous[1]["reason"] == "Unauthenticated"
    assert allowed[0] == 200 and "# TYPE deploymind_rollouts_total counter" in str(allowed[1])
    assert refused[0] == 403 and isinstance(refused[1], dict) and refused[1]["message"].startswith(
        f"{other} may not get /metrics")
