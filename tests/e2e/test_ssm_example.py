"""The ssm examples, applied as users would apply them, reach Ready over SSM on the test world's moto server:
examples/ssm-minimal.yaml, and examples/env-from-secret.yaml (its Secret too, whose value reaches the container and
never SSM's command history). Only what cannot be true here is replaced: the instance id (a moto instance tagged for
the test's namespace), the repository (a local fixture repository: the examples' GitHub one is not reachable
offline) and the container port (a free one: 8080 may be taken on this machine). Everything else, the region,
resources and every default the examples rely on (ref main, a 60 s probe, a 300 s bake) included, is the file's.
(examples/prebuilt-image.yaml pulls from ghcr.io, which is not reachable here: the API checks it, in
tests/integration/test_manifests_emulator.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from dm import Cluster, Operator, docker, http_get, ready
from targets import Target, operator_env_fixture, over, ssm_leftovers, target_fixture, transport_env_fixture, transport_fixture  # noqa: F401

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import AppRepo
from world.ports import free_port

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def made_true(documents: list[dict[str, Any]], target: Target, repo: AppRepo, port: int) -> dict[str, Any]:
    """The example's Deployment, with the three replacements; returns it (the documents are edited in place)."""
    [manifest] = [d for d in documents if d["kind"] == "Deployment"]
    spec = manifest["spec"]
    spec["target"]["instanceId"] = target.instance_id
    spec["source"]["repo"] = repo.url
    spec["container"]["port"] = port
    return manifest


@over("ssm")
@pytest.mark.parametrize("example", ["ssm-minimal.yaml", "env-from-secret.yaml"])
def test_an_ssm_example_reaches_ready_over_ssm(cluster: Cluster, operator: Operator, app_repo: AppRepo,
                                               target: Target, docker_engine: DockerEngine, namespace: str,
                                               example: str) -> None:
    documents = list(yaml.safe_load_all((EXAMPLES / example).read_text()))
    port = free_port()
    manifest = made_true(documents, target, app_repo, port)
    for document in documents:
        cluster.apply(document)

    name = manifest["metadata"]["name"]
    status = cluster.wait_status(name, lambda s: ready(s) == "True/Baking" or ready(s) == "True/Deployed", 90,
                                 "Ready over ssm")
    assert status["revision"]["commit"] == app_repo.head()
    assert status["target"]["instanceId"] == target.instance_id
    assert http_get(port) == (200, "revision 1\n")
    env = docker(docker_engine, "exec", status["target"]["container"], "/bin/busybox", "env").splitlines()
    secrets = [d for d in documents if d["kind"] == "Secret"]
    values = [value for secret in secrets for value in secret.get("stringData", {}).values()]
    for var in manifest["spec"]["container"].get("env", []):
        wanted = var["value"] if "value" in var else secrets[0]["stringData"][var["valueFrom"]["secretKeyRef"]["key"]]
        assert f"{var['name']}={wanted}" in env, var["name"]
    resources = manifest["spec"]["container"].get("resources")
    if resources:  # env-from-secret.yaml: 256m and half a CPU
        limits = docker(docker_engine, "inspect", "--format", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}",
                        status["target"]["container"]).split()
        assert limits == ["268435456", "500000000"], (resources, limits)
    assert ssm_leftovers(target, namespace, values) == []
