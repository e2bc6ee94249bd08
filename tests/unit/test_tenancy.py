"""Who may deploy where: the instance tag, the target policy's rules, and the policy file's parse errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from deploymind import cli
from deploymind.api import reasons
from deploymind.api.spec import DeploymentSpec
from deploymind.api.targetpolicy import TargetPolicy, TargetPolicyError, load_target_policy, parse_target_policy
from deploymind.controller.targets import resolve_host
from deploymind.controller.tenancy import NAMESPACES_TAG, instance_refusal, ssh_host_refusal
from deploymind.settings import Settings
from deploymind.steps.errors import Stalled

POLICY = """
rules:
  - name: team-a
    namespaces: [team-a, "team-a-*"]
    sshHosts: ["10.0.1.0/24", "build-?.team-a.internal", "bastion.team-a.internal:2222", "[fd00::/8]:22"]
  - name: prod
    namespaces: ["team-*"]
    instances:
      requireTags: {env: prod, owner: "*"}
  - namespaces: [sandbox]
    instances: {}
"""


def policy(text: str = POLICY) -> TargetPolicy:
    return parse_target_policy(text, "/etc/deploymind/policy.yaml")


@pytest.mark.parametrize("tag", ["team-a", "other,team-a", " other , team-a ", "*", "other,*"])
def test_an_instance_whose_tag_lists_the_namespace_is_allowed(tag: str) -> None:
    assert instance_refusal("team-a", "i-1", {NAMESPACES_TAG: tag}, None) is None


def test_an_instance_without_the_tag_is_refused_naming_the_tag() -> None:
    refusal = instance_refusal("team-a", "i-1", {"Name": "web"}, None)

    assert refusal is not None
    assert f"instance i-1 has no tag {NAMESPACES_TAG}" in refusal
    assert f"adding team-a to the instance's tag {NAMESPACES_TAG}" in refusal


@pytest.mark.parametrize("tag", ["team-b", "team-a-dev", "team-*", ""])
def test_an_instance_whose_tag_does_not_list_the_namespace_is_refused_quoting_the_tag(tag: str) -> None:
    refusal = instance_refusal("team-a", "i-1", {NAMESPACES_TAG: tag}, None)

    assert refusal is not None and f"{NAMESPACES_TAG}={tag!r} of instance i-1 does not list namespace team-a" in refusal


def test_without_a_policy_any_ssh_host_is_allowed() -> None:
    assert ssh_host_refusal("anyone", "203.0.113.9", 22, None) is None


@pytest.mark.parametrize(("namespace", "host", "port"), [
    ("team-a", "10.0.1.17", 22), ("team-a-dev", "10.0.1.255", 2200), ("team-a", "BUILD-1.team-a.internal", 22),
    ("team-a", "bastion.team-a.internal", 2222), ("team-a", "fd00::5", 22),
])
def test_an_ssh_host_a_rule_lists_for_the_namespace_is_allowed(namespace: str, host: str, port: int) -> None:
    assert ssh_host_refusal(namespace, host, port, policy()) is None


@pytest.mark.parametrize(("host", "port"), [
    ("10.0.2.1", 22),                      # outside the CIDR
    ("bastion.team-a.internal", 22),        # the right host, another port
    ("build-12.team-a.internal", 22),       # ? is one character
    ("ten.0.1.17", 22),                     # a name never matches a CIDR
    ("fd00::5", 2222),
])
def test_an_ssh_host_no_rule_lists_is_refused_naming_the_rules_for_the_namespace(host: str, port: int) -> None:
    refusal = ssh_host_refusal("team-a", host, port, policy())

    assert refusal is not None
    assert refusal.startswith(f"target policy /etc/deploymind/policy.yaml: no rule allows SSH host {host} port {port} "
                              "for namespace team-a")
    assert "rule 'team-a' (rules[0]): sshHosts" in refusal and "rule 'prod' (rules[1]): sshHosts none" in refusal


def test_a_namespace_no_rule_covers_may_deploy_nowhere() -> None:
    for refusal in (ssh_host_refusal("billing", "10.0.1.1", 22, policy()),
                    instance_refusal("billing", "i-1", {NAMESPACES_TAG: "*"}, policy())):
        assert refusal is not None and "no rule covers namespace billing" in refusal


def test_a_policy_whose_rules_list_only_ssh_hosts_refuses_instances() -> None:
    only_ssh = policy("rules:\n- {namespaces: [team-a], sshHosts: [10.0.0.1]}\n")

    refusal = instance_refusal("team-a", "i-1", {NAMESPACES_TAG: "team-a"}, only_ssh)

    assert refusal is not None and "no rule for namespace team-a allows EC2 instances (rules[0] only list" in refusal


def test_an_instance_with_the_tags_a_rule_requires_is_allowed() -> None:
    tags = {NAMESPACES_TAG: "team-a", "env": "prod", "owner": "alice"}

    assert instance_refusal("team-a", "i-1", tags, policy()) is None
    assert instance_refusal("sandbox", "i-1", {NAMESPACES_TAG: "*"}, policy()) is None


def test_an_instance_lacking_required_tags_is_refused_naming_the_rule_and_the_tags() -> None:
    refusal = instance_refusal("team-a", "i-1", {NAMESPACES_TAG: "team-a", "env": "dev"}, policy())

    assert refusal is not None
    assert "rule 'prod' (rules[1]) requires env=prod (it has env=dev), owner=*" in refusal


def test_the_instance_tag_is_required_even_when_the_policy_allows_instances() -> None:
    refusal = instance_refusal("sandbox", "i-1", {"env": "prod"}, policy())

    assert refusal is not None and f"has no tag {NAMESPACES_TAG}" in refusal


@pytest.mark.parametrize(("text", "field"), [
    ("rules:\n- {namespaces: [a], sshHosts: [10.0.0.0/33]}\n", "rules[0].sshHosts[0]: '10.0.0.0/33': not a CIDR"),
    ("rules:\n- {namespaces: [a], sshHosts: [10.0.0.1/24]}\n", "rules[0].sshHosts[0]: '10.0.0.1/24': not a CIDR"),
    ("rules:\n- {namespaces: [a], sshHosts: [ok, 'host:ssh']}\n", "rules[0].sshHosts[1]: 'host:ssh': the port"),
    ("rules:\n- {namespaces: [a], sshHosts: ['a b']}\n", "rules[0].sshHosts[0]: 'a b': a host pattern"),
    ("rules:\n- {namespaces: [Team_A]}\n", "rules[0].namespaces[0]: 'Team_A': a namespace name"),
    ("rules:\n- {namespaces: []}\n", "rules[0].namespaces:"),
    ("rules:\n- {namespaces: [a], hosts: [x]}\n", "rules[0].hosts: Extra inputs are not permitted"),
    ("rules:\n- {namespaces: [a], instances: {requireTags: [env]}}\n", "rules[0].instances.requireTags:"),
    ("rule: []\n", "rules: Field required"),
    ("- a\n", "expected a mapping with a `rules:` list"),
    ("rules: [\n", "not valid YAML at line"),
])
def test_a_bad_policy_file_is_refused_naming_the_file_and_the_field(text: str, field: str) -> None:
    with pytest.raises(TargetPolicyError) as refused:
        policy(text)

    assert str(refused.value).startswith("target policy /etc/deploymind/policy.yaml: ")
    assert field in str(refused.value)


def test_an_unreadable_policy_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(TargetPolicyError) as refused:
        load_target_policy(tmp_path / "missing.yaml")

    assert f"target policy {tmp_path / 'missing.yaml'}: cannot read it" in str(refused.value)


def test_the_operator_reads_its_policy_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    monkeypatch.setenv("DEPLOYMIND_TARGET_POLICY", str(path))

    loaded = Settings().target_policy

    assert loaded is not None and loaded.source == str(path) and len(loaded.rules) == 3


def test_deploymind_run_with_a_bad_policy_file_exits_before_starting(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("rules:\n- {namespaces: [a], sshHosts: [10.0.0.0/33]}\n")

    code = cli.main(["run", "--target-policy", str(path), "--state-dir", str(tmp_path / "state")])

    assert code == 2
    assert capsys.readouterr().err.startswith(f"deploymind run: target policy {path}: rules[0].sshHosts[0]:")


def test_deploymind_sandbox_with_a_bad_policy_file_exits_before_starting(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("rules: {}\n")

    code = cli.main(["sandbox", "--target-policy", str(path), "--state-dir", str(tmp_path / "sandbox")])

    assert code == 2
    assert capsys.readouterr().err.startswith(f"deploymind sandbox: target policy {path}: rules:")
    assert not (tmp_path / "sandbox").exists()


def ssh_spec(host: str, port: int = 22) -> DeploymentSpec:
    return DeploymentSpec.model_validate({"image": "app:1", "container": {"port": 8080}, "target": {
        "transport": "ssh", "ssh": {"host": host, "port": port, "keySecretRef": {"name": "k", "key": "id"},
                                    "knownHostsSecretRef": {"name": "k", "key": "known_hosts"}}}})


async def test_a_refused_ssh_host_stalls_as_target_not_allowed() -> None:
    with pytest.raises(Stalled) as stalled:
        await resolve_host("team-a", ssh_spec("10.0.9.9"), Settings(target_policy=policy()))

    assert stalled.value.reason == reasons.TARGET_NOT_ALLOWED
    assert "no rule allows SSH host 10.0.9.9 port 22 for namespace team-a" in stalled.value.message


async def test_an_allowed_ssh_host_resolves_to_its_own_address() -> None:
    host = await resolve_host("team-a", ssh_spec("10.0.1.5"), Settings(target_policy=policy()))

    assert (host.address, host.instance_id) == ("10.0.1.5", None)


def test_the_operator_warns_at_startup_when_it_has_no_policy(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="deploymind.tenancy"):
        cli._log_target_policy(Settings(target_policy=None))

    assert "no target policy" in caplog.text and "any SSH host" in caplog.text
