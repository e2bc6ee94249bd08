"""End-to-end fixtures: a namespace per test, the operator as a process watching it (as the chart's ServiceAccount,
under the chart's RBAC: chart_rbac.py), and a way to clean the host."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from chart_rbac import chart_operator_kubeconfig
from dm import Cluster, Operator, leave_no_trace

from deploymind.sandbox.docker_engine import DockerEngine
from world.dirs import private_dir
from world.kube import Kube
from world.kubetools import Kubectl


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
