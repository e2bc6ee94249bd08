"""docs/sandbox.md, "Try the ssm transport against moto", run as it is written: `scripts/testenv up moto`, an
instance and a bucket made with the AWS CLI, `deploymind sandbox --build-bucket …` in the background and a
`transport: ssm` Deployment applied with kubectl. The app is built and released on the instance through SSM
commands, its build context passes through S3 and is deleted, and stopping the sandbox and the world leaves nothing.

The test changes only what must differ when other tests run beside it: its own world directory instead of
/tmp/dmworld, and free ports instead of the doc's 18081 and the sandbox's default 8080 (`REPLACED`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from dm import http_get, wait_for

from world.dirs import private_dir
from world.moto_ssm import DUMMY_CREDENTIALS
from world.ports import free_port, port_open
from world.procs import alive
from world.tools import kubectl_path

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "sandbox.md"
SECTION = "## Try the ssm transport against moto"
NAME = "hello-ssm"
BUCKET = "dm-builds"


def doc_blocks() -> list[str]:
    """The `sh` blocks of the section, in order."""
    text = DOC.read_text()
    assert SECTION in text, f"{DOC} has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return [part.split("```", 1)[0] for part in section.split("```sh\n")[1:]]


@dataclass
class DocRun:
    """What the doc's first block started (the sandbox in the background, the world under `world`)."""

    cwd: Path
    world: Path
    app_port: int
    sandbox_pid: int
    instance: str
    env: dict[str, str]

    @property
    def log(self) -> str:
        return (self.cwd / "sandbox.log").read_text()

    def aws(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.env["AWS_ENDPOINT_URL"],
                            region_name=DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"],
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def status(self) -> dict[str, Any]:
        out = subprocess.run(["kubectl", "get", "dmd", NAME, "-n", "default", "-o", "json"], capture_output=True,
                             text=True, timeout=30, check=True, cwd=self.cwd,
                             env={**self.env, "KUBECONFIG": str(self.cwd / ".deploymind-sandbox" / "kubeconfig")})
        status: dict[str, Any] = json.loads(out.stdout).get("status", {})
        return status


def shell_env() -> dict[str, str]:
    """The test's environment, with the test world's kubectl and this interpreter's `deploymind` first on PATH.
    Until the doc's `eval` sets the moto endpoint, AWS calls go to a closed port on loopback (never to AWS)."""
    env = {**os.environ, **DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    env["PATH"] = f"{kubectl_path().parent}:{Path(sys.executable).parent}:{env['PATH']}"
    env.pop("KUBECONFIG", None)
    env.pop("DOCKER_HOST", None)
    return env


def stop(pid: int, within_s: float) -> None:
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + within_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def doc_run(world_root: Path) -> Iterator[DocRun]:
    cwd = private_dir(world_root, f"sandbox-ssm-{uuid.uuid4().hex[:8]}")
    for name in ("scripts", "examples"):  # run "from the repository's top folder", as the doc says
        (cwd / name).symlink_to(ROOT / name)
    world = cwd / "dmworld"
    app_port, http_port = free_port(), free_port()
    replaced = {"/tmp/dmworld": str(world), "port: 18081": f"port: {app_port}",
                "--apps examples/sandbox/apps": f"--apps examples/sandbox/apps --http-port {http_port}"}
    block = doc_blocks()[0]
    for old, new in replaced.items():
        assert old in block, f"the doc's block no longer has {old!r}: update the test's replacements"
        block = block.replace(old, new)
    script = ("set -euo pipefail\n" + block
              + 'printf "instance=%s\\nendpoint=%s\\n" "$INSTANCE" "$AWS_ENDPOINT_URL"\n')
    env = shell_env()
    pid_file = cwd / "sandbox.pid"  # the doc's block writes it right after starting the sandbox
    try:
        ran = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
        out = dict(line.split("=", 1) for line in ran.stdout.splitlines() if "=" in line and " " not in line)
        assert ran.returncode == 0, f"the doc's commands failed ({ran.returncode}):\n{ran.stdout}\n{ran.stderr}"
        assert out["instance"].startswith("i-") and out["endpoint"].startswith("http://127.0.0.1:"), ran.stdout
        yield DocRun(cwd=cwd, world=world, app_port=app_port, sandbox_pid=int(pid_file.read_text()),
                     instance=out["instance"],
                     env={**env, "AWS_ENDPOINT_URL": out["endpoint"], "INSTANCE": out["instance"]})
    finally:
        # However the block ended (a failure, its timeout): the sandbox it started, then the world.
        if pid_file.exists() and pid_file.read_text().strip().isdigit():
            stop(int(pid_file.read_text()), 30)
        subprocess.run([str(ROOT / "scripts" / "testenv"), "down", "--dir", str(world)], capture_output=True,
                       timeout=120, check=False)


def test_the_sandbox_doc_deploys_over_ssm_to_a_moto_instance_and_stops_clean(doc_run: DocRun) -> None:
    status = wait_for(lambda: (s := doc_run.status()).get("phase") in ("Baking", "Deployed") and s, 180,
                      f"{NAME} released through SSM")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", ready
    assert status["target"]["instanceId"] == doc_run.instance
    code, body = http_get(doc_run.app_port)
    assert code == 200 and "hello from DeployMind" in body
    assert f"default/{NAME}: phase=Building" in doc_run.log, "the sandbox shows the rollout's progress"

    ssm = doc_run.aws("ssm")
    commands = ssm.list_commands(InstanceId=doc_run.instance)["Commands"]
    assert commands and {c["Status"] for c in commands} == {"Success"}, [(c["Status"], c["Comment"]) for c in commands]
    # The doc's own way of looking at them prints the same commands.
    listed = subprocess.run(["bash", "-c", doc_blocks()[1].splitlines()[-1]], cwd=doc_run.cwd, env=doc_run.env,
                            capture_output=True, text=True, timeout=60, check=True).stdout
    assert len(listed.splitlines()) >= len(commands) and "Success" in listed, listed
    # The build context went through the bucket and was deleted after the release.
    wait_for(lambda: doc_run.aws("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0, 30,
             f"s3://{BUCKET} empty after the release")

    stop(doc_run.sandbox_pid, 30)
    assert "removed 1 app container" in doc_run.log, doc_run.log
    assert not port_open(doc_run.app_port), "the app container is gone with the sandbox"
    down = subprocess.run([str(ROOT / "scripts" / "testenv"), "down", "--dir", str(doc_run.world)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert down.returncode == 0, down.stderr
    assert not doc_run.world.exists(), "testenv down removes the world directory"
