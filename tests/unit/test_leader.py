"""Leader election against the API emulator: one of two replicas leads, a standby takes over within the Lease's
duration when the leader stops renewing (and not before the leader has stepped down), a released Lease is taken at
the next poll, two writes at once never make two leaders, and a leader that cannot renew stops its work."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import kubernetes.client as k8s
import pytest
from kmock._internal.rendering import Request, Response

from deploymind import settings as settings_module
from deploymind.controller.kube import load_api_client
from deploymind.controller.leader import LeaderElector, LeadershipLost, run_while_leading
from deploymind.settings import Settings
from world.kube import Kube as WorldKube
from world.procs import wait_until_async

NAMESPACE = "default"
DURATION_S = 3  # polls every 0.5 s, renewals every second, a leader steps down after 1.5 s without one
SLACK_S = 0.5  # scheduling on two shared cores
POLL_S = 0.02  # how often a test looks: small beside SLACK_S


@pytest.fixture
def lease_name() -> str:
    return f"leader-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_elector(kube: WorldKube, lease_name: str) -> Iterator[Callable[..., LeaderElector]]:
    made: list[LeaderElector] = []

    def make(identity: str, on_change: Callable[[bool], None] | None = None) -> LeaderElector:
        elector = LeaderElector(load_api_client(str(kube.kubeconfig)), NAMESPACE, identity, DURATION_S,
                                name=lease_name, on_change=on_change)
        made.append(elector)
        return elector

    yield make
    for elector in made:
        elector.close()


def read_lease(kube: WorldKube, name: str) -> k8s.V1Lease:
    api = k8s.CoordinationV1Api(load_api_client(str(kube.kubeconfig)))
    lease: k8s.V1Lease = api.read_namespaced_lease(name, NAMESPACE)
    return lease



@contextlib.asynccontextmanager
async def standing_by(elector: LeaderElector) -> AsyncIterator[asyncio.Task[bool]]:
    """`elector.acquire` in the background, stopped at the end of the block."""
    stop = asyncio.Event()
    task = asyncio.create_task(elector.acquire(stop))
    try:
        yield task
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def renewing(elector: LeaderElector) -> AsyncIterator[asyncio.Task[str]]:
    """`elector.keep` in the background, cancelled at the end of the block (as a dead process stops renewing)."""
    task = asyncio.create_task(elector.keep())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_one_replica_leads_and_the_other_stands_by_while_it_renews(
        make_elector: Callable[..., LeaderElector], kube: WorldKube, lease_name: str) -> None:
    a, b = make_elector("replica-a"), make_elector("replica-b")
    assert await a.acquire()
    async with renewing(a) as keeper, standing_by(b) as standby:
        # Longer than a whole duration: the renewals keep the standby out.
        await asyncio.sleep(1.5 * DURATION_S)
        assert a.leading and not b.leading and not standby.done() and not keeper.done()
    lease = read_lease(kube, lease_name)
    assert lease.spec.holder_identity == "replica-a"
    assert lease.spec.lease_duration_seconds == DURATION_S
    assert lease.spec.lease_transitions == 0


async def test_a_standby_takes_over_within_the_lease_duration_once_the_leader_stops_renewing(
        make_elector: Callable[..., LeaderElector], kube: WorldKube, lease_name: str) -> None:
    a = make_elector("replica-a")
    took_over_at: list[float] = []
    b = make_elector("replica-b", on_change=lambda leading: took_over_at.append(time.time()) if leading else None)
    assert await a.acquire()
    async with standing_by(b) as standby:
        async with renewing(a):
            await asyncio.sleep(2 * a.timing.renew_every)  # the standby has seen renewals
            before = read_lease(kube, lease_name).metadata.resource_version
            await wait_until_async(lambda: read_lease(kube, lease_name).metadata.resource_version != before,
                                   DURATION_S, "a renewal", POLL_S)
        # The leader is gone right after a renewal (none in flight): its last one is in the Lease.
        last_renewal = read_lease(kube, lease_name).spec.renew_time.timestamp()
        assert await asyncio.wait_for(standby, 2 * DURATION_S)
    waited = took_over_at[0] - last_renewal
    timing = a.timing
    # Not before the leader has stepped down and stopped, and within the duration.
    assert timing.renew_deadline + timing.stop_grace <= waited <= DURATION_S + SLACK_S, waited
    lease = read_lease(kube, lease_name)
    assert (lease.spec.holder_identity, lease.spec.lease_transitions) == ("replica-b", 1)


async def test_a_released_lease_is_taken_at_the_next_poll(
        make_elector: Callable[..., LeaderElector], kube: WorldKube, lease_name: str) -> None:
    a, b = make_elector("replica-a"), make_elector("replica-b")
    assert await a.acquire()
    async with standing_by(b) as standby:
        # The standby has read the Lease (the leader's only read found none).
        await wait_until_async(lambda: bool(kube.emulator.audit.find("get", "leases.coordination.k8s.io",
                                                                     name=lease_name, code=200)),
                               DURATION_S, "the standby's read", POLL_S)
        await a.release()
        released = time.monotonic()
        assert not a.leading
        assert await asyncio.wait_for(standby, DURATION_S)
        waited = time.monotonic() - released
    assert waited <= b.timing.retry_every + SLACK_S, waited
    assert read_lease(kube, lease_name).spec.holder_identity == "replica-b"


class ReadBarrier:
    """An API server reaction: the Lease's next `count` GETs are held until all of them have arrived, so every
    reader gets the same version and then writes it."""

    def __init__(self, kube: WorldKube, name: str, count: int) -> None:
        self.count = count
        self.arrived = 0
        self._all: asyncio.Event | None = None  # made on the emulator's loop
        path = f"get /apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{name}"
        kube.api.call(lambda emulator: emulator[path] << self._react)

    async def _react(self, request: Request) -> Response | object:
        if self.arrived < self.count:
            self.arrived += 1
            self._all = self._all or asyncio.Event()
            if self.arrived == self.count:
                self._all.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all.wait(), 5)
        return NotImplemented  # on to the emulator


async def test_two_replicas_writing_the_lease_at_once_never_both_lead(
        make_elector: Callable[..., LeaderElector], kube: WorldKube, lease_name: str) -> None:
    first = make_elector("replica-0")
    assert await first.acquire()
    await first.release()
    a, b = make_elector("replica-a"), make_elector("replica-b")
    ReadBarrier(kube, lease_name, count=2)
    async with standing_by(a) as task_a, standing_by(b) as task_b:
        await wait_until_async(lambda: a.leading or b.leading, DURATION_S, "a leader", POLL_S)
        # Both read the released Lease and both wrote it: one write was refused. Half a duration later, still one.
        await asyncio.sleep(DURATION_S / 2)
        assert [a.leading, b.leading].count(True) == 1
        winner = "replica-a" if a.leading else "replica-b"
        assert not (task_b if a.leading else task_a).done()
    conflicts = kube.emulator.audit.find("update", "leases.coordination.k8s.io", namespace=NAMESPACE,
                                         name=lease_name, code=409)
    assert len(conflicts) == 1
    assert read_lease(kube, lease_name).spec.holder_identity == winner


class RenewalErrors:
    """An API server reaction: every PUT of the Lease answers 500 (the API server cannot store it)."""

    def __init__(self, kube: WorldKube, name: str) -> None:
        path = f"put /apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{name}"
        kube.api.call(lambda emulator: emulator[path] << self._react)

    async def _react(self, request: Request) -> Response:
        return Response(status=500, payload={"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                             "reason": "InternalError", "code": 500})


async def test_a_leader_that_cannot_renew_stops_its_work_and_keeps_the_lease_to_expire(
        make_elector: Callable[..., LeaderElector], kube: WorldKube, lease_name: str) -> None:
    a = make_elector("replica-a")
    work: list[str] = []
    exits: list[float] = []

    async def reconcile() -> None:
        work.append("started")
        RenewalErrors(kube, lease_name)
        failing_since = time.monotonic()
        try:
            await asyncio.Event().wait()
        finally:
            work.append(f"stopped after {time.monotonic() - failing_since:.2f} s")

    with pytest.raises(LeadershipLost, match=r"was not renewed for 1\.5 s"):
        await run_while_leading(a, reconcile, None, lambda: exits.append(time.monotonic()))
    assert work[0] == "started" and work[1].startswith("stopped after"), work
    stopped_after = float(work[1].split()[2])
    assert a.timing.renew_deadline - a.timing.renew_every <= stopped_after <= a.timing.renew_deadline + SLACK_S
    assert exits == [] and not a.leading
    # Not released: a replica that lost track of the Lease leaves it to expire.
    assert read_lease(kube, lease_name).spec.holder_identity == "replica-a"


async def test_work_that_does_not_stop_after_the_lease_is_lost_ends_the_process(
        make_elector: Callable[..., LeaderElector], kube: WorldKube, lease_name: str) -> None:
    lost_at: list[float] = []
    exits: list[float] = []
    a = make_elector("replica-a", on_change=lambda leading: None if leading else lost_at.append(time.monotonic()))

    async def stubborn() -> None:
        RenewalErrors(kube, lease_name)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            # As Kopf waiting for a handler to finish: the first cancel does not end it, the next one does.
            await asyncio.sleep(10 * a.timing.stop_grace)

    with pytest.raises(LeadershipLost):
        await run_while_leading(a, stubborn, None, lambda: exits.append(time.monotonic()))
    assert len(exits) == 1 and 0 <= exits[0] - lost_at[0] - a.timing.stop_grace <= SLACK_S


@pytest.mark.parametrize(("env", "namespace_file", "expected"), [
    ({"POD_NAME": "deploymind-7c9f-abcde", "POD_NAMESPACE": "deploymind-system"}, "ignored",
     ("deploymind-7c9f-abcde", "deploymind-system", "deploymind-system")),
    ({"DEPLOYMIND_LEASE_NAMESPACE": "leases"}, "from-the-pod", (None, "from-the-pod", "leases")),
    ({}, None, (None, "default", "default")),
])
def test_a_replica_names_itself_and_its_namespace_from_the_pod(
        env: dict[str, str], namespace_file: str | None, expected: tuple[str | None, str, str],
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("POD_NAME", "POD_NAMESPACE", "DEPLOYMIND_LEASE_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "namespace"
    if namespace_file is not None:
        path.write_text(namespace_file + "\n")
    monkeypatch.setattr(settings_module, "SERVICE_ACCOUNT_NAMESPACE", path)
    monkeypatch.setenv("HOSTNAME", "laptop")
    found = Settings()
    identity, operator_namespace, lease_namespace = expected
    assert found.identity == (identity or f"laptop-{os.getpid()}")
    assert (found.operator_namespace, found.lease_namespace) == (operator_namespace, lease_namespace)
    assert Settings(operator_namespace="ops").lease_namespace == (env.get("DEPLOYMIND_LEASE_NAMESPACE") or "ops")

