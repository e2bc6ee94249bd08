"""`x-kubernetes-validations` of a CRD schema: compiled when the CRD is registered, evaluated on each write.

Uses `cel-python` (`celpy`). A rule that does not parse, calls a function Kubernetes' CEL does not have, or
selects a field the schema does not declare is refused at registration (`CelRuleError`), as kube-apiserver
refuses such a CRD — never silently skipped. At evaluation, a rule that fails, or that errors (e.g. a field
read without `has()`), rejects the object with an error on the rule's field path:
`spec: Invalid value: "object": exactly one of spec.source or spec.image must be set`.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import celpy
import celpy.celtypes as ct
import lark
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from deploymind.sandbox.kube import field_errors as fe
from deploymind.sandbox.kube.cel_library import EXTENSIONS, KNOWN_FUNCTIONS, Optional
from deploymind.sandbox.kube.field_errors import FieldError

JsonObj = dict[str, Any]

_ENV = celpy.Environment()
_ABSENT = object()
_ROOT_NAMES = ("self", "oldSelf")


class CelRuleError(Exception):
    """A CRD carries a rule that cannot be compiled: the CRD must be fixed before it is registered."""

    reason = "InvalidCelRule"

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class Rule:
    """One compiled `x-kubernetes-validations` entry."""

    rule: str
    program: celpy.Runner
    message: str
    message_program: celpy.Runner | None
    field_path: str
    reason: str | None
    transition: bool
    optional_old_self: bool


@dataclass
class _Node:
    """The rules at one schema node, and the nodes below it that carry rules."""

    schema: JsonObj
    rules: list[Rule] = field(default_factory=list)
    properties: dict[str, _Node] = field(default_factory=dict)
    items: _Node | None = None
    additional: _Node | None = None


class RuleSet:
    """All rules of one version's schema, ready to evaluate against objects."""

    def __init__(self, root: _Node | None) -> None:
        self._root = root

    @property
    def empty(self) -> bool:
        return self._root is None

    @classmethod
    def compile(cls, schema: JsonObj, schema_path: str = "openAPIV3Schema") -> RuleSet:
        """Compile every rule of `schema`; `schema_path` names the schema in error messages."""
        errors: list[FieldError] = []
        root = _compile_node(schema, schema_path, errors)
        if errors:
            raise CelRuleError(errors)
        return cls(root)

    def evaluate(self, new: Any, old: Any = _ABSENT, *, only: Collection[str] | None = None) -> list[FieldError]:
        """Errors of `new` (an update when `old` is given). `only`: check just these top-level fields."""
        if self._root is None:
            return []
        errors: list[FieldError] = []
        root = self._root
        if only is None:
            _walk(new, old, root, "", errors)
        elif isinstance(new, dict):
            for name in only:
                sub = root.properties.get(name)
                if sub is not None and name in new:
                    previous = old.get(name, _ABSENT) if isinstance(old, dict) else _ABSENT
                    _walk(new[name], previous, sub, name, errors)
        return errors


ABSENT = _ABSENT


# ---------------------------------------------------------------- compilation

def _compile_node(schema: JsonObj, where: str, errors: list[FieldError]) -> _Node | None:
    node = _Node(schema=schema)
    for i, entry in enumerate(schema.get("x-kubernetes-validations") or []):
        rule = _compile_rule(entry, schema, f"{where}.x-kubernetes-validations[{i}]", errors)
        if rule is not None:
            node.rules.append(rule)
    for name, sub in (schema.get("properties") or {}).items():
        child = _compile_node(sub, f"{where}.properties[{name}]", errors)
        if child is not None:
            node.properties[name] = child
    if isinstance(schema.get("items"), dict):
        node.items = _compile_node(schema["items"], f"{where}.items", errors)
    if isinstance(schema.get("additionalProperties"), dict):
        node.additional = _compile_node(schema["additionalProperties"], f"{where}.additionalProperties", errors)
    useful = node.rules or node.properties or node.items or node.additional
    return node if useful else None


def _compile_rule(entry: JsonObj, schema: JsonObj, where: str, errors: list[FieldError]) -> Rule | None:
    text = entry.get("rule")
    if not isinstance(text, str) or not text.strip():
        errors.append(fe.required(f"{where}.rule"))
        return None
    program = _compile(text, schema, f"{where}.rule", errors)
    message_program = None
    if entry.get("messageExpression"):
        message_program = _compile(entry["messageExpression"], schema, f"{where}.messageExpression", errors)
    if program is None:
        return None
    return Rule(
        rule=text,
        program=program,
        message=entry.get("message") or f"failed rule: {text}",
        message_program=message_program,
        field_path=entry.get("fieldPath") or "",
        reason=entry.get("reason"),
        transition=_mentions(program, "oldSelf"),
        optional_old_self=bool(entry.get("optionalOldSelf")),
    )


def _compile(text: str, schema: JsonObj, where: str, errors: list[FieldError]) -> celpy.Runner | None:
    try:
        ast = _ENV.compile(text)
    except CELParseError as e:
        errors.append(fe.invalid(where, text, f"compilation failed: {_one_line(e)}"))
        return None
    problems = [*_unknown_functions(ast), *_undeclared_fields(ast, schema)]
    if problems:
        errors.append(fe.invalid(where, text, "compilation failed: " + "; ".join(problems)))
        return None
    return _ENV.program(ast, functions=EXTENSIONS)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _trees(tree: lark.Tree[Any]) -> Iterator[lark.Tree[Any]]:
    stack = [tree]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(c for c in reversed(current.children) if isinstance(c, lark.Tree))


def _mentions(program: celpy.Runner, name: str) -> bool:
    return any(t.data == "ident" and str(t.children[0]) == name for t in _trees(program.ast))


def _unknown_functions(ast: lark.Tree[Any]) -> list[str]:
    problems = []
    for tree in _trees(ast):
        if tree.data == "ident_arg":
            name = str(tree.children[0])
        elif tree.data == "member_dot_arg":
            name = str(tree.children[1])
        else:
            continue
        if name not in KNOWN_FUNCTIONS:
            problems.append(f"undeclared reference to '{name}'")
    return problems


def _undeclared_fields(ast: lark.Tree[Any], schema: JsonObj) -> list[str]:
    """Field selections on `self`/`oldSelf` that the schema does not declare (kube's type check)."""
    problems = []
    for tree in _trees(ast):
        if tree.data != "member_dot":
            continue
        parent = _schema_of(tree.children[0], schema)
        name = str(tree.children[1])
        if parent is None or _open(parent):
            continue
        if parent.get("type") not in (None, "object"):
            problems.append(f"type '{parent.get('type')}' does not support field selection ('{name}')")
        elif name not in (parent.get("properties") or {}):
            problems.append(f"undefined field '{name}'")
    return problems


def _schema_of(tree: Any, schema: JsonObj) -> JsonObj | None:
    """The schema a `self.a.b[0]` expression selects, or None when it is not such a chain."""
    while isinstance(tree, lark.Tree) and tree.data in ("member", "primary") and len(tree.children) == 1:
        tree = tree.children[0]
    if not isinstance(tree, lark.Tree):
        return None
    if tree.data == "ident":
        return schema if str(tree.children[0]) in _ROOT_NAMES else None
    if tree.data == "member_dot":
        parent = _schema_of(tree.children[0], schema)
        if parent is None:
            return None
        sub = (parent.get("properties") or {}).get(str(tree.children[1]))
        return sub if isinstance(sub, dict) else None
    if tree.data == "member_index":
        parent = _schema_of(tree.children[0], schema)
        if parent is None:
            return None
        sub = parent.get("items") or parent.get("additionalProperties")
        return sub if isinstance(sub, dict) else None
    return None


def _open(schema: JsonObj) -> bool:
    """Objects whose fields are not all declared: any field name may be selected."""
    return bool(schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("additionalProperties")
                or schema.get("x-kubernetes-embedded-resource"))


# ---------------------------------------------------------------- evaluation

def _walk(value: Any, old: Any, node: _Node, path: str, errors: list[FieldError]) -> None:
    if value is None:
        return
    for rule in node.rules:
        error = _check(rule, value, old, node.schema, path)
        if error is not None:
            errors.append(error)
    if isinstance(value, dict):
        for name, sub in node.properties.items():
            if name in value:
                previous = old.get(name, _ABSENT) if isinstance(old, dict) else _ABSENT
                _walk(value[name], previous, sub, fe.child(path, name), errors)
        if node.additional is not None:
            for key, item in value.items():
                previous = old.get(key, _ABSENT) if isinstance(old, dict) else _ABSENT
                _walk(item, previous, node.additional, fe.key(path, key), errors)
    elif isinstance(value, list) and node.items is not None:
        for i, item in enumerate(value):
            _walk(item, _correlate(item, old, node.schema), node.items, fe.index(path, i), errors)


def _correlate(item: Any, old: Any, schema: JsonObj) -> Any:
    """The old version of a list item: only map-type lists have one (matched by their keys)."""
    keys = schema.get("x-kubernetes-list-map-keys")
    if schema.get("x-kubernetes-list-type") != "map" or not keys or not isinstance(old, list):
        return _ABSENT
    if not isinstance(item, dict):
        return _ABSENT
    for candidate in old:
        if isinstance(candidate, dict) and all(candidate.get(k) == item.get(k) for k in keys):
            return candidate
    return _ABSENT


def _check(rule: Rule, value: Any, old: Any, schema: JsonObj, path: str) -> FieldError | None:
    if rule.transition and old is _ABSENT and not rule.optional_old_self:
        return None  # transition rules only run on updates of an existing value
    activation: dict[str, Any] = {"self": to_cel(value, schema)}
    if rule.transition:
        previous = None if old is _ABSENT else to_cel(old, schema)
        activation["oldSelf"] = (Optional(previous, present=old is not _ABSENT) if rule.optional_old_self
                                 else previous)
    where = _join_path(path, rule.field_path)
    kind = str(schema.get("type") or "object")
    try:
        result = rule.program.evaluate(activation)
    except Exception as e:  # celpy raises many types; any of them means the rule could not decide
        return fe.invalid(fe.shown(where), kind, _eval_failure(rule, e))
    if isinstance(result, CELEvalError):
        return fe.invalid(fe.shown(where), kind, _eval_failure(rule, result))
    if not isinstance(result, ct.BoolType):
        return fe.invalid(fe.shown(where), kind, f"rule {rule.rule!r} must evaluate to a bool, got {result!r}")
    if bool(result):
        return None
    return _failure(rule, fe.shown(where), kind, _message(rule, activation))


def _eval_failure(rule: Rule, error: Exception) -> str:
    first = error.args[0] if error.args else error
    return f"rule evaluation error: {first} (rule: {rule.rule}); guard optional fields with has()"


def _message(rule: Rule, activation: dict[str, Any]) -> str:
    if rule.message_program is not None:
        try:
            text = rule.message_program.evaluate(activation)
        except Exception:  # kube falls back to `message` when messageExpression fails
            return rule.message
        if isinstance(text, str) and text.strip():
            return str(text)
    return rule.message


def _failure(rule: Rule, where: str, kind: str, message: str) -> FieldError:
    if rule.reason == "FieldValueForbidden":
        return fe.forbidden(where, message)
    if rule.reason == "FieldValueRequired":
        return fe.required(where, message)
    if rule.reason == "FieldValueDuplicate":
        return fe.duplicate(where, kind)
    return fe.invalid(where, kind, message)


def _join_path(path: str, field_path: str) -> str:
    """`spec` + `.target['instanceId']` → `spec.target.instanceId` (fieldPath is relative to the rule)."""
    if not field_path:
        return path
    text = field_path.replace("['", ".").replace("']", "")
    result = path
    for part in text.lstrip(".").split("."):
        name, bracket, rest = part.partition("[")
        result = fe.child(result, name)
        if bracket:
            result = f"{result}[{rest}"
    return result


# ---------------------------------------------------------------- values

def to_cel(value: Any, schema: JsonObj) -> Any:
    """JSON → CEL values typed by the schema, as Kubernetes types them (number → double, date → timestamp)."""
    if value is None:
        return None
    if isinstance(value, dict):
        props: JsonObj = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        return ct.MapType({
            ct.StringType(k): to_cel(v, props.get(k) or (additional if isinstance(additional, dict) else {}))
            for k, v in value.items()
        })
    if isinstance(value, list):
        items = schema.get("items")
        return ct.ListType([to_cel(v, items if isinstance(items, dict) else {}) for v in value])
    if isinstance(value, bool):
        return ct.BoolType(value)
    if isinstance(value, int | float):
        if schema.get("type") == "number":
            return ct.DoubleType(value)
        return ct.IntType(int(value)) if float(value).is_integer() else ct.DoubleType(value)
    if isinstance(value, str):
        return _typed_string(value, str(schema.get("format", "")))
    return value


def _typed_string(value: str, fmt: str) -> Any:
    try:
        if fmt == "date":
            day = datetime.date.fromisoformat(value)
            return ct.TimestampType(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC))
        if fmt == "date-time":
            return ct.TimestampType(value)
        if fmt == "duration":
            return ct.DurationType(value)
    except (ValueError, TypeError):
        pass  # an invalid format is reported by the schema validation; CEL then sees the string
    return ct.StringType(value)
