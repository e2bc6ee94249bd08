"""Through the operator, an AWS role that lacks a permission the ssm path needs: the Deployment stalls with
AccessDenied naming the action and the object it was refused on, the way to fix it is in the message, and nothing
was sent to the instance or left in S3 and Parameter Store.

The moto server here enforces IAM (its own, since the session's does not) once the test has set its users up:
every request is then checked against the calling user's policy."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dm import Cluster, Operator, deployment

from deploymind.controller.tenancy import NAMESPACES_TAG
from world.apps import AppRepo
from world.dirs import private_dir
from world.moto_ssm import MotoServer, iam_user, new_bucket, run_instance
from world.moto_ssm import client as aws_client
from world.ports import free_port
from world.sshd import Sshd

pytestmark = pytest.mark.e2e

# What the operator's role needs for an ssm build and release (docs/iam.md), but s3:PutObject.
GRANTED = ["ec2:DescribeInstances", "ssm:DescribeInstanceInformation", "ssm:SendCommand", "ssm:GetCommandInvocation",
           "ssm:CancelCommand", "ssm:ListCommands", "ssm:PutParameter", "ssm:DeleteParameter",
           "ssm:GetParametersByPath", "ssm:DeleteParameters", "s3:DeleteObject", "s3:GetObject", "s3:ListBucket",
           "kms:Encrypt"]


@dataclass(frozen=True)
class Account:
    """The IAM-enforcing server, the operator's and an administrator's keys, and the build bucket."""

    server: MotoServer
    operator: dict[str, str]
    admin: dict[str, str]
    bucket: str


@pytest.fixture
def account(world_root: Path, sshd: Sshd, namespace: str) -> Iterator[Account]:
    server = MotoServer.start(private_dir(world_root, f"moto-iam-{namespace}"), sshd)
    try:
        operator = iam_user(server, "operator", GRANTED)
        admin = iam_user(server, "admin", ["*"])
        server.enforce_iam()
        yield Account(server, operator, admin, new_bucket(server, admin))
    finally:
        server.stop()


@pytest.fixture
def operator_env(account: Account) -> dict[str, str]:
    keys = account.operator
    return {**account.server.env, "AWS_ACCESS_KEY_ID": keys["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": keys["aws_secret_access_key"], "AWS_SESSION_TOKEN": "",
            "DEPLOYMIND_BUILD_BUCKET": account.bucket}


def test_a_role_without_s3_put_object_stalls_naming_it_and_sends_nothing(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, account: Account, namespace: str) -> None:
    instance_id = run_instance(account.server, {NAMESPACES_TAG: namespace}, account.admin)
    cluster.apply(deployment("web", app_repo, free_port(), target={"transport": "ssm", "instanceId": instance_id},
                             healthCheck={"periodSeconds": 30}))

    status = cluster.wait_status("web", lambda s: s.get("phase") == "Failed", 60, "stalled")
    conditions = {c["type"]: c for c in status["conditions"]}
    stalled, built = conditions["Stalled"], conditions["Built"]
    assert (stalled["status"], stalled["reason"]) == ("True", "AccessDenied"), stalled
    assert (built["status"], built["reason"]) == ("False", "AccessDenied"), built
    message = stalled["message"]
    assert f"the operator's role needs permission for s3:PutObject on arn:aws:s3:::{account.bucket}/" in message
    assert "not authorized" in message or "Access Denied" in message, message
    assert "revision" not in status, "nothing was released"
    # Nothing reached the instance, and nothing was left where a later reader could find it.
    ssm = aws_client("ssm", account.server, account.admin)
    assert ssm.list_commands(InstanceId=instance_id)["Commands"] == []
    assert aws_client("s3", account.server, account.admin).list_objects_v2(Bucket=account.bucket)["KeyCount"] == 0
    assert ssm.get_parameters_by_path(Path="/deploymind", Recursive=True)["Parameters"] == []
    events = [e for e in cluster.events() if e["reason"] == "AccessDenied"]
    assert events and "s3:PutObject" in events[0]["message"], events
