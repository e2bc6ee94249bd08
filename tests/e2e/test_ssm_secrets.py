"""Through SSM a Secret env value reaches the container and never SSM's command history: not in `list_commands`
(the command text), not in any `get_command_invocation` output (a health tick's included), not in the object's
status or Events; and the Parameter Store copy that carried it to the instance is gone once the release is done."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import yaml
from dm import Cluster, Operator, deployment, docker, http_get, ready, wait_for
from targets import Target, operator_env_fixture, over, ssm_leftovers, target_fixture, transport_env_fixture, transport_fixture  # noqa: F401

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import AppRepo
from world.moto_ssm import MotoServer, command_history
from world.ports import free_port

pytestmark = pytest.mark.e2e


@over("ssm")
def test_a_secret_env_value_reaches_the_container_and_never_ssm_command_history(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, target: Target, moto_server: MotoServer,
        docker_engine: DockerEngine, namespace: str) -> None:
    moto_server.reset_calls()
    value = f"s3cret-{uuid.uuid4().hex}"
    # Through stdin and base64: the value is never on a command line of the test's.
    cluster.run("create", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-secret"}, "type": "Opaque",
        "data": {"token": base64.b64encode(value.encode()).decode()}}))
    port = free_port()
    cluster.apply(deployment("web", app_repo, port, target=target.spec, rollback={"bakeSeconds": 0},
                             healthCheck={"periodSeconds": target.period_s},
                             container={"port": port, "env": [
                                 {"name": "APP_TOKEN", "valueFrom": {"secretKeyRef": {"name": "app-secret",
                                                                                      "key": "token"}}}]}))
    status = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "deployed")
    assert ready(status) == "True/Deployed" and http_get(port) == (200, "revision 1\n")
    env = docker(docker_engine, "exec", status["target"]["container"], "/bin/busybox", "env").splitlines()
    assert f"APP_TOKEN={value}" in env

    # A health tick through SSM too (inspect of the container with named fields, never its env), its output kept.
    released = len(command_history(moto_server, target.instance_id))
    wait_for(lambda: len(done := [c for c in command_history(moto_server, target.instance_id)
                                  if c["Invocation"]["Status"] == "Success"]) > released and done,
             2 * target.period_s + 15, "a health tick's command done")
    # Not in SSM's command history; and the env file's Parameter Store copy and the build context's S3 object are
    # gone once the release is done.
    assert ssm_leftovers(target, namespace, [value]) == []
    assert value not in json.dumps(cluster.get("web")) and value not in json.dumps(cluster.events())
    assert moto_server.calls("host").get("ssm:GetParameter", 0) >= 1, "the env file did not come from Parameter Store"
