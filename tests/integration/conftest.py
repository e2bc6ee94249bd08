"""Fixtures of the AWS integration tests: the operator's own boto3 clients aimed at a moto server of the test world."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploymind.aws import ec2, session
from world.dirs import private_dir
from world.moto_ssm import MotoServer, point_operator_at
from world.sshd import Sshd


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """The operator's clients aimed at the shared moto server, counting its requests from zero; whatever a test
    injected (throttling, a slow agent, a delivery fault) is undone afterwards."""
    point_operator_at(monkeypatch, moto_server.env)
    moto_server.reset_calls()
    yield moto_server
    moto_server.throttle(0)
    moto_server.delay_delivery(0)
    moto_server.fail_delivery()
    session.forget_clients()
    ec2.forget()


@pytest.fixture
def iam_moto(world_root: Path, sshd: Sshd) -> Iterator[MotoServer]:
    """A moto server of the test's own, for a test that makes it enforce IAM (`world.moto_ssm.operator_with`)."""
    server = MotoServer.start(private_dir(world_root, f"moto-iam-{uuid.uuid4().hex[:8]}"), sshd)
    yield server
    server.stop()
    session.forget_clients()
    ec2.forget()
