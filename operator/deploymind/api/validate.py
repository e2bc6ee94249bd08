"""`deploymind validate`: check Deployment manifests offline against the API model, as the API server would.

One line per problem, `FILE: <namespace>/<name>: spec.<field.path>: <what is wrong and what is allowed>`, field
paths in wire names (`spec.container.env[2].name`). Validation is strict like the apiserver's: a quoted number
is not an integer, a typo'd field is an unknown field, never silently ignored.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from deploymind.api import API_VERSION, GROUP, KIND, DeploymentSpec
from deploymind.api import spec as model
from deploymind.api.base import DNS1123_SUBDOMAIN, SECRET_KEY
from deploymind.api.crd import spec_schema

STDIN = "-"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# What each pattern of the model means, said the way a user would look for it.
PATTERN_HINTS: dict[str, str] = {
    model.INSTANCE_ID: "an EC2 instance id such as i-0123456789abcdef0",
    model.REGION: "an AWS region such as us-east-1",
    model.REPO: "owner/name, or a git URL starting with https://, ssh://, git@host: or file://",
    model.GIT_REF: "a branch, tag or commit, without spaces or any of ~ ^ : ? * [ \\",
    model.IMAGE: "an image reference such as ghcr.io/owner/app:1.2.3 or name@sha256:<64 hex digits>",
    model.DURATION: "a duration such as 30s, 5m or 1h30m",
    model.ENV_NAME: "a letter or _, then letters, digits or _",
    model.HOST: "a host name or an IP address",
    model.POSIX_USER: "a login name such as ec2-user",
    model.RELATIVE_PATH: "a path relative to the repository root, such as Dockerfile or app/",
    model.ABSOLUTE_DIR: "an absolute directory such as /srv/deploymind",
    model.MEMORY: "a number with an optional unit b, k, m or g, such as 256m",
    model.VULN_ID: "a finding id such as CVE-2024-3094",
    r"^/[^\s]*$": "a URL path starting with /",
    DNS1123_SUBDOMAIN: "a Kubernetes object name: lowercase letters, digits, '-' and '.'",
    SECRET_KEY: "letters, digits, '-', '_' and '.'",
}
# metav1.ObjectMeta: anything else under metadata is an unknown field to the apiserver.
_OBJECT_META = frozenset({
    "name", "generateName", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences", "finalizers",
    "managedFields", "selfLink",
})
_TOP_LEVEL = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
_TYPE_WORDS = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "string_type": "a string",
    "bool_type": "true or false", "bool_parsing": "true or false", "list_type": "a list",
    "model_type": "an object (a mapping of fields)", "dict_type": "an object (a mapping of fields)",
    "model_attributes_type": "an object (a mapping of fields)",
}


class KubectlLoader(yaml.SafeLoader):
    """YAML as kubectl reads it: an unquoted 2025-12-31 stays the string it is on the wire, never a date."""


KubectlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class Report:
    """What `validate_files` found: Deployments checked, one line per problem, and notes (skipped documents)."""

    checked: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def validate_files(paths: Sequence[str]) -> Report:
    """Check every Deployment in the files (`-` is stdin; a directory means its *.yaml, *.yml and *.json)."""
    report = Report()
    for path in paths:
        for name, text in _read(path, report):
            validate_text(text, name, report)
    return report


def validate_text(text: str, source: str, report: Report) -> None:
    """Check every document of one YAML stream; `source` names it in the report."""
    try:
        # Documents before a syntax error are still checked, as far as the parser got.
        for index, doc in enumerate(yaml.load_all(text, Loader=KubectlLoader), start=1):
            _check_document(doc, source, index, report)
    except (yaml.YAMLError, ValueError) as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        what = getattr(err, "problem", None) or str(err)
        report.problems.append(f"{source}{line}: invalid YAML: {what}")


def spec_problems(spec: Any) -> list[tuple[str, str]]:
    """(field path, message) for every problem of one `spec` value; empty when the model accepts it."""
    schema = spec_schema()
    problems = [(path, "unknown field") for path in _prune_unknown(spec, schema, "spec")]
    try:
        DeploymentSpec.model_validate_json(json.dumps(spec, default=_json_default), strict=True,
                                           by_alias=True, by_name=False)
    except ValidationError as err:
        problems += [_describe(e, schema) for e in err.errors(include_url=False)]
    return problems


# ---------------------------------------------------------------- documents

def _read(path: str, report: Report) -> Iterator[tuple[str, str]]:
    if path == STDIN:
        yield "<stdin>", sys.stdin.read()
        return
    target = Path(path)
    files = [target]
    if target.is_dir():
        files = sorted(p for p in target.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml", ".json"))
    for file in files:
        try:
            yield str(file), file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            report.problems.append(f"{file}: cannot read: {reason}")


def _check_document(doc: Any, source: str, index: int, report: Report) -> None:
    if doc is None:
        return
    if not isinstance(doc, dict):
        report.problems.append(f"{source}: document {index}: not a Kubernetes object (a mapping with apiVersion "
                               "and kind)")
        return
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if api_version == "v1" and kind == "List" and isinstance(doc.get("items"), list):
        for item in doc["items"]:
            _check_document(item, source, index, report)
        return
    if (api_version, kind) != (API_VERSION, KIND):
        if isinstance(api_version, str) and api_version.split("/")[0] == GROUP:
            report.problems.append(f"{source}: document {index}: {api_version} {kind} is not served; use "
                                   f"apiVersion: {API_VERSION}, kind: {KIND}")
        else:
            report.notes.append(f"{source}: document {index}: skipped {api_version} {kind} "
                                f"(not a {API_VERSION} {KIND})")
        return
    report.checked += 1
    metadata = doc.get("metadata")
    meta = metadata if isinstance(metadata, dict) else {}
    namespace = meta.get("namespace") or "default"
    who = f"{source}: {namespace}/{meta.get('name') or f'<document {index}>'}"
    found = _envelope_problems(doc, meta)
    if "spec" in doc:
        found += spec_problems(doc["spec"])
    else:
        found.append(("spec", "required"))
    report.problems += [f"{who}: {path}: {message}" for path, message in found]


def _envelope_problems(doc: dict[str, Any], meta: dict[str, Any]) -> list[tuple[str, str]]:
    found = [(key, "unknown field") for key in doc if key not in _TOP_LEVEL]
    if not isinstance(doc.get("metadata"), dict):
        return [*found, ("metadata", "required (an object with at least a name)")]
    found += [(f"metadata.{key}", "unknown field") for key in meta if key not in _OBJECT_META]
    name, namespace = meta.get("name"), meta.get("namespace")
    if not name:
        found.append(("metadata.name", "required"))
    elif not isinstance(name, str) or len(name) > 253 or not re.match(DNS1123_SUBDOMAIN, name):
        found.append(("metadata.name", f"must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', "
                                       f"at most 253 characters, starting and ending with a letter or digit, "
                                       f"got {_shown(name)}"))
    if namespace is not None and (not isinstance(namespace, str) or len(namespace) > 63
                                  or not re.match(DNS1123_LABEL, namespace)):
        found.append(("metadata.namespace", f"must be a DNS-1123 label: lowercase letters, digits and '-', at most "
                                            f"63 characters, got {_shown(namespace)}"))
    return found


def _json_default(value: Any) -> str:
    # Only explicit YAML tags (!!binary, !!set) get here; kubectl would send them as strings too.
    return str(value)


# ---------------------------------------------------------------- unknown fields

def _prune_unknown(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Remove fields the schema does not declare (the apiserver's pruning); return their paths."""
    unknown: list[str] = []
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            unknown += _prune_unknown(item, schema["items"], f"{path}[{i}]")
    elif isinstance(value, dict) and schema.get("type") == "object":
        properties: dict[str, Any] = schema.get("properties", {})
        for key in list(value):
            if key in properties:
                unknown += _prune_unknown(value[key], properties[key], f"{path}.{key}")
            else:
                unknown.append(f"{path}.{key}")
                del value[key]
    return unknown


# ---------------------------------------------------------------- messages

def _describe(error: ErrorDetails, schema: dict[str, Any]) -> tuple[str, str]:
    loc = error["loc"]
    ctx = error.get("ctx") or {}
    path = _wire_path(loc)
    kind = error["type"]
    if kind == "rule":
        return path + str(ctx.get("field_path", "")), error["msg"]
    node = _node(schema, loc)
    return path, _message(kind, error["msg"], ctx, node, error.get("input"))


def _message(kind: str, msg: str, ctx: dict[str, Any], node: dict[str, Any], value: Any) -> str:
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", node.get("pattern", "")))
        hint = PATTERN_HINTS.get(pattern)
        return f"must match {pattern}" + (f" ({hint})" if hint else "") + f", got {_shown(value)}"
    if kind == "enum" or ("enum" in node and kind == "literal_error"):
        return "must be one of: " + ", ".join(str(v) for v in node.get("enum", [])) + f", got {_shown(value)}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return _range(node) + f", got {_shown(value)}"
    if kind == "string_too_short":
        low = int(ctx.get("min_length", 1))
        return "must not be empty" if low == 1 else f"must be at least {low} characters long"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters long"
    if kind == "too_short":
        low = int(ctx.get("min_length", 1))
        return f"must have at least {low} item{'s' if low != 1 else ''}"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    if kind.startswith(("date_", "datetime_")):
        return f"must be a date (YYYY-MM-DD), got {_shown(value)}"
    if kind in _TYPE_WORDS:
        return f"must be {_TYPE_WORDS[kind]}, not {_json_type(value)}"
    return msg[:1].lower() + msg[1:]


def _range(node: dict[str, Any]) -> str:
    low, high = node.get("minimum"), node.get("maximum")
    low_open, high_open = bool(node.get("exclusiveMinimum")), bool(node.get("exclusiveMaximum"))
    if low is not None and high is not None and not (low_open or high_open):
        return f"must be between {_num(low)} and {_num(high)}"
    parts = []
    if low is not None:
        parts.append(f"greater than {_num(low)}" if low_open else f"at least {_num(low)}")
    if high is not None:
        parts.append(f"less than {_num(high)}" if high_open else f"at most {_num(high)}")
    return "must be " + " and ".join(parts)


def _node(schema: dict[str, Any], loc: tuple[int | str, ...]) -> dict[str, Any]:
    """The schema node a pydantic error location points at (empty when the path leaves the schema)."""
    node = schema
    for part in loc:
        nxt = node.get("items") if isinstance(part, int) else node.get("properties", {}).get(part)
        if not isinstance(nxt, dict):
            return {}
        node = nxt
    return node


def _wire_path(loc: tuple[int | str, ...]) -> str:
    return "spec" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return f"the string {_shown(value)}"
    return "a list" if isinstance(value, list) else "an object"


def _shown(value: Any) -> str:
    text = json.dumps(value, default=_json_default)
    return text if len(text) <= 80 else text[:77] + "..."
