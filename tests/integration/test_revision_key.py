"""The revision key Secret against the API emulator: made once, reused after, and refused when it is unusable."""

from __future__ import annotations

import asyncio
import base64
import uuid

import pytest

from deploymind.controller import revisionkey
from deploymind.controller.kube import Kube as KubeClient
from deploymind.controller.kube import load_api_client
from world.kube import Kube
from world.kubetools import Kubectl


@pytest.fixture
def namespace(kubectl: Kubectl) -> str:
    name = f"key-{uuid.uuid4().hex[:8]}"
    assert kubectl("create", "namespace", name).returncode == 0
    return name


def client(kube: Kube) -> KubeClient:
    return KubeClient(load_api_client(str(kube.kubeconfig)))


async def test_the_key_is_made_once_and_every_replica_reads_the_same_one(kube: Kube, namespace: str,
                                                                          kubectl: Kubectl) -> None:
    first, second = await asyncio.gather(revisionkey.load_or_create(client(kube), namespace),
                                         revisionkey.load_or_create(client(kube), namespace))
    assert first == second and len(first) == revisionkey.KEY_BYTES
    assert await revisionkey.load_or_create(client(kube), namespace) == first
    stored = kubectl("get", "secret", revisionkey.SECRET_NAME, "-n", namespace, "-o",
                     "jsonpath={.data.key}").stdout
    assert base64.b64decode(stored) == first


async def test_a_key_secret_without_a_usable_key_is_refused_with_what_to_do(kube: Kube, namespace: str,
                                                                            kubectl: Kubectl) -> None:
    made = kubectl("create", "secret", "generic", revisionkey.SECRET_NAME, "-n", namespace, "--from-literal=key=short")
    assert made.returncode == 0, made.stderr
    with pytest.raises(revisionkey.RevisionKeyError, match=r"data\.key .*delete the Secret"):
        await revisionkey.load_or_create(client(kube), namespace)


async def test_an_unreachable_api_is_a_clear_error(tmp_path_factory: pytest.TempPathFactory) -> None:
    config = tmp_path_factory.mktemp("kc") / "kubeconfig"
    config.write_text("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
                      "users: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
                      "current-context: x\n")
    with pytest.raises(revisionkey.RevisionKeyError, match="cannot reach the Kubernetes API"):
        await revisionkey.load_or_create(KubeClient(load_api_client(str(config))), "default")
