"""End-to-end fixtures: a namespace per test, the operator as a process watching it, and a way to clean the host."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dm import Cluster, Operator

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
    op = Operator(kubeconfig=kube.kubeconfig, namespace=namespace,
                  workdir=private_dir(world_root, f"operator-{namespace}", mode=0o755),
                  env={**docker_engine.env, **operator_env})
    op.start()
    yield op
    op.stop()
    # pytest shows this only when the test failed
    print("---- operator log ----\n" + "\n".join(line for line in op.logs().splitlines() if " DEBUG " not in line))
    remove_containers(docker_engine, namespace)


def remove_containers(engine: DockerEngine, namespace: str) -> None:
    """Remove what a test's Deployments left on the engine (by the namespace label every container carries)."""
    env = {**os.environ, **engine.env}
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=deploymind.io/namespace={namespace}"],
                         capture_output=True, text=True, env=env, check=False).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, env=env, check=False)
