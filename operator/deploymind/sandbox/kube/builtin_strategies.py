"""What kube-apiserver does to the built-in kinds with schemas (`builtin_schemas.py`) beyond checking the schema:
their defaults, the status a new object starts with, and the validations of their registry strategies that
clients run into, worded as the apiserver words them.

- PersistentVolumeClaim: `spec.volumeMode` defaults to Filesystem and `status.phase` to Pending (nothing binds
  claims here, so they stay Pending); at least one access mode and a storage request are required; once created
  the spec is immutable but for setting `volumeName` or `storageClassName` while unset, `volumeAttributesClassName`
  and, for a bound claim, the storage request.
- PodDisruptionBudget: its status starts at zero, as the disruption controller finds it; minAvailable and
  maxUnavailable are non-negative integers or percentages up to 100%, and not both set.
- NetworkPolicy: `podSelector` defaults to {} (every pod), `policyTypes` to Ingress (and Egress when there are
  egress rules), a port's protocol to TCP; policy types are Ingress or Egress, protocols TCP, UDP or SCTP.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any, Final

from deploymind.sandbox.kube import field_errors as fe
from deploymind.sandbox.kube.field_errors import FieldError
from deploymind.sandbox.kube.resources import ResourceType

JsonObj = dict[str, Any]

_ACCESS_MODES: Final = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]
_PVC_IMMUTABLE: Final = ("spec is immutable after creation except resources.requests and volumeAttributesClassName "
                         "for bound claims")
_PDB_STATUS_COUNTS: Final = ("disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods")
_EVICTION_POLICIES: Final = ["AlwaysAllow", "IfHealthyBudget"]
_PERCENT: Final = re.compile(r"[0-9]+%")
_PERCENT_HELP: Final = ("a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or "
                        "'93%', regex used for validation is '[0-9]+%')")
_POLICY_TYPES: Final = ["Ingress", "Egress"]
_PROTOCOLS: Final = ["TCP", "UDP", "SCTP"]


def complete(rt: ResourceType, obj: JsonObj) -> None:
    """Fill in the kind's defaults and initial status, in place (the object has passed its schema)."""
    step = _COMPLETE.get(rt.definition)
    if step is not None:
        step(obj)


def errors(rt: ResourceType, new: JsonObj, old: JsonObj | None) -> list[FieldError]:
    """The strategy's validation of a create (`old` None) or an update, after `complete`."""
    check = _VALIDATE.get(rt.definition)
    return [] if check is None else check(new, old)


def _spec(obj: JsonObj) -> JsonObj:
    """`spec`, created empty when absent or null: Go's zero struct, which the apiserver serializes as {}."""
    if not isinstance(obj.get("spec"), dict):
        obj["spec"] = {}
    spec: JsonObj = obj["spec"]
    return spec


def _status(obj: JsonObj) -> JsonObj:
    if not isinstance(obj.get("status"), dict):
        obj["status"] = {}
    status: JsonObj = obj["status"]
    return status


# ---------------------------------------------------------------- PersistentVolumeClaim

def _complete_claim(obj: JsonObj) -> None:
    spec = _spec(obj)
    if spec.get("volumeMode") is None:
        spec["volumeMode"] = "Filesystem"
    status = _status(obj)
    if not status.get("phase"):
        status["phase"] = "Pending"


def _validate_claim(new: JsonObj, old: JsonObj | None) -> list[FieldError]:
    spec = new["spec"]
    found: list[FieldError] = []
    modes = spec.get("accessModes") or []
    if not modes:
        found.append(fe.required("spec.accessModes", "at least 1 access mode is required"))
    found += [fe.not_supported("spec.accessModes", mode, _ACCESS_MODES) for mode in modes if mode not in _ACCESS_MODES]
    if "storage" not in ((spec.get("resources") or {}).get("requests") or {}):
        found.append(fe.required(fe.key("spec.resources", "storage")))
    if old is not None:
        bound = (new.get("status") or {}).get("phase") == "Bound"
        old_spec = old.get("spec") or {}
        if _fixed_claim_spec(spec, old_spec, bound) != _fixed_claim_spec(old_spec, old_spec, bound):
            found.append(fe.forbidden("spec", _PVC_IMMUTABLE))
    return found


def _fixed_claim_spec(spec: JsonObj, old_spec: JsonObj, bound: bool) -> JsonObj:
    """What of a claim's spec an update may not change: all but volumeAttributesClassName, volumeName and
    storageClassName while `old_spec` has none, and a bound claim's storage request."""
    fixed = {k: v for k, v in copy.deepcopy(spec).items() if v is not None and k != "volumeAttributesClassName"}
    for settable_once in ("volumeName", "storageClassName"):
        if not old_spec.get(settable_once):
            fixed.pop(settable_once, None)
    requests = (fixed.get("resources") or {}).get("requests")
    if bound and isinstance(requests, dict):
        requests.pop("storage", None)
    return fixed


# ---------------------------------------------------------------- PodDisruptionBudget

def _complete_budget(obj: JsonObj) -> None:
    status = _status(obj)
    for count in _PDB_STATUS_COUNTS:  # int32 fields without omitempty: always serialized
        if status.get(count) is None:
            status[count] = 0


def _validate_budget(new: JsonObj, old: JsonObj | None) -> list[FieldError]:
    spec = new.get("spec") or {}
    found: list[FieldError] = []
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        found.append(fe.invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set"))
    for name in ("minAvailable", "maxUnavailable"):
        found += _int_or_percent(fe.child("spec", name), spec.get(name))
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in _EVICTION_POLICIES:
        found.append(fe.not_supported("spec.unhealthyPodEvictionPolicy", policy, _EVICTION_POLICIES))
    return found


def _int_or_percent(path: str, value: Any) -> list[FieldError]:
    """apps validation `ValidatePositiveIntOrPercent` and `IsNotMoreThan100Percent`."""
    if isinstance(value, str):
        if not _PERCENT.fullmatch(value):
            return [fe.invalid(path, value, _PERCENT_HELP)]
        if int(value[:-1]) > 100:
            return [fe.invalid(path, value, "must not be greater than 100%")]
    elif isinstance(value, int) and value < 0:
        return [fe.invalid(path, value, "must be greater than or equal to 0")]
    return []


# ---------------------------------------------------------------- NetworkPolicy

def _complete_policy(obj: JsonObj) -> None:
    spec = _spec(obj)
    if spec.get("podSelector") is None:
        spec["podSelector"] = {}
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]
    for _, port in _ports(spec):
        if port.get("protocol") is None:
            port["protocol"] = "TCP"


def _validate_policy(new: JsonObj, old: JsonObj | None) -> list[FieldError]:
    spec = new["spec"]
    types = spec["policyTypes"]
    if len(types) > len(_POLICY_TYPES):
        return [fe.invalid("spec.policyTypes", types, "may not specify more than two policyTypes")]
    found = [fe.not_supported(fe.index("spec.policyTypes", i), t, _POLICY_TYPES)
             for i, t in enumerate(types) if t not in _POLICY_TYPES]
    for path, port in _ports(spec):
        if port["protocol"] not in _PROTOCOLS:
            found.append(fe.not_supported(fe.child(path, "protocol"), port["protocol"], _PROTOCOLS))
    return found


def _ports(spec: JsonObj) -> list[tuple[str, JsonObj]]:
    """(path, port) of every port of every ingress and egress rule."""
    found = []
    for direction in ("ingress", "egress"):
        for i, rule in enumerate(spec.get(direction) or []):
            rule_path = fe.child(fe.index(fe.child("spec", direction), i), "ports")
            found += [(fe.index(rule_path, j), port) for j, port in enumerate((rule or {}).get("ports") or [])
                      if isinstance(port, dict)]
    return found


_COMPLETE: Final[dict[str, Callable[[JsonObj], None]]] = {
    "io.k8s.api.core.v1.PersistentVolumeClaim": _complete_claim,
    "io.k8s.api.policy.v1.PodDisruptionBudget": _complete_budget,
    "io.k8s.api.networking.v1.NetworkPolicy": _complete_policy,
}
_VALIDATE: Final[dict[str, Callable[[JsonObj, JsonObj | None], list[FieldError]]]] = {
    "io.k8s.api.core.v1.PersistentVolumeClaim": _validate_claim,
    "io.k8s.api.policy.v1.PodDisruptionBudget": _validate_budget,
    "io.k8s.api.networking.v1.NetworkPolicy": _validate_policy,
}
