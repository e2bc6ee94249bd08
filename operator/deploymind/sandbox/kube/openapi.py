"""The `/openapi/v2` and `/openapi/v3` documents: every served kind's write operations, and schemas.

kubectl reads OpenAPI v3 before `apply`: when every operation declares the `fieldValidation` query parameter
it leaves validation to the server and sends `fieldValidation=Strict`, which is what makes unknown fields
fail the way they do on a real cluster; helm 4 does the same before install and upgrade. `kubectl explain`
reads the v3 document of the group-version and looks the kind up by `x-kubernetes-group-version-kind` in
`components.schemas`, so each custom resource is published there as kube-apiserver publishes it: the CRD's
schema, named `io.deploymind.v1alpha1.Deployment`, with `metadata` pointing at ObjectMeta. The built-in kinds
whose Kubernetes schema the emulator has (PersistentVolumeClaim, PodDisruptionBudget, NetworkPolicy:
`builtin_schemas.py`) are published with it, under kube-apiserver's names; the other built-ins publish none
(`kubectl explain secret` has nothing to show).

v2 declares the same operations and no definitions. client-go still reads it, in protobuf (`openapi_proto.py`),
for kinds v3 does not describe (a kind nothing serves, to tell "no matches for kind" apart from an invalid
object), and as kube-apiserver does it answers JSON or protobuf as asked and 406 to anything else.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from typing import Any, Final

from deploymind.sandbox.kube import builtin_schemas
from deploymind.sandbox.kube.resources import ResourceType

JsonObj = dict[str, Any]

OBJECT_META: Final = builtin_schemas.OBJECT_META
_REF_PREFIX: Final = builtin_schemas.REF_PREFIX
_INFO: Final = {"title": "deploymind-emulator", "version": "v0"}
_TYPE_META: Final = {
    "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation "
                   "of an object. Servers should convert recognized schemas to the latest internal value, and may "
                   "reject unrecognized values."},
    "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object "
             "represents. Servers may infer this from the endpoint the client submits requests to. Cannot be "
             "updated. In CamelCase."},
}
_METADATA_DESCRIPTION: Final = ("Standard object's metadata. More info: "
                                "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")
_STRINGS: Final = {"type": "object", "additionalProperties": {"type": "string", "default": ""}}
_TIME: Final = {"type": "string", "format": "date-time"}
# The fields of ObjectMeta a user reads about; kube-apiserver's full schema adds managedFields and ownerReferences.
_OBJECT_META_SCHEMA: Final = {
    "type": "object",
    "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects "
                   "users must create.",
    "properties": {
        "name": {"type": "string", "description": "Name must be unique within a namespace. Cannot be updated."},
        "generateName": {"type": "string", "description": "An optional prefix, used by the server, to generate a "
                         "unique name ONLY IF the Name field has not been provided."},
        "namespace": {"type": "string", "description": "Namespace defines the space within which each name must be "
                      "unique. Cannot be updated."},
        "labels": {**_STRINGS, "description": "Map of string keys and values that can be used to organize and "
                   "categorize (scope and select) objects."},
        "annotations": {**_STRINGS, "description": "Annotations is an unstructured key value map stored with a "
                        "resource that may be set by external tools to store and retrieve arbitrary metadata."},
        "finalizers": {"type": "array", "items": {"type": "string", "default": ""}, "description": "Must be empty "
                       "before the object is deleted from the registry."},
        "uid": {"type": "string", "description": "UID is the unique in time and space value for this object. "
                "Populated by the system. Read-only."},
        "resourceVersion": {"type": "string", "description": "An opaque value that represents the internal version "
                            "of this object. Populated by the system. Read-only."},
        "generation": {"type": "integer", "format": "int64", "description": "A sequence number representing a "
                       "specific generation of the desired state. Populated by the system. Read-only."},
        "creationTimestamp": {**_TIME, "description": "CreationTimestamp is a timestamp representing the server time "
                              "when this object was created. Populated by the system. Read-only."},
        "deletionTimestamp": {**_TIME, "description": "DeletionTimestamp is RFC 3339 date and time at which this "
                              "resource will be deleted. Set by the server when a graceful deletion is requested. "
                              "Read-only."},
    },
}


def _group_version_path(rt: ResourceType) -> str:
    return f"apis/{rt.group}/{rt.version}" if rt.group else "api/v1"


def definition_name(rt: ResourceType) -> str:
    """kube-apiserver's name for a custom resource's schema: the group reversed, then version and kind."""
    return ".".join([*reversed(rt.group.split(".")), rt.version, rt.kind])


def resource_schema(rt: ResourceType) -> JsonObj:
    """The CRD's schema as published: type meta and ObjectMeta filled in, tagged with its group-version-kind."""
    schema = copy.deepcopy(rt.schema or {"type": "object"})
    properties = schema.setdefault("properties", {})
    for name, default in _TYPE_META.items():
        properties.setdefault(name, copy.deepcopy(default))
    description = (properties.get("metadata") or {}).get("description") or _METADATA_DESCRIPTION
    properties["metadata"] = {"allOf": [{"$ref": _REF_PREFIX + OBJECT_META}], "description": description}
    schema["x-kubernetes-group-version-kind"] = [{"group": rt.group, "version": rt.version, "kind": rt.kind}]
    return schema


def v3_group_version(types: Iterable[ResourceType], group_version_path: str) -> JsonObj:
    """The document of one group-version (`apis/deploymind.io/v1alpha1` or `api/v1`)."""
    paths: JsonObj = {}
    schemas: JsonObj = {}
    for rt in types:
        if _group_version_path(rt) != group_version_path:
            continue
        paths.update(_write_paths(rt, {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}))
        if rt.custom:
            schemas[definition_name(rt)] = resource_schema(rt)
        elif rt.definition:
            schemas.update(copy.deepcopy(builtin_schemas.closure(rt.definition)))
    if schemas:
        schemas[OBJECT_META] = copy.deepcopy(_OBJECT_META_SCHEMA)
    return {"openapi": "3.0.0", "info": dict(_INFO), "paths": paths, "components": {"schemas": schemas}}


def v2(types: Iterable[ResourceType]) -> JsonObj:
    """The Swagger 2.0 document: the same operations, `fieldValidation` in v2's parameter form, no definitions."""
    paths: JsonObj = {}
    for rt in types:
        paths.update(_write_paths(rt, {"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": True,
                                       "description": "fieldValidation instructs the server on how to handle "
                                                      "objects in the request containing unknown or duplicate "
                                                      "fields. Valid values are: Ignore, Warn, Strict."}))
    return {"swagger": "2.0", "info": dict(_INFO), "paths": paths}


def _write_paths(rt: ResourceType, field_validation: JsonObj) -> JsonObj:
    """create on the collection, update and patch on an object, each tagged with the kind it writes."""
    operation = {
        "x-kubernetes-group-version-kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "parameters": [field_validation],
        "responses": {},
    }
    prefix = f"/{_group_version_path(rt)}" + ("/namespaces/{namespace}" if rt.namespaced else "")
    return {f"{prefix}/{rt.plural}": {"post": operation},
            f"{prefix}/{rt.plural}/{{name}}": {"put": operation, "patch": operation}}


def v3_root(types: Iterable[ResourceType]) -> JsonObj:
    """The index of group-versions; each URL carries a hash of its document, so clients' caches follow CRD changes."""
    served = list(types)
    paths = sorted({_group_version_path(rt) for rt in served})
    return {"paths": {p: {"serverRelativeURL": f"/openapi/v3/{p}?hash={_digest(v3_group_version(served, p))}"}
                      for p in paths}}


def _digest(document: JsonObj) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:64].upper()
