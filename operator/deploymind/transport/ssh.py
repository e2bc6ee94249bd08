"""The `ssh` transport: run a script on a host over one kept SSH connection (asyncssh), host key pinned.

The script runs as the remote command `exec timeout … sh -c '<script>'`: scripts carry no secrets (those travel
on stdin only). GNU `timeout` (coreutils; the host needs it) puts the script in its own process group; a call
that times out or is cancelled sends it TERM, which it passes to the whole group (KILL a second later), and its own
deadline, slightly later than ours, is the backstop when our signal cannot arrive. So a timed-out or abandoned
call leaves nothing running on the host; a script that must outlive its call (the release) detaches itself.
Connecting and starting the channel are never cut short half way: a call cancelled meanwhile lets them finish, then
stops the script and closes what it opened (`settle.start_or_undo`); every wait is bounded.

Only the host key lines given are trusted: no ~/.ssh/known_hosts, no ssh config, no agent. An unknown or changed
host key is refused (`HostKeyRejected`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
import socket
from collections.abc import Awaitable

import asyncssh

from deploymind.transport.base import (
    AUTHENTICATION_FAILED,
    HOST_KEY_REJECTED,
    TARGET_UNREACHABLE,
    TRANSPORT_TIMEOUT,
    Payload,
    Result,
    TransportError,
)
from deploymind.transport.settle import bounded, start_or_undo

# The remote `timeout` fires this long after the local deadline: the local side reports the timeout, the
# remote side is the backstop that kills the script's process group even when our signal cannot reach it.
REMOTE_GRACE_S = 2.0
# How often a call that ends early repeats its TERM until the script has ended.
RESIGNAL_S = 0.2
# How long a channel or connection close may take before we stop waiting for it (and how long a cancelled call
# waits for a channel or connection it was opening, before that is undone in the background).
CLOSE_WAIT_S = 2.0


class SSHTransport:
    """One host reached over SSH; keeps one connection and reconnects when it dropped."""

    name = "ssh"

    def __init__(
        self,
        host: str,
        *,
        user: str,
        private_key: str,
        known_hosts: str,
        port: int = 22,
        connect_timeout: float = 10.0,
        keepalive_interval: float = 15.0,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self._private_key = private_key
        self._known_hosts = known_hosts
        self._connect_timeout = connect_timeout
        self._keepalive_interval = keepalive_interval
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lock = asyncio.Lock()
        self.calls = 0

    async def run(self, script: str, *, payload: Payload | None = None, timeout: float = 300.0) -> Result:  # noqa: ASYNC109 - per-call limit of the protocol
        self.calls += 1
        # `exec`: the login shell that sshd starts becomes `timeout`, so a signal we send reaches it.
        command = f"exec timeout -k 1 {timeout + REMOTE_GRACE_S:g} sh -c {shlex.quote(script)}"
        conn, process = await self._open(command)
        return await self._finish(conn, process, payload.data if payload is not None else None, timeout)

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            await _close(conn)

    async def _open(self, command: str) -> tuple[asyncssh.SSHClientConnection, asyncssh.SSHClientProcess[bytes]]:
        """Start `command` in a new channel; a kept connection found dead is replaced once (nothing ran yet)."""
        conn, reused = await self._connection()
        try:
            return conn, await self._start(conn, command)
        except (asyncssh.Error, OSError) as error:
            if not (reused and conn.is_closed()):
                await self._forget(conn)
                raise self._lost(error, started=False) from None
        await self._forget(conn)
        conn, _ = await self._connection()
        try:
            return conn, await self._start(conn, command)
        except (asyncssh.Error, OSError) as error:
            await self._forget(conn)
            raise self._lost(error, started=False) from None

    async def _start(self, conn: asyncssh.SSHClientConnection, command: str) -> asyncssh.SSHClientProcess[bytes]:
        """Open a channel and start `command` in it, within connect_timeout.

        A cancellation meanwhile lets the start finish and then stops the process: a channel cancelled while it
        opens could run the command with nobody left to stop it. A host that keeps the connection open but does not
        start the command in time has the connection aborted under the start, which then fails at once; if the
        command did start, its own deadline ends it. Not retried: the command may have run.
        """
        gave_up = False

        def give_up() -> None:
            nonlocal gave_up
            gave_up = True
            conn.abort()

        deadline = asyncio.get_running_loop().call_later(self._connect_timeout, give_up)
        try:
            return await start_or_undo(conn.create_process(command, encoding=None), _stop, CLOSE_WAIT_S)
        except (asyncssh.Error, OSError):
            if not gave_up:
                raise
            await self._forget(conn)
            raise TransportError(
                TARGET_UNREACHABLE,
                f"{self._where()} did not start the script within {self._connect_timeout:g} s on an open connection, "
                "so the connection was dropped; whether the script started is unknown (if it did, its own deadline "
                "ends it): it is retried when the host answers again",
            ) from None
        finally:
            deadline.cancel()

    async def _finish(
        self,
        conn: asyncssh.SSHClientConnection,
        process: asyncssh.SSHClientProcess[bytes],
        stdin: bytes | None,
        limit: float,
    ) -> Result:
        try:
            # End of input even without stdin: a script that reads stdin must see EOF, not wait for more.
            if stdin:
                process.stdin.write(stdin)
            process.stdin.write_eof()
            async with asyncio.timeout(limit):
                stdout, stderr = await process.communicate()
        except TimeoutError:
            await _stop(process)
            raise TransportError(
                TRANSPORT_TIMEOUT,
                f"the script did not finish within {limit:g} s on {self._where()} and was stopped: look for a "
                "hung docker command on the host, or raise the timeout",
            ) from None
        except (asyncssh.Error, OSError) as error:
            await self._forget(conn)
            raise self._lost(error, started=True) from None
        except asyncio.CancelledError:
            await _stop(process)
            raise
        return Result(exit_code=_exit_code(process), stdout=stdout or b"", stderr=stderr or b"")

    async def _connection(self) -> tuple[asyncssh.SSHClientConnection, bool]:
        """The kept connection (reused=True) or a new one; a connection closed by the peer is replaced."""
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn, True
            # Not cut short either: a connection cancelled the moment it is made would be returned all the same
            # (asyncio.wait_for inside asyncssh.connect) and the cancellation lost.
            self._conn = await start_or_undo(self._connect(), _close, CLOSE_WAIT_S)
            return self._conn, False

    async def _connect(self) -> asyncssh.SSHClientConnection:
        if not self._known_hosts.strip():
            raise TransportError(
                HOST_KEY_REJECTED,
                f"no known_hosts line for {self._where()}: put the host's key line (`ssh-keyscan -p {self.port} "
                f"{self.host}`, checked out of band) into the Secret named by target.ssh.knownHostsSecretRef",
            )
        try:
            key = asyncssh.import_private_key(self._private_key)
        except (asyncssh.KeyImportError, ValueError) as error:
            raise TransportError(
                AUTHENTICATION_FAILED,
                f"the private key for {self._where()} cannot be read ({error}): put an unencrypted OpenSSH or PEM "
                "private key into the Secret named by target.ssh.keySecretRef",
            ) from None
        try:
            known_hosts = asyncssh.import_known_hosts(self._known_hosts)
        except (ValueError, asyncssh.Error) as error:
            raise TransportError(
                HOST_KEY_REJECTED,
                f"the known_hosts text for {self._where()} cannot be read ({error}): put lines in known_hosts "
                "format into the Secret named by target.ssh.knownHostsSecretRef",
            ) from None
        try:
            return await asyncssh.connect(
                self.host,
                port=self.port,
                username=self.user,
                client_keys=[key],
                known_hosts=known_hosts,
                agent_path=None,
                config=None,
                password=None,
                preferred_auth="publickey",
                connect_timeout=self._connect_timeout,
                keepalive_interval=self._keepalive_interval,
                keepalive_count_max=3,
            )
        except asyncssh.HostKeyNotVerifiable as error:
            raise TransportError(
                HOST_KEY_REJECTED,
                f"{self._where()} presented a host key that the known_hosts Secret does not list ({error.reason}): "
                f"if the host was rebuilt, verify its new key and update the Secret (the line must name "
                f"{self.host} or [{self.host}]:{self.port})",
            ) from None
        except asyncssh.PermissionDenied:
            raise TransportError(
                AUTHENTICATION_FAILED,
                f"{self._where()} refused the key for user {self.user!r}: add the key's public half to the user's "
                "authorized_keys, or fix target.ssh.user",
            ) from None
        except (OSError, TimeoutError, asyncssh.Error) as error:
            raise TransportError(
                TARGET_UNREACHABLE,
                f"cannot connect to {self._where()} ({_describe(error)}): check that the host is up, sshd listens "
                "on that port and the network allows it",
            ) from None

    async def _forget(self, conn: asyncssh.SSHClientConnection) -> None:
        """Stop reusing `conn` once it is closed; a live connection other calls share is left alone."""
        if not conn.is_closed():
            return
        async with self._lock:
            if self._conn is conn:
                self._conn = None
        await _close(conn)

    def _lost(self, error: BaseException, *, started: bool) -> TransportError:
        outcome = "the script's outcome is unknown" if started else "the script did not start"
        return TransportError(
            TARGET_UNREACHABLE,
            f"the connection to {self._where()} broke ({_describe(error)}); {outcome}: it is retried when the host answers again",
        )

    def _where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


async def _stop(process: asyncssh.SSHClientProcess[bytes]) -> None:
    """End a call early: TERM reaches `timeout`, which passes it on to the script's whole process group."""
    try:
        await bounded(_signal_until_closed(process), CLOSE_WAIT_S)
    finally:
        process.close()


async def _signal_until_closed(process: asyncssh.SSHClientProcess[bytes]) -> None:
    """Send TERM again and again until the channel closes (the script has ended).

    sshd passes a signal to the session's process group, which does not exist yet between sshd's fork and the
    child's setsid(): a signal sent right after the command started can be lost. `timeout` acts on the first TERM
    that arrives; more of them change nothing.
    """
    closed = asyncio.ensure_future(_quietly(process.wait_closed()))
    try:
        while not closed.done():
            with contextlib.suppress(asyncssh.Error, OSError):
                process.send_signal("TERM")
            await asyncio.wait({closed}, timeout=RESIGNAL_S)
    finally:
        closed.cancel()


async def _close(conn: asyncssh.SSHClientConnection) -> None:
    conn.close()
    await bounded(_quietly(conn.wait_closed()), CLOSE_WAIT_S)


async def _quietly(closing: Awaitable[None]) -> None:
    """A close that fails has closed all the same: the connection or channel is unusable either way."""
    with contextlib.suppress(asyncssh.Error, OSError):
        await closing


def _exit_code(process: asyncssh.SSHClientProcess[bytes]) -> int:
    """The exit status; a script killed by a signal reports 128+N like a shell does, no status at all 255."""
    if process.exit_status is not None and process.exit_status >= 0:
        return int(process.exit_status)
    if process.exit_signal:
        with contextlib.suppress(KeyError):
            return 128 + int(signal.Signals[f"SIG{process.exit_signal[0]}"])
    return 255


def _describe(error: BaseException) -> str:
    if isinstance(error, socket.gaierror):
        return f"name not resolved: {error.strerror}"
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__
