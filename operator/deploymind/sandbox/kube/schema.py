"""A custom resource against its CRD's structural openAPIV3Schema, the way kube-apiserver treats it.

Three passes, in the apiserver's order: `prune` drops fields the schema does not declare (and reports them,
so a `fieldValidation=Strict` request can be refused instead), `apply_defaults` fills `default:` values,
`validate` returns field errors worded like the apiserver's (`spec.port: Invalid value: 0: spec.port in body
should be greater than or equal to 1`). CEL rules (`x-kubernetes-validations`) are evaluated in `cel.py`.
"""

from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

from deploymind.sandbox.kube import field_errors as fe
from deploymind.sandbox.kube.field_errors import FieldError

JsonObj = dict[str, Any]

# Always kept at the root of an object (and of an embedded resource): the apiserver owns them.
_ENVELOPE = ("apiVersion", "kind", "metadata")


# ---------------------------------------------------------------- pruning

def prune(value: Any, schema: JsonObj, path: str = "", *, root: bool = True) -> list[str]:
    """Remove undeclared fields from `value` in place; return their paths (`spec.foo`, `spec.env[0].x`)."""
    unknown: list[str] = []
    _prune(value, schema, path, unknown, envelope=root)
    return unknown


def _prune(value: Any, schema: JsonObj, path: str, unknown: list[str], *, envelope: bool) -> None:
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                _prune(item, items, fe.index(path, i), unknown, envelope=_embedded(items))
        return
    if not isinstance(value, dict):
        return
    properties: JsonObj = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    for name in list(value):
        sub = properties.get(name)
        if envelope and name in _ENVELOPE:
            continue  # the apiserver owns these; a CRD schema never prunes them
        if sub is not None:
            _prune(value[name], sub, fe.child(path, name), unknown, envelope=_embedded(sub))
        elif isinstance(additional, dict):
            _prune(value[name], additional, fe.child(path, name), unknown, envelope=_embedded(additional))
        elif preserve or additional is True:
            continue
        else:
            unknown.append(fe.child(path, name))
            del value[name]


def _embedded(schema: JsonObj) -> bool:
    return bool(schema.get("x-kubernetes-embedded-resource"))


# ---------------------------------------------------------------- defaulting

def apply_defaults(value: Any, schema: JsonObj) -> None:
    """Fill absent (or null, when not nullable) fields with their schema `default`, in place, recursively."""
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for item in value:
                apply_defaults(item, items)
        return
    if not isinstance(value, dict):
        return
    properties: JsonObj = schema.get("properties") or {}
    for name, sub in properties.items():
        if "default" in sub and (name not in value or (value[name] is None and not sub.get("nullable"))):
            value[name] = copy.deepcopy(sub["default"])
        if name in value:
            apply_defaults(value[name], sub)
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        for item in value.values():
            apply_defaults(item, additional)


# ---------------------------------------------------------------- validation

def validate(value: Any, schema: JsonObj, path: str = "") -> list[FieldError]:
    """All schema violations of `value`, in document order (the apiserver's openapi validation)."""
    errors: list[FieldError] = []
    _validate(value, schema, path, errors)
    return errors


def is_blocking(errors: list[FieldError]) -> bool:
    """Type and enum errors make CEL rules unsafe to run: the apiserver then skips them (and says so)."""
    return any(e.type in (fe.ErrorType.TYPE_INVALID, fe.ErrorType.NOT_SUPPORTED) for e in errors)


def _validate(value: Any, schema: JsonObj, path: str, errors: list[FieldError]) -> None:
    if value is None:
        if not schema.get("nullable") and (schema.get("type") or schema.get("x-kubernetes-int-or-string")):
            errors.append(_type_error(path, value, _expected(schema)))
        return
    if not _type_ok(value, schema):
        errors.append(_type_error(path, value, _expected(schema)))
        return
    if "enum" in schema and value not in schema["enum"]:
        supported = [s if isinstance(s, str) else _json(s) for s in schema["enum"]]
        errors.append(fe.not_supported(path, value, supported))
    if isinstance(value, str):
        _validate_string(value, schema, path, errors)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _validate_number(value, schema, path, errors)
    elif isinstance(value, list):
        _validate_array(value, schema, path, errors)
    elif isinstance(value, dict):
        _validate_object(value, schema, path, errors)


def _validate_string(value: str, schema: JsonObj, path: str, errors: list[FieldError]) -> None:
    where = fe.shown(path)
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(fe.too_long(path, schema["maxLength"]))
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(fe.invalid(path, value, f"{where} in body should be at least {schema['minLength']} chars long"))
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(fe.invalid(path, value, f"{where} in body should match '{schema['pattern']}'"))
    check = _FORMATS.get(schema.get("format", ""))
    if check is not None and not check(value):
        errors.append(fe.invalid(path, value, f'{where} in body must be of type {schema["format"]}: "{value}"'))


def _validate_number(value: float, schema: JsonObj, path: str, errors: list[FieldError]) -> None:
    where = fe.shown(path)
    if "minimum" in schema:
        low, exclusive = schema["minimum"], bool(schema.get("exclusiveMinimum"))
        if value < low or (exclusive and value == low):
            relation = "greater than" if exclusive else "greater than or equal to"
            errors.append(fe.invalid(path, value, f"{where} in body should be {relation} {_number(low)}"))
    if "maximum" in schema:
        high, exclusive = schema["maximum"], bool(schema.get("exclusiveMaximum"))
        if value > high or (exclusive and value == high):
            relation = "less than" if exclusive else "less than or equal to"
            errors.append(fe.invalid(path, value, f"{where} in body should be {relation} {_number(high)}"))
    if "multipleOf" in schema and value % schema["multipleOf"]:
        multiple = _number(schema["multipleOf"])
        errors.append(fe.invalid(path, value, f"{where} in body should be a multiple of {multiple}"))


def _validate_array(value: list[Any], schema: JsonObj, path: str, errors: list[FieldError]) -> None:
    where = fe.shown(path)
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(fe.too_many(path, len(value), schema["maxItems"]))
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(fe.invalid(path, len(value), f"{where} in body should have at least {schema['minItems']} items"))
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            _validate(item, items, fe.index(path, i), errors)
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set" or schema.get("uniqueItems"):
        seen: list[Any] = []
        for i, item in enumerate(value):
            if item in seen:
                errors.append(fe.duplicate(fe.index(path, i), item))
            seen.append(item)
    elif list_type == "map":
        keys: list[str] = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: list[JsonObj] = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            key = {k: item.get(k) for k in keys}
            if key in seen_keys:
                errors.append(fe.duplicate(fe.index(path, i), key))
            seen_keys.append(key)


def _validate_object(value: JsonObj, schema: JsonObj, path: str, errors: list[FieldError]) -> None:
    where = fe.shown(path)
    for name in schema.get("required") or []:
        if name not in value:
            errors.append(fe.required(fe.child(path, name)))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(fe.too_many(path, len(value), schema["maxProperties"]))
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        errors.append(fe.invalid(path, len(value),
                                 f"{where} in body should have at least {schema['minProperties']} properties"))
    properties: JsonObj = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for name, item in value.items():
        if name in properties:
            _validate(item, properties[name], fe.child(path, name), errors)
        elif isinstance(additional, dict):
            _validate(item, additional, fe.child(path, name), errors)


# ---------------------------------------------------------------- types and formats

def _type_ok(value: Any, schema: JsonObj) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, str) or _is_integer(value)
    kind = schema.get("type")
    if kind is None:
        return True
    if isinstance(kind, list):  # a union: a built-in's Quantity is a string or a number (builtin_schemas.py)
        return any(_type_ok(value, {"type": k}) for k in kind)
    return {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "integer": _is_integer(value),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
    }.get(kind, True)


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _expected(schema: JsonObj) -> str:
    if schema.get("x-kubernetes-int-or-string"):
        return "integer,string"
    kind = schema.get("type")
    return ",".join(kind) if isinstance(kind, list) else str(kind)


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value, as the apiserver names it in type errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _type_error(path: str, value: Any, expected: str) -> FieldError:
    actual = json_type(value)
    return fe.type_invalid(path, actual, f'{fe.shown(path)} in body must be of type {expected}: "{actual}"')


def _number(value: float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _json(value: Any) -> str:
    return json.dumps(value)


def _date(value: str) -> bool:
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        return False
    return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", value))


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _date_time(value: str) -> bool:
    if not _RFC3339.fullmatch(value):
        return False
    try:
        datetime.datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return False
    return True


def _byte(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except ValueError:
        return False
    return True


def _ip(version: int) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            return ipaddress.ip_address(value).version == version
        except ValueError:
            return False

    return check


def _uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


_DURATION = re.compile(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h|d|w))+")

_FORMATS: dict[str, Callable[[str], bool]] = {
    "date": _date,
    "date-time": _date_time,
    "byte": _byte,
    "ipv4": _ip(4),
    "ipv6": _ip(6),
    "uuid": _uuid,
    "duration": lambda v: bool(_DURATION.fullmatch(v)),
    "hostname": lambda v: bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", v)),
    "email": lambda v: bool(re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", v)),
}
