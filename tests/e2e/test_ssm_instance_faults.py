"""Through the operator, an EC2 instance stopped in the middle of a release over SSM: the rollout says so at once
(Ready=False InstanceNotRunning; SSM itself would report nothing until the command's execution timeout, minutes
away), and once the instance runs again it finishes: one container, the new revision, a true status, and nothing of
the interrupted call left half-done on the host or in AWS. And an instance id EC2 does not know: Stalled, with no
SSM or S3 call, until the spec names a real one."""

from __future__ import annotations

import dataclasses
import json

import pytest
from dm import Cluster, Operator, ready, wait_for
from targets import Target, operator_env_fixture, over, ssm_leftovers, target_fixture, transport_env_fixture, transport_fixture  # noqa: F401
from test_crash_recovery import Host, assert_converged, commit_slow_start, deployment

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import AppRepo
from world.moto_ssm import MotoServer, command_history
from world.moto_ssm import client as aws_client
from world.ports import free_port

pytestmark = pytest.mark.e2e


@over("ssm")
def test_an_instance_stopped_mid_release_is_reported_and_the_rollout_finishes_once_it_runs_again(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, target: Target, moto_server: MotoServer,
        docker_engine: DockerEngine, namespace: str) -> None:
    instance_id = target.instance_id
    assert instance_id is not None
    # The candidate gets healthy 3 s after it starts: the release's command is still running when the stop comes.
    body = "released across a stop\n"
    commit = commit_slow_start(app_repo, body)
    port = free_port()
    cluster.apply(deployment("web", app_repo, port, target))
    host = Host(docker_engine, operator.host_dir, cluster.get("web")["metadata"]["uid"])
    revision = wait_for(lambda: (s := cluster.status("web")).get("desiredRevision", "").startswith(commit[:12])
                        and s["desiredRevision"], 30, "the new revision resolved")
    wait_for(lambda: host.release_file(revision, "job.sh").exists(), 30, "the release job started on the host")
    ec2 = aws_client("ec2", moto_server)
    ec2.stop_instances(InstanceIds=[instance_id])

    # Within a liveness check (transport/ssm.py LIVENESS_AFTER_S) of the command's start, not at its timeout.
    waiting = cluster.wait_status("web", lambda s: ready(s) == "False/InstanceNotRunning", 30,
                                  "Ready=False InstanceNotRunning")
    message = next(c["message"] for c in waiting["conditions"] if c["type"] == "Ready")
    assert f"instance {instance_id}" in message and "stopped" in message, message
    assert "revision" not in waiting
    [release] = [c for c in command_history(moto_server, instance_id)
                 if revision in (text := json.dumps(c["Parameters"])) and "write_job" in text]
    wait_for(lambda: command_status(moto_server, instance_id, release["CommandId"]) == "Cancelled", 15,
             "the interrupted command cancelled")

    ec2.start_instances(InstanceIds=[instance_id])
    # Looked up again with backoff (seconds), not after an unreachable host's delay (two 30 s periods).
    cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 30, "deployed once the instance runs")
    assert_converged(cluster, host, port, commit, body)
    # The interrupted release's host job ran to its end, and the retry read its result rather than release again.
    job = json.loads(host.release_file(revision, "result.json").read_text())
    assert job["result"] == "Released" and host.stable_id() == job["container_id"], job
    assert ssm_leftovers(target, namespace) == []


def command_status(server: MotoServer, instance_id: str, command_id: str) -> str:
    status: str = aws_client("ssm", server).get_command_invocation(CommandId=command_id,
                                                                    InstanceId=instance_id)["Status"]
    return status


@over("ssm")
def test_an_instance_id_ec2_does_not_know_stalls_at_no_ssm_cost_and_a_fixed_id_deploys(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, target: Target, moto_server: MotoServer,
        namespace: str) -> None:
    unknown = "i-0123456789abcdef0"
    moto_server.reset_calls()
    cluster.apply(deployment("web", app_repo, free_port(),
                             dataclasses.replace(target, spec={**target.spec, "instanceId": unknown})))
    status = cluster.wait_status("web", lambda s: s.get("phase") == "Failed", 30, "stalled")
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "InstanceNotFound"), stalled
    assert unknown in stalled["message"], stalled["message"]
    calls = moto_server.calls()
    assert calls.get("ec2:DescribeInstances", 0) >= 1
    assert not [op for op in calls if op.startswith(("ssm:", "s3:"))], calls  # nothing sent, nothing stored

    cluster.run("patch", "dmd", "web", "--type", "merge", "-p",
                json.dumps({"spec": {"target": {"instanceId": target.instance_id}}}))
    cluster.wait_status("web", lambda s: s.get("phase") in ("Baking", "Deployed"), 60, "deployed to the real one")
    assert ssm_leftovers(target, namespace) == []
