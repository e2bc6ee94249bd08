"""A Secret value that is not UTF-8 text never reaches an app's environment, not even altered: the Deployment is
Stalled with `SecretNotText`, naming the Secret and the key, and nothing starts on the host."""

from __future__ import annotations

import base64

import pytest
import yaml
from dm import Cluster, Operator, deployment, docker, ready

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import AppRepo
from world.ports import free_port

pytestmark = pytest.mark.e2e

BINARY = b"\x89PNG\r\n\x1a\n\xff\xfe"  # what a decode with replacement characters would silently turn into text


def test_a_binary_secret_value_in_the_env_stalls_the_deployment_and_starts_nothing(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, docker_engine: DockerEngine) -> None:
    cluster.run("create", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "blob"}, "type": "Opaque",
        "data": {"token": base64.b64encode(BINARY).decode()}}))
    cluster.apply(deployment("web", app_repo, free_port(), container={"env": [
        {"name": "APP_TOKEN", "valueFrom": {"secretKeyRef": {"name": "blob", "key": "token"}}}]}))

    status = cluster.wait_status("web", lambda s: ready(s) == "False/SecretNotText", 60, "Stalled SecretNotText")
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "SecretNotText"
    assert f"Secret {cluster.namespace}/blob key 'token' is not UTF-8 text" in stalled["message"]
    assert "APP_TOKEN" in stalled["message"]
    uid = cluster.get("web")["metadata"]["uid"]
    assert docker(docker_engine, "ps", "-aq", "--filter", f"label=deploymind.io/uid={uid}").split() == []
