"""The local and ssh transports against the real test world: a private sshd on 127.0.0.1 and a private Docker
engine. The sshd runs on this machine, so "no process left on the host" is checked in this machine's /proc."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncssh
import pytest

from deploymind.sandbox.docker_engine import DockerEngine
from deploymind.transport.base import Payload, Transport, TransportError
from deploymind.transport.local import LocalTransport
from deploymind.transport.ssh import SSHTransport
from world.dirs import private_dir
from world.procs import alive, wait_until
from world.sshd import Sshd


def _ssh(server: Sshd, **overrides: object) -> SSHTransport:
    settings: dict[str, object] = {
        "user": server.user,
        "private_key": server.private_key,
        "known_hosts": server.known_hosts,
        "port": server.port,
        "connect_timeout": 5.0,
    }
    settings.update(overrides)
    return SSHTransport(server.host, **settings)  # type: ignore[arg-type]


@pytest.fixture(params=["local", "ssh"])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    """Each transport in turn, both reaching the private Docker engine."""
    engine: DockerEngine = request.getfixturevalue("docker_engine")
    chosen: Transport = LocalTransport(env=engine.env) if request.param == "local" else _ssh(request.getfixturevalue("sshd"))
    yield chosen
    await chosen.close()


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if marker.encode() in (entry / "cmdline").read_bytes() and alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


async def test_run_returns_exit_code_stdout_and_stderr(transport: Transport) -> None:
    result = await transport.run("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert not result.ok


async def test_a_script_killed_by_a_signal_reports_128_plus_the_signal(transport: Transport) -> None:
    result = await transport.run("kill -KILL $$")
    assert result.exit_code == 137


async def test_the_script_text_reaches_the_shell_unchanged(transport: Transport) -> None:
    script = "x='it'\"'\"'s $HOME'; printf '%s|%s\\n' \"$x\" \"$(echo a  b)\""
    result = await transport.run(script)
    assert result.stdout == b"it's $HOME|a b\n"


async def test_a_payload_reaches_the_script_on_stdin_byte_exact(transport: Transport) -> None:
    payload = Payload("test-bytes", os.urandom(1024 * 1024))
    result = await transport.run("cat", payload=payload, timeout=60)
    assert result.ok
    assert len(result.stdout) == len(payload.data)
    assert hashlib.sha256(result.stdout).hexdigest() == payload.sha256


async def test_without_stdin_the_script_reads_end_of_file(transport: Transport) -> None:
    result = await transport.run("wc -c", timeout=10)
    assert result.stdout.strip() == b"0"


async def test_a_timeout_raises_and_leaves_no_process_behind(transport: Transport) -> None:
    marker = f"{300 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        await transport.run(f"sleep {marker} & sleep {marker}; wait", timeout=1.0)
    assert caught.value.reason == "TransportTimeout"
    assert time.monotonic() - started < 5
    wait_until(lambda: not _processes_with(marker), 10, "the timed-out script's processes are gone")


async def test_a_timed_out_script_that_ignores_sigterm_is_still_killed(transport: Transport) -> None:
    marker = f"{300 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"
    with pytest.raises(TransportError):
        await transport.run(f"trap '' TERM; sleep {marker}", timeout=0.5)
    wait_until(lambda: not _processes_with(marker), 10, "the stubborn script's processes are gone")


async def test_a_cancelled_call_leaves_no_process_behind(transport: Transport) -> None:
    marker = f"{300 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"
    call = asyncio.create_task(transport.run(f"sleep {marker}", timeout=60))
    await asyncio.to_thread(wait_until, lambda: bool(_processes_with(marker)), 10, "the script runs")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    wait_until(lambda: not _processes_with(marker), 10, "the cancelled script's processes are gone")


async def _cancel_after(transport: Transport, script: str, delay: float) -> None:
    call = asyncio.create_task(transport.run(script, timeout=60))
    await asyncio.sleep(delay)
    call.cancel()
    # Waited for, not awaited: a CancelledError caught here could be the test's own bound, and the loop would go on.
    done, _ = await asyncio.wait({call}, timeout=10)
    assert done, f"a call cancelled {delay * 1000:.1f} ms after it began is still running 10 s later"
    assert call.cancelled()


async def test_a_local_call_cancelled_while_it_spawns_ends_every_process_and_never_hangs() -> None:
    # asyncio's own clean-up of a spawn cancelled while it connects the pipes kills only the shell, then waits for
    # pipes the shell's children hold: 0-5 ms lands in the spawn, in the first read, or before the call starts.
    marker = f"{300 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"
    transport = LocalTransport()
    rng = random.Random(marker)

    async def repeatedly() -> None:
        for _ in range(200):
            await _cancel_after(transport, f"sleep {marker} & sleep {marker}", rng.uniform(0, 0.005))

    await asyncio.wait_for(repeatedly(), 60)
    wait_until(lambda: not _processes_with(marker), 10, "every cancelled script's processes are gone")


async def test_an_ssh_call_cancelled_while_it_connects_or_starts_ends_every_process_and_never_hangs(sshd: Sshd) -> None:
    # Each repetition opens its own connection (30 of them, not 200: each costs a handshake). The delays spread
    # over one whole call from a cold start, so cancellations land while connecting, opening the channel,
    # starting the command and reading its output. (A TERM sent just as the command starts can be lost in sshd:
    # about one repetition in 15 left a script running until the transport repeated its TERM.)
    marker = f"{300 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"
    rng = random.Random(marker)
    started = time.monotonic()
    cold = _ssh(sshd)
    assert (await cold.run("true")).ok
    await cold.close()
    whole_call = time.monotonic() - started

    async def repeatedly() -> None:
        for _ in range(30):
            transport = _ssh(sshd)
            try:
                await _cancel_after(transport, f"sleep {marker} & sleep {marker}", rng.uniform(0, whole_call))
            finally:
                await transport.close()

    await asyncio.wait_for(repeatedly(), 60)
    wait_until(lambda: not _processes_with(marker), 10, "every cancelled script's processes are gone")


async def test_a_cancelled_local_call_whose_shell_has_exited_still_ends_what_it_left_behind() -> None:
    # The shell is gone, but a child of it still holds the output pipes: reading them to the end would never finish.
    marker = f"{300 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"
    call = asyncio.create_task(LocalTransport().run(f"sleep {marker} & exit 0", timeout=60))
    await asyncio.to_thread(wait_until, lambda: bool(_processes_with(marker)), 10, "the child runs")
    await asyncio.sleep(0.2)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(call, 10)
    wait_until(lambda: not _processes_with(marker), 10, "the child is gone")


async def test_a_local_call_timing_out_after_its_shell_exited_still_ends_what_it_left_behind() -> None:
    marker = f"{300 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"
    with pytest.raises(TransportError):
        await asyncio.wait_for(LocalTransport().run(f"sleep {marker} & exit 0", timeout=1), 10)
    wait_until(lambda: not _processes_with(marker), 10, "the child is gone")


async def test_the_transport_is_usable_after_a_timeout(transport: Transport) -> None:
    with pytest.raises(TransportError):
        await transport.run("sleep 30", timeout=0.5)
    assert (await transport.run("echo again")).stdout == b"again\n"


async def test_every_run_counts_one_round_trip(transport: Transport) -> None:
    for _ in range(3):
        await transport.run("true")
    assert transport.calls == 3


async def test_docker_reaches_the_private_engine(transport: Transport, docker_engine: DockerEngine) -> None:
    result = await transport.run("docker info --format '{{.DockerRootDir}}'", timeout=60)
    assert result.ok, result.stderr
    assert result.text().strip() == str(docker_engine.root / "docker")


async def test_local_transport_runs_with_the_environment_it_was_given() -> None:
    transport = LocalTransport(env={"DEPLOYMIND_PROBE": "a b"}, inherit_env=False)
    result = await transport.run('printf %s "$DEPLOYMIND_PROBE"')
    assert result.stdout == b"a b"


# --- ssh only: host keys, credentials, reachability, reconnecting -------------------------------------------


def _foreign_host_key_line(server: Sshd) -> str:
    key = asyncssh.generate_private_key("ssh-ed25519")
    return f"[127.0.0.1]:{server.port} {key.export_public_key().decode().strip()}"


@pytest.mark.parametrize(
    "known_hosts",
    [
        pytest.param(_foreign_host_key_line, id="other-key"),
        pytest.param(lambda s: "", id="empty"),
        pytest.param(lambda s: s.known_hosts.replace("127.0.0.1", "127.0.0.2"), id="other-host"),
    ],
)
async def test_an_unknown_host_key_is_refused(sshd: Sshd, known_hosts: object) -> None:
    transport = _ssh(sshd, known_hosts=known_hosts(sshd))  # type: ignore[operator]
    with pytest.raises(TransportError) as caught:
        await transport.run("touch /tmp/should-never-run")
    assert caught.value.reason == "HostKeyRejected"
    assert "knownHostsSecretRef" in caught.value.message or "known_hosts" in caught.value.message
    assert transport.calls == 1


async def test_a_key_the_host_does_not_know_is_authentication_failed(sshd: Sshd) -> None:
    stranger = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    with pytest.raises(TransportError) as caught:
        await _ssh(sshd, private_key=stranger).run("true")
    assert caught.value.reason == "AuthenticationFailed"
    assert "authorized_keys" in caught.value.message


async def test_an_unreadable_key_is_authentication_failed(sshd: Sshd) -> None:
    with pytest.raises(TransportError) as caught:
        await _ssh(sshd, private_key="not a key").run("true")
    assert caught.value.reason == "AuthenticationFailed"
    assert "keySecretRef" in caught.value.message


async def test_nothing_listening_is_target_unreachable_quickly(sshd: Sshd, unused_tcp_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        await _ssh(sshd, port=unused_tcp_port).run("true")
    assert caught.value.reason == "TargetUnreachable"
    assert time.monotonic() - started < 5


async def test_runs_share_one_connection(own_sshd: Sshd) -> None:
    transport = _ssh(own_sshd)
    for _ in range(3):
        assert (await transport.run("true")).ok
    await transport.close()
    assert _log_count(own_sshd, "Accepted publickey") == 1


@pytest.fixture
def own_sshd(world_root: Path) -> Iterator[Sshd]:
    """A private sshd this test may stop and restart (the session's `sshd` is shared)."""
    server = Sshd.start(private_dir(world_root, f"sshd-{uuid.uuid4().hex[:8]}"))
    yield server
    _stop_with_sessions(server)


def _log_count(server: Sshd, text: str) -> int:
    return (server.dir / "sshd.log").read_text(errors="replace").count(text)


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _descendants(pid: int) -> list[int]:
    found = []
    todo = [pid]
    while todo:
        kids = _children(todo.pop())
        found += kids
        todo += kids
    return found


def _stop_with_sessions(server: Sshd) -> None:
    """Stop sshd and the per-connection processes it forked, as a host going down would."""
    sessions = _descendants(server.pid)
    server.stop()
    for pid in sessions:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            continue
    wait_until(lambda: not any(alive(pid) for pid in sessions), 10, "sshd's sessions are gone")


async def test_a_stopped_host_is_target_unreachable_quickly_and_reconnects_when_back(own_sshd: Sshd) -> None:
    transport = _ssh(own_sshd)
    assert (await transport.run("echo up")).ok
    _stop_with_sessions(own_sshd)

    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        await transport.run("echo down")
    assert caught.value.reason == "TargetUnreachable"
    assert time.monotonic() - started < 5

    restarted = Sshd.start(own_sshd.dir, port=own_sshd.port)
    try:
        result = await transport.run("echo back")
        assert result.stdout == b"back\n"
    finally:
        await transport.close()
        _stop_with_sessions(restarted)
        own_sshd.pid = restarted.pid  # the fixture's teardown then finds nothing left to stop


async def test_a_connection_dropped_under_the_transport_is_replaced_transparently(own_sshd: Sshd) -> None:
    transport = _ssh(own_sshd)
    assert (await transport.run("true")).ok
    sessions = _descendants(own_sshd.pid)  # the connection's processes: it dies, the daemon stays
    for pid in sessions:
        os.kill(pid, 9)
    wait_until(lambda: not any(alive(pid) for pid in sessions), 10, "the connection's processes are gone")

    result = await asyncio.wait_for(transport.run("echo fresh"), 10)

    assert result.stdout == b"fresh\n"
    await transport.close()
    assert _log_count(own_sshd, "Accepted publickey") == 2


async def test_a_host_that_stops_answering_on_an_open_connection_is_target_unreachable_within_the_connect_timeout(
        own_sshd: Sshd) -> None:
    transport = _ssh(own_sshd, connect_timeout=2.0)
    assert (await transport.run("true")).ok
    sessions = _descendants(own_sshd.pid)  # the connection's processes, frozen: it stays open and answers nothing
    for pid in sessions:
        os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            await asyncio.wait_for(transport.run("echo late"), 20)
        assert caught.value.reason == "TargetUnreachable"
        assert time.monotonic() - started < 5
    finally:
        for pid in sessions:
            os.kill(pid, signal.SIGCONT)

    result = await asyncio.wait_for(transport.run("echo fresh"), 10)

    assert result.stdout == b"fresh\n"
    await transport.close()
