"""PersistentVolumeClaim, PodDisruptionBudget and NetworkPolicy through kubectl 1.35 as on a cluster: apply (client-
and server-side), the apiserver's defaults and table columns, its refusals, `kubectl explain` from Kubernetes 1.35's
schemas; and a kind nothing serves refused as "no matches for kind" (kubectl reads /openapi/v2 in protobuf for it).

Run as a script (`PYTHONPATH=tests python3 tests/integration/test_emulator_kinds.py`) it rewrites the emulator's
builtin_schemas.yaml from kubernetes-validate's copy of the Kubernetes 1.35 definitions.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deploymind.sandbox.kube.admission import STRICT, admit
from deploymind.sandbox.kube.api_errors import ApiError
from deploymind.sandbox.kube.resources import BUILTINS, ResourceType
from world.kubetools import Kubectl

SCHEMAS_FILE = Path(__file__).parents[2] / "operator" / "deploymind" / "sandbox" / "kube" / "builtin_schemas.yaml"
KINDS = ("io.k8s.api.core.v1.PersistentVolumeClaim", "io.k8s.api.policy.v1.PodDisruptionBudget",
         "io.k8s.api.networking.v1.NetworkPolicy")
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# kube-apiserver's v3 form of the two scalar unions (kubernetes-validate keeps JSON Schema's, without descriptions).
SCALARS: dict[str, dict[str, Any]] = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML "
                       "marshalling and unmarshalling, it produces or consumes the inner type.  This allows you to "
                       "have, for example, a JSON field that can accept a name or number.",
        "format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "description": "Quantity is a fixed-point representation of a number. It provides convenient "
                       "marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() accessors.",
        "oneOf": [{"type": "string"}, {"type": "number"}]},
}
_DEFS_REF = re.compile(r"(?:/api/_definitions\.json)?#/\$defs/(.+)")
_HEADER = """\
# Kubernetes 1.35 OpenAPI v3 components.schemas of PersistentVolumeClaim, PodDisruptionBudget and NetworkPolicy
# and the types they reference (ObjectMeta aside). Written by tests/integration/test_emulator_kinds.py run as a
# script, from kubernetes-validate's copy of the definitions; that test fails when this file drifts from them.
"""


def _v3(node: Any) -> Any:
    """One kubernetes-validate definition in kube-apiserver's v3 form: nullable types plain, references to
    components.schemas (beside other keywords, in an allOf)."""
    if isinstance(node, list):
        return [_v3(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: {p: _v3(s) for p, s in v.items()} if k == "properties" else _v3(v) for k, v in node.items()}
    if isinstance(out.get("type"), list):
        [out["type"]] = [t for t in out["type"] if t != "null"]
    if "$ref" in out:
        match = _DEFS_REF.fullmatch(out.pop("$ref"))
        assert match is not None
        ref = {"$ref": f"#/components/schemas/{match[1]}"}
        out = {"allOf": [ref], **out} if out else ref
    return out


def kubernetes_components() -> dict[str, Any]:
    """What builtin_schemas.yaml must hold: the kinds and every type they reference, ObjectMeta aside."""
    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / "v1.35.0-local"
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    found: dict[str, Any] = {}
    pending = list(KINDS)
    while pending:
        name = pending.pop()
        if name in found or name == OBJECT_META:
            continue
        found[name] = SCALARS.get(name) or _v3(definitions[name])
        pending += re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(found[name]))
    for kind in KINDS:
        for field in ("apiVersion", "kind"):
            del found[kind]["properties"][field]["enum"]  # kubernetes-validate pins them; kube-apiserver does not
    return found


def test_the_emulators_schemas_are_kubernetes_1_35s() -> None:
    shipped = yaml.safe_load(SCHEMAS_FILE.read_text())
    assert shipped == kubernetes_components(), \
        "builtin_schemas.yaml drifted: PYTHONPATH=tests python3 tests/integration/test_emulator_kinds.py rewrites it"


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout
    return " ".join(result.stderr.split())


def explained(kubectl: Kubectl, field: str) -> str:
    return " ".join(ok(kubectl("explain", field)).split())  # kubectl wraps long descriptions


def table(kubectl: Kubectl, *args: str) -> list[list[str]]:
    """`kubectl get` output, columns split on runs of two or more spaces (headers like ACCESS MODES have one)."""
    return [re.split(r"\s{2,}", line.strip()) for line in ok(kubectl("get", *args)).splitlines()]


@pytest.fixture(scope="module")
def ns(kubectl: Kubectl) -> Iterator[str]:
    name = f"kinds-{uuid.uuid4().hex[:8]}"
    ok(kubectl("create", "namespace", name))
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


CLAIM = """
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: state}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 4Gi}}
"""


def test_a_claim_stays_pending_with_its_defaults_and_its_spec_is_immutable(kubectl: Kubectl, ns: str) -> None:
    ok(kubectl("-n", ns, "apply", "-f", "-", input=CLAIM))
    header, row = table(kubectl, "-n", ns, "pvc", "-o", "wide")
    assert header == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "VOLUMEATTRIBUTESCLASS",
                      "AGE", "VOLUMEMODE"]
    assert (row[:3], row[-1]) == (["state", "Pending", "<unset>"], "Filesystem")  # unbound: no volume, no capacity
    assert refused(kubectl("-n", ns, "apply", "-f", "-", input=CLAIM.replace("4Gi", "8Gi"))) == (
        'The PersistentVolumeClaim "state" is invalid: spec: Forbidden: spec is immutable after creation except '
        "resources.requests and volumeAttributesClassName for bound claims")
    assert 'strict decoding error: unknown field "spec.size"' in refused(
        kubectl("-n", ns, "apply", "-f", "-", input=CLAIM.replace("state", "other") + "  size: 4Gi\n"))
    assert ("spec.accessModes: Required value: at least 1 access mode is required" in refused(
        kubectl("-n", ns, "apply", "-f", "-", input=CLAIM.replace("state", "other").replace("[ReadWriteOnce]", "[]"))))
    assert "requests <map[string]Quantity>" in explained(kubectl, "pvc.spec.resources")


BUDGET_BOTH = """
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: both}
spec: {minAvailable: 1, maxUnavailable: 50%, selector: {matchLabels: {app: web}}}
"""


def test_a_disruption_budget_created_by_kubectl_in_protobuf_starts_with_a_zero_status(kubectl: Kubectl,
                                                                                      ns: str) -> None:
    ok(kubectl("-n", ns, "create", "poddisruptionbudget", "web", "--selector=app=web", "--max-unavailable=50%"))
    budget = json.loads(ok(kubectl("-n", ns, "get", "pdb", "web", "-o", "json")))
    assert (budget["spec"], budget["metadata"]["generation"]) == (
        {"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}}, 1)
    assert budget["status"] == {"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0}
    assert [row[:4] for row in table(kubectl, "-n", ns, "pdb")] == [
        ["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS"], ["web", "N/A", "50%", "0"]]
    assert refused(kubectl("-n", ns, "apply", "-f", "-", input=BUDGET_BOTH)).endswith(
        "minAvailable and maxUnavailable cannot be both set")
    assert "maxUnavailable <IntOrString>" in explained(kubectl, "pdb.spec")


POLICY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web}
spec:
  podSelector: {matchLabels: {app: web}, matchExpressions: [{key: tier, operator: In, values: [front, edge]}]}
  ingress: [{ports: [{port: http}]}]
  egress: [{ports: [{port: 443}]}]
"""


def test_a_network_policy_gets_its_policy_types_and_protocols_and_server_side_apply_updates_it(
        kubectl: Kubectl, ns: str) -> None:
    ok(kubectl("-n", ns, "apply", "--server-side", "-f", "-", input=POLICY))
    spec = json.loads(ok(kubectl("-n", ns, "get", "netpol", "web", "-o", "json")))["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert (spec["ingress"], spec["egress"]) == ([{"ports": [{"port": "http", "protocol": "TCP"}]}],
                                                 [{"ports": [{"port": 443, "protocol": "TCP"}]}])
    assert table(kubectl, "-n", ns, "netpol")[1][:2] == ["web", "app=web,tier in (edge,front)"]
    ok(kubectl("-n", ns, "apply", "--server-side", "-f", "-", input=POLICY.replace("443", "8443")))
    policy = json.loads(ok(kubectl("-n", ns, "get", "netpol", "web", "-o", "json")))
    assert (policy["spec"]["egress"][0]["ports"][0]["port"], policy["metadata"]["generation"]) == (8443, 2)
    assert ('spec.policyTypes[0]: Unsupported value: "Inbound": supported values: "Ingress", "Egress"'
            in refused(kubectl("-n", ns, "apply", "-f", "-", input=POLICY.replace("name: web", "name: bad")
                               .replace("podSelector:", "policyTypes: [Inbound]\n  podSelector:"))))
    assert "port <IntOrString>" in explained(kubectl, "networkpolicy.spec.ingress.ports")


def kind(name: str) -> ResourceType:
    return next(rt for rt in BUILTINS if rt.kind == name)


def claim(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                "resources": {"requests": {"storage": "1Gi"}}, **spec}}


@pytest.mark.parametrize(("kind_name", "obj", "error"), [
    ("PersistentVolumeClaim", claim(resources={}), "spec.resources[storage]: Required value"),
    ("PersistentVolumeClaim", claim(accessModes=["ReadWriteSometimes"]),
     'spec.accessModes: Unsupported value: "ReadWriteSometimes": supported values: "ReadOnlyMany", "ReadWriteMany", '
     '"ReadWriteOnce", "ReadWriteOncePod"'),
    ("PodDisruptionBudget", {"metadata": {"name": "b"}, "spec": {"minAvailable": -1}},
     "spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"),
    ("PodDisruptionBudget", {"metadata": {"name": "b"}, "spec": {"maxUnavailable": "half"}},
     "spec.maxUnavailable: Invalid value: \"half\": a valid percent string must be a numeric string followed by an "
     "ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"),
    ("PodDisruptionBudget", {"metadata": {"name": "b"}, "spec": {"maxUnavailable": "150%"}},
     'spec.maxUnavailable: Invalid value: "150%": must not be greater than 100%'),
    ("PodDisruptionBudget", {"metadata": {"name": "b"}, "spec": {"unhealthyPodEvictionPolicy": "Never"}},
     'spec.unhealthyPodEvictionPolicy: Unsupported value: "Never": supported values: "AlwaysAllow", '
     '"IfHealthyBudget"'),
    ("NetworkPolicy", {"metadata": {"name": "p"}, "spec": {"egress": [{"ports": [{"port": 53, "protocol": "ICMP"}]}]}},
     'spec.egress[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"'),
    ("NetworkPolicy", {"metadata": {"name": "p"}, "spec": {"policyTypes": ["Ingress", "Egress", "Ingress"]}},
     "spec.policyTypes: Invalid value: []interface {}{\"Ingress\", \"Egress\", \"Ingress\"}: may not specify more than "
     "two policyTypes"),
])
def test_invalid_built_in_objects_are_refused_with_the_apiservers_field_error(kind_name: str, obj: dict[str, Any],
                                                                             error: str) -> None:
    with pytest.raises(ApiError) as refusal:
        admit(kind(kind_name), obj, None, field_validation=STRICT, subresource=None)
    assert refusal.value.code == 422
    assert error in refusal.value.message


def test_fields_a_budgets_status_leaves_out_read_as_zero_as_gos_decoder_reads_them() -> None:
    budget = {"metadata": {"name": "b"}, "spec": {"minAvailable": 1}, "status": {"currentHealthy": 2}}
    admit(kind("PodDisruptionBudget"), budget, dict(budget), field_validation=STRICT, subresource="status")
    assert budget["status"] == {"currentHealthy": 2, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0}


def test_a_kind_nothing_serves_is_refused_as_no_matches_for_kind(kubectl: Kubectl, ns: str) -> None:
    monitor = "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: web}\nspec: {}\n"
    assert refused(kubectl("-n", ns, "apply", "-f", "-", input=monitor)).endswith(
        'no matches for kind "ServiceMonitor" in version "monitoring.coreos.com/v1" ensure CRDs are installed first')


if __name__ == "__main__":
    SCHEMAS_FILE.write_text(_HEADER + yaml.safe_dump(dict(sorted(kubernetes_components().items())), width=120))
