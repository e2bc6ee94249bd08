"""The `ssh` transport: run a script on a host over one kept SSH connection (asyncssh), host key pinned.

The script runs as the remote command `exec timeout … sh -c '<script>'`: scripts carry no secrets (those travel
on stdin only). GNU `timeout` (coreutils; the host needs it) puts the script in its own process group; a call
that times out or is cancelled sends it TERM, which it passes to the whole group (KILL a second later), and its own
deadline, slightly later than ours, is the backstop when our signal cannot arrive. So a timed-out or abandoned
call leaves nothing running on the host; a script that must outlive its call (the release) detaches itself.

Only the host key lines given are trusted: no ~/.ssh/known_hosts, no ssh config, no agent. An unknown or changed
host key is refused (`HostKeyRejected`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
import socket

import asyncssh

from deploymind.transport.base import (
    AUTHENTICATION_FAILED,
    HOST_KEY_REJECTED,
    TARGET_UNREACHABLE,
    TRANSPORT_TIMEOUT,
    Result,
    TransportError,
)

# The remote `timeout` fires this long after the local deadline: the local side reports the timeout, the
# remote side is the backstop that kills the script's process group even when our signal cannot reach it.
REMOTE_GRACE_S = 2.0
# How long a channel close may take after a timeout before we stop waiting for it.
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

    async def run(self, script: str, *, stdin: bytes | None = None, timeout: float = 300.0) -> Result:  # noqa: ASYNC109 - per-call limit of the protocol
        self.calls += 1
        # `exec`: the login shell that sshd starts becomes `timeout`, so a signal we send reaches it.
        command = f"exec timeout -k 1 {timeout + REMOTE_GRACE_S:g} sh -c {shlex.quote(script)}"
        conn, process = await self._open(command)
        return await self._finish(conn, process, stdin, timeout)

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            await _close(conn)

    async def _open(self, command: str) -> tuple[asyncssh.SSHClientConnection, asyncssh.SSHClientProcess[bytes]]:
        """Start `command` in a new channel; a kept connection found dead is replaced once (nothing ran yet)."""
        conn, reused = await self._connection()
        try:
            return conn, await conn.create_process(command, encoding=None)
        except (asyncssh.Error, OSError) as error:
            if not (reused and conn.is_closed()):
                await self._forget(conn)
                raise self._lost(error, started=False) from None
        await self._forget(conn)
        conn, _ = await self._connection()
        try:
            return conn, await conn.create_process(command, encoding=None)
        except (asyncssh.Error, OSError) as error:
            await self._forget(conn)
            raise self._lost(error, started=False) from None

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
            stdout, stderr = await asyncio.wait_for(process.communicate(), limit)
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
            await asyncio.shield(_stop(process))
            raise
        return Result(exit_code=_exit_code(process), stdout=stdout or b"", stderr=stderr or b"")

    async def _connection(self) -> tuple[asyncssh.SSHClientConnection, bool]:
        """The kept connection (reused=True) or a new one; a connection closed by the peer is replaced."""
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn, True
            self._conn = await self._connect()
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
    with contextlib.suppress(asyncssh.Error, OSError):
        process.send_signal("TERM")
    process.close()
    with contextlib.suppress(TimeoutError, asyncssh.Error, OSError):
        await asyncio.wait_for(process.wait_closed(), CLOSE_WAIT_S)


async def _close(conn: asyncssh.SSHClientConnection) -> None:
    conn.close()
    with contextlib.suppress(TimeoutError, asyncssh.Error, OSError):
        await asyncio.wait_for(conn.wait_closed(), CLOSE_WAIT_S)


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
