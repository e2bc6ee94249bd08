"""End-to-end fixtures: a namespace per test, the operator as a process watching it (as the chart's ServiceAccount,
under the chart's RBAC: chart_rbac.py), and a way to clean the host."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from chart_rbac import AUDIT_DIR_ENV, chart_operator_kubeconfig, chart_operators, dump_audit
from dm import Cluster, Operator, leave_no_trace

from deploymind.sandbox.docker_engine import DockerEngine
from world.dirs import private_dir
from world.kube import Kube
from world.kubetools import Kubectl

_RAN: set[str] = set()
"""Node ids of the e2e tests this session ran (set up), for the audit of several sessions (chart_rbac.py)."""


def pytest_runtest_setup(item: pytest.Item) -> None:
    _RAN.add(item.nodeid)


@pytest.fixture(scope="session", autouse=True)
def audit_dump(kube: Kube) -> Iterator[None]:
    """With $DEPLOYMIND_AUDIT_DIR set (scripts/run-tests spreads tests/e2e over pytest-xdist workers, each its own
    session and emulator), write what this session's chart operators asked for, for test_rbac_audit.py to judge
    the union once every session has ended."""
    yield
    if directory := os.environ.get(AUDIT_DIR_ENV):
        audit = kube.emulator.audit
        requested = {op.user: audit.requested_by(op.user) for op in chart_operators(audit.requesters())}
        dump_audit(Path(directory), requested, _RAN)


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    done = kubectl("create", "namespace", name)
    assert done.returncode == 0, done.stderr
    yield name


@pytest.fixture
def cluster(kubectl: Kubectl, namespace: str) -> Cluster:
    return Cluster(kubectl, namespace)


@pytest.fixture
def operator_env() -> dict[str, str]:
    """Extra environment of the operator process; a test module overrides this (e.g. DEPLOYMIND_DATABASE_URL)."""
    return {}


@pytest.fixture
def operator(kube: Kube, docker_engine: DockerEngine, namespace: str, world_root: Path,
             operator_env: dict[str, str]) -> Iterator[Operator]:
    op = Operator(kubeconfig=chart_operator_kubeconfig(kube, namespace), namespace=namespace,
                  workdir=private_dir(world_root, f"operator-{namespace}", mode=0o755),
                  env={**docker_engine.env, **operator_env})
    op.start()
    yield op
    op.stop()
    leave_no_trace(op, docker_engine, namespace)
