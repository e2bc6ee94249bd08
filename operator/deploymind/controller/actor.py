"""One actor per Deployment: the only place its rollouts and health ticks run, one at a time.

Kopf handlers only wake the actor. The actor runs a rollout as a task that a newer spec stops at a safe point,
runs the health tick every probe period in between, and backs off while the host or the repository is unreachable.

It reads the object from Kopf's watch (the daemon's body, which Kopf keeps fresh), not from the API server: a
health tick costs no request to the API server. The one exception is right after this actor's own status write,
while the watch has not delivered it yet (Kopf's copy may then be older than what the writer holds): one GET says
which is current, so a tick never works from, and writes back, a status older than its own last write.

Rollouts of all Deployments share `max_concurrent_rollouts` slots (after a restart every object reconciles at once);
health ticks never wait for a slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from deploymind.api.spec import DeploymentSpec, duration_seconds
from deploymind.controller.hooks import Hooks
from deploymind.controller.kube import Kube, NotFound
from deploymind.controller.reconcile import RolloutResult, Runner
from deploymind.settings import Settings
from deploymind.steps.errors import Superseded

log = logging.getLogger(__name__)

ROLLOUT_STOP_WAIT_S = 20.0
"""How long a cancelled actor waits for its rollout task to unwind (a transport call being cancelled, the host's
Lease being given up) before it leaves it running and logs so. Below the daemon's cancellation_timeout, which is
how long Kopf waits for the actor itself."""


class RunnerLike(Protocol):
    """What the actor needs of controller.reconcile.Runner."""

    first: bool

    @property
    def spec(self) -> DeploymentSpec | None: ...

    @property
    def unreachable(self) -> bool: ...

    def tick_delay(self) -> float: ...

    def refresh(self, obj: dict[str, Any]) -> None: ...

    async def reconcile(self, obj: dict[str, Any], trigger: str,
                        checkpoint: Callable[[], Awaitable[None]]) -> RolloutResult: ...

    async def tick(self, obj: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


RunnerFactory = Callable[[Kube, dict[str, Any]], RunnerLike]
"""(the actor's observed API client, the object) → the object's runner."""

Latest = Callable[[], Mapping[str, Any]]
"""The object as Kopf's watch last delivered it."""


def may_be_older(seen: Mapping[str, Any], known: Mapping[str, Any]) -> bool:
    """Whether Kopf's copy `seen` may predate `known`, what the API server last returned to this actor's runner.

    Watch events arrive in order, and this actor is the object's only status writer: a copy that carries the status
    the writer left (and no older generation) is the writer's object or a later one. resourceVersions are never
    compared for order (the API conventions forbid it), only for equality."""
    seen_meta, known_meta = seen.get("metadata") or {}, known.get("metadata") or {}
    if seen_meta.get("resourceVersion") == known_meta.get("resourceVersion"):
        return False
    if int(seen_meta.get("generation") or 0) < int(known_meta.get("generation") or 0):
        return True
    return seen.get("status") != known.get("status")


class Actor:
    """Serializes everything that touches one Deployment's host and status."""

    def __init__(self, kube: Kube, settings: Settings, hooks: Hooks, namespace: str, name: str, *,
                 revision_key: bytes, slots: asyncio.Semaphore, make_runner: RunnerFactory | None = None) -> None:
        self.namespace = namespace
        self.name = name
        self._kube = kube
        self._settings = settings
        self._slots = slots
        self._make_runner: RunnerFactory = make_runner or functools.partial(
            _new_runner, settings=settings, hooks=hooks, revision_key=revision_key)
        self._wake = asyncio.Event()
        self._triggers: list[str] = []
        self._taken_generation: int | None = None
        """The generation the newest rollout read as it started: a create or resume handler's wake for it (or an
        older one) asks for nothing that rollout does not already do."""
        self.lock = asyncio.Lock()
        self._runner: RunnerLike | None = None
        self._latest: Latest | None = None
        self._known: dict[str, Any] | None = None
        self._backoff = settings.backoff_initial_seconds
        self._retry_at: float | None = None
        self._next_poll: float = 0.0
        self._reconcile_due = True  # level-triggered: a fresh actor always reconciles once

    def wake(self, trigger: str, generation: int | None = None) -> None:
        """Called by handlers: something changed (spec, annotation, Secret, webhook). Never blocks.

        `generation`: the spec generation a spec handler saw. A fresh actor reconciles at once, so the create
        handler's wake, arriving while that first rollout runs, would only repeat it: such a wake is dropped (a
        repeat is not free: it resolves the branch again, and may roll out a commit nobody asked for yet)."""
        if generation is not None and self._taken_generation is not None and generation <= self._taken_generation:
            return
        self._triggers.append(trigger)
        self._reconcile_due = True
        self._wake.set()

    def interrupt(self) -> None:
        """The daemon is stopping: end the current sleep, and let a rollout stop at its next safe point."""
        self._wake.set()

    async def run(self, stopped: Callable[[], bool], latest: Latest) -> None:
        """Until `stopped()`; `latest` is Kopf's live copy of the object (the daemon's body)."""
        self._latest = latest
        loop = asyncio.get_running_loop()
        while not stopped():
            started = loop.time()
            obj = await self._current()
            if obj is None:
                return
            runner = self._runner_for(obj)
            now = loop.time()
            due = (self._reconcile_due or now >= self._next_poll
                   or (self._retry_at is not None and now >= self._retry_at))
            if due:
                await self._rollout(runner, stopped)
            elif not self._retry_pending(runner):
                async with self.lock:
                    obj = await self._current()
                    if obj is None:
                        return
                    await runner.tick(obj)
            await self._sleep(runner, started)

    def _runner_for(self, obj: dict[str, Any]) -> RunnerLike:
        if self._runner is None:
            self._runner = self._make_runner(self._kube.observing(self._observe), obj)
        else:
            self._runner.refresh(obj)
        return self._runner

    def _observe(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        if (meta.get("namespace"), meta.get("name")) == (self.namespace, self.name):
            self._known = obj

    async def _current(self) -> dict[str, Any] | None:
        """The object now (None: it is gone): Kopf's copy, or one GET when that copy may predate our own write."""
        assert self._latest is not None, "run() sets the source of the object"
        seen = copy.deepcopy(dict(self._latest()))
        if self._known is None or not may_be_older(seen, self._known):
            self._known = None  # Kopf's copy has caught up: every later one is newer still
            return seen
        try:
            fresh = await self._kube.get_deployment(self.namespace, self.name)
        except NotFound:
            return None
        self._known = fresh
        return fresh

    async def _rollout(self, runner: RunnerLike, stopped: Callable[[], bool]) -> None:
        if self._slots.locked():
            log.info("%s/%s: waiting for a rollout slot (all %d busy: --max-concurrent-rollouts)", self.namespace,
                     self.name, self._settings.max_concurrent_rollouts)
        async with self._slots, self.lock:
            if stopped():
                return
            # Taken only now: what came in while this waited for a slot is part of this rollout.
            obj = await self._current()
            if obj is None:
                return
            self._taken_generation = int(obj["metadata"].get("generation") or 0)
            trigger = self._triggers[0] if self._triggers else ("Resume" if runner.first else "Poll")
            self._triggers.clear()
            self._reconcile_due = False
            result = await self._run_task(runner, obj, trigger, stopped)
        if result is None:
            return
        loop = asyncio.get_running_loop()
        spec = runner.spec
        poll = duration_seconds(spec.source.poll_interval) if spec and spec.source else 3600.0
        self._next_poll = loop.time() + poll
        if result.retry:
            delay = result.retry_delay if result.retry_delay is not None else self._backoff
            self._retry_at = loop.time() + delay
            self._backoff = min(self._backoff * 2, self._settings.backoff_max_seconds)
        else:
            self._retry_at = None
            self._backoff = self._settings.backoff_initial_seconds

    async def _run_task(self, runner: RunnerLike, obj: dict[str, Any], trigger: str,
                        stopped: Callable[[], bool]) -> RolloutResult | None:
        """Run one reconcile as a task; a newer generation, or the daemon stopping, stops it at its next safe point.
        None: it was stopped so."""
        generation = int(obj["metadata"].get("generation") or 0)
        stop = False

        async def checkpoint() -> None:
            if stop:
                raise Superseded()

        task = asyncio.create_task(runner.reconcile(obj, trigger, checkpoint))
        try:
            while not task.done():
                self._wake.clear()
                waiter = asyncio.create_task(self._wake.wait())
                try:
                    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                if not task.done() and (stopped() or self._newer_generation(generation)):
                    stop = True
        except asyncio.CancelledError:
            await self._stop(task)
            raise
        try:
            return task.result()
        except Superseded:
            if stopped():
                log.info("%s/%s: stopped the rollout at a safe point (the operator or the object is going away)",
                         self.namespace, self.name)
            else:
                log.info("%s/%s: a newer spec superseded the rollout; rolling out the newest", self.namespace,
                         self.name)
            self._reconcile_due = True
            return None

    def _newer_generation(self, generation: int) -> bool:
        assert self._latest is not None
        return int((self._latest().get("metadata") or {}).get("generation") or 0) > generation

    async def _stop(self, task: asyncio.Task[RolloutResult]) -> None:
        """The actor is cancelled (Kopf stops the daemon): cancel the rollout and wait for it, bounded, so it never
        runs on without the object's lock."""
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=ROLLOUT_STOP_WAIT_S)
        if not done:
            log.warning("%s/%s: the rollout did not stop within %g s of being cancelled; it may still finish its "
                        "current host call", self.namespace, self.name, ROLLOUT_STOP_WAIT_S)
            return
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s/%s: the cancelled rollout ended with an error", self.namespace, self.name,
                        exc_info=task.exception())

    def _retry_pending(self, runner: RunnerLike) -> bool:
        """A rollout that failed on an unreachable host is due again: until then, no health tick knocks on the
        same host (the retry is the next attempt, so the host sees one backoff, not two interleaved ones)."""
        return runner.unreachable and self._retry_at is not None

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.close()

    async def _sleep(self, runner: RunnerLike, started: float) -> None:
        loop = asyncio.get_running_loop()
        period = float(runner.tick_delay())
        # One probe per period counted from the start of the last one: a round trip that takes a while (docker
        # stats samples for about a second) must not stretch the period, or failureThreshold takes far longer.
        deadlines = [self._next_poll]
        if self._retry_at is not None:
            deadlines.append(self._retry_at)
        if not self._retry_pending(runner):
            deadlines.append(started + period)
        timeout = max(0.0, min(deadlines) - loop.time())
        if self._reconcile_due:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)


def _new_runner(kube: Kube, obj: dict[str, Any], *, settings: Settings, hooks: Hooks,
                revision_key: bytes) -> RunnerLike:
    return Runner(kube, settings, hooks, obj, revision_key=revision_key)
