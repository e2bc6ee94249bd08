"""CEL `x-kubernetes-validations` are compiled at CRD registration and enforced on writes, as kube-apiserver does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from deploymind.sandbox.kube.cel import CelRuleError, RuleSet

REPO = Path(__file__).resolve().parents[2]


def rules(rule: str | dict[str, Any], properties: dict[str, Any] | None = None) -> RuleSet:
    """A `spec` schema carrying one rule."""
    entry = {"rule": rule} if isinstance(rule, str) else rule
    spec = {"type": "object", "properties": properties or PROPS, "x-kubernetes-validations": [entry]}
    return RuleSet.compile({"type": "object", "properties": {"spec": spec}})


PROPS: dict[str, Any] = {
    "source": {"type": "object", "properties": {"repo": {"type": "string"}}},
    "image": {"type": "string"},
    "transport": {"type": "string"},
    "instanceId": {"type": "string"},
    "replicas": {"type": "integer"},
    "ratio": {"type": "number"},
    "poll": {"type": "string"},
    "expires": {"type": "string", "format": "date"},
    "env": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "properties": {"name": {"type": "string"}, "value": {"type": "string"}}}},
    "tags": {"type": "array", "items": {"type": "string"}},
}


def check(rule: str | dict[str, Any], spec: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    ruleset = rules(rule)
    new_obj = {"spec": spec}
    errors = ruleset.evaluate(new_obj) if old is None else ruleset.evaluate(new_obj, {"spec": old})
    return [str(e) for e in errors]


EXACTLY_ONE = {"rule": "has(self.source) != has(self.image)",
               "message": "exactly one of spec.source or spec.image must be set"}


def test_failed_rule_names_the_rule_location_and_its_message() -> None:
    assert check(EXACTLY_ONE, {"source": {"repo": "a/b"}}) == []
    assert check(EXACTLY_ONE, {"source": {"repo": "a/b"}, "image": "nginx"}) == [
        'spec: Invalid value: "object": exactly one of spec.source or spec.image must be set',
    ]


def test_field_path_and_reason_shape_the_error() -> None:
    rule = {"rule": "self.transport != 'ssm' || has(self.instanceId)", "fieldPath": ".instanceId",
            "reason": "FieldValueRequired", "message": "instanceId is required when transport is ssm"}
    assert check(rule, {"transport": "ssh"}) == []
    assert check(rule, {"transport": "ssm"}) == ["spec.instanceId: Required value: instanceId is required when "
                                                 "transport is ssm"]


def test_rule_without_message_reports_the_rule() -> None:
    assert check("self.replicas >= 30", {"replicas": 10}) == [
        'spec: Invalid value: "object": failed rule: self.replicas >= 30',
    ]


def test_message_expression_builds_the_message() -> None:
    rule = {"rule": "self.replicas <= 3", "messageExpression": "'too many: ' + string(self.replicas)"}
    assert check(rule, {"replicas": 5}) == ['spec: Invalid value: "object": too many: 5']


@pytest.mark.parametrize(("rule", "spec", "ok"), [
    ("self.env.all(e, e.name.matches('^[A-Z_]+$'))", {"env": [{"name": "A"}, {"name": "B_C"}]}, True),
    ("self.env.all(e, e.name.matches('^[A-Z_]+$'))", {"env": [{"name": "a"}]}, False),
    ("self.env.exists(e, e.name == 'PORT')", {"env": [{"name": "PORT"}]}, True),
    ("self.env.exists_one(e, e.name == 'A')", {"env": [{"name": "A"}, {"name": "A"}]}, False),
    ("self.env.map(e, e.name).filter(n, n.startsWith('A')).size() == 1", {"env": [{"name": "AB"}, {"name": "B"}]},
     True),
    ("'vuln' in self.tags", {"tags": ["vuln", "secret"]}, True),
    ("size(self.tags) > 2 ? self.tags[2] == 'x' : true", {"tags": ["a"]}, True),
    ("self.image.endsWith(':latest') == false && self.image.contains('/')", {"image": "org/app:1"}, True),
    ("self.image.startsWith('docker.io/')", {"image": "org/app:1"}, False),
    ("duration(self.poll) >= duration('30s')", {"poll": "5m"}, True),
    ("duration(self.poll) >= duration('30s')", {"poll": "10s"}, False),
    ("self.ratio > 0.5", {"ratio": 1}, True),
    ("self.expires > timestamp('2020-01-01T00:00:00Z')", {"expires": "2030-01-01"}, True),
    ("self.image.lowerAscii() == 'nginx' && self.image.split('G').size() == 2", {"image": "NGINX"}, True),
])
def test_cel_language_features(rule: str, spec: dict[str, Any], ok: bool) -> None:
    assert (check(rule, spec) == []) is ok


def test_transition_rules_run_only_on_updates() -> None:
    rule = {"rule": "self.replicas >= oldSelf.replicas", "message": "replicas may not shrink"}
    assert check(rule, {"replicas": 1}) == []
    assert check(rule, {"replicas": 3}, old={"replicas": 2}) == []
    assert check(rule, {"replicas": 1}, old={"replicas": 2}) == ['spec: Invalid value: "object": replicas may not '
                                                                 "shrink"]


def test_optional_old_self_sees_creation_as_no_value() -> None:
    rule = {"rule": "!oldSelf.hasValue() || self.image == oldSelf.value().image", "optionalOldSelf": True,
            "message": "image is immutable"}
    assert check(rule, {"image": "a"}) == []
    assert check(rule, {"image": "b"}, old={"image": "a"}) == ['spec: Invalid value: "object": image is immutable']


def test_transition_rules_on_map_list_items_compare_items_with_the_same_key() -> None:
    item_rule = {"rule": "self.value == oldSelf.value", "message": "value is immutable"}
    props = dict(PROPS, env=dict(PROPS["env"], items=dict(PROPS["env"]["items"],
                                                          **{"x-kubernetes-validations": [item_rule]})))
    ruleset = RuleSet.compile({"type": "object", "properties": {"spec": {"type": "object", "properties": props}}})
    old = {"spec": {"env": [{"name": "A", "value": "1"}]}}
    assert ruleset.evaluate({"spec": {"env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]}}, old) == []
    errors = ruleset.evaluate({"spec": {"env": [{"name": "A", "value": "2"}]}}, old)
    assert [str(e) for e in errors] == ['spec.env[0]: Invalid value: "object": value is immutable']


def test_rule_that_cannot_evaluate_rejects_the_object_loudly() -> None:
    errors = check("self.instanceId.startsWith('i-')", {"transport": "ssm"})
    assert len(errors) == 1
    assert errors[0].startswith('spec: Invalid value: "object": rule evaluation error:')
    assert "self.instanceId.startsWith('i-')" in errors[0]


@pytest.mark.parametrize(("rule", "problem"), [
    ("self.image ==", "compilation failed"),
    ("frobnicate(self.image)", "undeclared reference to 'frobnicate'"),
    ("self.imag == 'x'", "undefined field 'imag'"),
    ("has(self.source.repository)", "undefined field 'repository'"),
    ("self.image.foo == 1", "type 'string' does not support field selection"),
])
def test_rules_that_cannot_compile_are_refused_at_registration(rule: str, problem: str) -> None:
    with pytest.raises(CelRuleError) as caught:
        rules(rule)
    assert problem in str(caught.value)
    assert caught.value.errors[0].field == "openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"


def test_rules_below_preserve_unknown_fields_may_select_any_field() -> None:
    spec = {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
            "x-kubernetes-validations": [{"rule": "!has(self.anything) || self.anything.deep == 1"}]}
    ruleset = RuleSet.compile({"type": "object", "properties": {"spec": spec}})
    assert ruleset.evaluate({"spec": {"anything": {"deep": 1}}}) == []
    assert len(ruleset.evaluate({"spec": {"anything": {"deep": 2}}})) == 1


def test_project_crd_rules_compile_and_enforce_exactly_one_source() -> None:
    crd = yaml.safe_load((REPO / "crds" / "deployments.deploymind.io.yaml").read_text())
    version = crd["spec"]["versions"][0]
    ruleset = RuleSet.compile(version["schema"]["openAPIV3Schema"])
    spec = {"source": {"repo": "owner/app", "ref": "main"}, "image": "nginx:1",
            "target": {"transport": "ssh", "ssh": {"host": "127.0.0.1"}}}
    messages = [e.detail for e in ruleset.evaluate({"spec": spec})]
    assert "exactly one of spec.source or spec.image must be set" in messages
