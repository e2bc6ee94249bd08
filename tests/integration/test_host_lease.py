"""The per-host Lease against the emulator: it names the operator process and keeps two Deployments apart, its
renewals ride out the API server's errors and timeouts, and nothing about it replaces the outcome of the block
that held it."""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
import uuid

import kubernetes.client as k8s
import pytest
from kmock._internal.rendering import Request, Response

from deploymind.api import reasons
from deploymind.controller.hostlease import UID_ANNOTATION, HostLeases, lease_name
from deploymind.controller.kube import Kube, load_api_client
from deploymind.steps.errors import Waiting
from world.kube import Kube as WorldKube
from world.procs import wait_until_async

NAMESPACE = "default"
DURATION_S = 3  # renewals every second, each request given one second


class BlockError(Exception):
    """What the block inside the hold raises: it must come out as it is."""


class RenewalFaults:
    """An API server reaction: the Lease's next PUTs (its renewals) first hang past the client's request timeout,
    then answer 500; every later request goes on to the emulator."""

    def __init__(self, kube: WorldKube, name: str, hangs: int, errors: int) -> None:
        self.hangs, self.errors = hangs, errors
        self.ended_at: float | None = None
        path = f"put /apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{name}"
        kube.api.call(lambda emulator: emulator[path] << self._react)

    async def _react(self, request: Request) -> Response | object:
        if self.hangs:
            self.hangs -= 1
            await asyncio.sleep(DURATION_S / 3 + 1)
        elif self.errors:
            self.errors -= 1
        else:
            return NotImplemented  # on to the emulator
        if not self.hangs and not self.errors:
            self.ended_at = time.time()
        return Response(status=500, payload={"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                             "reason": "InternalError", "code": 500})



@pytest.fixture
def client(kube: WorldKube) -> Kube:
    return Kube(load_api_client(str(kube.kubeconfig)))


@pytest.fixture
def host() -> str:
    return f"ssh:lease-test-{uuid.uuid4().hex[:8]}:22"


async def lease(client: Kube, host: str) -> k8s.V1Lease:
    return await client.get_lease(NAMESPACE, lease_name(host))


async def test_the_lease_names_the_operator_process_and_keeps_two_deployments_apart(client: Kube, host: str) -> None:
    operator = HostLeases(client, NAMESPACE, "operator-1", DURATION_S, wait=1.0)
    async with operator.hold(host, "uid-a"):
        held = await lease(client, host)
        assert held.spec.holder_identity == "operator-1"
        assert held.metadata.annotations[UID_ANNOTATION] == "uid-a"
        with pytest.raises(Waiting) as busy:
            async with operator.hold(host, "uid-b"):
                pytest.fail("two Deployments of one operator held the host's Lease at once")
        assert busy.value.reason == reasons.HOST_BUSY and "uid-a" in busy.value.message
        # A restarted operator (another identity) resumes the same Deployment's rollout at once.
        restarted = HostLeases(client, NAMESPACE, "operator-2", DURATION_S, wait=0.0)
        async with restarted.hold(host, "uid-a"):
            assert (await lease(client, host)).spec.holder_identity == "operator-2"
    assert not (await lease(client, host)).spec.holder_identity


async def test_renewals_ride_out_server_errors_and_timeouts_and_never_replace_the_blocks_exception(
        client: Kube, kube: WorldKube, host: str) -> None:
    leases = HostLeases(client, NAMESPACE, "operator-1", DURATION_S, wait=1.0)
    with pytest.raises(BlockError, match="the release's own outcome"):
        async with leases.hold(host, "uid-a"):
            faults = RenewalFaults(kube, lease_name(host), hangs=1, errors=3)
            await wait_until_async(lambda: faults.ended_at is not None, 20, "the failed renewals")
            assert faults.ended_at is not None

            async def renewed_since_the_faults() -> bool:
                held = await lease(client, host)
                assert faults.ended_at is not None
                return bool(held.spec.holder_identity == "operator-1"
                            and held.spec.renew_time.timestamp() > faults.ended_at)

            deadline = time.monotonic() + 10
            while not await renewed_since_the_faults():
                assert time.monotonic() < deadline, "the Lease was not renewed once the API server answered again"
                await asyncio.sleep(0.1)
            raise BlockError("the release's own outcome")
    assert not (await lease(client, host)).spec.holder_identity, "the Lease was not given up"


async def test_a_lease_taken_by_someone_else_is_reported_and_left_to_them(
        client: Kube, host: str, caplog: pytest.LogCaptureFixture) -> None:
    leases = HostLeases(client, NAMESPACE, "operator-1", DURATION_S, wait=1.0)
    with caplog.at_level(logging.WARNING, logger="deploymind.controller.hostlease"):
        async with leases.hold(host, "uid-a"):
            taken = await lease(client, host)
            now = datetime.datetime.now(datetime.UTC)
            taken.spec.holder_identity = "operator-2"
            taken.spec.renew_time = now
            taken.metadata.annotations[UID_ANNOTATION] = "uid-b"
            await client.replace_lease(NAMESPACE, lease_name(host), taken)
            await wait_until_async(lambda: "stopped renewing" in caplog.text, 10, "the lost Lease to be reported")
    assert "held by Deployment uid uid-b (operator operator-2)" in caplog.text
    after = await lease(client, host)
    assert (after.spec.holder_identity, after.metadata.annotations[UID_ANNOTATION]) == ("operator-2", "uid-b")
