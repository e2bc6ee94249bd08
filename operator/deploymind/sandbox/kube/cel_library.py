"""The CEL functions Kubernetes adds on top of standard CEL, for `celpy`, and the names a rule may call.

Kubernetes' CEL environment has string, list and optional extensions (`lowerAscii`, `split`, `isSorted`,
`oldSelf.hasValue()`, …) that standard CEL — and so `celpy` — lacks. They are supplied here as plain
functions; `KNOWN_FUNCTIONS` lets the compiler refuse a rule that calls anything else, at CRD registration.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import celpy.celtypes as ct
from celpy.evaluation import base_functions


class Optional:
    """`optional<T>`: the value of `oldSelf` for rules with `optionalOldSelf: true`."""

    def __init__(self, value: Any = None, *, present: bool) -> None:
        self.present = present
        self.content = value


def _has_value(opt: Optional) -> ct.BoolType:
    return ct.BoolType(opt.present)


def _value(opt: Optional) -> Any:
    if not opt.present:
        raise ValueError("optional.none() dereference")
    return opt.content


def _or_value(opt: Optional, default: Any) -> Any:
    return opt.content if opt.present else default


def _split(text: ct.StringType, sep: ct.StringType) -> ct.ListType:
    return ct.ListType([ct.StringType(p) for p in str(text).split(str(sep))])


def _join(items: ct.ListType, sep: ct.StringType | None = None) -> ct.StringType:
    return ct.StringType(("" if sep is None else str(sep)).join(str(i) for i in items))


def _index_of(text: ct.StringType, sub: ct.StringType) -> ct.IntType:
    return ct.IntType(str(text).find(str(sub)))


def _last_index_of(text: ct.StringType, sub: ct.StringType) -> ct.IntType:
    return ct.IntType(str(text).rfind(str(sub)))


def _substring(text: ct.StringType, start: ct.IntType, end: ct.IntType | None = None) -> ct.StringType:
    s = str(text)
    return ct.StringType(s[int(start):] if end is None else s[int(start):int(end)])


def _replace(text: ct.StringType, old: ct.StringType, new: ct.StringType) -> ct.StringType:
    return ct.StringType(str(text).replace(str(old), str(new)))


def _is_sorted(items: ct.ListType) -> ct.BoolType:
    values: list[Any] = list(items)
    return ct.BoolType(all(a <= b for a, b in itertools.pairwise(values)))


def _sum(items: ct.ListType) -> Any:
    values: list[Any] = list(items)
    if not values:
        return ct.IntType(0)
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


def _max(items: ct.ListType) -> Any:
    values: list[Any] = list(items)
    return max(values)


def _is_url(text: ct.StringType) -> ct.BoolType:
    parsed = urlparse(str(text))
    return ct.BoolType(bool(parsed.scheme and (parsed.netloc or parsed.path)))


EXTENSIONS: dict[str, Callable[..., Any]] = {
    "lowerAscii": lambda s: ct.StringType(str(s).lower()),
    "upperAscii": lambda s: ct.StringType(str(s).upper()),
    "trim": lambda s: ct.StringType(str(s).strip()),
    "split": _split,
    "join": _join,
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "substring": _substring,
    "replace": _replace,
    "isSorted": _is_sorted,
    "sum": _sum,
    "max": _max,
    "isURL": _is_url,
    "hasValue": _has_value,
    "value": _value,
    "orValue": _or_value,
}

# Macros celpy expands itself, plus every function it or EXTENSIONS implements.
KNOWN_FUNCTIONS: frozenset[str] = frozenset(
    {"has", "all", "exists", "exists_one", "map", "filter", "min"}
    | {name for name in base_functions if not name.startswith("_") and not name.endswith("_")}
    | set(EXTENSIONS),
)
