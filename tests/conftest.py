"""Session fixtures for the real test world: each part starts on first use and stops at the end of the session.

Parts run on 127.0.0.1 with free ports, in private directories under one /tmp world root, and are stopped by PID.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from world.apps import AppRepo, create_app_repo
from world.dirs import make_world_root, private_dir, remove_tree
from world.sshd import Sshd

from deploymind.sandbox.docker_engine import DockerEngine


@pytest.fixture(scope="session")
def world_root() -> Iterator[Path]:
    """One /tmp directory (traversable by the sshd and postgres users) that holds every part's files."""
    root = make_world_root()
    yield root
    remove_tree(root)


@pytest.fixture(scope="session")
def docker_engine(world_root: Path) -> Iterator[DockerEngine]:
    """A private dockerd (host networking only); `.host` is its unix:// socket, `.env` sets DOCKER_HOST."""
    engine = DockerEngine.start(private_dir(world_root, "docker"))
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def sshd(world_root: Path, docker_engine: DockerEngine) -> Iterator[Sshd]:
    """A private sshd on 127.0.0.1 whose non-root login user (docker group) gets DOCKER_HOST of `docker_engine`."""
    server = Sshd.start(private_dir(world_root, "sshd"), docker_host=docker_engine.host)
    yield server
    server.stop()


@pytest.fixture
def app_repo(world_root: Path) -> AppRepo:
    """A fresh Git repository of the fixture app (branch `main`, one healthy revision), readable by the sshd user."""
    return create_app_repo(private_dir(world_root, "apps") / uuid.uuid4().hex[:12])
