"""The README's first command: `deploymind sandbox --apply examples/sandbox/` deploys the example app for real,
and however it ends (Ctrl-C, SIGTERM, SIGKILL) it leaves no engine, no container and no process of its own behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dm import http_get, wait_for

from world.dirs import private_dir
from world.ports import free_port, port_open
from world.procs import alive

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_PORT = 18080  # examples/sandbox/deployment.yaml
STOP_WITHIN_S = 5.0


@dataclass
class Sandbox:
    """`deploymind sandbox --apply examples/sandbox/` with its own Docker engine under `state`."""

    state: Path
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def line_with(self, *texts: str) -> str | None:
        """The first output line containing one of `texts`; fails at once if the sandbox has exited."""
        found = next((line for line in self.lines if any(text in line for text in texts)), None)
        if found is None and self.process.poll() is not None:
            raise AssertionError(f"the sandbox exited with {self.process.returncode}:\n{self.output}")
        return found

    def wait_released(self) -> str:
        """Wait for the example app's first release; return its revision id."""
        wait_for(lambda: self.line_with("sandbox ready: KUBECONFIG="), 60, "sandbox ready")
        line = wait_for(lambda: self.line_with("phase=Baking", "phase=Deployed"), 120, "the example app released")
        return line.split("revision=")[1].split()[0]

    def history(self, name: str) -> str:
        """`deploymind history NAME` with the sandbox's kubeconfig: through the API server's service proxy, no --url."""
        return subprocess.run([sys.executable, "-m", "deploymind", "history", name, "-n", "default"],
                              capture_output=True, text=True, timeout=30, check=True,
                              env={**os.environ, "KUBECONFIG": str(self.state / "kubeconfig")}).stdout

    def engine_pid(self) -> int:
        return int((self.state / "docker" / "docker.pid").read_text())

    def own_processes(self) -> list[int]:
        """Processes (other than the sandbox) whose command line names the state directory: the engine, the reaper."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != self.process.pid and alive(int(entry.name)):
                try:
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if str(self.state) in cmdline:
                    found.append(int(entry.name))
        return found


@pytest.fixture
def sandbox(world_root: Path) -> Iterator[Sandbox]:
    # A short state directory: the engine's unix sockets live under it.
    state = private_dir(world_root, f"sandbox-{uuid.uuid4().hex[:8]}")
    process = subprocess.Popen(
        [sys.executable, "-m", "deploymind", "sandbox", "--state-dir", str(state), "--http-port", str(free_port()),
         "--apply", str(ROOT / "examples" / "sandbox")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=dict(os.environ))
    running = Sandbox(state=state, process=process)
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: running.lines.extend(iter(process.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    yield running
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    reader.join(5)


def test_the_sandbox_deploys_the_example_app_and_stops_at_once_on_sigterm(sandbox: Sandbox) -> None:
    revision = sandbox.wait_released()
    status, body = http_get(EXAMPLE_PORT)
    assert status == 200 and "hello from DeployMind" in body
    assert "phase=Building" in sandbox.output, "progress is shown as it happens"

    def history_with_the_release() -> str | None:
        out = sandbox.history("hello")
        return out if revision in out else None

    history = wait_for(history_with_the_release, 30, "the release in `deploymind history hello`")
    assert history.splitlines()[0].split()[:3] == ["STARTED", "REVISION", "TRIGGER"]
    engine = sandbox.engine_pid()

    started = time.monotonic()
    sandbox.process.send_signal(signal.SIGTERM)
    sandbox.process.wait(30)
    took = time.monotonic() - started
    assert sandbox.process.returncode == 0, sandbox.output
    assert took < STOP_WITHIN_S, f"the sandbox took {took:.1f} s to stop"
    assert "removed 1 app container" in sandbox.output, sandbox.output
    assert not port_open(EXAMPLE_PORT), "the app container is gone"
    assert not alive(engine), "the private Docker engine is stopped"
    assert not sandbox.own_processes(), "no engine, container or reaper process is left"


def test_a_killed_sandbox_leaves_no_engine_and_no_container_behind(sandbox: Sandbox) -> None:
    sandbox.wait_released()
    assert port_open(EXAMPLE_PORT)
    engine = sandbox.engine_pid()

    sandbox.process.kill()  # what a supervisor does when its grace period runs out: no cleanup of its own
    sandbox.process.wait(10)
    wait_for(lambda: not alive(engine), 20, "the private Docker engine stopped by the reaper")
    assert not port_open(EXAMPLE_PORT), "the app container is gone"
    wait_for(lambda: not sandbox.own_processes(), 10, "no process of the sandbox left")
    assert "removed 1 app container" in (sandbox.state / "reaper.log").read_text()
