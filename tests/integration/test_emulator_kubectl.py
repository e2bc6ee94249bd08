"""kubectl 1.35 and helm 4.1 work against the emulator as against a cluster, errors included."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from world.kube import Kube
from world.kubetools import Helm, Kubectl

CHART = Path(__file__).parent / "data" / "tiny-chart"

GIZMO_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gizmos.test.deploymind.io}
spec:
  group: test.deploymind.io
  scope: Namespaced
  names: {plural: gizmos, singular: gizmo, kind: Gizmo, shortNames: [gzm]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Phase, type: string, jsonPath: .status.phase}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
          status:
            type: object
            properties:
              phase: {type: string}
"""


def deployment(name: str, **spec: object) -> str:
    body: dict[str, object] = {"source": {"repo": "owner/app"},
            "target": {"transport": "ssm", "instanceId": "i-0123456789abcdef0", "region": "us-east-1"}}
    body.update(spec)
    return yaml.safe_dump({"apiVersion": "deploymind.io/v1alpha1", "kind": "Deployment",
                           "metadata": {"name": name}, "spec": body})


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def ns(kubectl: Kubectl) -> Iterator[str]:
    name = f"emu-{uuid.uuid4().hex[:8]}"
    ok(kubectl("create", "namespace", name))
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def gizmos(kubectl: Kubectl) -> None:
    ok(kubectl("apply", "-f", "-", input=GIZMO_CRD))
    ok(kubectl("wait", "--for=condition=Established", "crd/gizmos.test.deploymind.io", "--timeout=10s"))


def test_crd_applied_through_kubectl_becomes_a_resource_with_printer_columns(
        kubectl: Kubectl, ns: str, gizmos: None) -> None:
    ok(kubectl("-n", ns, "apply", "-f", "-", input="apiVersion: test.deploymind.io/v1\nkind: Gizmo\n"
                                                   "metadata: {name: g1}\nspec: {size: 3}\n"))
    ok(kubectl("-n", ns, "patch", "gzm", "g1", "--subresource=status", "--type=merge",
               "-p", '{"status": {"phase": "Ready"}}'))
    lines = ok(kubectl("-n", ns, "get", "gizmos")).splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "PHASE"]
    assert lines[1].split() == ["g1", "3", "Ready"]


def test_project_crd_serves_dmd_and_a_valid_deployment_is_listed(kubectl: Kubectl, ns: str) -> None:
    ok(kubectl("-n", ns, "apply", "-f", "-", input=deployment("web")))
    out = ok(kubectl("-n", ns, "get", "dmd"))
    assert out.splitlines()[0].split()[:2] == ["NAME", "PHASE"]
    assert out.splitlines()[1].startswith("web ")
    obj = json.loads(ok(kubectl("-n", ns, "get", "deployments.deploymind.io", "web", "-o", "json")))
    assert obj["spec"]["source"]["ref"] == "main"  # the schema default was applied


def test_invalid_deployment_is_refused_with_a_422_naming_the_field(kubectl: Kubectl, ns: str) -> None:
    bad = deployment("bad-id", target={"transport": "ssm", "instanceId": "x", "region": "us-east-1"})
    result = kubectl("-n", ns, "apply", "-f", "-", input=bad)
    assert result.returncode == 1
    assert 'The Deployment "bad-id" is invalid' in result.stderr
    assert ("spec.target.instanceId: Invalid value: \"x\": spec.target.instanceId in body should match "
            "'^i-[0-9a-f]{8,17}$'") in result.stderr


def test_project_crd_cel_rule_is_enforced_through_kubectl(kubectl: Kubectl, ns: str) -> None:
    result = kubectl("-n", ns, "apply", "-f", "-", input=deployment("both", image="nginx:1.27"))
    assert result.returncode == 1
    assert 'spec: Invalid value: "object": exactly one of spec.source or spec.image must be set' in result.stderr


def test_unknown_field_is_refused_by_kubectl_apply(kubectl: Kubectl, ns: str) -> None:
    result = kubectl("-n", ns, "apply", "-f", "-", input=deployment("typo", suspnd=True))
    assert result.returncode == 1
    assert 'strict decoding error: unknown field "spec.suspnd"' in result.stderr


def test_kubectl_create_secret_sends_protobuf_that_the_emulator_stores(kubectl: Kubectl, kube: Kube,
                                                                       ns: str) -> None:
    ok(kubectl("-n", ns, "create", "secret", "generic", "creds", "--from-literal=token=s3cr3t"))
    assert ok(kubectl("-n", ns, "get", "secret", "creds", "-o", "jsonpath={.data.token}")) == "czNjcjN0"
    (created,) = kube.emulator.audit.find("create", "secrets", namespace=ns)
    assert created.code == 201


def test_kubectl_wait_sees_a_status_change(kubectl: Kubectl, ns: str, gizmos: None) -> None:
    ok(kubectl("-n", ns, "apply", "-f", "-", input="apiVersion: test.deploymind.io/v1\nkind: Gizmo\n"
                                                   "metadata: {name: g2}\nspec: {size: 1}\n"))
    waiting = subprocess.Popen(
        [str(kubectl.binary), "-n", ns, "wait", "--for=jsonpath={.status.phase}=Done", "gizmo/g2", "--timeout=20s"],
        env=kubectl.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    ok(kubectl("-n", ns, "patch", "gizmo", "g2", "--subresource=status", "--type=merge",
               "-p", '{"status": {"phase": "Done"}}'))
    out, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 0, err
    assert "condition met" in out


def test_kubectl_delete_waits_for_finalizers_then_removes(kubectl: Kubectl, ns: str, gizmos: None) -> None:
    ok(kubectl("-n", ns, "apply", "-f", "-", input="apiVersion: test.deploymind.io/v1\nkind: Gizmo\n"
                                                   "metadata: {name: g3, finalizers: [test/hold]}\nspec: {size: 1}\n"))
    ok(kubectl("-n", ns, "delete", "gizmo", "g3", "--wait=false"))
    assert ok(kubectl("-n", ns, "get", "gizmo", "g3", "-o", "jsonpath={.metadata.deletionTimestamp}"))
    ok(kubectl("-n", ns, "patch", "gizmo", "g3", "--type=json", "-p", '[{"op": "remove", "path": '
                                                                        '"/metadata/finalizers"}]'))
    result = kubectl("-n", ns, "get", "gizmo", "g3")
    assert result.returncode == 1 and "NotFound" in result.stderr


def test_helm_installs_upgrades_rolls_back_and_uninstalls_a_chart(helm: Helm, kubectl: Kubectl, ns: str) -> None:
    def greeting() -> str:
        return ok(kubectl("-n", ns, "get", "configmap", "t1-greeting", "-o", "jsonpath={.data.greeting}"))

    ok(helm("install", "t1", str(CHART), "-n", ns))
    assert greeting() == "hello"
    ok(helm("upgrade", "t1", str(CHART), "-n", ns, "--set", "greeting=bye"))
    assert greeting() == "bye"
    ok(helm("rollback", "t1", "1", "-n", ns))
    assert greeting() == "hello"
    ok(helm("uninstall", "t1", "-n", ns))
    assert kubectl("-n", ns, "get", "configmap", "t1-greeting").returncode == 1
