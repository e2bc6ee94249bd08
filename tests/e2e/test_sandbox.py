"""The README's first command: `deploymind sandbox --apply examples/sandbox/` deploys the example app for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from dm import http_get, wait_for

from deploymind.sandbox.docker_engine import DockerEngine
from world.ports import free_port, port_open

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_PORT = 18080  # examples/sandbox/deployment.yaml


def test_the_sandbox_deploys_the_example_app_and_cleans_up_on_ctrl_c(tmp_path: Path,
                                                                     docker_engine: DockerEngine) -> None:
    lines: list[str] = []
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploymind", "sandbox", "--state-dir", str(tmp_path / "sandbox"),
         "--http-port", str(free_port()), "--docker-host", docker_engine.host,
         "--apply", str(ROOT / "examples" / "sandbox")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=dict(os.environ))
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        wait_for(lambda: any(line.startswith("sandbox ready: KUBECONFIG=") for line in lines), 60, "sandbox ready")
        assert (tmp_path / "sandbox" / "kubeconfig").exists()
        wait_for(lambda: any("phase=Baking" in line or "phase=Deployed" in line for line in lines), 120,
                 "the example app released")
        status, body = http_get(EXAMPLE_PORT)
        assert status == 200 and "hello from DeployMind" in body
        assert any("phase=Building" in line for line in lines), "progress is shown as it happens"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        reader.join(5)
    assert proc.returncode == 0, "".join(lines)
    assert any("removed 1 app container" in line for line in lines), "".join(lines)
    assert not port_open(EXAMPLE_PORT), "the app container is gone after Ctrl-C"
