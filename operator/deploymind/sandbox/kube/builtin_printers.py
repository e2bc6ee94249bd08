"""kube-apiserver's table columns for the built-in kinds with schemas (k8s.io/kubernetes
`pkg/printers/internalversion`), so `kubectl get pvc|pdb|netpol` prints what it prints against a cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from deploymind.sandbox.kube.resources import ResourceType

JsonObj = dict[str, Any]
Age = Callable[[str], str]

_NAME: Final = {"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a "
                "namespace. Cannot be updated.", "priority": 0}
_AGE: Final = {"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp is a timestamp "
               "representing the server time when this object was created.", "priority": 0}
_ACCESS_MODE_SHORT: Final = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
                             "ReadWriteOncePod": "RWOP"}
_STORAGE_CLASS_ANNOTATION: Final = "volume.beta.kubernetes.io/storage-class"


def _column(name: str, description: str, kind: str = "string", priority: int = 0) -> JsonObj:
    return {"name": name, "type": kind, "format": "", "description": description, "priority": priority}


def prints(rt: ResourceType) -> bool:
    return rt.definition in _PRINTERS


def column_definitions(rt: ResourceType) -> list[JsonObj]:
    """Name, the kind's columns, Age, then its `-o wide` ones (priority 1)."""
    columns, wide, _ = _PRINTERS[rt.definition]
    return [_NAME, *columns, _AGE, *wide]


def cells(rt: ResourceType, obj: JsonObj, age: Age) -> list[Any]:
    meta = obj.get("metadata") or {}
    own, wide = _PRINTERS[rt.definition][2](obj)
    return [meta.get("name", ""), *own, age(str(meta.get("creationTimestamp") or "")), *wide]


def _claim(obj: JsonObj) -> tuple[list[Any], list[Any]]:
    """`printPersistentVolumeClaim`: capacity and access modes are the bound volume's, shown once bound."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    phase = "Terminating" if meta.get("deletionTimestamp") else status.get("phase") or ""
    volume = spec.get("volumeName") or ""
    capacity = str((status.get("capacity") or {}).get("storage") or "") if volume else ""
    present = status.get("accessModes") or []
    modes = ",".join(short for mode, short in _ACCESS_MODE_SHORT.items() if mode in present) if volume else ""
    storage_class = (meta.get("annotations") or {}).get(_STORAGE_CLASS_ANNOTATION) or spec.get("storageClassName") or ""
    attributes_class = spec.get("volumeAttributesClassName") or "<unset>"
    return [phase, volume, capacity, modes, storage_class, attributes_class], [spec.get("volumeMode") or "<unset>"]


def _budget(obj: JsonObj) -> tuple[list[Any], list[Any]]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    bounds = ["N/A" if spec.get(k) is None else str(spec[k]) for k in ("minAvailable", "maxUnavailable")]
    return [*bounds, int(status.get("disruptionsAllowed") or 0)], []


def _policy(obj: JsonObj) -> tuple[list[Any], list[Any]]:
    return [format_label_selector((obj.get("spec") or {}).get("podSelector") or {})], []


def format_label_selector(selector: JsonObj) -> str:
    """apimachinery `metav1.FormatLabelSelector`: requirements sorted by key, `<none>` when it selects all."""
    requirements = [(key, f"{key}={value}") for key, value in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key", ""), expression.get("operator", "")
        values = ",".join(sorted(expression.get("values") or []))
        requirements.append((key, {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})",
                                   "Exists": key, "DoesNotExist": f"!{key}"}.get(operator, key)))
    text = ",".join(shown for _, shown in sorted(requirements, key=lambda r: r[0]))
    return text or "<none>"


_Cells = Callable[[JsonObj], tuple[list[Any], list[Any]]]
_PRINTERS: Final[dict[str, tuple[list[JsonObj], list[JsonObj], _Cells]]] = {
    "io.k8s.api.core.v1.PersistentVolumeClaim": ([
        _column("Status", "phase represents the current phase of PersistentVolumeClaim."),
        _column("Volume", "volumeName is the binding reference to the PersistentVolume backing this claim."),
        _column("Capacity", "capacity represents the actual resources of the underlying volume."),
        _column("Access Modes", "accessModes contains the actual access modes the volume backing the PVC has."),
        _column("StorageClass", "StorageClass of the pvc"),
        _column("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
    ], [_column("VolumeMode", "volumeMode defines what type of volume is required by the claim.", priority=1)],
        _claim),
    "io.k8s.api.policy.v1.PodDisruptionBudget": ([
        _column("Min Available", "The minimum number of pods that must be available."),
        _column("Max Unavailable", "The maximum number of pods that may be unavailable."),
        _column("Allowed Disruptions", "Calculated number of pods that may be disrupted at this time.", "integer"),
    ], [], _budget),
    "io.k8s.api.networking.v1.NetworkPolicy": ([
        _column("Pod-Selector", "podSelector selects the pods to which this NetworkPolicy object applies."),
    ], [], _policy),
}
