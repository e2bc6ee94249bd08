"""Minimal `/openapi/v2` and `/openapi/v3` documents.

kubectl reads OpenAPI v3 before `apply`: when every operation declares the `fieldValidation` query parameter
it leaves validation to the server and sends `fieldValidation=Strict`, which is what makes unknown fields
fail the way they do on a real cluster. Schemas are not published (kubectl then skips client-side checks).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from deploymind.sandbox.resources import ResourceType

JsonObj = dict[str, Any]

V2: JsonObj = {"swagger": "2.0", "info": {"title": "deploymind-emulator", "version": "v0"}, "paths": {}}


def _group_version_path(rt: ResourceType) -> str:
    return f"apis/{rt.group}/{rt.version}" if rt.group else "api/v1"


def v3_root(types: Iterable[ResourceType]) -> JsonObj:
    paths = sorted({_group_version_path(rt) for rt in types})
    return {"paths": {p: {"serverRelativeURL": f"/openapi/v3/{p}?hash=0"} for p in paths}}


def v3_group_version(types: Iterable[ResourceType], group_version_path: str) -> JsonObj:
    """The document of one group-version (`apis/deploymind.io/v1alpha1` or `api/v1`)."""
    paths: JsonObj = {}
    for rt in types:
        if _group_version_path(rt) != group_version_path:
            continue
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        operation = {
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
            "responses": {},
        }
        prefix = f"/{group_version_path}" + ("/namespaces/{namespace}" if rt.namespaced else "")
        paths[f"{prefix}/{rt.plural}"] = {"post": operation}
        paths[f"{prefix}/{rt.plural}/{{name}}"] = {"patch": operation, "put": operation}
    return {"openapi": "3.0.0", "info": {"title": "deploymind-emulator", "version": "v0"}, "paths": paths,
            "components": {"schemas": {}}}
