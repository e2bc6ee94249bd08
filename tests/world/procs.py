"""Start and stop processes by PID, and wait for conditions with a deadline (never a fixed sleep)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class WorldError(Exception):
    """A part of the test world could not be started; `reason` is a CamelCase constant."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Return as soon as `condition()` is true; raise TimeoutError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not true after {timeout:.1f} s")
        time.sleep(interval)


async def wait_until_async(condition: Callable[[], bool], within: float, what: str, interval: float = 0.05) -> None:
    """`wait_until` for a test's event loop: the loop keeps running what the test awaits on; AssertionError naming
    `what` at the deadline."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(interval)


def eventually(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.1) -> T:
    """Call `check` until it returns without raising; its last exception propagates at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except Exception:
            if time.monotonic() > deadline:
                raise
        time.sleep(interval)


def start(
    argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session with stdout and stderr appended to `log_path`."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
        )


def processes_with(text: str) -> list[int]:
    """Live processes (other than this one) whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if text.encode() in (entry / "cmdline").read_bytes() and alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_pid(pid: int, timeout: float = 10.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM `pid`, SIGKILL it if it is still there at the deadline; reap it when it is our child."""
    if process is not None and process.pid != pid:
        process = None  # a stale handle (the daemon was restarted under a new PID)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        if process is not None:
            try:
                process.wait(timeout)
                return
            except subprocess.TimeoutExpired:
                continue
        try:
            wait_until(lambda: not alive(pid), timeout, f"process {pid} exits")
            return
        except TimeoutError:
            continue
    if process is not None:
        process.poll()


def read_pid(path: Path, timeout: float = 10.0) -> int:
    """The PID a daemon wrote to `path` (waiting for the file to appear)."""
    wait_until(lambda: path.exists() and path.read_text().strip().isdigit(), timeout, f"{path} is written")
    return int(path.read_text().strip())


def log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
