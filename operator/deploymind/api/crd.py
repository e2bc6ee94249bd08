"""Render the `deployments.deploymind.io` CustomResourceDefinition from the API models.

Pydantic writes JSON Schema (draft 2020-12: `$ref`, `anyOf` with null, `title`, numeric `exclusiveMinimum`,
`additionalProperties: false`); kube-apiserver wants a *structural* OpenAPI v3 schema: every node typed and
inline, no `$ref`/`anyOf`, no `additionalProperties` beside `properties`. `structural()` converts one into the
other and refuses anything it cannot express, so a model change that the apiserver would reject fails here,
at render time, instead of at `kubectl apply -f crds/`.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import yaml

from deploymind.api import (
    CATEGORY,
    CRD_NAME,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAME,
    SINGULAR,
    VERSION,
    DeploymentSpec,
    DeploymentStatus,
)

Schema = dict[str, Any]

# Keywords a structural schema may carry, copied as they are (after conversion of their sub-schemas).
_KEPT = frozenset({
    "type", "description", "default", "enum", "pattern", "format",
    "minLength", "maxLength", "minimum", "maximum", "multipleOf",
    "minItems", "maxItems", "minProperties", "maxProperties", "required",
})
# JSON Schema decoration the apiserver has no use for.
_DROPPED = frozenset({"title", "examples", "$defs", "deprecated", "readOnly", "writeOnly"})
# String formats kube-apiserver validates (k8s.io/kube-openapi/pkg/validation/strfmt); others are dropped.
_FORMATS = frozenset({
    "bsonobjectid", "uri", "email", "hostname", "ipv4", "ipv6", "cidr", "mac", "uuid", "uuid3", "uuid4",
    "uuid5", "isbn", "isbn10", "isbn13", "creditcard", "ssn", "hexcolor", "rgbcolor", "byte", "password",
    "date", "duration", "datetime", "date-time",
})

_DESCRIPTION = (
    "An application deployed by DeployMind from a Git repository (or a prebuilt image) onto one host "
    "(an EC2 instance over SSM or SSH, or an SSH host), kept healthy, and rolled back when a new revision fails."
)
_TYPE_META = {
    "apiVersion": {"type": "string", "description": "Versioned schema of this object; deploymind.io/v1alpha1."},
    "kind": {"type": "string", "description": "Kind of this object: Deployment."},
    "metadata": {"type": "object"},
}
# `Target`: one JSONPath only. `.status.target.address` is the one path that can name the host for every
# transport (the controller resolves ssm instances, ssh hosts and instance lookups to it); a spec path would
# stay empty for ssh-by-host (`instanceId`) or ssm (`ssh.host`).
_PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Summary of the conditions."},
    {"name": "Revision", "type": "string", "jsonPath": ".status.revision.id",
     "description": "The revision running on the host."},
    {"name": "Target", "type": "string", "jsonPath": ".status.target.address",
     "description": "The host the application runs on."},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


class SchemaError(ValueError):
    """The model produced a JSON Schema construct that a structural CRD schema cannot hold."""


def structural(node: Schema, defs: Schema, path: str = "") -> Schema:
    """One pydantic JSON Schema node (and its children) as a structural OpenAPI v3 node."""
    node = _inline(node, defs, path)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            out[key] = {name: structural(sub, defs, f"{path}.{name}") for name, sub in value.items()}
        elif key == "items":
            out[key] = structural(value, defs, f"{path}[]")
        elif key == "additionalProperties":
            # `false` is the server's job (pruning, strict field validation); a map type keeps its value schema.
            if isinstance(value, dict):
                out[key] = structural(value, defs, f"{path}.*")
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # Draft 2020 says `exclusiveMinimum: 0`; OpenAPI v3.0 says `minimum: 0, exclusiveMinimum: true`.
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound], out[key] = value, True
        elif key == "const":
            out["enum"] = [value]
        elif key == "uniqueItems":
            # The apiserver forbids uniqueItems (quadratic); a list of scalars says the same as a set.
            out["x-kubernetes-list-type"] = "set"
        elif key == "format":
            if value in _FORMATS:
                out[key] = value
        elif key == "default":
            if value is not None:
                out[key] = value
        elif key == "required":
            out[key] = sorted(value)
        elif key in _KEPT or key.startswith("x-kubernetes-"):
            out[key] = value
        else:
            raise SchemaError(f"{path or '<root>'}: JSON Schema keyword {key!r} has no structural form")
    if "type" not in out and not out.get("x-kubernetes-int-or-string"):
        raise SchemaError(f"{path or '<root>'}: every node of a structural schema needs a type")
    return out


def _inline(node: Schema, defs: Schema, path: str) -> Schema:
    """Resolve `$ref` and `Optional` (`anyOf: [X, null]`) into one node; the field's own keys win over X's."""
    node = dict(node)
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if len(branches) != 1:
            raise SchemaError(f"{path}: a union of {len(branches)} types cannot be structural; use one type")
        # Not `nullable`: the apiserver prunes an explicit null on a non-nullable field, as the model treats it.
        node = {**_inline(branches[0], defs, path), **node}
    if "$ref" in node:
        name = node.pop("$ref").rsplit("/", 1)[-1]
        node = {**_inline(defs[name], defs, path), **node}
    for key in ("allOf", "oneOf", "not"):
        if key in node:
            raise SchemaError(f"{path}: {key} cannot be expressed in a structural schema")
    return node


def _model_schema(model: type[DeploymentSpec] | type[DeploymentStatus]) -> Schema:
    raw = model.model_json_schema(by_alias=True)
    return structural(raw, raw.get("$defs", {}))


@functools.cache
def _spec_schema() -> Schema:
    return _model_schema(DeploymentSpec)


def spec_schema() -> Schema:
    """The structural schema of `spec` (a copy: callers may change it)."""
    return copy.deepcopy(_spec_schema())


def status_schema() -> Schema:
    """The structural schema of `status`."""
    return _model_schema(DeploymentStatus)


def render_crd() -> dict[str, Any]:
    """The CustomResourceDefinition as a mapping."""
    root: Schema = {
        "type": "object",
        "description": _DESCRIPTION,
        "properties": {**_TYPE_META, "spec": spec_schema(), "status": status_schema()},
        "required": ["spec"],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": [SHORT_NAME],
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": _PRINTER_COLUMNS,
                "schema": {"openAPIV3Schema": root},
            }],
        },
    }


_HEADER = "# Generated by `deploymind crd` from operator/deploymind/api; do not edit.\n"


def render_crd_yaml() -> str:
    """The CRD as YAML, byte for byte what is committed in crds/ (keys sorted, so rendering is deterministic)."""
    body = yaml.safe_dump(render_crd(), sort_keys=True, default_flow_style=False, width=120, allow_unicode=True)
    return _HEADER + body
