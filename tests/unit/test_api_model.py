"""The Deployment spec model: defaults, wire names, cross-field rules and their field paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from deploymind.api import DeploymentSpec
from deploymind.api.spec import SecretKeyRef, Transport, duration_seconds

VALID = sorted((Path(__file__).resolve().parents[1] / "data" / "manifests" / "valid").glob("*.yaml"))
SSM = {"transport": "ssm", "instanceId": "i-0123456789abcdef0"}
KEY = {"name": "ssh-key", "key": "id"}
HOSTS = {"name": "ssh-hosts", "key": "known_hosts"}


def parse(**spec: Any) -> DeploymentSpec:
    return DeploymentSpec.model_validate(spec)


def rule_error(**spec: Any) -> dict[str, Any]:
    with pytest.raises(ValidationError) as caught:
        parse(**spec)
    [error] = caught.value.errors()
    assert error["type"] == "rule"
    return {"loc": error["loc"], "field_path": error["ctx"]["field_path"], "msg": error["msg"]}


def spec_documents() -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for path in VALID:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Deployment" and doc["apiVersion"] == "deploymind.io/v1alpha1":
                specs.append((f"{path.stem}/{doc['metadata']['name']}", doc["spec"]))
    return specs


def test_a_minimal_spec_gets_every_default_from_the_model() -> None:
    spec = parse(source={"repo": "acme/web"}, target=SSM)
    assert spec.wire() == {
        "source": {"repo": "acme/web", "ref": "main", "pollInterval": "5m"},
        "target": {"transport": "ssm", "instanceId": "i-0123456789abcdef0"},
        "container": {"port": 8080, "env": [], "init": True, "stopGracePeriodSeconds": 10},
        "healthCheck": {"path": "/health", "timeoutSeconds": 5, "failureThreshold": 3, "startupTimeoutSeconds": 120},
        "strategy": {"type": "Recreate"},
        "security": {"severityThreshold": "HIGH", "scanners": ["vuln", "secret", "misconfig"], "ignore": []},
        "rollback": {"auto": True, "bakeSeconds": 300},
        "revisionHistoryLimit": 10,
        "deletionPolicy": "Delete",
        "suspend": False,
    }


def test_transport_defaults_to_ssm_which_needs_an_instance_id() -> None:
    assert rule_error(image="nginx", target={}) == {
        "loc": ("target",), "field_path": ".instanceId", "msg": "instanceId is required when transport is ssm"}


@pytest.mark.parametrize(("transport", "period"), [("ssm", 60), ("ssh", 10), ("local", 10)])
def test_probe_period_defaults_by_transport(transport: str, period: int) -> None:
    target: dict[str, Any] = {"transport": transport}
    if transport == "ssm":
        target["instanceId"] = "i-0123456789abcdef0"
    if transport == "ssh":
        target["ssh"] = {"host": "10.0.0.1", "keySecretRef": KEY, "knownHostsSecretRef": HOSTS}
    assert parse(image="nginx", target=target).probe_period == period
    assert parse(image="nginx", target=target, healthCheck={"periodSeconds": 45}).probe_period == 45


def test_the_ssm_floor_applies_only_to_ssm() -> None:
    assert rule_error(image="nginx", target=SSM, healthCheck={"periodSeconds": 29})["field_path"] == (
        ".healthCheck.periodSeconds")
    assert parse(image="nginx", target={"transport": "local"}, healthCheck={"periodSeconds": 1,
                                                                           "timeoutSeconds": 1}).probe_period == 1


def test_rule_errors_inside_lists_locate_the_item() -> None:
    error = rule_error(image="nginx", target=SSM, container={"env": [{"name": "A", "value": "1"}, {"name": "B"}]})
    assert error["loc"] == ("container", "env", 1)
    assert error["msg"] == "exactly one of value or valueFrom must be set"


def test_unknown_fields_are_refused_at_any_depth() -> None:
    with pytest.raises(ValidationError) as caught:
        parse(image="nginx", target={**SSM, "zone": "a"})
    assert [(e["type"], e["loc"]) for e in caught.value.errors()] == [("extra_forbidden", ("target", "zone"))]


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("24h", 86400)])
def test_durations_count_seconds(text: str, seconds: int) -> None:
    assert duration_seconds(text) == seconds


def test_secret_refs_lists_every_secret_the_spec_reads() -> None:
    spec = parse(
        source={"repo": "acme/web", "credentialsSecretRef": {"name": "git", "key": "token"}},
        target={"transport": "ssh", "ssh": {"host": "h", "keySecretRef": KEY, "knownHostsSecretRef": HOSTS}},
        container={"env": [{"name": "A", "value": "1"},
                           {"name": "B", "valueFrom": {"secretKeyRef": {"name": "env", "key": "b"}}}]},
    )
    assert spec.target.transport is Transport.SSH
    assert spec.secret_refs() == [SecretKeyRef(name="env", key="b"), SecretKeyRef(name="git", key="token"),
                                  SecretKeyRef(**KEY), SecretKeyRef(**HOSTS)]


@pytest.mark.parametrize(("name", "spec"), spec_documents(), ids=[n for n, _ in spec_documents()])
def test_a_valid_spec_survives_the_wire_round_trip(name: str, spec: dict[str, Any]) -> None:
    parsed = DeploymentSpec.model_validate(spec)
    assert DeploymentSpec.model_validate(parsed.wire()) == parsed
    assert DeploymentSpec.model_validate_json(parsed.model_dump_json(by_alias=True)) == parsed
