"""kubectl 1.35 and helm 4.1 work against the emulator as against a cluster, errors included."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dm import wait_for

from deploymind.api.spec import HealthCheck
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


def test_kubectl_explain_shows_a_crd_fields_with_the_models_descriptions(kubectl: Kubectl) -> None:
    out = " ".join(ok(kubectl("explain", "dmd.spec.healthCheck")).split())  # kubectl wraps long descriptions
    assert "FIELD: healthCheck <Object>" in out
    assert f"failureThreshold <integer> {HealthCheck.model_fields['failure_threshold'].description}" in out
    assert f"periodSeconds <integer> {HealthCheck.model_fields['period_seconds'].description}" in out


EVENT = """
apiVersion: v1
kind: Event
metadata: {{name: {name}}}
involvedObject: {{apiVersion: deploymind.io/v1alpha1, kind: Deployment, name: web}}
type: Warning
reason: Unhealthy
message: /health answered 503
count: 2
firstTimestamp: "2025-01-01T00:00:00Z"
lastTimestamp: "2025-01-01T00:00:00Z"
source: {{component: deploymind}}
"""


def test_kubectl_get_events_shows_type_reason_object_and_message(kubectl: Kubectl, ns: str) -> None:
    ok(kubectl("-n", ns, "apply", "-f", "-", input=EVENT.format(name="web.1")))
    header, row = ok(kubectl("-n", ns, "get", "events")).splitlines()
    assert header.split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert row.split()[1:] == ["Warning", "Unhealthy", "deployment/web", "/health", "answered", "503"]
    wide_header, wide_row = ok(kubectl("-n", ns, "get", "events", "-o", "wide")).splitlines()
    assert wide_header.split()[-4:] == ["FIRST", "SEEN", "COUNT", "NAME"]
    assert wide_row.split()[-2:] == ["2", "web.1"]
    # events.k8s.io/v1 names the same fields differently (regarding, note): the apiserver prints them alike.
    ok(kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "web.new"},
        "regarding": {"kind": "Deployment", "name": "web"}, "type": "Normal", "reason": "Released",
        "note": "revision abc is serving", "eventTime": "2025-01-01T00:00:00.000000Z",
        "reportingController": "deploymind.io/operator", "reportingInstance": "op-1", "action": "Release"})))
    header, row = ok(kubectl("-n", ns, "get", "events.events.k8s.io", "web.new")).splitlines()
    assert header.split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert row.split()[1:] == ["Normal", "Released", "deployment/web", "revision", "abc", "is", "serving"]


def test_new_events_reach_kubectl_get_watch_and_kubectl_events_for(kubectl: Kubectl, kube: Kube, ns: str) -> None:
    lines: list[str] = []
    watching = subprocess.Popen([str(kubectl.binary), "-n", ns, "get", "events", "--watch-only"], env=kubectl.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert watching.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(watching.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        wait_for(lambda: kube.emulator.audit.find("watch", "events", namespace=ns), 20, "kubectl's watch on events")
        ok(kubectl("-n", ns, "apply", "-f", "-", input=EVENT.format(name="web.2").replace("Unhealthy", "Reverted")))
        row = wait_for(lambda: next((line for line in lines if "Reverted" in line), None), 20, "the watched event")
        assert row.split()[1:4] == ["Warning", "Reverted", "deployment/web"]
    finally:
        watching.kill()
        watching.wait(10)
        reader.join(5)
    events = ok(kubectl("-n", ns, "events", "--for", "dmd/web"))
    assert "Reverted" in events and "Deployment/web" in events


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
