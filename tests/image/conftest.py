"""The operator image (built once per session from the repository's Dockerfile) and ways to run it locked down."""

from __future__ import annotations

import functools
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from imagebuild import (
    BASE_TAG,
    BUILD_TIMEOUT_S,
    IMAGE_TAG,
    IMAGE_UID,
    REPO,
    STATE_DIR,
    DockerCli,
    DockerRun,
    docker,
    make_base_tarball,
)

from deploymind.sandbox.docker_engine import DockerEngine
from world.dirs import private_dir

# Filled by the fixtures and printed at the end of the session (scripts/run-tests shows the image test's log tail).
FIGURES: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.write_line("operator image: " + ", ".join(f"{k} {v}" for k, v in FIGURES.items()))


@pytest.fixture(scope="session")
def debian_base(world_root: Path, docker_engine: DockerEngine) -> str:
    """A bookworm-slim-like base image on the private engine; its tarball is kept under the world root."""
    workdir = private_dir(world_root, "image", mode=0o700)
    tarball = workdir / "bookworm-minbase.tar"
    if not tarball.exists():
        started = time.monotonic()
        make_base_tarball(workdir, tarball)
        FIGURES["debootstrap"] = f"{time.monotonic() - started:.0f} s"
    imported = docker(docker_engine, "import", str(tarball), BASE_TAG)
    assert imported.returncode == 0, imported.stderr
    return BASE_TAG


@pytest.fixture(scope="session")
def operator_image(debian_base: str, docker_engine: DockerEngine) -> str:
    """The image of the repository's Dockerfile, built on `debian_base`; its tag."""
    started = time.monotonic()
    built = docker(docker_engine, "build", "--progress", "plain", "--network", "host",
                   "--build-arg", f"BASE={debian_base}", "--tag", IMAGE_TAG, str(REPO), timeout=BUILD_TIMEOUT_S)
    assert built.returncode == 0, f"docker build failed:\n{built.stdout[-4000:]}\n{built.stderr[-4000:]}"
    FIGURES["build"] = f"{time.monotonic() - started:.0f} s"
    size = docker(docker_engine, "image", "inspect", "--format", "{{.Size}}", IMAGE_TAG)
    FIGURES["size"] = f"{int(size.stdout) / 1e6:.0f} MB"
    return IMAGE_TAG


@pytest.fixture
def docker_cli(docker_engine: DockerEngine) -> DockerCli:
    """`docker_cli(*args, timeout=120)`: the docker CLI against the private engine (inspect, logs, …)."""
    return functools.partial(docker, docker_engine)


@pytest.fixture
def docker_run(operator_image: str, docker_engine: DockerEngine) -> Iterator[DockerRun]:
    """`docker_run(*args, entrypoint=None, mounts=(), state=None, name=None)`: the image as a locked-down pod
    runs it (read-only root, user 65532, host network, only /tmp and the state dir writable). The state dir is
    `state` (a host directory) or a tmpfs. With `name` the container runs detached and is removed at the end of
    the test; otherwise it is removed when it exits."""
    detached: list[str] = []

    def run(*args: str, entrypoint: str | None = None, mounts: Sequence[str] = (), state: Path | None = None,
            name: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        options = ["--read-only", "--user", f"{IMAGE_UID}:{IMAGE_UID}", "--network", "host", "--tmpfs", "/tmp"]
        if state is None:
            options += ["--tmpfs", f"{STATE_DIR}:uid={IMAGE_UID},gid={IMAGE_UID},mode=0700"]
        else:
            options += ["--volume", f"{state}:{STATE_DIR}"]
        for mount in mounts:
            options += ["--volume", mount]
        if entrypoint is not None:
            options += ["--entrypoint", entrypoint]
        if name is None:
            options.append("--rm")
        else:
            options += ["--detach", "--name", name]
            detached.append(name)
        return docker(docker_engine, "run", *options, operator_image, *args, timeout=timeout)

    yield run
    for name in detached:
        docker(docker_engine, "rm", "--force", name)
