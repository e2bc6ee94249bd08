"""The OpenAPI schemas of the built-in kinds the emulator publishes and checks writes against: Kubernetes 1.35's.

`builtin_schemas.yaml` holds kube-apiserver's `components.schemas` entries, in its OpenAPI v3 form (a reference
beside a description is `allOf: [{$ref}]`), of PersistentVolumeClaim, PodDisruptionBudget and NetworkPolicy and of
every type they reference except ObjectMeta, which `openapi.py` publishes once for every kind.
tests/integration/test_emulator_kinds.py rebuilds the file from kubernetes-validate's copy of the 1.35 definitions
and fails when the two drift apart.

`structural()` inlines the references into the one self-contained schema admission checks a write against, as it
checks a custom resource against its CRD's: undeclared fields pruned (refused with `fieldValidation=Strict`), types
and formats. Not `required`, nor null: Go decodes a missing field or a JSON null to its zero value, and only the
kind's own validation asks for some fields (`builtin_strategies.py`). A value of the wrong type is refused as a
custom resource's is (422, `must be of type array`), where kube-apiserver's decoder answers 400 (`json: cannot
unmarshal string into Go struct field …`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import yaml

JsonObj = dict[str, Any]

OBJECT_META: Final = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
REF_PREFIX: Final = "#/components/schemas/"
_REF = re.compile(r"#/components/schemas/([\w.-]+)")
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml reads the 40 KB file ten times faster


def _load() -> dict[str, JsonObj]:
    components: dict[str, JsonObj] = yaml.load((Path(__file__).parent / "builtin_schemas.yaml").read_text(),
                                               Loader=_LOADER)
    return components


COMPONENTS: Final[dict[str, JsonObj]] = _load()


def closure(name: str) -> dict[str, JsonObj]:
    """The component `name` and every component it references, directly or not (ObjectMeta aside)."""
    found: dict[str, JsonObj] = {}
    pending = [name]
    while pending:
        current = pending.pop()
        if current in found or current == OBJECT_META:
            continue
        found[current] = COMPONENTS[current]
        pending.extend(_REF.findall(repr(found[current])))
    return found


def structural(name: str) -> JsonObj:
    """The schema of component `name` with every reference inlined, as admission checks writes against it."""
    return _inline(COMPONENTS[name])


def _inline(node: JsonObj) -> JsonObj:
    ref = _reference(node)
    if ref is not None:
        if ref == OBJECT_META:
            return {"type": "object", "nullable": True}  # admission checks metadata itself (admission.py)
        return _inline(COMPONENTS[ref])
    out = {k: v for k, v in node.items() if k not in ("description", "oneOf", "required")}
    if "oneOf" in node:
        types = {branch["type"] for branch in node["oneOf"]}
        if types == {"integer", "string"}:
            out["x-kubernetes-int-or-string"] = True  # IntOrString
        else:
            out["type"] = sorted(types)  # Quantity: a string or a number; schema.py reads a list as a union
    if isinstance(node.get("properties"), dict):
        out["properties"] = {field: _inline(sub) for field, sub in node["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            out[key] = _inline(node[key])
    out["nullable"] = True
    return out


def _reference(node: JsonObj) -> str | None:
    target = node.get("$ref") or next((branch.get("$ref") for branch in node.get("allOf") or []), None)
    return str(target).removeprefix(REF_PREFIX) if target else None
