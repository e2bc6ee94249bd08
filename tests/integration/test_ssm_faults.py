"""The ssm transport and target lookup when AWS or the instance fails them, against the test world's moto server (its
SSM commands run over SSH on this machine): S3 or Parameter Store denied to the operator, a presigned URL that
expired before a slow agent fetched it, an instance that leaves SSM mid-command, an instance stopped mid-rollout.
Each ends with its reason, and nothing of the call is left: no object, no parameter, no command, no process, no
payload directory on the host."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from deploymind.api import reasons
from deploymind.api.spec import DeploymentSpec
from deploymind.controller.targets import resolve_host
from deploymind.controller.tenancy import NAMESPACES_TAG
from deploymind.settings import Settings
from deploymind.steps.errors import Waiting
from deploymind.transport.base import Payload, TransportError, TransportRefused
from deploymind.transport.ssm import SSMTransport
from world.moto_ssm import DUMMY_CREDENTIALS, MotoServer, new_bucket, operator_with, run_instance
from world.moto_ssm import client as boto
from world.procs import processes_with, wait_until

REGION = DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"]
NAMESPACE = "team-a"
KEY = "team-a/web/abc123-def456"


def parameter_exists(server: MotoServer, name: str) -> bool:
    found = boto("ssm", server).describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])
    return bool(found["Parameters"])


# --- the operator denied S3 or Parameter Store --------------------------------------------------------------

def operator_without(server: MotoServer, monkeypatch: pytest.MonkeyPatch, missing: str) -> dict[str, str]:
    """The operator's credentials in the environment, allowed all it needs but `missing`; an admin's returned."""
    needs = ["ec2:DescribeInstances", "ssm:DescribeInstanceInformation", "ssm:SendCommand",
             "ssm:GetCommandInvocation", "ssm:CancelCommand", "ssm:PutParameter", "ssm:DeleteParameter",
             "s3:PutObject", "s3:DeleteObject", "s3:GetObject", "kms:Encrypt"]
    return operator_with(server, monkeypatch, [action for action in needs if action != missing])


async def test_a_denied_s3_put_object_is_refused_naming_the_object_and_sends_no_command(
        iam_moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = operator_without(iam_moto, monkeypatch, "s3:PutObject")
    instance_id, bucket = run_instance(iam_moto, {}, admin), new_bucket(iam_moto, admin)
    iam_moto.reset_calls()
    ssm_transport = SSMTransport(instance_id, REGION, settings=Settings(build_bucket=bucket))
    payload = Payload("source-tarball", b"tar", key=KEY)

    with pytest.raises(TransportRefused) as refused:
        await ssm_transport.run("cat > /dev/null", payload=payload, timeout=30)

    assert refused.value.reason == reasons.AWS_ACCESS_DENIED and refused.value.needs_user
    assert (f"needs permission for s3:PutObject on arn:aws:s3:::{bucket}/{ssm_transport.object_key(payload)}"
            in refused.value.message)
    assert boto("s3", iam_moto, admin).list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert "ssm:SendCommand" not in iam_moto.calls()


async def test_a_denied_put_parameter_is_refused_naming_the_parameter_and_sends_no_command(
        iam_moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = operator_without(iam_moto, monkeypatch, "ssm:PutParameter")
    instance_id = run_instance(iam_moto, {}, admin)
    iam_moto.reset_calls()
    ssm_transport = SSMTransport(instance_id, REGION, settings=Settings())
    payload = Payload("env-file", b"DB_PASSWORD=hunter2\n", secret=True, key=KEY)
    name = ssm_transport.parameter_name(payload)

    with pytest.raises(TransportRefused) as refused:
        await ssm_transport.run("cat > /dev/null", payload=payload, timeout=30)

    assert refused.value.reason == reasons.AWS_ACCESS_DENIED and refused.value.needs_user
    assert f"needs permission for ssm:PutParameter on parameter {name}" in refused.value.message
    assert boto("ssm", iam_moto, admin).describe_parameters()["Parameters"] == []
    assert "ssm:SendCommand" not in iam_moto.calls()


async def test_a_denied_send_command_is_refused_naming_it_and_leaves_no_parameter(
        iam_moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = operator_without(iam_moto, monkeypatch, "ssm:SendCommand")
    instance_id = run_instance(iam_moto, {}, admin)
    ssm_transport = SSMTransport(instance_id, REGION, settings=Settings())
    payload = Payload("env-file", b"DB_PASSWORD=hunter2\n", secret=True, key=KEY)

    with pytest.raises(TransportRefused) as refused:
        await ssm_transport.run("cat > /dev/null", payload=payload, timeout=30)

    assert refused.value.reason == reasons.AWS_ACCESS_DENIED and refused.value.needs_user, refused.value.message
    assert "needs permission for ssm:SendCommand" in refused.value.message
    # AWS's own words, not the raw XML body botocore could not parse (moto answers this JSON API in XML).
    assert "AccessDenied: User: arn:aws:iam::" in refused.value.message and "<" not in refused.value.message
    assert boto("ssm", iam_moto, admin).describe_parameters()["Parameters"] == []
    assert boto("ssm", iam_moto, admin).list_commands(InstanceId=instance_id)["Commands"] == []


# --- a presigned URL that expired before the host fetched it ------------------------------------------------

async def test_a_presigned_url_expired_before_a_slow_agent_fetched_it_says_so_and_the_object_is_deleted(
        aws: MotoServer) -> None:
    instance_id, bucket = run_instance(aws, {}), new_bucket(aws)
    aws.delay_delivery(2.5)
    aws.reset_calls()
    ssm_transport = SSMTransport(instance_id, REGION, settings=Settings(build_bucket=bucket,
                                                                        ssm_presign_expiry_seconds=1))

    with pytest.raises(TransportError) as failed:
        await ssm_transport.run("echo the script ran", payload=Payload("source-tarball", b"tar", key=KEY), timeout=30)

    assert failed.value.reason == reasons.PAYLOAD_NOT_DELIVERED and not failed.value.needs_user
    assert "valid for 1 s after the command was sent, had expired" in failed.value.message
    assert "DEPLOYMIND_SSM_PRESIGN_EXPIRY_SECONDS" in failed.value.message
    assert boto("s3", aws).list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert (aws.calls("host")["s3:GetObject"], aws.calls()["s3:DeleteObject"]) == (1, 1)


# --- SSM that cannot deliver a command, or does not know it yet ------------------------------------------------

@pytest.mark.parametrize(("status", "details", "reason", "said"), [
    ("Failed", "Undeliverable", reasons.INSTANCE_NOT_MANAGED, "could not deliver the command"),
    ("TimedOut", "DeliveryTimedOut", reasons.TARGET_UNREACHABLE, "did not pick the command up in time"),
    ("Cancelled", "Terminated", reasons.COMMAND_CANCELLED, "something other than this operator cancelled it"),
], ids=["undeliverable", "delivery-timed-out", "terminated"])
async def test_a_command_ssm_could_not_run_has_a_clear_reason_and_its_payload_is_deleted(
        aws: MotoServer, status: str, details: str, reason: str, said: str) -> None:
    instance_id = run_instance(aws, {})
    ssm_transport = SSMTransport(instance_id, REGION, settings=Settings())
    payload = Payload("env-file", b"DB_PASSWORD=hunter2\n", secret=True, key=KEY)
    aws.fail_delivery(commands=1, status=status, details=details)

    with pytest.raises(TransportError) as failed:
        await ssm_transport.run("cat > /dev/null; echo ran", payload=payload, timeout=30)

    assert failed.value.reason == reason and not failed.value.needs_user, failed.value.message
    assert said in failed.value.message and details in failed.value.message, failed.value.message
    assert not parameter_exists(aws, ssm_transport.parameter_name(payload))
    # The next command is delivered: the fault was the agent's, not the transport's.
    assert (await ssm_transport.run("echo delivered", timeout=30)).stdout == b"delivered\n"


async def test_an_invocation_ssm_does_not_know_yet_right_after_sending_is_asked_again(aws: MotoServer) -> None:
    instance_id = run_instance(aws, {})
    aws.fail_delivery(not_yet=3)
    aws.reset_calls()

    result = await SSMTransport(instance_id, REGION, settings=Settings()).run("echo hello", timeout=30)

    assert (result.exit_code, result.stdout) == (0, b"hello\n")
    calls = aws.calls()
    assert calls["ssm:SendCommand"] == 1 and calls["ssm:GetCommandInvocation"] >= 4, calls
    assert "ssm:CancelCommand" not in calls


# --- an instance that leaves SSM mid-command ----------------------------------------------------------------

def connection_lost(server: MotoServer, instance_id: str) -> None:
    boto("ec2", server).create_tags(Resources=[instance_id], Tags=[{"Key": "SSMPingStatus",
                                                                    "Value": "ConnectionLost"}])


def stopped(server: MotoServer, instance_id: str) -> None:
    boto("ec2", server).stop_instances(InstanceIds=[instance_id])


# What the error says, and what to do next.
LEFT_SSM = ("left SSM while the script ran (ping status now ConnectionLost)", "SSM agent")


@pytest.mark.parametrize(("leave", "script_ends", "reason", "said"), [
    (connection_lost, False, reasons.INSTANCE_NOT_MANAGED, LEFT_SSM),
    (stopped, False, reasons.INSTANCE_NOT_RUNNING,
     ("is stopped: it stopped while the script ran", "the rollout goes on once the instance is running")),
    (connection_lost, True, reasons.INSTANCE_NOT_MANAGED, LEFT_SSM),
], ids=["agent-disconnects", "instance-stops", "script-ends-while-disconnected"])
async def test_an_instance_that_leaves_ssm_mid_command_ends_the_call_in_bound_and_leaves_nothing(
        aws: MotoServer, leave: Any, script_ends: bool, reason: str, said: tuple[str, ...]) -> None:
    instance_id = run_instance(aws, {})
    sleep = f"{300 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"
    # Where the script, run as the SSH login user of the test host, can write.
    record = Path(f"/tmp/dm-ssm-fault-{uuid.uuid4().hex}")
    # The wrapper runs the script from its payload directory: the script names it, for the test to look after.
    script = f"dirname \"$0\" > {record}.part && mv {record}.part {record}; sleep {'1.5' if script_ends else sleep}"
    ssm_transport = SSMTransport(instance_id, REGION, settings=Settings())
    payload = Payload("env-file", b"DB_PASSWORD=hunter2\n", secret=True, key=KEY)
    call = asyncio.create_task(ssm_transport.run(script, payload=payload, timeout=5))
    await asyncio.to_thread(wait_until, record.exists, 20, "the script runs")
    started = time.monotonic()
    leave(aws, instance_id)

    try:
        with pytest.raises(TransportError) as failed:
            await call
        payload_dir = Path((await asyncio.to_thread(record.read_text)).strip())
    finally:
        await asyncio.to_thread(record.unlink, missing_ok=True)

    assert time.monotonic() - started < 5 + 3
    assert failed.value.reason == reason and not failed.value.needs_user
    assert all(part in failed.value.message for part in said), failed.value.message
    await asyncio.to_thread(wait_until, lambda: not processes_with(sleep), 15, "the script is gone")
    assert not await asyncio.to_thread(payload_dir.exists)
    assert not parameter_exists(aws, ssm_transport.parameter_name(payload))
    client = boto("ssm", aws)
    (command,) = client.list_commands(InstanceId=instance_id)["Commands"]

    def status() -> str:
        found: str = client.get_command_invocation(CommandId=command["CommandId"], InstanceId=instance_id)["Status"]
        return found

    # Cancelling until the kill has been seen through on the host.
    await asyncio.to_thread(wait_until, lambda: status() == "Cancelled", 15, "the command is cancelled")
    assert aws.calls()["ssm:CancelCommand"] == 1


# --- an instance stopped mid-rollout ------------------------------------------------------------------------

def ssm_spec(instance_id: str) -> DeploymentSpec:
    return DeploymentSpec.model_validate({"image": "app:1", "container": {"port": 8080},
                                          "target": {"transport": "ssm", "instanceId": instance_id}})


async def test_an_instance_stopped_mid_rollout_waits_at_the_next_lookup_and_is_picked_up_once_it_starts(
        aws: MotoServer) -> None:
    instance_id = run_instance(aws, {NAMESPACES_TAG: NAMESPACE})
    settings = Settings(aws_region=REGION, target_policy=None)
    before = await resolve_host(NAMESPACE, ssm_spec(instance_id), settings)
    stopped(aws, instance_id)

    with pytest.raises(Waiting) as waiting:
        await resolve_host(NAMESPACE, ssm_spec(instance_id), settings)
    boto("ec2", aws).start_instances(InstanceIds=[instance_id])
    after = await resolve_host(NAMESPACE, ssm_spec(instance_id), settings)

    assert before.instance_id == after.instance_id == instance_id
    assert waiting.value.reason == reasons.INSTANCE_NOT_RUNNING and "stopped" in waiting.value.message
