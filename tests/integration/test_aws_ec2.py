"""Instance lookup and target resolution against the test world's moto server: EC2 state, addresses and tags, the
SSM ping status, the short cache, the reasons a target waits or stalls with, AccessDenied and throttling."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from deploymind.api import reasons
from deploymind.api.spec import DeploymentSpec
from deploymind.api.targetpolicy import parse_target_policy
from deploymind.aws import ec2, session, ssm_info
from deploymind.aws.errors import AwsError
from deploymind.controller.targets import Inputs, open_transport, resolve_host
from deploymind.controller.tenancy import NAMESPACES_TAG
from deploymind.settings import Settings
from deploymind.steps.errors import Stalled, Waiting
from deploymind.transport.ssm import SSMTransport
from world.moto_ssm import DUMMY_CREDENTIALS, MotoServer, operator_with, run_instance
from world.moto_ssm import client as boto

REGION = DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"]
NAMESPACE = "team-a"
UNKNOWN_INSTANCE = "i-0123456789abcdef0"










def stop(server: MotoServer, instance_id: str) -> None:
    boto("ec2", server).stop_instances(InstanceIds=[instance_id])


def ssm_spec(instance_id: str) -> DeploymentSpec:
    return DeploymentSpec.model_validate({"image": "app:1", "container": {"port": 8080},
                                          "target": {"transport": "ssm", "instanceId": instance_id}})


def ssh_spec(instance_id: str, address_type: str | None = None) -> DeploymentSpec:
    ssh: dict[str, Any] = {"user": "dm", "keySecretRef": {"name": "k", "key": "id"},
                           "knownHostsSecretRef": {"name": "k", "key": "known_hosts"}}
    if address_type:
        ssh["addressType"] = address_type
    return DeploymentSpec.model_validate({"image": "app:1", "container": {"port": 8080},
                                          "target": {"transport": "ssh", "instanceId": instance_id, "ssh": ssh}})


def settings(**kwargs: Any) -> Settings:
    return Settings(**{"aws_region": REGION, "target_policy": None, **kwargs})


def count_ssm_calls() -> list[str]:
    """The operations the operator's SSM client sends from now on."""
    calls: list[str] = []
    session.client("ssm", REGION).meta.events.register(
        "before-call.ssm", lambda model, **_: calls.append(model.name))
    return calls


async def test_a_running_instance_is_described_with_its_loopback_addresses_and_tags(aws: MotoServer) -> None:
    instance_id = run_instance(aws, {NAMESPACES_TAG: NAMESPACE, "team": "a"})

    info = await ec2.describe_instance(instance_id, REGION)

    assert (info.instance_id, info.region, info.state) == (instance_id, REGION, "running")
    assert (info.private_address, info.public_address) == ("127.0.0.2", "127.0.0.1")
    assert info.tags == {NAMESPACES_TAG: NAMESPACE, "team": "a"}


async def test_a_lookup_is_served_from_the_cache_until_it_expires_then_sees_the_stopped_instance(
        aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ec2, "CACHE_SECONDS", 1.0)
    instance_id = run_instance(aws, {NAMESPACES_TAG: NAMESPACE})
    assert (await ec2.describe_instance(instance_id, REGION)).state == "running"
    stop(aws, instance_id)

    cached = await ec2.describe_instance(instance_id, REGION)
    started = time.monotonic()
    while (await ec2.describe_instance(instance_id, REGION)).state == "running":
        assert time.monotonic() - started < 5, "the cached lookup never expired"
        await asyncio.sleep(0.1)

    assert cached.state == "running"
    assert (await ec2.describe_instance(instance_id, REGION)).state == "stopped"


async def test_an_unknown_or_terminated_instance_is_not_found(aws: MotoServer) -> None:
    terminated = run_instance(aws, {NAMESPACES_TAG: NAMESPACE})
    boto("ec2", aws).terminate_instances(InstanceIds=[terminated])

    for instance_id in (UNKNOWN_INSTANCE, terminated):
        with pytest.raises(AwsError) as failed:
            await ec2.describe_instance(instance_id, REGION)
        assert failed.value.reason == reasons.INSTANCE_NOT_FOUND
        assert instance_id in failed.value.message and REGION in failed.value.message


async def test_the_ssm_ping_status_is_online_connection_lost_or_absent(aws: MotoServer) -> None:
    online = run_instance(aws, {})
    stopped = run_instance(aws, {})
    stop(aws, stopped)
    unmanaged = run_instance(aws, {"SSMPingStatus": "None"})

    assert await ssm_info.ping_status(online, REGION) == "Online"
    assert await ssm_info.ping_status(stopped, REGION) == "ConnectionLost"
    assert await ssm_info.ping_status(unmanaged, REGION) is None


async def test_an_ssm_target_tagged_for_the_namespace_resolves_to_the_instance(aws: MotoServer) -> None:
    instance_id = run_instance(aws, {NAMESPACES_TAG: f"other, {NAMESPACE}"})

    host = await resolve_host(NAMESPACE, ssm_spec(instance_id), settings())

    assert (host.instance_id, host.region, host.address) == (instance_id, REGION, "127.0.0.2")


async def test_an_ssh_target_by_instance_id_dials_the_address_type_it_asks_for(aws: MotoServer) -> None:
    instance_id = run_instance(aws, {NAMESPACES_TAG: "*"})

    default = await resolve_host(NAMESPACE, ssh_spec(instance_id), settings())
    public = await resolve_host(NAMESPACE, ssh_spec(instance_id, "public"), settings())

    assert default.address == "127.0.0.2"
    assert public.address == "127.0.0.1"
    assert public.instance_id == instance_id


async def test_an_instance_not_tagged_for_the_namespace_is_refused_without_any_ssm_call(aws: MotoServer) -> None:
    instance_id = run_instance(aws, {NAMESPACES_TAG: "team-b"})
    calls = count_ssm_calls()

    with pytest.raises(Stalled) as refused:
        await resolve_host(NAMESPACE, ssm_spec(instance_id), settings())

    assert refused.value.reason == reasons.TARGET_NOT_ALLOWED
    assert f"{NAMESPACES_TAG}='team-b'" in refused.value.message and NAMESPACE in refused.value.message
    assert calls == []


async def test_a_refusal_is_never_served_from_the_cache_so_a_new_tag_counts_at_once(aws: MotoServer) -> None:
    instance_id = run_instance(aws, {NAMESPACES_TAG: "team-b"})
    with pytest.raises(Stalled) as refused:
        await resolve_host(NAMESPACE, ssm_spec(instance_id), settings())
    boto("ec2", aws).create_tags(Resources=[instance_id], Tags=[{"Key": NAMESPACES_TAG, "Value": NAMESPACE}])

    host = await resolve_host(NAMESPACE, ssm_spec(instance_id), settings())

    assert refused.value.reason == reasons.TARGET_NOT_ALLOWED
    assert host.instance_id == instance_id


async def test_an_instance_the_policy_requires_more_tags_of_is_refused_naming_the_rule(aws: MotoServer) -> None:
    policy = parse_target_policy(
        "rules:\n- {name: prod, namespaces: [team-*], instances: {requireTags: {env: prod}}}\n", "policy.yaml")
    instance_id = run_instance(aws, {NAMESPACES_TAG: NAMESPACE, "env": "dev"})

    with pytest.raises(Stalled) as refused:
        await resolve_host(NAMESPACE, ssm_spec(instance_id), settings(target_policy=policy))

    assert refused.value.reason == reasons.TARGET_NOT_ALLOWED
    assert "rule 'prod' (rules[0]) requires env=prod (it has env=dev)" in refused.value.message


async def test_a_stopped_instance_waits_and_is_picked_up_once_it_runs(aws: MotoServer) -> None:
    instance_id = run_instance(aws, {NAMESPACES_TAG: NAMESPACE})
    stop(aws, instance_id)

    with pytest.raises(Waiting) as waiting:
        await resolve_host(NAMESPACE, ssm_spec(instance_id), settings())
    boto("ec2", aws).start_instances(InstanceIds=[instance_id])
    host = await resolve_host(NAMESPACE, ssm_spec(instance_id), settings())

    assert waiting.value.reason == reasons.INSTANCE_NOT_RUNNING
    assert "stopped" in waiting.value.message
    assert host.instance_id == instance_id


@pytest.mark.parametrize("ping", ["ConnectionLost", "None"])
async def test_an_instance_ssm_does_not_manage_waits_saying_what_to_check(aws: MotoServer, ping: str) -> None:
    instance_id = run_instance(aws, {NAMESPACES_TAG: NAMESPACE, "SSMPingStatus": ping})

    with pytest.raises(Waiting) as waiting:
        await resolve_host(NAMESPACE, ssm_spec(instance_id), settings())

    assert waiting.value.reason == reasons.INSTANCE_NOT_MANAGED
    assert "SSM agent" in waiting.value.message and "instance profile" in waiting.value.message
    assert ("ConnectionLost" if ping == "ConnectionLost" else "not registered") in waiting.value.message


async def test_an_unknown_instance_stalls_with_instance_not_found(aws: MotoServer) -> None:
    with pytest.raises(Stalled) as stalled:
        await resolve_host(NAMESPACE, ssh_spec(UNKNOWN_INSTANCE), settings())

    assert stalled.value.reason == reasons.INSTANCE_NOT_FOUND


async def test_an_allowed_ssm_target_opens_an_ssm_transport_to_the_instance(aws: MotoServer) -> None:
    instance_id = run_instance(aws, {NAMESPACES_TAG: NAMESPACE})
    spec = ssm_spec(instance_id)
    host = await resolve_host(NAMESPACE, spec, settings())

    transport = open_transport(spec, Inputs(env={}, token=None, ssh_key=None, known_hosts=None, host=host), settings())

    assert isinstance(transport, SSMTransport)
    assert (transport.instance_id, transport.region) == (instance_id, REGION)


async def test_throttled_ssm_calls_are_retried_and_counted(aws: MotoServer) -> None:
    instance_id = run_instance(aws, {})
    key = ("ssm", "DescribeInstanceInformation")
    before = session.throttled_calls().get(key, 0)
    aws.throttle(2, ["DescribeInstanceInformation"])

    assert await ssm_info.ping_status(instance_id, REGION) == "Online"
    assert session.throttled_calls().get(key, 0) - before == 2


def operator_allowed(server: MotoServer, monkeypatch: pytest.MonkeyPatch, actions: list[str]) -> str:
    """Credentials of an IAM user allowed only `actions`, in the environment; an instance tagged for NAMESPACE."""
    admin = operator_with(server, monkeypatch, actions)
    return run_instance(server, {NAMESPACES_TAG: NAMESPACE}, admin)


async def test_a_missing_describe_instances_permission_stalls_naming_it(
        iam_moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    instance_id = operator_allowed(iam_moto, monkeypatch, ["ssm:DescribeInstanceInformation"])

    with pytest.raises(Stalled) as stalled:
        await resolve_host(NAMESPACE, ssm_spec(instance_id), settings())

    assert stalled.value.reason == reasons.AWS_ACCESS_DENIED
    assert "needs permission for ec2:DescribeInstances" in stalled.value.message


async def test_a_missing_describe_instance_information_permission_stalls_naming_it(
        iam_moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    instance_id = operator_allowed(iam_moto, monkeypatch, ["ec2:DescribeInstances"])

    with pytest.raises(Stalled) as stalled:
        await resolve_host(NAMESPACE, ssm_spec(instance_id), settings())

    assert stalled.value.reason == reasons.AWS_ACCESS_DENIED
    assert "needs permission for ssm:DescribeInstanceInformation" in stalled.value.message
