"""Protobuf request bodies of typed Kubernetes clients, decoded to the JSON objects the emulator stores.

kubectl 1.35 (`create secret|configmap|namespace`) and Helm 4 (its Secret release storage) send built-in
types as `application/vnd.kubernetes.protobuf`: the magic `k8s\\0`, then a `runtime.Unknown` envelope holding
the type and the serialized object. Only the messages those clients send are described: v1 Secret,
ConfigMap, Namespace, DeleteOptions, coordination.k8s.io/v1 Lease, the rbac.authorization.k8s.io/v1 kinds
(`kubectl create role|rolebinding|clusterrole|clusterrolebinding`), policy/v1 PodDisruptionBudget
(`kubectl create poddisruptionbudget`) and the review kinds (`kubectl auth can-i|whoami`).
Anything else is refused (415).
"""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass
from typing import Any

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"


class ProtobufError(ValueError):
    """A body this decoder cannot read: the client should send JSON (e.g. kubectl `-o json | kubectl apply`)."""

    reason = "UnsupportedProtobuf"


@dataclass(frozen=True)
class Field:
    """How one protobuf field maps to JSON: `kind` is string, int, bool, microtime, intorstring, strings
    (repeated), map (string→string), bytesmap (string→base64), message (nested, described by `message`) or
    messages (repeated nested)."""

    name: str
    kind: str
    message: dict[int, Field] | None = None


_META = {
    1: Field("name", "string"),
    2: Field("generateName", "string"),
    3: Field("namespace", "string"),
    5: Field("uid", "string"),
    6: Field("resourceVersion", "string"),
    11: Field("labels", "map"),
    12: Field("annotations", "map"),
    14: Field("finalizers", "strings"),
}
_LEASE_SPEC = {
    1: Field("holderIdentity", "string"),
    2: Field("leaseDurationSeconds", "int"),
    3: Field("acquireTime", "microtime"),
    4: Field("renewTime", "microtime"),
    5: Field("leaseTransitions", "int"),
    6: Field("strategy", "string"),
    7: Field("preferredHolder", "string"),
}
_PRECONDITIONS = {1: Field("uid", "string"), 2: Field("resourceVersion", "string")}
_POLICY_RULE = {1: Field("verbs", "strings"), 2: Field("apiGroups", "strings"), 3: Field("resources", "strings"),
                4: Field("resourceNames", "strings"), 5: Field("nonResourceURLs", "strings")}
_SUBJECT = {1: Field("kind", "string"), 2: Field("apiGroup", "string"), 3: Field("name", "string"),
            4: Field("namespace", "string")}
_ROLE_REF = {1: Field("apiGroup", "string"), 2: Field("kind", "string"), 3: Field("name", "string")}
_LABEL_SELECTOR = {1: Field("matchLabels", "map"), 2: Field("matchExpressions", "messages", {
    1: Field("key", "string"), 2: Field("operator", "string"), 3: Field("values", "strings")})}
_RESOURCE_ATTRIBUTES = {1: Field("namespace", "string"), 2: Field("verb", "string"), 3: Field("group", "string"),
                        4: Field("version", "string"), 5: Field("resource", "string"),
                        6: Field("subresource", "string"), 7: Field("name", "string")}
_NON_RESOURCE_ATTRIBUTES = {1: Field("path", "string"), 2: Field("verb", "string")}
_ACCESS_REVIEW_SPEC = {1: Field("resourceAttributes", "message", _RESOURCE_ATTRIBUTES),
                       2: Field("nonResourceAttributes", "message", _NON_RESOURCE_ATTRIBUTES),
                       3: Field("user", "string"), 4: Field("groups", "strings"), 6: Field("uid", "string")}
_DISRUPTION_BUDGET_SPEC = {1: Field("minAvailable", "intorstring"), 2: Field("selector", "message", _LABEL_SELECTOR),
                           3: Field("maxUnavailable", "intorstring"), 4: Field("unhealthyPodEvictionPolicy", "string")}
_ROLE = {1: Field("metadata", "message", _META), 2: Field("rules", "messages", _POLICY_RULE)}
_BINDING = {1: Field("metadata", "message", _META), 2: Field("subjects", "messages", _SUBJECT),
            3: Field("roleRef", "message", _ROLE_REF)}
MESSAGES: dict[str, dict[int, Field]] = {
    "Secret": {1: Field("metadata", "message", _META), 2: Field("data", "bytesmap"), 3: Field("type", "string"),
               4: Field("stringData", "map"), 5: Field("immutable", "bool")},
    "ConfigMap": {1: Field("metadata", "message", _META), 2: Field("data", "map"), 3: Field("binaryData", "bytesmap"),
                  4: Field("immutable", "bool")},
    "Namespace": {1: Field("metadata", "message", _META)},
    "Lease": {1: Field("metadata", "message", _META), 2: Field("spec", "message", _LEASE_SPEC)},
    "DeleteOptions": {1: Field("gracePeriodSeconds", "int"), 2: Field("preconditions", "message", _PRECONDITIONS),
                      3: Field("orphanDependents", "bool"), 4: Field("propagationPolicy", "string"),
                      5: Field("dryRun", "strings")},
    "PodDisruptionBudget": {1: Field("metadata", "message", _META), 2: Field("spec", "message", _DISRUPTION_BUDGET_SPEC)},
    "Role": _ROLE,
    "ClusterRole": {**_ROLE, 3: Field("aggregationRule", "message", {
        1: Field("clusterRoleSelectors", "messages", _LABEL_SELECTOR)})},
    "RoleBinding": _BINDING,
    "ClusterRoleBinding": _BINDING,
    "SubjectAccessReview": {1: Field("metadata", "message", _META), 2: Field("spec", "message", _ACCESS_REVIEW_SPEC)},
    "LocalSubjectAccessReview": {1: Field("metadata", "message", _META),
                                 2: Field("spec", "message", _ACCESS_REVIEW_SPEC)},
    "SelfSubjectAccessReview": {1: Field("metadata", "message", _META),
                                2: Field("spec", "message", {k: _ACCESS_REVIEW_SPEC[k] for k in (1, 2)})},
    "SelfSubjectRulesReview": {1: Field("metadata", "message", _META),
                               2: Field("spec", "message", {1: Field("namespace", "string")})},
    "SelfSubjectReview": {1: Field("metadata", "message", _META)},
    "TokenReview": {1: Field("metadata", "message", _META),
                    2: Field("spec", "message", {1: Field("token", "string"), 2: Field("audiences", "strings")})},
}


def is_protobuf(body: bytes) -> bool:
    return body[:4] == MAGIC


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded Kubernetes object (with apiVersion and kind)."""
    if not is_protobuf(body):
        raise ProtobufError("the body does not start with the Kubernetes protobuf magic 'k8s\\0'")
    envelope = _group(_fields(body[4:]))
    type_meta = _group(_fields(_one(envelope, 1)))
    api_version = _one(type_meta, 1).decode()
    kind = _one(type_meta, 2).decode()
    spec = MESSAGES.get(kind)
    if spec is None:
        raise ProtobufError(f"protobuf bodies of {api_version}/{kind} are not supported by the emulator; "
                            "send JSON (Content-Type: application/json) instead")
    obj = {"apiVersion": api_version, "kind": kind}
    obj.update(_message(_one(envelope, 2), spec))
    return obj


def _message(data: bytes, spec: dict[int, Field]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, values in _group(_fields(data)).items():
        field = spec.get(number)
        if field is None:
            continue  # fields the emulator does not use (ownerReferences, managedFields, …)
        value = _convert(field, values)
        if value not in (None, "", {}, []):  # gogo-protobuf sends '' for unset strings
            out[field.name] = value
    return out


def _convert(field: Field, values: list[Any]) -> Any:
    last = values[-1]
    if field.kind == "string":
        return bytes(last).decode()
    if field.kind == "int":
        return _signed(int(last))
    if field.kind == "bool":
        return bool(last)
    if field.kind == "strings":
        return [bytes(v).decode() for v in values]
    if field.kind in ("map", "bytesmap"):
        return dict(_entry(v, as_base64=field.kind == "bytesmap") for v in values)
    if field.kind == "microtime":
        return _micro_time(bytes(last))
    if field.kind == "intorstring":
        return _int_or_string(bytes(last))
    if field.kind == "message" and field.message is not None:
        return _message(bytes(last), field.message)
    if field.kind == "messages" and field.message is not None:
        return [_message(bytes(v), field.message) for v in values]
    raise ProtobufError(f"unknown field kind {field.kind!r}")


def _entry(data: bytes, *, as_base64: bool) -> tuple[str, str]:
    kv = _group(_fields(data))
    key = _one(kv, 1).decode()
    value = _one(kv, 2)
    return key, base64.b64encode(value).decode() if as_base64 else value.decode()


def _micro_time(data: bytes) -> str:
    """metav1.MicroTime{seconds, nanos} as RFC 3339 with microseconds."""
    parts = _group(_fields(data))
    seconds = int(parts.get(1, [0])[-1])
    nanos = int(parts.get(2, [0])[-1])
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"


def _int_or_string(data: bytes) -> int | str:
    """intstr.IntOrString{type (0 int, 1 string), intVal, strVal}."""
    parts = _group(_fields(data))
    if int(parts.get(1, [0])[-1]) == 1:
        return _one(parts, 3).decode()
    return _signed(int(parts.get(2, [0])[-1]))


def _signed(value: int) -> int:
    """Negative int64/int32 values travel as 10-byte two's-complement varints."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _one(group: dict[int, list[Any]], number: int) -> bytes:
    values = group.get(number)
    return bytes(values[-1]) if values else b""


def _group(fields: list[tuple[int, Any]]) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = {}
    for number, value in fields:
        grouped.setdefault(number, []).append(value)
    return grouped


def _varint(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if i >= len(data):
            raise ProtobufError("truncated varint in the protobuf body")
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, i


def _fields(data: bytes) -> list[tuple[int, Any]]:
    """(field number, value) pairs: varints as int, length-delimited as bytes, fixed as raw bytes."""
    i, out = 0, []
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            size, i = _varint(data, i)
            value, i = data[i:i + size], i + size
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ProtobufError(f"unsupported protobuf wire type {wire}")
        out.append((number, value))
    return out
