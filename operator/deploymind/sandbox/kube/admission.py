"""What kube-apiserver does to an object between decoding a write and storing it.

Metadata checks, the normalization of built-ins (a Secret's `stringData` folds into `data`), and for custom
resources and the built-ins with a schema: pruning (or, with `fieldValidation=Strict`, refusing) undeclared
fields, defaulting, schema validation and CEL rules; then the built-ins' own defaults and validations
(`builtin_strategies.py`). Writes through the status subresource are checked on `status` only.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from deploymind.sandbox.kube import api_errors, builtin_strategies, schema
from deploymind.sandbox.kube import field_errors as fe
from deploymind.sandbox.kube.cel import ABSENT
from deploymind.sandbox.kube.field_errors import FieldError
from deploymind.sandbox.kube.resources import ResourceType, is_dns_label

JsonObj = dict[str, Any]

STRICT, WARN, IGNORE = "Strict", "Warn", "Ignore"

_METADATA_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences", "finalizers",
    "managedFields",
})
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SUBDOMAIN_HELP = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_HELP = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end "
    "with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_BLOCKED_CEL = ("some validation rules were not checked because the object was invalid; correct the existing errors "
                "to complete validation")


def admit(rt: ResourceType, new: JsonObj, old: JsonObj | None, *, field_validation: str,
          subresource: str | None) -> list[str]:
    """Check and complete `new` in place; return the warnings to send. Raises 400/422 ApiErrors."""
    unknown = _prune_metadata(new) if subresource is None else []
    errors = _metadata_errors(rt, new) if old is None else []
    if rt.kind == "Secret" and rt.group == "":
        _fold_string_data(new)
    if rt.schema is not None:
        unknown += _prune(rt, new, subresource)
        if unknown and field_validation == STRICT:
            fields = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise api_errors.bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                                         f"strict decoding error: {fields}")
        schema.apply_defaults(new, rt.schema)
        schema_errors = _schema_errors(rt, new, old, subresource)
        errors += schema_errors
        if not schema_errors:  # the strategies read fields of the types the schema declares
            builtin_strategies.complete(rt, new)
            errors += builtin_strategies.errors(rt, new, old)
    if errors:
        name = str((new.get("metadata") or {}).get("name") or "")
        raise api_errors.invalid(rt.kind, rt.group, name, errors)
    if field_validation == IGNORE:
        return []
    return [f'unknown field "{u}"' for u in unknown]


def _prune(rt: ResourceType, new: JsonObj, subresource: str | None) -> list[str]:
    assert rt.schema is not None
    if subresource == "status":
        status_schema = (rt.schema.get("properties") or {}).get("status")
        if status_schema is None or "status" not in new:
            return []
        return schema.prune(new["status"], status_schema, "status", root=False)
    return schema.prune(new, rt.schema)


def _schema_errors(rt: ResourceType, new: JsonObj, old: JsonObj | None, subresource: str | None) -> list[FieldError]:
    assert rt.schema is not None
    properties = rt.schema.get("properties") or {}
    previous = ABSENT if old is None else old
    if subresource == "status":
        if "status" not in properties or "status" not in new:
            return []
        errors = schema.validate(new["status"], properties["status"], "status")
        only: list[str] | None = ["status"]
    elif rt.has_status:
        trimmed_schema = dict(rt.schema, properties={k: v for k, v in properties.items() if k != "status"})
        errors = schema.validate({k: v for k, v in new.items() if k != "status"}, trimmed_schema)
        only = None
    else:
        errors = schema.validate(new, rt.schema)
        only = None
    if schema.is_blocking(errors):
        return [*errors, fe.invalid("<nil>", None, _BLOCKED_CEL)]
    if only is None and rt.has_status:
        evaluated = {k: v for k, v in new.items() if k != "status"}
        old_evaluated = previous if not isinstance(previous, dict) else {k: v for k, v in previous.items()
                                                                          if k != "status"}
        return errors + rt.rules.evaluate(evaluated, old_evaluated)
    return errors + rt.rules.evaluate(new, previous, only=only)


def _prune_metadata(obj: JsonObj) -> list[str]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return []
    unknown = [k for k in meta if k not in _METADATA_FIELDS]
    for k in unknown:
        del meta[k]
    return [f"metadata.{k}" for k in unknown]


def _metadata_errors(rt: ResourceType, obj: JsonObj) -> list[FieldError]:
    name = str((obj.get("metadata") or {}).get("name") or "")
    if not name:
        return [fe.required("metadata.name", "name or generateName is required")]
    if rt.key == ("", "v1", "namespaces"):
        return [] if is_dns_label(name) else [fe.invalid("metadata.name", name, _LABEL_HELP)]
    if rt.group == "rbac.authorization.k8s.io":  # path segment names: `system:discovery` is valid
        return [fe.invalid("metadata.name", name, detail) for detail in _path_segment_errors(name)]
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        return [fe.invalid("metadata.name", name, _SUBDOMAIN_HELP)]
    return []


def _path_segment_errors(name: str) -> list[str]:
    """apimachinery `path.IsValidPathSegmentName`."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in "/%" if c in name]


def _fold_string_data(secret: JsonObj) -> None:
    """The apiserver merges `stringData` into `data` (base64) and never stores `stringData`."""
    string_data = secret.pop("stringData", None)
    if isinstance(string_data, dict):
        data = secret.setdefault("data", {}) or {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        secret["data"] = data
    secret.setdefault("type", "Opaque")


def warning_header(warnings: list[str]) -> str:
    """The `Warning:` header kubectl prints (`Warning: unknown field "spec.foo"`)."""
    return ", ".join(f"299 - {json.dumps(w)}" for w in warnings)
