"""The emulator treats custom resources like kube-apiserver: prune, default, validate, and word errors alike."""

from __future__ import annotations

from typing import Any

import pytest

from deploymind.sandbox.kube import api_errors, schema
from deploymind.sandbox.kube.admission import STRICT, WARN, admit
from deploymind.sandbox.kube.api_errors import ApiError
from deploymind.sandbox.kube.field_errors import required
from deploymind.sandbox.kube.resources import from_crd

SPEC: dict[str, Any] = {
    "type": "object",
    "required": ["source"],
    "properties": {
        "source": {"type": "object", "required": ["repo"], "properties": {
            "repo": {"type": "string", "minLength": 3},
            "ref": {"type": "string", "default": "main"},
        }},
        "target": {"type": "object", "properties": {
            "instanceId": {"type": "string", "pattern": "^i-[0-9a-f]{8,17}$"},
            "name": {"type": "string", "maxLength": 5},
        }},
        "container": {"type": "object", "properties": {
            "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 8080},
            "env": {
                "type": "array", "maxItems": 3, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"}, "value": {"type": "string"}}},
            },
            "memory": {"x-kubernetes-int-or-string": True},
        }},
        "strategy": {"type": "object", "default": {}, "properties": {
            "type": {"type": "string", "enum": ["Recreate"], "default": "Recreate"}}},
        "scanners": {"type": "array", "minItems": 1, "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "ignore": {"type": "array", "items": {"type": "object", "properties": {
            "expires": {"type": "string", "format": "date"},
            "at": {"type": "string", "format": "date-time"}}}},
        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "note": {"type": "string", "nullable": True},
        "replicas": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
    },
}
ROOT: dict[str, Any] = {"type": "object", "properties": {
    "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}, "spec": SPEC,
    "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
}}


def errors_of(spec: dict[str, Any]) -> list[str]:
    return [str(e) for e in schema.validate(spec, SPEC, "spec")]


def test_pattern_error_names_the_field_and_the_pattern() -> None:
    errors = errors_of({"source": {"repo": "a/b"}, "target": {"instanceId": "x"}})
    assert errors == [
        "spec.target.instanceId: Invalid value: \"x\": spec.target.instanceId in body should match "
        "'^i-[0-9a-f]{8,17}$'",
    ]


def test_minimum_and_maximum_errors_show_the_bound() -> None:
    assert errors_of({"source": {"repo": "a/b"}, "container": {"port": 0}}) == [
        "spec.container.port: Invalid value: 0: spec.container.port in body should be greater than or equal to 1",
    ]
    assert errors_of({"source": {"repo": "a/b"}, "container": {"port": 70000}}) == [
        "spec.container.port: Invalid value: 70000: spec.container.port in body should be less than or equal to "
        "65535",
    ]
    assert errors_of({"source": {"repo": "a/b"}, "replicas": 0}) == [
        "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than 0",
    ]


def test_missing_required_field_is_a_required_value() -> None:
    assert errors_of({"source": {}}) == ["spec.source.repo: Required value"]
    assert errors_of({}) == ["spec.source: Required value"]


def test_value_outside_enum_lists_the_supported_values() -> None:
    assert errors_of({"source": {"repo": "a/b"}, "strategy": {"type": "Canary"}}) == [
        'spec.strategy.type: Unsupported value: "Canary": supported values: "Recreate"',
    ]


def test_wrong_type_names_expected_and_actual_types() -> None:
    assert errors_of({"source": {"repo": "a/b"}, "container": {"port": "80"}}) == [
        'spec.container.port: Invalid value: "string": spec.container.port in body must be of type integer: "string"',
    ]


def test_string_and_list_length_limits() -> None:
    assert errors_of({"source": {"repo": "ab"}, "target": {"name": "toolong"}, "scanners": []}) == [
        'spec.source.repo: Invalid value: "ab": spec.source.repo in body should be at least 3 chars long',
        "spec.target.name: Too long: may not be more than 5 bytes",
        "spec.scanners: Invalid value: 0: spec.scanners in body should have at least 1 items",
    ]
    env = [{"name": n} for n in "ABCD"]
    assert errors_of({"source": {"repo": "a/b"}, "container": {"env": env}}) == [
        "spec.container.env: Too many: 4: must have at most 3 items",
    ]


def test_map_list_with_duplicate_keys_is_a_duplicate_value() -> None:
    env = [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]
    assert errors_of({"source": {"repo": "a/b"}, "container": {"env": env}}) == [
        'spec.container.env[1]: Duplicate value: map[string]interface {}{"name":"A"}',
    ]


def test_set_list_with_duplicate_items_is_a_duplicate_value() -> None:
    assert errors_of({"source": {"repo": "a/b"}, "scanners": ["vuln", "secret", "vuln"]}) == [
        'spec.scanners[2]: Duplicate value: "vuln"',
    ]


@pytest.mark.parametrize(("field", "good", "bad"), [
    ("expires", "2030-12-31", "2030-13-01"),
    ("expires", "2030-02-28", "tomorrow"),
    ("at", "2030-01-01T10:00:00Z", "2030-01-01 10:00"),
])
def test_date_and_date_time_formats(field: str, good: str, bad: str) -> None:
    assert errors_of({"source": {"repo": "a/b"}, "ignore": [{field: good}]}) == []
    assert errors_of({"source": {"repo": "a/b"}, "ignore": [{field: bad}]}) == [
        f'spec.ignore[0].{field}: Invalid value: "{bad}": spec.ignore[0].{field} in body must be of type '
        f'{"date" if field == "expires" else "date-time"}: "{bad}"',
    ]


def test_int_or_string_accepts_both_and_nothing_else() -> None:
    assert errors_of({"source": {"repo": "a/b"}, "container": {"memory": 512}}) == []
    assert errors_of({"source": {"repo": "a/b"}, "container": {"memory": "512Mi"}}) == []
    assert errors_of({"source": {"repo": "a/b"}, "container": {"memory": True}}) == [
        'spec.container.memory: Invalid value: "boolean": spec.container.memory in body must be of type '
        'integer,string: "boolean"',
    ]


def test_null_is_accepted_only_where_nullable() -> None:
    assert errors_of({"source": {"repo": "a/b"}, "note": None}) == []
    assert errors_of({"source": {"repo": None}}) == [
        'spec.source.repo: Invalid value: "null": spec.source.repo in body must be of type string: "null"',
    ]


def test_defaults_fill_absent_fields_recursively() -> None:
    spec: dict[str, Any] = {"source": {"repo": "a/b"}, "container": {}}
    schema.apply_defaults(spec, SPEC)
    assert spec == {"source": {"repo": "a/b", "ref": "main"}, "container": {"port": 8080},
                    "strategy": {"type": "Recreate"}}


def test_pruning_drops_undeclared_fields_and_reports_their_paths() -> None:
    obj: dict[str, Any] = {
        "apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n", "labels": {"a": "b"}},
        "spec": {"source": {"repo": "a/b", "foo": 1}, "container": {"env": [{"name": "A", "bar": 2}]},
                 "extra": {"anything": {"goes": True}}},
        "unknownTop": 1,
    }
    unknown = schema.prune(obj, ROOT)
    assert unknown == ["spec.source.foo", "spec.container.env[0].bar", "unknownTop"]
    assert obj == {
        "apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n", "labels": {"a": "b"}},
        "spec": {"source": {"repo": "a/b"}, "container": {"env": [{"name": "A"}]},
                 "extra": {"anything": {"goes": True}}},
    }


CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "deployments.deploymind.io"},
    "spec": {"group": "deploymind.io", "scope": "Namespaced",
             "names": {"plural": "deployments", "kind": "Deployment"},
             "versions": [{"name": "v1alpha1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": ROOT}}]},
}


def test_strict_field_validation_refuses_unknown_fields_with_the_apiserver_message() -> None:
    (rt,) = from_crd(CRD)
    obj = {"metadata": {"name": "web"}, "spec": {"source": {"repo": "a/b", "foo": 1}}}
    with pytest.raises(ApiError) as caught:
        admit(rt, obj, None, field_validation=STRICT, subresource=None)
    assert caught.value.code == 400
    assert caught.value.message == ('Deployment in version "v1alpha1" cannot be handled as a Deployment: '
                                    'strict decoding error: unknown field "spec.source.foo"')


def test_default_field_validation_prunes_and_warns() -> None:
    (rt,) = from_crd(CRD)
    obj: dict[str, Any] = {"metadata": {"name": "web"}, "spec": {"source": {"repo": "a/b", "foo": 1}}}
    warnings = admit(rt, obj, None, field_validation=WARN, subresource=None)
    assert warnings == ['unknown field "spec.source.foo"']
    assert obj["spec"]["source"] == {"repo": "a/b", "ref": "main"}


def test_invalid_object_is_a_422_status_like_the_apiserver_sends() -> None:
    (rt,) = from_crd(CRD)
    obj = {"metadata": {"name": "web"}, "spec": {"source": {}, "container": {"port": 0}}}
    with pytest.raises(ApiError) as caught:
        admit(rt, obj, None, field_validation=STRICT, subresource=None)
    status = caught.value.status()
    assert status["code"] == 422
    assert status["reason"] == "Invalid"
    assert status["message"] == (
        'Deployment.deploymind.io "web" is invalid: [spec.source.repo: Required value, spec.container.port: '
        "Invalid value: 0: spec.container.port in body should be greater than or equal to 1]"
    )
    assert status["details"] == {"name": "web", "group": "deploymind.io", "kind": "Deployment", "causes": [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.source.repo"},
        {"reason": "FieldValueInvalid", "field": "spec.container.port",
         "message": "Invalid value: 0: spec.container.port in body should be greater than or equal to 1"},
    ]}


def test_one_cause_is_not_bracketed() -> None:
    error = api_errors.invalid("Secret", "", "s", [required("data")])
    assert error.message == 'Secret "s" is invalid: data: Required value'


def test_status_writes_are_checked_on_status_only() -> None:
    (rt,) = from_crd(CRD)
    current = {"metadata": {"name": "web"}, "spec": {"source": {"repo": "a/b"}}}
    new = {"metadata": {"name": "web"}, "spec": {"source": {}}, "status": {"phase": "Ready", "junk": 1}}
    warnings = admit(rt, new, current, field_validation=WARN, subresource="status")
    assert warnings == ['unknown field "status.junk"']
    assert new["status"] == {"phase": "Ready"}


def test_metadata_name_must_be_a_dns_subdomain() -> None:
    (rt,) = from_crd(CRD)
    with pytest.raises(ApiError) as caught:
        admit(rt, {"metadata": {"name": "Web_1"}, "spec": {"source": {"repo": "a/b"}}}, None,
              field_validation=STRICT, subresource=None)
    assert caught.value.details["causes"][0]["field"] == "metadata.name"
    assert "a lowercase RFC 1123 subdomain" in caught.value.message
