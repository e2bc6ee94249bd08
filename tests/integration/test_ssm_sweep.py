"""The payload sweep of one Deployment object (transport.ssm_payloads) against the test world's moto server: what
calls killed with the operator left in S3 and Parameter Store is gone afterwards (and nothing of another object, even
one of the same name), a payload a call in flight holds is kept until that call removes it, a payload whose removal
AWS refused is swept later, and a refused sweep names the permission it lacks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from deploymind.api import reasons
from deploymind.aws import parameters, s3, session
from deploymind.aws.errors import AwsError
from deploymind.settings import Settings
from deploymind.transport import ssm_payloads
from deploymind.transport.base import Payload, TransportError, owner_key
from deploymind.transport.ssm import SSMTransport
from world.moto_ssm import (
    DUMMY_CREDENTIALS,
    MotoServer,
    new_bucket,
    objects_under,
    operator_with,
    parameters_under,
    run_instance,
)
from world.moto_ssm import client as boto
from world.procs import wait_until

REGION = DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"]


# The Deployment object under test (its `owner_key`: namespace, name and uid).
WEB = owner_key("team-a", "web", "5f0c7e1a-0000-4000-8000-00000000aaaa")


def tarball(owner: str, revision: str) -> Payload:
    return Payload("source-tarball", f"tar of {revision}".encode(), key=f"{owner}/{revision}")


def env_file(owner: str, revision: str) -> Payload:
    return Payload("env-file", b"DB_PASSWORD=hunter2\n", secret=True, key=f"{owner}/{revision}")


async def left_by_a_killed_call(settings: Settings, payload: Payload) -> None:
    """Store `payload` as the transport does before it sends the command, and never remove it: the operator died."""
    if payload.secret:
        await parameters.put_secure_string(ssm_payloads.parameter_name(settings, payload), "value+digest",
                                           kms_key_id=None, region=REGION)
    else:
        assert settings.build_bucket
        await s3.put_object(settings.build_bucket, ssm_payloads.object_key(settings, payload), payload.data, REGION)


def leftovers(server: MotoServer, settings: Settings, owner: str) -> list[str]:
    assert settings.build_bucket
    return [*parameters_under(server, ssm_payloads.parameter_path(settings, owner)),
            *objects_under(server, settings.build_bucket, ssm_payloads.object_prefix(settings, owner))]


async def test_what_killed_calls_left_is_gone_after_the_sweep_and_nothing_of_another_deployment(
        aws: MotoServer) -> None:
    settings = Settings(build_bucket=new_bucket(aws))
    for revision in ("aaa-1", "bbb-2"):
        await left_by_a_killed_call(settings, tarball(WEB, revision))
        await left_by_a_killed_call(settings, env_file(WEB, revision))
    # A Deployment whose name starts the same; one of the same name in another namespace; and one of the same
    # namespace and name with another uid (another cluster sharing the bucket, or the object created again).
    web2, team_b = owner_key("team-a", "web2", "uid-2"), owner_key("team-b", "web", "uid-3")
    other_cluster = owner_key("team-a", "web", "5f0c7e1a-0000-4000-8000-00000000bbbb")
    await left_by_a_killed_call(settings, env_file(web2, "ccc-3"))
    await left_by_a_killed_call(settings, tarball(web2, "ccc-3"))
    await left_by_a_killed_call(settings, env_file(team_b, "ddd-4"))
    await left_by_a_killed_call(settings, env_file(other_cluster, "aaa-1"))
    await left_by_a_killed_call(settings, tarball(other_cluster, "aaa-1"))
    aws.reset_calls()

    swept = await ssm_payloads.sweep(WEB, REGION, settings)

    assert swept == ssm_payloads.Swept(objects=2, parameters=2, kept=0)
    assert leftovers(aws, settings, WEB) == []
    assert len(leftovers(aws, settings, web2)) == 2
    assert len(leftovers(aws, settings, team_b)) == 1
    assert len(leftovers(aws, settings, other_cluster)) == 2
    # One list and one delete in each store.
    assert aws.calls() == {"ssm:GetParametersByPath": 1, "ssm:DeleteParameters": 1, "s3:ListObjects": 1,
                           "s3:DeleteObjects": 1}


async def test_a_sweep_with_nothing_left_costs_two_list_calls_and_none_without_a_build_bucket_but_one(
        aws: MotoServer) -> None:
    with_bucket = Settings(build_bucket=new_bucket(aws))
    aws.reset_calls()
    assert await ssm_payloads.sweep(WEB, REGION, with_bucket) == ssm_payloads.Swept(0, 0, 0)
    assert aws.calls() == {"ssm:GetParametersByPath": 1, "s3:ListObjects": 1}

    aws.reset_calls()
    await ssm_payloads.sweep(WEB, REGION, Settings())
    assert aws.calls() == {"ssm:GetParametersByPath": 1}


@pytest.mark.parametrize("kind", [tarball, env_file], ids=["tarball", "env-file"])
async def test_the_payload_of_a_call_in_flight_is_kept_and_its_call_still_removes_it(
        aws: MotoServer, kind: Callable[[str, str], Payload]) -> None:
    settings = Settings(build_bucket=new_bucket(aws))
    await left_by_a_killed_call(settings, kind(WEB, "old-1"))
    instance_id = run_instance(aws)
    # Where the script, run as the SSH login user of the test host, can write; it holds the call until released.
    gate = Path(f"/tmp/dm-sweep-{uuid.uuid4().hex}")
    script = f"cat > /dev/null; touch {gate}.started; while [ ! -e {gate} ]; do sleep 0.1; done"
    call = asyncio.create_task(SSMTransport(instance_id, REGION, settings=settings).run(
        script, payload=kind(WEB, "new-2"), timeout=60))
    try:
        await asyncio.to_thread(wait_until, Path(f"{gate}.started").exists, 30, "the script runs")
        assert len(leftovers(aws, settings, WEB)) == 2

        swept = await ssm_payloads.sweep(WEB, REGION, settings)

        [kept] = leftovers(aws, settings, WEB)
        assert "new-2" in kept and swept.kept == 1 and swept.objects + swept.parameters == 1
        await asyncio.to_thread(gate.touch)
        assert (await call).ok
    finally:
        call.cancel()
        for path in (gate, Path(f"{gate}.started")):
            await asyncio.to_thread(path.unlink, missing_ok=True)
    assert leftovers(aws, settings, WEB) == []


# --- the operator denied what the sweep (or a call's removal) needs --------------------------------------------

SWEEP_NEEDS = ["ssm:GetParametersByPath", "ssm:DeleteParameters", "s3:ListBucket", "s3:DeleteObject",
               "ssm:PutParameter", "ssm:DeleteParameter", "s3:PutObject", "s3:GetObject", "kms:Encrypt",
               "ssm:SendCommand", "ssm:GetCommandInvocation", "ssm:DescribeInstanceInformation"]


def operator_without(server: MotoServer, monkeypatch: pytest.MonkeyPatch, *missing: str) -> dict[str, str]:
    """The operator's credentials in the environment, allowed all a call and a sweep need but `missing`; an
    admin's returned."""
    return operator_with(server, monkeypatch, [action for action in SWEEP_NEEDS if action not in missing])


async def admin_leaves(server: MotoServer, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                       settings: Settings, *payloads: Payload) -> None:
    """Leftovers stored with the admin's keys (the operator of the test may lack PutObject), then the operator's
    keys back."""
    with monkeypatch.context() as as_admin:
        as_admin.setenv("AWS_ACCESS_KEY_ID", admin["aws_access_key_id"])
        as_admin.setenv("AWS_SECRET_ACCESS_KEY", admin["aws_secret_access_key"])
        session.forget_clients()
        for payload in payloads:
            await left_by_a_killed_call(settings, payload)
    session.forget_clients()


@pytest.mark.parametrize(("missing", "on"), [
    ("ssm:GetParametersByPath", f"on parameter /deploymind/{WEB}"),
    ("ssm:DeleteParameters", f"on parameter /deploymind/{WEB}/old-1/env-file"),
    ("s3:ListBucket", "on arn:aws:s3:::{bucket}"),
    ("s3:DeleteObject", f"on arn:aws:s3:::{{bucket}}/deploymind/{WEB}/old-1/source-tarball-"),
])
async def test_a_refused_sweep_says_access_denied_naming_the_permission_it_lacks(
        iam_moto: MotoServer, monkeypatch: pytest.MonkeyPatch, missing: str, on: str) -> None:
    admin = operator_without(iam_moto, monkeypatch, missing)
    settings = Settings(build_bucket=new_bucket(iam_moto, admin))
    await admin_leaves(iam_moto, admin, monkeypatch, settings, tarball(WEB, "old-1"),
                       env_file(WEB, "old-1"))

    with pytest.raises(AwsError) as refused:
        await ssm_payloads.sweep(WEB, REGION, settings)

    assert refused.value.reason == reasons.AWS_ACCESS_DENIED
    # AWS's own word is a refusal (not, say, a signature it could not check).
    said = refused.value.message
    assert "Access Denied" in said or f"not authorized to perform: {missing}" in said, said
    assert f"the operator's role needs permission for {missing} {on.format(bucket=settings.build_bucket)}" \
        in refused.value.message, refused.value.message


async def test_a_payload_whose_removal_was_refused_makes_the_sweep_due_and_the_sweep_removes_it(
        iam_moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The call stores its env file, is refused its command, and is refused the removal of its env file.
    admin = operator_without(iam_moto, monkeypatch, "ssm:SendCommand", "ssm:DeleteParameter")
    settings = Settings()
    instance_id = run_instance(iam_moto, {}, admin)
    owner = owner_key("team-a", f"web-{uuid.uuid4().hex[:6]}", str(uuid.uuid4()))
    assert not ssm_payloads.left_behind(owner)

    with pytest.raises(TransportError):
        await SSMTransport(instance_id, REGION, settings=settings).run(
            "cat > /dev/null", payload=env_file(owner, "rev-1"), timeout=30)

    assert ssm_payloads.left_behind(owner)
    assert await ssm_payloads.sweep(owner, REGION, settings) == ssm_payloads.Swept(0, 1, 0)
    assert not ssm_payloads.left_behind(owner)
    assert boto("ssm", iam_moto, admin).describe_parameters()["Parameters"] == []
