"""The base of every API model: camelCase on the wire, unknown fields refused, attribute docstrings as descriptions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

# Kubernetes object names (RFC 1123 subdomain), as Secrets use.
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"

SecretName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN)]
SecretKey = Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_KEY)]


@dataclass(frozen=True)
class Rule:
    """A rule across fields: the same check as CEL for kube-apiserver and as Python for the operator and `validate`."""

    cel: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None
    message_expression: str | None = None
    """CEL for a message naming the culprit (kube-apiserver falls back to `message` if it fails)."""
    describe: Callable[[Any], str] | None = None
    """The same message in Python."""

    def entry(self) -> dict[str, str]:
        entry = {"rule": self.cel, "message": self.message}
        if self.message_expression:
            entry["messageExpression"] = self.message_expression
        if self.field_path:
            entry["fieldPath"] = self.field_path
        return entry


def _add_rules(schema: dict[str, Any], model: type[BaseModel]) -> None:
    rules: tuple[Rule, ...] = getattr(model, "rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [r.entry() for r in rules]


class ApiModel(BaseModel):
    """Wire names are camelCase; Python names are snake_case; an unknown field is an error, never ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        frozen=True,
        json_schema_extra=_add_rules,
    )

    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        for rule in self.rules:
            if not rule.check(self):
                # ctx carries the field path so `validate` can name the exact field, as kube-apiserver does.
                message = rule.describe(self) if rule.describe else rule.message
                raise PydanticCustomError("rule", message.replace("{", "{{").replace("}", "}}"),
                                          {"field_path": rule.field_path or ""})
        return self

    def wire(self) -> dict[str, Any]:
        """The object as it is written to the Kubernetes API (camelCase, unset optionals left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

