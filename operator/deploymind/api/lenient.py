"""Reading what the API server stores, leniently: fields this operator does not know are dropped, not refused.

The models refuse unknown fields (`deploymind validate` and the CRD must), but a status written by a newer operator
(before a downgrade), or a spec field this version does not know yet, must not make the whole object unreadable:
the next status write would then erase `lastGood` and every quarantine.
"""

from __future__ import annotations

import types
import typing
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def read(model: type[M], data: Any) -> M:
    """`model` from `data` with unknown fields (at any depth) ignored; other errors still raise ValidationError."""
    return model.model_validate(known_fields(model, data))


def known_fields(model: type[BaseModel], data: Any) -> Any:
    """`data` without the keys `model` (and the models inside it) does not declare."""
    if not isinstance(data, dict):
        return data
    by_wire = {}
    for name, info in model.model_fields.items():
        by_wire[info.alias or name] = info.annotation
        by_wire[name] = info.annotation
    return {key: _known(by_wire[key], value) for key, value in data.items() if key in by_wire}


def _known(annotation: Any, value: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return known_fields(annotation, value)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (list, tuple) and args and isinstance(value, list):
        return [_known(args[0], item) for item in value]
    if origin in (typing.Union, types.UnionType):
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1:
            return _known(models[0], value)
    return value
