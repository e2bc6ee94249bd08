"""One end-to-end scenario over several transports: `@over(...)` parametrizes a test's `transport`, and the `target`
and `operator_env` fixtures give it what that transport needs.

- ssh: the test world's sshd, its key and pinned host key in Secrets (as a user would keep them).
- ssm: an instance on the test world's moto server, tagged for the test's namespace, whose SSM commands run over
  SSH on that same sshd (so on the same Docker engine); the operator gets the moto endpoint, dummy credentials and
  a build bucket created on moto for the test.
- local (a test that is not parametrized): the operator's own Docker engine, nothing to set up.

A module opts in by importing the fixtures (by their function names; pytest sees them by their fixture names):
`from targets import Target, over, operator_env_fixture, target_fixture, transport_env_fixture, transport_fixture`;
a module with its own `operator_env` builds it on `transport_env` instead of importing `operator_env_fixture`.
`ssm_leftovers` says what a scenario left in AWS that it must not (nothing to look at for the other transports).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from dm import Cluster

from deploymind.settings import Settings
from world.moto_ssm import MotoServer, command_history, objects_under, parameters_under, run_instance
from world.moto_ssm import client as aws_client
from world.sshd import Sshd

NAMESPACES_TAG = "deploymind.io/namespaces"
# The CRD's minimum through SSM (api/spec.py SSM_MIN_PERIOD_SECONDS): each probe is a paid API call.
SSM_PERIOD_S = 30


def over(*transports: str) -> pytest.MarkDecorator:
    """Run the test once per transport (its `transport` fixture)."""
    return pytest.mark.parametrize("transport", transports, indirect=True)


@dataclass(frozen=True)
class Target:
    """A transport's spec.target and what a scenario must adapt to it."""

    transport: str
    spec: dict[str, Any]
    period_s: int
    """The shortest health-probe period the transport allows a test (1 s; 30 s through SSM)."""
    instance_id: str | None = None
    moto: MotoServer | None = None
    """ssm: the moto server the instance is on."""
    bucket: str | None = None
    """ssm: the operator's build bucket."""

    @property
    def ssm(self) -> bool:
        return self.transport == "ssm"


def ssm_leftovers(target: Target, namespace: str, secrets: Iterable[str] = ()) -> list[str]:
    """Through SSM, what the namespace's rollouts left where each call must leave nothing: parameters under its
    Parameter Store prefix, objects under its build prefix, and any of `secrets` in SSM's command history (the
    command texts and every invocation's output). Nothing for the other transports."""
    if not target.ssm:
        return []
    assert target.moto is not None and target.bucket is not None and target.instance_id is not None
    left = [f"parameter {name}" for name in parameters_under(target.moto, f"{Settings.parameter_prefix}/{namespace}")]
    left += [f"s3://{target.bucket}/{key}"
             for key in objects_under(target.moto, target.bucket, f"{Settings.build_prefix}{namespace}/")]
    history = command_history(target.moto, target.instance_id)
    assert history, f"no SSM command was sent to {target.instance_id}"
    text = json.dumps(history, default=str)
    left += [f"a secret value ({secret[:6]}…) in SSM's command history" for secret in secrets if secret in text]
    return left


def ssh_target(cluster: Cluster, sshd: Sshd) -> dict[str, Any]:
    """Key and pinned host key into Secrets (as a user would), and the spec.target that uses them."""
    cluster.run("create", "secret", "generic", "host-key", f"--from-file=key={sshd.key_path}")
    cluster.run("create", "secret", "generic", "host-known", f"--from-file=known_hosts={sshd.known_hosts_path}")
    return {"transport": "ssh", "ssh": {
        "host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
        "keySecretRef": {"name": "host-key", "key": "key"},
        "knownHostsSecretRef": {"name": "host-known", "key": "known_hosts"}}}


def ssm_instance(server: MotoServer, namespace: str) -> str:
    """A running instance, Online in SSM, whose tag lets `namespace` deploy to it."""
    return run_instance(server, {NAMESPACES_TAG: namespace})


@pytest.fixture(name="transport")
def transport_fixture(request: pytest.FixtureRequest) -> str:
    """The transport under test: a parameter from `over(...)`, else local."""
    return str(getattr(request, "param", "local"))


@pytest.fixture(name="transport_env")
def transport_env_fixture(transport: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """What the operator process needs for the transport: for ssm, the moto endpoint and a fresh build bucket."""
    if transport != "ssm":
        return {}
    server: MotoServer = request.getfixturevalue("moto_server")
    bucket = f"dm-builds-{uuid.uuid4().hex[:12]}"
    aws_client("s3", server).create_bucket(Bucket=bucket)
    return {**server.env, "DEPLOYMIND_BUILD_BUCKET": bucket}


@pytest.fixture(name="operator_env")
def operator_env_fixture(transport_env: dict[str, str]) -> dict[str, str]:
    return transport_env


@pytest.fixture(name="target")
def target_fixture(transport: str, cluster: Cluster, namespace: str, transport_env: dict[str, str],
                   request: pytest.FixtureRequest) -> Target:
    if transport == "ssh":
        return Target("ssh", ssh_target(cluster, request.getfixturevalue("sshd")), period_s=1)
    if transport == "ssm":
        server: MotoServer = request.getfixturevalue("moto_server")
        instance_id = ssm_instance(server, namespace)
        return Target("ssm", {"transport": "ssm", "instanceId": instance_id}, period_s=SSM_PERIOD_S,
                      instance_id=instance_id, moto=server, bucket=transport_env["DEPLOYMIND_BUILD_BUCKET"])
    return Target("local", {"transport": "local"}, period_s=1)
