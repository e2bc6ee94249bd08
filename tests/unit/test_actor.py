"""The actor's scheduling, with a stand-in for the reconcile engine: a cancelled actor cancels and waits for its
rollout (bounded), rollouts share the process's slots while health ticks never wait for one, and Kopf's copy of
the object is used unless it may predate the actor's own write."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import kubernetes.client as k8s
import pytest

from deploymind.controller import actor as actor_module
from deploymind.controller.actor import Actor, may_be_older
from deploymind.controller.hooks import Hooks
from deploymind.controller.kube import Kube
from deploymind.controller.reconcile import RolloutResult
from deploymind.settings import Settings


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@dataclass
class Shared:
    """What every stand-in runner of one test reports to."""

    active: int = 0
    peak: int = 0


@dataclass
class StandInRunner:
    """Rolls out until `release` is set (`stubborn`: through cancellations too), and counts its health ticks."""

    shared: Shared
    release: asyncio.Event = field(default_factory=asyncio.Event)
    stubborn: bool = False
    first: bool = True
    spec: None = None
    unreachable: bool = False
    ticks: int = 0
    rollouts: int = 0
    cancelled: bool = False
    finished: bool = False

    def tick_delay(self) -> float:
        return 0.02

    def refresh(self, obj: dict[str, Any]) -> None:
        pass

    async def reconcile(self, obj: dict[str, Any], trigger: str,
                        checkpoint: Callable[[], Awaitable[None]]) -> RolloutResult:
        self.first = False
        self.rollouts += 1
        self.shared.active += 1
        self.shared.peak = max(self.shared.peak, self.shared.active)
        try:
            while True:
                try:
                    await self.release.wait()
                    break
                except asyncio.CancelledError:
                    self.cancelled = True
                    if not self.stubborn:
                        raise
        finally:
            self.shared.active -= 1
            self.finished = True
        return RolloutResult()

    async def tick(self, obj: dict[str, Any]) -> None:
        self.ticks += 1

    async def close(self) -> None:
        pass


def body(name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "generation": 1, "resourceVersion": "1"}, "status": {}}


def make_actor(name: str, runner: StandInRunner, slots: asyncio.Semaphore) -> Actor:
    return Actor(Kube(k8s.ApiClient()), Settings(), Hooks(), "ns", name, revision_key=b"k" * 32, slots=slots,
                 make_runner=lambda kube, obj: runner)


def start(act: Actor, name: str) -> asyncio.Task[None]:
    obj = body(name)
    return asyncio.create_task(act.run(lambda: False, lambda: obj))


async def test_cancelling_the_actor_cancels_its_rollout_and_waits_for_it() -> None:
    runner = StandInRunner(Shared())
    act = make_actor("web", runner, asyncio.Semaphore(1))
    task = start(act, "web")
    await eventually(lambda: runner.rollouts == 1)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert runner.cancelled and runner.finished  # unwound before the actor itself was done
    assert not act.lock.locked()


async def test_a_rollout_that_ignores_cancellation_holds_the_actor_only_for_a_bounded_time(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(actor_module, "ROLLOUT_STOP_WAIT_S", 0.2)
    runner = StandInRunner(Shared(), stubborn=True)
    act = make_actor("web", runner, asyncio.Semaphore(1))
    task = start(act, "web")
    await eventually(lambda: runner.rollouts == 1)

    started = time.monotonic()
    task.cancel()
    with caplog.at_level(logging.WARNING), pytest.raises(asyncio.CancelledError):
        await task

    assert time.monotonic() - started < 2.0
    assert runner.cancelled and not runner.finished
    assert "did not stop within 0.2 s" in caplog.text
    runner.release.set()
    await eventually(lambda: runner.finished)


async def test_rollouts_share_the_slots_and_health_ticks_never_wait_for_one() -> None:
    shared = Shared()
    slots = asyncio.Semaphore(2)
    # One Deployment rolled out already (its rollout returns at once) and is ticking.
    settled = StandInRunner(shared)
    settled.release.set()
    tasks = [start(make_actor("settled", settled, slots), "settled")]
    await eventually(lambda: settled.rollouts == 1 and settled.ticks > 0)
    # Then four more reconcile at once, as after a restart.
    runners = [StandInRunner(shared) for _ in range(4)]
    tasks += [start(make_actor(f"app-{n}", r, slots), f"app-{n}") for n, r in enumerate(runners)]
    try:
        await eventually(lambda: shared.active == 2)
        ticks = settled.ticks
        await eventually(lambda: settled.ticks >= ticks + 5)  # the slots are full, the ticks go on
        assert shared.active == 2 and sum(r.rollouts for r in runners) == 2

        for r in runners:
            r.release.set()
        await eventually(lambda: all(r.rollouts == 1 and r.finished for r in runners))
        assert shared.peak == 2
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def obj(rv: str, generation: int = 1, **status: Any) -> dict[str, Any]:
    return {"metadata": {"resourceVersion": rv, "generation": generation}, "status": status}


@pytest.mark.parametrize(("seen", "known", "older"), [
    (obj("7", phase="Deployed"), obj("7", phase="Deployed"), False),  # the same object
    (obj("9", phase="Deployed"), obj("8", phase="Deployed"), False),  # later (a spec or metadata change)
    (obj("7", phase="Deploying"), obj("8", phase="Deployed"), True),  # our own write not delivered yet
    (obj("9", 1, phase="Deployed"), obj("8", 2, phase="Deployed"), True),  # an older generation
])
def test_kopfs_copy_is_used_unless_it_may_predate_the_actors_own_write(
        seen: dict[str, Any], known: dict[str, Any], older: bool) -> None:
    assert may_be_older(seen, known) is older
