"""`meta.k8s.io/v1 Table` renderings of objects, for `kubectl get` (which asks with `Accept: …;as=Table`).

Columns are the CRD's `additionalPrinterColumns` (the simple JSONPath forms CRDs use, including
`.status.conditions[?(@.type=="Ready")].status`), the apiserver's own columns for Events (`event_printer.py`) and
for the built-ins with schemas (`builtin_printers.py`), or Name and Age for other types.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from deploymind.sandbox.kube import builtin_printers, event_printer
from deploymind.sandbox.kube.resources import ResourceType

JsonObj = dict[str, Any]

_AGE = {"jsonPath": ".metadata.creationTimestamp", "name": "Age", "type": "date"}
_FILTER = re.compile(r'\[\?\(@\.([\w.]+)\s*==\s*["\']([^"\']*)["\']\)\]')


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def table(rt: ResourceType, objects: list[JsonObj], resource_version: str) -> JsonObj:
    if rt.kind == "Event" and rt.group in event_printer.EVENT_GROUPS:
        definitions = event_printer.column_definitions()
        rows = [_row(obj, event_printer.cells(obj, _age)) for obj in objects]
    elif builtin_printers.prints(rt):
        definitions = builtin_printers.column_definitions(rt)
        rows = [_row(obj, builtin_printers.cells(rt, obj, _age)) for obj in objects]
    else:
        columns = list(rt.printer_columns) or [_AGE]
        definitions = [{"name": "Name", "type": "string", "format": "name", "description": "Name of the object",
                        "priority": 0}]
        definitions += [{"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
                         "description": c.get("description", ""), "priority": c.get("priority", 0)} for c in columns]
        rows = [_row(obj, _column_cells(obj, columns)) for obj in objects]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }


def _column_cells(obj: JsonObj, columns: list[JsonObj]) -> list[Any]:
    cells: list[Any] = [(obj.get("metadata") or {}).get("name", "")]
    for column in columns:
        value = _cell(evaluate(obj, column.get("jsonPath", "")))
        cells.append(_age(value) if column.get("type") == "date" and isinstance(value, str) else value)
    return cells


def _row(obj: JsonObj, cells: list[Any]) -> JsonObj:
    meta = obj.get("metadata") or {}
    return {
        "cells": cells,
        "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta},
    }


def _age(timestamp: str) -> str:
    """The apiserver prints date columns as ages (`5m`, `3h12m`): k8s.io/apimachinery `HumanDuration`."""
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    return human_duration((datetime.datetime.now(tz=datetime.UTC) - then).total_seconds())


def human_duration(seconds: float) -> str:
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d" if hours % 24 == 0 else f"{days}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years = days // 365
    if hours < 24 * 365 * 8:
        return f"{years}y" if days % 365 == 0 else f"{years}y{days % 365}d"
    return f"{years}y"


def _cell(values: list[Any]) -> Any:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return ",".join(str(v) for v in values)


def evaluate(obj: Any, path: str) -> list[Any]:
    """Values a simple JSONPath selects: `.a.b`, `.a[0]`, `.a[*].b`, `.a[?(@.k=="v")].b`."""
    current = [obj]
    for token in _tokens(path):
        following: list[Any] = []
        for value in current:
            following.extend(_step(value, token))
        current = following
    return [v for v in current if v is not None]


def _tokens(path: str) -> list[str]:
    text = path.strip().strip("{}").lstrip("$")
    tokens: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == ".":
            i += 1
            continue
        if text[i] == "[":
            end = text.index("]", i) if not text.startswith("[?(", i) else text.index(")]", i) + 1
            tokens.append(text[i:end + 1])
            i = end + 1
            continue
        end = i
        while end < len(text) and text[end] not in ".[":
            end += 1
        tokens.append(text[i:end])
        i = end
    return tokens


def _step(value: Any, token: str) -> list[Any]:
    if token.startswith("[?("):
        m = _FILTER.fullmatch(token)
        if m is None or not isinstance(value, list):
            return []
        field, wanted = m.groups()
        return [item for item in value if [str(v) for v in evaluate(item, "." + field)][:1] == [wanted]]
    if token == "[*]":
        return list(value) if isinstance(value, list) else []
    if token.startswith("["):
        if not isinstance(value, list):
            return []
        i = int(token[1:-1])
        return [value[i]] if -len(value) <= i < len(value) else []
    return [value.get(token)] if isinstance(value, dict) else []
