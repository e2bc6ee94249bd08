"""The real chart (charts/deploymind) through helm 4.1 against the test world's emulator: install, upgrade, rollback
and uninstall, after which the CRD and a user's Deployment are still there."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

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
def namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"chart-{uuid.uuid4().hex[:8]}"
    ok(kubectl("create", "namespace", name))
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


def operator_args(kubectl: Kubectl, namespace: str) -> list[str]:
    out = ok(kubectl("-n", namespace, "get", "deployment.apps", RELEASE, "-o",
                     "jsonpath={.spec.template.spec.containers[0].args}"))
    args: list[str] = json.loads(out)
    return args


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
