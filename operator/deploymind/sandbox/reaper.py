"""A watchdog that cleans up after a sandbox that died without stopping (SIGKILL, a crash, an OOM kill).

`deploymind sandbox` starts it first, in a session of its own (so signals sent to the sandbox's process group do not
reach it), with a pipe as its standard input whose write end only the sandbox holds. The kernel closes that end when
the sandbox's process ends, however it ends. Until then the sandbox writes one line per news: `engine PID` as soon as
its private dockerd is spawned, `apps` once the operator (which starts app containers) runs, and `done` when it has
cleaned up itself. At end of input without `done`, the watchdog does what the sandbox had to leave undone: it force-removes the
app containers (label `deploymind.io/uid`) if the operator ran, and stops the private engine if it was started, and
never touches an engine or containers the sandbox did not start (another sandbox's, on the same state directory).

Why not a parent-death signal on dockerd instead: containers outlive a killed dockerd (their containerd shims are
detached by design), so the engine must still be running to remove them, and PR_SET_PDEATHSIG fires when the
*thread* that started the child ends, which for a child started from a worker thread is not the process's end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from deploymind.sandbox.docker_engine import DockerEngine

ENGINE: Final = "engine"
APPS: Final = "apps"
DONE: Final = "done"
APP_LABEL: Final = "deploymind.io/uid"


def remove_app_containers(docker_host: str) -> int:
    """Force-remove every container DeployMind started on this engine (they carry the deploymind.io/uid label)."""
    env = {**os.environ, "DOCKER_HOST": docker_host}
    try:
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={APP_LABEL}"], env=env, capture_output=True,
                             text=True, check=False, timeout=20).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], env=env, capture_output=True, check=False, timeout=30)
    except subprocess.TimeoutExpired:
        return 0  # an engine that does not answer is stopped next, which ends its containers too
    return len(ids)


@dataclass(frozen=True)
class News:
    """What the sandbox said it had started."""

    done: bool = False
    apps: bool = False
    engine_pid: int | None = None

    @classmethod
    def parse(cls, text: str) -> News:
        lines = text.splitlines()
        pids = [int(line.split()[1]) for line in lines if line.startswith(f"{ENGINE} ") and line.split()[1].isdigit()]
        return cls(done=DONE in lines, apps=APPS in lines, engine_pid=pids[-1] if pids else None)


def reap(docker_host: str, engine_root: Path | None, news: News) -> None:
    """What the sandbox's own shutdown does after the operator, for what the sandbox said it had started."""
    if news.apps:
        removed = remove_app_containers(docker_host)
        print(f"removed {removed} app container(s) from {docker_host}", flush=True)
    if engine_root is not None and news.engine_pid is not None:
        DockerEngine(root=engine_root.resolve(), pid=news.engine_pid).stop()
        print(f"stopped the private Docker engine under {engine_root} (pid {news.engine_pid})", flush=True)


@dataclass
class Reaper:
    """The running watchdog of one sandbox."""

    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, log: Path, docker_host: str, engine_root: Path | None) -> Reaper:
        argv = [sys.executable, "-m", "deploymind.sandbox.reaper", "--docker-host", docker_host]
        if engine_root is not None:
            argv += ["--engine-root", str(engine_root)]
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            # Its output goes to a file: a watchdog holding the sandbox's stdout would keep that pipe open after
            # the sandbox exits.
            process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        return cls(process)

    def engine_spawned(self, pid: int) -> None:
        """The private dockerd runs (perhaps not ready yet): stop it should the sandbox die."""
        self._tell(f"{ENGINE} {pid}")

    def apps_may_run(self) -> None:
        """The operator runs and may start app containers: remove them should the sandbox die."""
        self._tell(APPS)

    def release(self, timeout: float = 5.0) -> None:
        """The sandbox cleaned up itself: the watchdog exits without touching anything."""
        self._tell(DONE)
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)

    def _tell(self, line: str) -> None:
        stdin = self.process.stdin
        if stdin is not None:
            with contextlib.suppress(BrokenPipeError, ValueError):  # a watchdog that died cannot be told
                stdin.write(f"{line}\n".encode())
                stdin.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploymind.sandbox.reaper", description=__doc__)
    parser.add_argument("--docker-host", required=True)
    parser.add_argument("--engine-root", type=Path)
    args = parser.parse_args(argv)
    # Blocks until the sandbox's process has ended (or closed the pipe after `done`).
    news = News.parse(sys.stdin.buffer.read().decode(errors="replace"))
    if news.done:
        return 0
    print("the sandbox ended without cleaning up; cleaning up after it", flush=True)
    reap(args.docker_host, args.engine_root, news)
    return 0


if __name__ == "__main__":
    sys.exit(main())
