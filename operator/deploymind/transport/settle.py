"""Starting and cleaning up so that nothing waits for ever and no cancellation is lost: the transports' waits.

A start (spawning a process, opening a channel, connecting) is never cancelled half way. asyncio's own clean-up of a
cancelled subprocess spawn kills only the shell and then waits until every pipe is closed, which a child the shell
already started prevents for ever; a channel cancelled while it opens may run its command with nobody left to stop
it. So a start runs to its end, and what it started is undone. Every wait of a clean-up is bounded, and a
cancellation arriving during one is held back until it is over, then raised: it does not cut the clean-up short.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

# Undoing starts that outlived their caller's bound: kept referenced until they end (the loop holds tasks weakly).
_undoing: set[asyncio.Task[None]] = set()


async def settle(future: asyncio.Future[Any], bound: float) -> bool:
    """Wait up to `bound` s for `future` to finish, without cancelling it; return whether it finished.

    A cancellation of the caller meanwhile is held back and raised once the wait is over.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    held = False
    while not future.done() and (left := deadline - loop.time()) > 0:
        try:
            await asyncio.wait({future}, timeout=left)
        except asyncio.CancelledError:
            held = True
    if held:
        raise asyncio.CancelledError
    return future.done()


async def bounded(awaitable: Awaitable[object], bound: float) -> None:
    """Await `awaitable` for up to `bound` s, then give up on it (it is cancelled); its error, if any, is raised.

    A cancellation of the caller meanwhile is held back and raised once the wait is over.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        finished = await settle(task, bound)
    finally:
        if not task.done():
            task.cancel()
    if finished:
        task.result()


async def start_or_undo(start: Awaitable[T], undo: Callable[[T], Awaitable[object]], bound: float) -> T:
    """Await `start`, which a cancellation of the caller never interrupts.

    On cancellation, `start` still runs to its end and `undo` is given what it started; the caller waits up to
    `bound` s for each of the two, then the cancellation goes on. A start slower than that is undone in the
    background whenever it ends.
    """
    starting = asyncio.ensure_future(start)
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        undoing = asyncio.ensure_future(_undo_when_started(starting, undo, bound))
        _undoing.add(undoing)
        undoing.add_done_callback(_undoing.discard)
        await settle(undoing, 2 * bound)
        raise


async def _undo_when_started(starting: asyncio.Future[T], undo: Callable[[T], Awaitable[object]], bound: float) -> None:
    try:
        started = await starting
    except Exception:  # nothing was started; the caller's outcome is its cancellation, not this error
        return
    await bounded(undo(started), bound)
