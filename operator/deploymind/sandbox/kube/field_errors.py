"""Field errors worded exactly as kube-apiserver words them (k8s.io/apimachinery `field.Error`).

kubectl shows these strings to users verbatim, and tests compare them, so the wording, the field path
syntax (`spec.env[1]`, `spec.labels[key]`) and Go's `%#v` rendering of the bad value are reproduced here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum


class ErrorType(Enum):
    """`field.ErrorType`: the value is the cause reason, the label is what users read."""

    REQUIRED = ("FieldValueRequired", "Required value")
    INVALID = ("FieldValueInvalid", "Invalid value")
    TYPE_INVALID = ("FieldValueTypeInvalid", "Invalid value")
    NOT_SUPPORTED = ("FieldValueNotSupported", "Unsupported value")
    DUPLICATE = ("FieldValueDuplicate", "Duplicate value")
    FORBIDDEN = ("FieldValueForbidden", "Forbidden")
    TOO_LONG = ("FieldValueTooLong", "Too long")
    TOO_MANY = ("FieldValueTooMany", "Too many")

    @property
    def reason(self) -> str:
        return self.value[0]

    @property
    def label(self) -> str:
        return self.value[1]


# Types whose ErrorBody never shows the bad value (apimachinery: Required, Forbidden, TooLong, Internal).
_VALUELESS = {ErrorType.REQUIRED, ErrorType.FORBIDDEN, ErrorType.TOO_LONG}
_NO_VALUE = object()


@dataclass(frozen=True)
class FieldError:
    """One problem with one field: `str()` is the line kubectl prints."""

    type: ErrorType
    field: str
    detail: str = ""
    value: object = _NO_VALUE

    @property
    def body(self) -> str:
        """`ErrorBody()`: what follows `field: ` (also the `message` of a Status cause)."""
        text = self.type.label
        if self.type not in _VALUELESS and self.value is not _NO_VALUE:
            text += f": {go_repr(self.value)}"
        if self.detail:
            text += f": {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body}"


def required(field: str, detail: str = "") -> FieldError:
    return FieldError(ErrorType.REQUIRED, field, detail)


def invalid(field: str, value: object, detail: str) -> FieldError:
    return FieldError(ErrorType.INVALID, field, detail, value)


def type_invalid(field: str, value: object, detail: str) -> FieldError:
    return FieldError(ErrorType.TYPE_INVALID, field, detail, value)


def not_supported(field: str, value: object, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(json.dumps(s) for s in supported) if supported else ""
    return FieldError(ErrorType.NOT_SUPPORTED, field, detail, value)


def duplicate(field: str, value: object) -> FieldError:
    return FieldError(ErrorType.DUPLICATE, field, "", value)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError(ErrorType.FORBIDDEN, field, detail)


def too_long(field: str, max_length: int) -> FieldError:
    return FieldError(ErrorType.TOO_LONG, field, f"may not be more than {max_length} bytes")


def too_many(field: str, actual: int, max_items: int) -> FieldError:
    return FieldError(ErrorType.TOO_MANY, field, f"must have at most {max_items} items", actual)


def go_repr(value: object) -> str:
    """Go's `%#v` of a value decoded from JSON into `interface{}` (what apimachinery prints)."""
    if value is None:
        return '"null"'  # apimachinery shows a nil bad value as the string "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(str(k))}:{go_repr(v)}" for k, v in sorted(value.items()))
        return "map[string]interface {}{" + items + "}"
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(go_repr(v) for v in value) + "}"
    return repr(value)


def child(path: str, name: str) -> str:
    """`field.Path.Child`: `spec` + `port` → `spec.port`; the root has no name."""
    return f"{path}.{name}" if path else name


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def key(path: str, k: str) -> str:
    return f"{path}[{k}]"


def shown(path: str) -> str:
    """The root path prints as Go's nil `*field.Path`."""
    return path or "<nil>"
