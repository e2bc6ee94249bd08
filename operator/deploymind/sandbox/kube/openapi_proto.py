"""The `/openapi/v2` document in the protobuf form client-go asks for (gnostic's `openapi_v2.Document`).

client-go's `OpenAPISchema()` (kubectl's and helm's client-side validation, their fallback check of which kinds
take `fieldValidation`) sends `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and parses the
answer as protobuf, failing on anything else. kube-apiserver converts its JSON document with gnostic; this encodes
the parts `openapi.v2()` writes: swagger, info, and paths whose operations carry query parameters and vendor
extensions (a vendor extension's value travels as YAML text, as gnostic carries it).
Field numbers are those of gnostic-models openapiv2/OpenAPIv2.proto.
"""

from __future__ import annotations

from typing import Any, Final

import yaml

JsonObj = dict[str, Any]

CONTENT_TYPE: Final = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
# The subtypes kube-openapi's v2 handler answers in protobuf (the first is what client-go sends).
SUBTYPES: Final = ("com.github.proto-openapi.spec.v2@v1.0+protobuf", "com.github.proto-openapi.spec.v2.v1.0+protobuf")

_OPERATIONS: Final = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}


def negotiate(accept: str) -> str | None:
    """The content type kube-openapi's v2 handler answers `Accept` with (highest q first, JSON before protobuf
    for wildcards), or None when it accepts neither: the handler's 406."""
    offers = [("json", "application/json"), *((subtype, CONTENT_TYPE) for subtype in SUBTYPES)]
    clauses = []
    for clause in (accept.strip() or "*/*").split(","):
        media, *params = (part.strip() for part in clause.split(";"))
        q = next((p.removeprefix("q=") for p in params if p.startswith("q=")), "1")
        clauses.append((-_quality(q), media))
    for _, media in sorted(clauses, key=lambda c: c[0]):
        kind, _, subtype = media.partition("/")
        for offered, answer in offers:
            if kind in ("application", "*") and subtype in (offered, "*"):
                return answer
    return None


def _quality(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def document(doc: JsonObj) -> bytes:
    """Document{swagger=1, info=2, paths=8}."""
    info = doc.get("info") or {}
    return (_string(1, doc.get("swagger", ""))
            + _message(2, _string(1, info.get("title", "")) + _string(2, info.get("version", "")))
            + _message(8, b"".join(_message(2, _string(1, path) + _message(2, _path_item(item)))
                                   for path, item in (doc.get("paths") or {}).items())))


def _path_item(item: JsonObj) -> bytes:
    """PathItem{put=3, post=4, patch=8, …}."""
    return b"".join(_message(_OPERATIONS[verb], _operation(operation)) for verb, operation in item.items())


def _operation(operation: JsonObj) -> bytes:
    """Operation{parameters=8 (ParametersItem), vendor_extension=13 (NamedAny)}."""
    parameters = b"".join(_message(8, _message(1, _message(2, _message(3, _query_parameter(p)))))
                          for p in operation.get("parameters") or [])
    extensions = b"".join(_message(13, _string(1, name) + _message(2, _string(2, yaml.safe_dump(value))))
                          for name, value in operation.items() if name.startswith("x-"))
    return parameters + extensions


def _query_parameter(parameter: JsonObj) -> bytes:
    """ParametersItem.parameter=1 → Parameter.non_body_parameter=2 → NonBodyParameter.query_parameter_sub_schema=3:
    QueryParameterSubSchema{in=2, description=3, name=4, type=6, unique_items=20}."""
    return (_string(2, parameter.get("in", "")) + _string(3, parameter.get("description", ""))
            + _string(4, parameter.get("name", "")) + _string(6, parameter.get("type", ""))
            + (_varint(20 << 3) + b"\x01" if parameter.get("uniqueItems") else b""))


def _message(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _string(number: int, text: str) -> bytes:
    return _message(number, text.encode()) if text else b""  # proto3 leaves empty strings out


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
