"""Start and stop the moto server of the test world (moto_ssm_server.py) and drive its test-only endpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from deploymind.aws import ec2, session
from world.ports import free_port, port_open
from world.procs import WorldError, log_tail, start, stop_pid, wait_until
from world.sshd import Sshd

SERVER_SCRIPT = Path(__file__).with_name("moto_ssm_server.py")
START_TIMEOUT_S = 30.0
# Dummy credentials: moto accepts anything, and nothing may ever reach a real AWS account.
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class MotoServer:
    """A running moto server on 127.0.0.1 whose SSM shell commands run on the sshd test host."""

    dir: Path
    port: int
    pid: int
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for an AWS SDK client aimed at this server (endpoint and dummy credentials)."""
        return {**DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL": self.url}

    @classmethod
    def start(cls, directory: Path, sshd: Sshd, port: int | None = None, throttle: int = 0) -> MotoServer:
        directory.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        env = {
            **os.environ,
            **DUMMY_CREDENTIALS,
            "DM_SSH_HOST": sshd.host,
            "DM_SSH_PORT": str(sshd.port),
            "DM_SSH_USER": sshd.user,
            "DM_SSH_KEY": str(sshd.key_path),
            "DM_SSH_KNOWN_HOSTS": str(sshd.known_hosts_path),
            "DM_THROTTLE_SSM_CALLS": str(throttle),
        }
        log = directory / "moto.log"
        process = start([sys.executable, str(SERVER_SCRIPT), "-H", "127.0.0.1", "-p", str(port)], log, env=env)
        server = cls(dir=directory, port=port, pid=process.pid, _process=process)
        try:
            wait_until(lambda: process.poll() is not None or port_open(port), START_TIMEOUT_S, f"moto on {port}")
            if process.poll() is not None:
                raise WorldError("MotoExited", f"moto server exited with {process.returncode}:\n{log_tail(log)}")
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        stop_pid(self.pid, process=self._process)

    def throttle(self, count: int, operations: Sequence[str] = ()) -> None:
        """Make the next `count` SSM calls (only `operations`, when given) answer ThrottlingException."""
        self._request("/moto-api/deploymind/throttle", {"count": count, "operations": list(operations)})

    def delay_delivery(self, seconds: float) -> None:
        """Keep every command sent from now on Pending for `seconds` before its script starts (a slow SSM agent)."""
        self._request("/moto-api/deploymind/delivery-delay", {"seconds": seconds})

    def fail_delivery(self, commands: int = 0, status: str = "", details: str = "", not_yet: int = 0) -> None:
        """End the next `commands` commands sent at once as `status`/`details`, never run (an agent that cannot
        take them); answer the next `not_yet` GetCommandInvocation calls with InvocationDoesNotExist."""
        self._request("/moto-api/deploymind/delivery-fault",
                      {"commands": commands, "status": status, "details": details, "not_yet": not_yet})

    def calls(self, caller: str = "operator") -> dict[str, int]:
        """AWS requests so far by `service:Operation` (retries included): `operator` (botocore clients with
        "deploymind" in their user agent) or `host` (everything else: the test host's AWS CLI and curl, tests)."""
        counts: dict[str, dict[str, int]] = self._request("/moto-api/deploymind/calls", None)
        return counts[caller]

    def reset_calls(self) -> None:
        """Start counting requests from zero."""
        self._request("/moto-api/deploymind/calls", {})

    def enforce_iam(self) -> None:
        """From now on check every AWS request against the calling IAM user's policies (moto's own switch): set
        users up (`iam_user`) before, with any keys, and use their keys after."""
        self._request("/moto-api/reset-auth", 0)

    def reset(self) -> None:
        """Forget every AWS resource (moto's own reset), any pending throttling, delivery delay or fault."""
        self._request("/moto-api/reset", {})
        self.throttle(0)
        self.delay_delivery(0)
        self.fail_delivery()

    def _request(self, path: str, body: dict[str, object] | int | None) -> Any:
        """POST `body` as JSON (None: a GET) to a test-only endpoint; return its JSON answer."""
        request = urllib.request.Request(
            self.url + path, data=None if body is None else json.dumps(body).encode(),
            method="GET" if body is None else "POST", headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")


AMI = "ami-12c6146b"


def client(service: str, server: MotoServer, credentials: dict[str, str] | None = None) -> Any:
    """A boto3 client of the test itself aimed at `server` (dummy keys unless `credentials`): never the operator's."""
    keys = credentials or {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return boto3.client(service, endpoint_url=server.url, region_name=DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"], **keys)


def run_instance(server: MotoServer, tags: dict[str, str] | None = None,
                 credentials: dict[str, str] | None = None) -> str:
    """A running EC2 instance (Online in SSM unless a tag says otherwise) with `tags`; its id."""
    tag_spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()]}]
    reservation = client("ec2", server, credentials).run_instances(ImageId=AMI, MinCount=1, MaxCount=1,
                                                                   TagSpecifications=tag_spec if tags else [])
    instance_id: str = reservation["Instances"][0]["InstanceId"]
    return instance_id


def new_bucket(server: MotoServer, credentials: dict[str, str] | None = None) -> str:
    name = f"dm-builds-{uuid.uuid4().hex[:12]}"
    client("s3", server, credentials).create_bucket(Bucket=name)
    return name


def iam_user(server: MotoServer, name: str, actions: list[str]) -> dict[str, str]:
    """An IAM user allowed only `actions` (on every resource); its access keys as boto3 client arguments."""
    iam = client("iam", server)
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="only", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


def operator_with(server: MotoServer, monkeypatch: pytest.MonkeyPatch, allowed: list[str]) -> dict[str, str]:
    """`server` enforces IAM from now on, and the operator's clients (in this process) call it as a user allowed
    only `allowed`; an administrator's keys (allowed everything) are returned."""
    operator = iam_user(server, "operator", allowed)
    admin = iam_user(server, "admin", ["*"])
    server.enforce_iam()
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    point_operator_at(monkeypatch, {"AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": operator["aws_access_key_id"],
                                    "AWS_SECRET_ACCESS_KEY": operator["aws_secret_access_key"]})
    return admin


def point_operator_at(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Aim the operator's boto3 clients (in this process) at a moto server, and drop clients and instance lookups
    made for another. `monkeypatch` is pytest's: the environment comes back after the test."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    session.forget_clients()
    ec2.forget()


def parameters_under(server: MotoServer, path: str) -> list[str]:
    """The names of the Parameter Store parameters under `path`, at any depth."""
    pages = client("ssm", server).get_paginator("get_parameters_by_path").paginate(Path=path, Recursive=True)
    return [str(p["Name"]) for page in pages for p in page["Parameters"]]


def objects_under(server: MotoServer, bucket: str, prefix: str) -> list[str]:
    """The keys of the S3 objects in `bucket` under `prefix`."""
    pages = client("s3", server).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [str(o["Key"]) for page in pages for o in page.get("Contents", [])]


def command_history(server: MotoServer, instance_id: str) -> list[dict[str, Any]]:
    """What SSM keeps of every command sent to the instance, as anyone with ssm:ListCommands and
    ssm:GetCommandInvocation reads it: each `list_commands` entry (the command text is among its Parameters) with
    its `get_command_invocation` answer (the script's output) under "Invocation"."""
    ssm = client("ssm", server)
    commands = [c for page in ssm.get_paginator("list_commands").paginate(InstanceId=instance_id)
                for c in page["Commands"]]
    return [{**c, "Invocation": ssm.get_command_invocation(CommandId=c["CommandId"], InstanceId=instance_id)}
            for c in commands]
