"""The CRD rendered from the models is what kube-apiserver accepts, says what the models say, and is committed as is."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploymind.api import spec as model
from deploymind.api.base import ApiModel
from deploymind.api.crd import SchemaError, render_crd, render_crd_yaml, spec_schema, status_schema, structural

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "crds" / "deployments.deploymind.io.yaml"
SCALARS = {"string", "integer", "number", "boolean"}
# The model class whose rules sit at each node of the spec schema (`[]` = the items of a list).
RULE_NODES: dict[str, type[ApiModel]] = {
    "": model.DeploymentSpec,
    "source": model.Source,
    "build": model.Build,
    "target": model.Target,
    "container": model.Container,
    "container.env[]": model.EnvVar,
    "security": model.Security,
}


def nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (`a.b`, `a.list[]`)."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}" if path else name)
    if isinstance(node.get("items"), dict):
        yield from nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from nodes(node["additionalProperties"], f"{path}.*")


def at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for part in filter(None, re.split(r"\.|(?=\[\])", path)):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def root_schema() -> dict[str, Any]:
    schema: dict[str, Any] = render_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def matches(value: Any, node: dict[str, Any]) -> bool:
    """A default against its node: the checks kube-apiserver runs on defaults at CRD creation."""
    kind = node["type"]
    if kind == "object":
        return isinstance(value, dict) and all(
            k in node.get("properties", {}) and matches(v, node["properties"][k]) for k, v in value.items())
    if kind == "array":
        return isinstance(value, list) and all(matches(v, node["items"]) for v in value)
    expected = {"string": str, "integer": int, "number": int | float, "boolean": bool}[kind]
    if not isinstance(value, expected) or (kind != "boolean" and isinstance(value, bool)):
        return False
    if "enum" in node and value not in node["enum"]:
        return False
    if isinstance(value, str):
        return (("pattern" not in node or re.search(node["pattern"], value) is not None)
                and node.get("minLength", 0) <= len(value) <= node.get("maxLength", len(value)))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return bool(node.get("minimum", value) <= value <= node.get("maximum", value))
    return True


def test_committed_crd_equals_the_rendered_one() -> None:
    assert COMMITTED.read_text() == render_crd_yaml(), "crds/ drifted: run `deploymind crd > " \
        "crds/deployments.deploymind.io.yaml` and commit it"


def test_rendering_is_deterministic_and_parses_back_to_the_crd() -> None:
    text = render_crd_yaml()
    assert render_crd_yaml() == text
    assert yaml.safe_load(text) == render_crd()


def test_crd_names_the_api_as_designed() -> None:
    crd = render_crd()
    assert (crd["apiVersion"], crd["kind"], crd["metadata"]["name"]) == (
        "apiextensions.k8s.io/v1", "CustomResourceDefinition", "deployments.deploymind.io")
    spec = crd["spec"]
    assert spec["group"] == "deploymind.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {"kind": "Deployment", "listKind": "DeploymentList", "plural": "deployments",
                             "singular": "deployment", "shortNames": ["dmd"], "categories": ["deploymind"]}
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns_show_phase_revision_target_ready_and_age() -> None:
    columns = render_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["jsonPath"], c["type"]) for c in columns] == [
        ("Phase", ".status.phase", "string"),
        ("Revision", ".status.revision.id", "string"),
        ("Target", ".status.target.address", "string"),
        ("Ready", '.status.conditions[?(@.type=="Ready")].status', "string"),
        ("Age", ".metadata.creationTimestamp", "date"),
    ]
    status = status_schema()
    for column in columns[:3]:
        assert at(status, column["jsonPath"].removeprefix(".status."))["type"] == "string"


@pytest.mark.parametrize("path", [p for p, _ in nodes(root_schema())])
def test_every_schema_node_is_structural(path: str) -> None:
    node = at(root_schema(), path)
    assert node.get("type") in SCALARS | {"object", "array"}, f"{path}: no type"
    for forbidden in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title", "nullable", "uniqueItems", "const"):
        assert forbidden not in node, f"{path}: {forbidden}"
    if "properties" in node:
        assert "additionalProperties" not in node, f"{path}: additionalProperties beside properties"
    assert node.get("additionalProperties") is not False
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        assert node.get(key, True) is True, f"{path}: {key} must be a boolean in OpenAPI v3.0"
    if node["type"] == "object" and path not in ("metadata",):
        assert set(node.get("required", [])) <= set(node.get("properties", {})), f"{path}: required names no field"
    if "default" in node:
        assert matches(node["default"], node), f"{path}: default {node['default']!r} is not valid for its node"


def test_list_map_keys_are_required_scalar_fields_and_set_items_are_scalars() -> None:
    seen = 0
    for path, node in nodes(root_schema()):
        if node.get("x-kubernetes-list-type") == "map":
            items = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in items.get("required", []), f"{path}: map key {key} must be required"
                assert items["properties"][key]["type"] in SCALARS, f"{path}: map key {key} must be a scalar"
            seen += 1
        if node.get("x-kubernetes-list-type") == "set":
            assert node["items"]["type"] in SCALARS, f"{path}: a set holds scalars"
            seen += 1
    assert seen >= 3  # container.env, security.scanners, status.conditions


def test_optional_fields_become_their_plain_type() -> None:
    spec = spec_schema()
    assert at(spec, "image") == {
        "type": "string", "maxLength": 512, "pattern": model.IMAGE,
        "description": model.DeploymentSpec.model_fields["image"].description,
    }
    assert at(spec, "target.instanceId")["pattern"] == model.INSTANCE_ID
    assert at(spec, "source")["type"] == "object"
    assert at(spec, "source")["required"] == ["repo"]


def test_enums_defaults_dates_and_exclusive_bounds_take_their_openapi_form() -> None:
    spec = spec_schema()
    transport = at(spec, "target.transport")
    assert (transport["type"], transport["enum"], transport["default"]) == ("string", ["ssm", "ssh", "local"], "ssm")
    assert "(AWS Systems Manager)" in transport["description"], "the field's own doc wins over the enum's"
    assert at(spec, "security.ignore[].expires") == {
        "type": "string", "format": "date",
        "description": "Last day the rule applies (YYYY-MM-DD); after it the finding blocks again."}
    cpus = at(spec, "container.resources.cpus")
    assert (cpus["type"], cpus["minimum"], cpus["exclusiveMinimum"], cpus["maximum"]) == ("number", 0, True, 256)
    assert at(spec, "container.port") == {"type": "integer", "minimum": 1, "maximum": 65535, "default": 8080,
                                          "description": "Port the stable container listens on (given to it as $PORT)."}
    assert at(spec, "security.scanners")["items"] == {"type": "string", "enum": ["vuln", "secret", "misconfig"]}
    assert "default" not in at(spec, "image"), "a null default is no default"


def test_every_spec_field_has_a_description_from_the_model_docs() -> None:
    missing = [path for path, node in nodes(spec_schema()) if path and not path.endswith("[]")
               and not node.get("description")]
    assert missing == []


@pytest.mark.parametrize(("path", "owner"), RULE_NODES.items())
def test_rules_sit_at_the_node_of_their_model(path: str, owner: type[ApiModel]) -> None:
    node = at(spec_schema(), path)
    assert node["x-kubernetes-validations"] == [rule.entry() for rule in owner.rules]
    for rule in owner.rules:
        if rule.field_path:
            at(node, rule.field_path.lstrip("."))  # a KeyError names the fieldPath that points nowhere
        # CEL sees wire names: every `self.x.y` must be a property path of this node.
        for chain in re.findall(r"self((?:\.[A-Za-z_]\w*)+)", rule.cel):
            names = chain.lstrip(".").split(".")
            names = names[: next((i for i, n in enumerate(names) if n in ("split", "all", "exists", "exists_one")),
                                 len(names))]
            at(node, ".".join(names))


def test_no_rule_is_lost_or_added() -> None:
    in_schema = sum(len(n.get("x-kubernetes-validations", [])) for _, n in nodes(spec_schema()))
    assert in_schema == sum(len(owner.rules) for owner in RULE_NODES.values())


def test_status_is_structural_and_keeps_condition_types_as_map_keys() -> None:
    status = status_schema()
    conditions = at(status, "conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert at(status, "conditions[]")["required"] == ["lastTransitionTime", "reason", "status", "type"]
    assert at(status, "phase")["enum"][:2] == ["Pending", "Scanning"]


def test_root_declares_the_envelope_and_requires_a_spec() -> None:
    root = root_schema()
    assert sorted(root["properties"]) == ["apiVersion", "kind", "metadata", "spec", "status"]
    assert root["properties"]["metadata"] == {"type": "object"}, "metadata is the apiserver's"
    assert root["required"] == ["spec"]


@pytest.mark.parametrize("schema", [
    {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    {"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}]}}},
    {"type": "string", "contentEncoding": "base64"},
    {"description": "no type"},
])
def test_constructs_a_structural_schema_cannot_hold_fail_at_render_time(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        structural(schema, {})
