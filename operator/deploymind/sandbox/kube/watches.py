"""Watch events: a bounded per-resource log, and the stream a `?watch=true` request reads.

Every write appends an event stamped with its resourceVersion, so a watch that starts at the
resourceVersion of a list replays exactly what happened since (nothing lost between list and watch), and
one that starts too far back gets 410 Expired, as from a real apiserver.
"""

from __future__ import annotations

import asyncio
import bisect
import copy
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from deploymind.sandbox.kube.api_errors import ApiError

JsonObj = dict[str, Any]
Key = tuple[str, str, str]


@dataclass(frozen=True)
class WatchEvent:
    rv: int
    type: str
    obj: JsonObj


class EventLog:
    """The last `capacity` events of each resource type, and a signal for waiting watchers."""

    def __init__(self, capacity: int = 5000) -> None:
        self._capacity = capacity
        self._events: dict[Key, list[WatchEvent]] = {}
        self._floor: dict[Key, int] = {}
        self._changed = asyncio.Event()

    def append(self, key: Key, kind: str, obj: JsonObj, rv: int) -> None:
        events = self._events.setdefault(key, [])
        events.append(WatchEvent(rv, kind, copy.deepcopy(obj)))
        if len(events) > self._capacity:
            dropped = events[: len(events) - self._capacity]
            del events[: len(dropped)]
            self._floor[key] = dropped[-1].rv
        # Wake every waiter, then give later waiters a fresh event to wait on.
        self._changed.set()
        self._changed = asyncio.Event()

    def since(self, key: Key, rv: int) -> list[WatchEvent]:
        """Events after `rv`; 410 if some of them were already dropped."""
        if rv < self._floor.get(key, 0):
            raise ApiError(410, "Expired", f"too old resource version: {rv} ({self._floor[key]})")
        events = self._events.get(key, [])
        start = bisect.bisect_right([e.rv for e in events], rv)
        return events[start:]

    async def wait(self, key: Key, rv: int, deadline: float | None) -> list[WatchEvent]:
        """Events after `rv`, waiting until the loop time `deadline` for the first one ([] when it passes)."""
        loop = asyncio.get_running_loop()
        while True:
            signal = self._changed
            events = self.since(key, rv)
            if events:
                return events
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return []
            try:
                await asyncio.wait_for(signal.wait(), remaining)
            except TimeoutError:
                return []


@dataclass(frozen=True)
class WatchRequest:
    """What one watch asks for: `since` (0: from a fresh snapshot), `initial`: WatchList semantics."""

    key: Key
    since: int
    initial: bool
    timeout: float | None
    selected: Callable[[JsonObj], bool]
    render: Callable[[JsonObj], JsonObj]
    bookmark: Callable[[int], JsonObj]


async def stream(log: EventLog, request: WatchRequest, snapshot: list[JsonObj], now: int) -> AsyncIterator[Any]:
    """The watch body: optional initial ADDED events (+ BOOKMARK), then live events until the timeout."""
    yield b""  # send the headers at once: clients wait for them before they read events
    last = request.since
    if request.since == 0 or request.initial:
        for obj in snapshot:
            if request.selected(obj):
                yield {"type": "ADDED", "object": request.render(obj)}
        last = now
        if request.initial:
            yield {"type": "BOOKMARK", "object": request.bookmark(now)}
    loop = asyncio.get_running_loop()
    deadline = None if request.timeout is None else loop.time() + request.timeout
    while True:
        if deadline is not None and deadline <= loop.time():
            return  # like the apiserver: close the stream after timeoutSeconds
        events = await log.wait(request.key, last, deadline)
        for event in events:
            last = event.rv
            if request.selected(event.obj):
                yield {"type": event.type, "object": request.render(event.obj)}
