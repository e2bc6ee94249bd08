"""An EC2 instance named by id: refused, at no cost, until its `deploymind.io/namespaces` tag lists the namespace;
then an ssh target deploys to the address EC2 reports for it.

The instance lives on the test world's moto server, its addresses on loopback (private 127.0.0.2, where this test's
own sshd also listens). Costs are counted where they land: SSH connections in the sshd's log (it logs every
connection, accepted or not), SSM calls by the moto server's throttle budget (each SSM call takes one from it).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from dm import Cluster, Operator, deployment, http_get, wait_for

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import AppRepo
from world.dirs import private_dir
from world.moto_ssm import DUMMY_CREDENTIALS, MotoServer
from world.ports import free_port
from world.sshd import Sshd

pytestmark = pytest.mark.e2e

TAG = "deploymind.io/namespaces"
SSM_BUDGET = 10_000


@pytest.fixture
def operator_env(moto_server: MotoServer) -> dict[str, str]:
    return moto_server.env


@pytest.fixture
def host(world_root: Path, docker_engine: DockerEngine, namespace: str) -> Iterator[Sshd]:
    server = Sshd.start(private_dir(world_root, f"sshd-{namespace}"), docker_host=docker_engine.host)
    yield server
    server.stop()


def ec2_client(server: MotoServer) -> Any:
    return boto3.client("ec2", endpoint_url=server.url, region_name=DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"],
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def ssm_calls_left(server: MotoServer) -> int:
    with urllib.request.urlopen(server.url + "/moto-api/deploymind/throttle", timeout=10) as response:
        count: int = json.load(response)["count"]
    return count


def stalled(status: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c["type"] == "Stalled" and c["status"] == "True"), None)


def test_an_instance_is_refused_at_no_cost_until_its_tag_lists_the_namespace_then_deploys_over_ssh(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, moto_server: MotoServer, host: Sshd,
        namespace: str) -> None:
    ec2 = ec2_client(moto_server)
    instance_id = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": TAG, "Value": "someone-else"}]}])["Instances"][0]["InstanceId"]
    cluster.run("create", "secret", "generic", "host-ssh", f"--from-file=id={host.key_path}",
                f"--from-file=known_hosts={host.known_hosts_path}")
    port = free_port()
    ssh_target = {"transport": "ssh", "instanceId": instance_id, "ssh": {
        "port": host.port, "user": host.user, "keySecretRef": {"name": "host-ssh", "key": "id"},
        "knownHostsSecretRef": {"name": "host-ssh", "key": "known_hosts"}}}
    sshd_log = host.dir / "sshd.log"
    log_before = sshd_log.read_text()
    moto_server.throttle(SSM_BUDGET)
    try:
        cluster.apply(deployment("web", app_repo, port, rollback={"bakeSeconds": 0}, target=ssh_target))
        cluster.apply(deployment("web-ssm", app_repo, free_port(), healthCheck={"periodSeconds": 30},
                                 target={"transport": "ssm", "instanceId": instance_id}))
        refusals = [cluster.wait_status(name, stalled, 60, "Stalled") for name in ("web", "web-ssm")]
        ssm_left = ssm_calls_left(moto_server)
    finally:
        moto_server.throttle(0)

    for status in refusals:
        condition = stalled(status)
        assert condition is not None and condition["reason"] == "TargetNotAllowed"
        assert f"the tag {TAG}='someone-else' of instance {instance_id} does not list namespace {namespace}" \
            in condition["message"]
        assert "revision" not in status
    assert sshd_log.read_text() == log_before, "a refused target cost an SSH connection"
    assert ssm_left == SSM_BUDGET, f"a refused target cost {SSM_BUDGET - ssm_left} SSM call(s)"

    # The administrator allows the namespace on the instance; a redeploy request wakes the stalled Deployment.
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": TAG, "Value": f"someone-else,{namespace}"}])
    cluster.annotate("web", "deploymind.io/requested-at", "tagged")
    status = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "deployed once tagged")

    assert status["target"]["instanceId"] == instance_id
    assert status["target"]["address"] == "127.0.0.2"  # addressType defaults to private
    assert wait_for(lambda: http_get(port) == (200, "revision 1\n"), 10, "the app serving")
    assert "Accepted publickey" in sshd_log.read_text()
