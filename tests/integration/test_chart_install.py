"""The real chart (charts/deploymind) through helm 4.1 against the test world's emulator: install, upgrade, rollback
and uninstall, after which the CRD and a user's Deployment are still there; the highly available variant with its
PodDisruptionBudget, the NetworkPolicy, and the Prometheus Operator kinds refused as a cluster without their CRDs
refuses them."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from world.kubetools import Helm, Kubectl

CHART = Path(__file__).parents[2] / "charts" / "deploymind"
RELEASE = "deploymind"
CRD = "customresourcedefinition/deployments.deploymind.io"
USER_DEPLOYMENT = """
apiVersion: deploymind.io/v1alpha1
kind: Deployment
metadata: {name: web}
spec:
  image: nginx:1.27
  target: {transport: ssm, instanceId: i-0123456789abcdef0, region: us-east-1}
"""


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def namespace(helm: Helm, kubectl: Kubectl) -> Iterator[str]:
    name = f"chart-{uuid.uuid4().hex[:8]}"
    ok(kubectl("create", "namespace", name))
    yield name
    helm("uninstall", RELEASE, "-n", name)  # its ClusterRoles would stand in the next test's way
    kubectl("delete", "namespace", name, "--wait=false")


def operator_args(kubectl: Kubectl, namespace: str) -> list[str]:
    out = ok(kubectl("-n", namespace, "get", "deployment.apps", RELEASE, "-o",
                     "jsonpath={.spec.template.spec.containers[0].args}"))
    args: list[str] = json.loads(out)
    return args


def get(kubectl: Kubectl, namespace: str, kind: str, name: str = RELEASE) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(ok(kubectl("-n", namespace, "get", kind, name, "-o", "json")))
    return obj


def test_chart_installs_upgrades_rolls_back_and_uninstalls_leaving_the_crd_and_users_deployments(
        helm: Helm, kubectl: Kubectl, namespace: str) -> None:
    # The world's emulator serves the CRD from crds/ already, as a cluster does after `kubectl apply -f crds/`:
    # the release takes it over, the upgrade path docs/install.md gives for such clusters.
    installed = ok(helm("install", RELEASE, str(CHART), "-n", namespace, "--take-ownership"))
    crd = json.loads(ok(kubectl("get", CRD, "-o", "json")))["metadata"]["annotations"]
    assert (crd["meta.helm.sh/release-name"], crd["helm.sh/resource-policy"]) == (RELEASE, "keep")
    assert "kubectl describe dmd" in installed  # NOTES.txt: where to look when a Deployment is not Ready
    assert "--max-concurrent-rollouts=4" in operator_args(kubectl, namespace)
    ok(kubectl("-n", namespace, "apply", "-f", "-", input=USER_DEPLOYMENT))

    ok(helm("upgrade", RELEASE, str(CHART), "-n", namespace, "--set", "maxConcurrentRollouts=2"))
    assert "--max-concurrent-rollouts=2" in operator_args(kubectl, namespace)

    ok(helm("rollback", RELEASE, "1", "-n", namespace))
    assert "--max-concurrent-rollouts=4" in operator_args(kubectl, namespace)
    assert [entry["revision"] for entry in json.loads(ok(helm("history", RELEASE, "-n", namespace, "-o", "json")))] \
        == [1, 2, 3]

    uninstalled = ok(helm("uninstall", RELEASE, "-n", namespace))
    assert "[CustomResourceDefinition] deployments.deploymind.io" in uninstalled  # kept by its resource policy
    assert kubectl("-n", namespace, "get", "deployment.apps", RELEASE).returncode == 1
    assert kubectl("get", f"clusterrole/{RELEASE}-operator").returncode == 1
    ok(kubectl("get", CRD))
    assert ok(kubectl("-n", namespace, "get", "dmd", "web", "-o", "jsonpath={.spec.image}")) == "nginx:1.27"


def test_two_replicas_on_postgresql_install_a_disruption_budget_over_the_operator_pods_and_no_volume_claim(
        helm: Helm, kubectl: Kubectl, namespace: str) -> None:
    ok(kubectl("-n", namespace, "create", "secret", "generic", "deploymind-db",
               "--from-literal=url=postgresql+psycopg://deploymind:secret@127.0.0.1:5432/deploymind"))
    ok(helm("install", RELEASE, str(CHART), "-n", namespace, "--take-ownership", "--set", "replicas=2",
            "--set", "history.databaseUrlSecret.name=deploymind-db", "--set", "history.keySecret.name=history-key"))
    deployment = get(kubectl, namespace, "deployment.apps")
    assert deployment["spec"]["replicas"] == 2
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DEPLOYMIND_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "deploymind-db", "key": "url"}
    budget = get(kubectl, namespace, "poddisruptionbudget")
    assert budget["spec"] == {"minAvailable": 1, "selector": deployment["spec"]["selector"]}
    assert budget["status"]["disruptionsAllowed"] == 0  # no disruption controller counts pods here
    assert ok(kubectl("-n", namespace, "get", "persistentvolumeclaims", "-o", "name")) == ""

    ok(helm("upgrade", RELEASE, str(CHART), "-n", namespace, "--reuse-values", "--set", "replicas=1"))
    assert kubectl("-n", namespace, "get", "poddisruptionbudget", RELEASE).returncode == 1


def test_network_policy_opens_port_http_and_restricts_egress_to_the_rules_given(
        helm: Helm, kubectl: Kubectl, namespace: str) -> None:
    ok(helm("install", RELEASE, str(CHART), "-n", namespace, "--take-ownership", "--set", "networkPolicy.enabled=true",
            "--set-json", 'networkPolicy.egress=[{"ports": [{"port": 443, "protocol": "TCP"}]}]'))
    policy = get(kubectl, namespace, "networkpolicy")["spec"]
    assert policy["podSelector"] == get(kubectl, namespace, "deployment.apps")["spec"]["selector"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    assert policy["egress"] == [{"ports": [{"port": 443, "protocol": "TCP"}]}]


def test_service_monitor_without_the_prometheus_operator_crds_is_refused_before_anything_is_created(
        helm: Helm, kubectl: Kubectl, namespace: str) -> None:
    result = helm("install", RELEASE, str(CHART), "-n", namespace, "--take-ownership",
                  "--set", "metrics.serviceMonitor.enabled=true")
    assert result.returncode == 1
    assert 'no matches for kind "ServiceMonitor" in version "monitoring.coreos.com/v1"' in result.stderr
    assert "ensure CRDs are installed first" in result.stderr
    assert kubectl("-n", namespace, "get", "deployment.apps", RELEASE).returncode == 1
