"""The `local` transport: run a script as a subprocess on the operator's own host (the sandbox and tests only).

It reaches whatever Docker engine `DOCKER_HOST` in its environment names. Whether a Deployment may use it at all
is the controller's decision: `transport: local` is refused unless the operator runs with
`--allow-local-transport` (the sandbox sets it), because it gives a namespace's users the operator's own host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping

from deploymind.transport.base import TRANSPORT_TIMEOUT, Payload, Result, TransportError
from deploymind.transport.settle import settle, start_or_undo

# How long a killed script's output may take to close before the call stops reading it (and how long a cancelled
# call waits for its spawn to finish before it kills what was spawned).
KILL_WAIT_S = 5.0


class LocalTransport:
    """Runs each script with `shell -c script` in its own process group, so a timeout can kill all of it."""

    name = "local"

    def __init__(self, env: Mapping[str, str] | None = None, *, shell: str = "/bin/sh", inherit_env: bool = True) -> None:
        base = dict(os.environ) if inherit_env else {}
        self._env = {**base, **(env or {})}
        self._shell = shell
        self.calls = 0

    async def run(self, script: str, *, payload: Payload | None = None, timeout: float = 300.0) -> Result:  # noqa: ASYNC109 - per-call limit of the protocol
        self.calls += 1
        stdin = payload.data if payload is not None else None
        spawn = asyncio.create_subprocess_exec(
            self._shell,
            "-c",
            script,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._env,
            start_new_session=True,
        )
        # A cancellation while the pipes are being connected would make asyncio kill only the shell and then wait
        # for pipes that the shell's children still hold: for ever. So the spawn finishes, then the group is killed.
        proc = await start_or_undo(spawn, _end_group, KILL_WAIT_S)
        talk = asyncio.ensure_future(proc.communicate(stdin))
        try:
            done, _ = await asyncio.wait({talk}, timeout=timeout)
            if not done:
                raise TransportError(
                    TRANSPORT_TIMEOUT,
                    f"the script did not finish within {timeout:g} s on the local host and was killed: "
                    "look for a hung docker command, or raise the timeout",
                )
            stdout, stderr = talk.result()
        finally:
            if not talk.done():
                # On timeout or cancellation nothing the script started in its group outlives the call. The whole
                # group goes first, even when the shell itself is gone: a child still holding the output pipes would
                # keep the read below waiting for ever.
                _kill_group(proc.pid)
                try:
                    await settle(talk, KILL_WAIT_S)
                finally:
                    if not talk.done():
                        talk.cancel()
                    elif not talk.cancelled():
                        talk.exception()  # retrieved: the call's own outcome (timeout, cancellation) is what counts
        return Result(exit_code=_exit_code(proc.returncode), stdout=stdout, stderr=stderr)

    async def close(self) -> None:
        """Nothing to release: every call is its own process."""


async def _end_group(proc: asyncio.subprocess.Process) -> None:
    """Undo a spawn whose call was cancelled: kill all the script started and wait until its output is closed."""
    _kill_group(proc.pid)
    await proc.wait()


def _kill_group(pid: int) -> None:
    """Kill the script's whole process group (its id is the shell's pid), even when the shell itself is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _exit_code(returncode: int | None) -> int:
    """asyncio reports death by signal N as -N; a shell says 128+N, and so does the ssh transport."""
    if returncode is None:  # communicate() returned, so the process was reaped; this is only for the type
        return 255
    return 128 - returncode if returncode < 0 else returncode
