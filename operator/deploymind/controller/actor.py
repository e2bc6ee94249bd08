"""One actor per Deployment: the only place its rollouts and health ticks run, one at a time.

Kopf handlers only wake the actor. The actor runs a rollout as a task that a newer spec stops at a safe point,
runs the health tick every probe period in between, and backs off while the host or the repository is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from deploymind.api.spec import duration_seconds
from deploymind.controller.hooks import Hooks
from deploymind.controller.kube import Kube, NotFound
from deploymind.controller.reconcile import Runner
from deploymind.settings import Settings
from deploymind.steps.errors import Superseded

log = logging.getLogger(__name__)


class Actor:
    """Serializes everything that touches one Deployment's host and status."""

    def __init__(self, kube: Kube, settings: Settings, hooks: Hooks, namespace: str, name: str, *,
                 revision_key: bytes) -> None:
        self.namespace = namespace
        self._revision_key = revision_key
        self.name = name
        self._kube = kube
        self._settings = settings
        self._hooks = hooks
        self._wake = asyncio.Event()
        self._triggers: list[str] = []
        self.lock = asyncio.Lock()
        self._runner: Runner | None = None
        self._backoff = settings.backoff_initial_seconds
        self._retry_at: float | None = None
        self._next_poll: float = 0.0
        self._reconcile_due = True  # level-triggered: a fresh actor always reconciles once

    def wake(self, trigger: str) -> None:
        """Called by handlers: something changed (spec, annotation, Secret, webhook). Never blocks."""
        self._triggers.append(trigger)
        self._reconcile_due = True
        self._wake.set()

    def interrupt(self) -> None:
        """End the current sleep without asking for a reconcile (the daemon is stopping: `run` checks and returns)."""
        self._wake.set()

    async def run(self, stopped: Callable[[], bool]) -> None:
        loop = asyncio.get_running_loop()
        while not stopped():
            started = loop.time()
            obj = await self._fetch()
            if obj is None:
                return
            runner = self._runner_for(obj)
            now = loop.time()
            due = (self._reconcile_due or now >= self._next_poll
                   or (self._retry_at is not None and now >= self._retry_at))
            if due:
                trigger = self._triggers[0] if self._triggers else ("Resume" if runner.first else "Poll")
                self._triggers.clear()
                self._reconcile_due = False
                await self._rollout(runner, obj, trigger)
            elif not self._retry_pending(runner):
                async with self.lock:
                    await runner.tick(obj)
            await self._sleep(runner, started)

    def _runner_for(self, obj: dict[str, Any]) -> Runner:
        if self._runner is None:
            self._runner = Runner(self._kube, self._settings, self._hooks, obj, revision_key=self._revision_key)
        else:
            self._runner.refresh(obj)
        return self._runner

    async def _fetch(self) -> dict[str, Any] | None:
        try:
            return await self._kube.get_deployment(self.namespace, self.name)
        except NotFound:
            return None

    async def _rollout(self, runner: Runner, obj: dict[str, Any], trigger: str) -> None:
        """Run one reconcile as a task; a wake with a newer generation stops it at its next safe point."""
        loop = asyncio.get_running_loop()
        generation = obj["metadata"].get("generation")
        superseded = False

        async def checkpoint() -> None:
            if superseded:
                raise Superseded()

        async with self.lock:
            task = asyncio.create_task(runner.reconcile(obj, trigger, checkpoint))
            while not task.done():
                self._wake.clear()
                waiter = asyncio.create_task(self._wake.wait())
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if not task.done():
                    fresh = await self._fetch()
                    if fresh is None or fresh["metadata"].get("generation") != generation:
                        superseded = True
            try:
                result = task.result()
            except Superseded:
                log.info("%s/%s: a newer spec superseded the rollout; rolling out the newest", self.namespace, self.name)
                self._reconcile_due = True
                return
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

    def _retry_pending(self, runner: Runner) -> bool:
        """A rollout that failed on an unreachable host is due again: until then, no health tick knocks on the
        same host (the retry is the next attempt, so the host sees one backoff, not two interleaved ones)."""
        return runner.unreachable and self._retry_at is not None

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.close()

    async def _sleep(self, runner: Runner, started: float) -> None:
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

