"""Deleting a Deployment: `Delete` removes its containers, images and files from the host (after another
Deployment's release on that host, however long it takes), and through SSM whatever killed calls left in S3 and
Parameter Store; `Orphan` leaves the app running, and an unreachable host never blocks the deletion for ever (it
gives up with a Warning Event naming what is left, kept in the history)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from dm import Cluster, Operator, deployment, docker, http_get, wait_for
from targets import Target, over, ssm_leftovers, target_fixture, transport_env_fixture, transport_fixture  # noqa: F401

from deploymind.sandbox.docker_engine import DockerEngine
from deploymind.settings import Settings
from deploymind.transport.base import Payload, payload_key
from deploymind.transport.ssm_payloads import object_key, parameter_name
from world.apps import AppRepo, Health, create_app_repo
from world.dirs import private_dir
from world.moto_ssm import client as aws_client
from world.ports import free_port
from world.sshd import Sshd

pytestmark = pytest.mark.e2e

# The bound on cleaning up an unreachable host, given to this module's operators (default 60 s).
CLEANUP_TIMEOUT_S = 10
# How long another Deployment's candidate keeps the host busy: well past the cleanup timeout.
SLOW_CANDIDATE_S = 30


@pytest.fixture
def operator_env(transport_env: dict[str, str]) -> dict[str, str]:
    return {**transport_env, "DEPLOYMIND_CLEANUP_TIMEOUT_SECONDS": str(CLEANUP_TIMEOUT_S)}


def on_host(engine: DockerEngine, operator: Operator, uid: str) -> dict[str, Any]:
    """What the object has on the host: containers (by its uid label), images, and its directory."""
    return {
        "containers": docker(engine, "ps", "-aq", "--filter", f"label=deploymind.io/uid={uid}").split(),
        "images": docker(engine, "images", "-q", f"deploymind/{uid[:8]}").split(),
        "files": (operator.host_dir / uid[:8]).exists(),
    }


def gone(cluster: Cluster, name: str) -> bool:
    done = cluster.run("get", "dmd", name, "--ignore-not-found", "-o", "name", check=False)
    return done.returncode == 0 and not done.stdout.strip()


def answers(port: int) -> bool:
    try:
        return http_get(port, timeout=1)[0] == 200
    except OSError:
        return False


def events_for(cluster: Cluster, name: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in cluster.events() if e["involvedObject"]["name"] == name and e["reason"] == reason]


def host_lease_holder(cluster: Cluster) -> str | None:
    """The uid of the Deployment holding the (only) host's Lease, if one does."""
    for lease in json.loads(cluster.run("get", "leases", "-o", "json").stdout)["items"]:
        if lease["spec"].get("holderIdentity"):
            return str((lease["metadata"].get("annotations") or {}).get("deploymind.io/uid"))
    return None


def left_by_killed_calls(target: Target, namespace: str, name: str, uid: str) -> None:
    """Through SSM, what calls cut short by an operator's death leave, named as the transport names them: a
    build's tarball in S3 and a release's env file in Parameter Store."""
    assert target.moto is not None and target.bucket is not None
    settings, key = Settings(build_bucket=target.bucket), payload_key(namespace, name, uid, "killed-1")
    aws_client("s3", target.moto).put_object(
        Bucket=target.bucket, Key=object_key(settings, Payload("source-tarball", b"tar", key=key)), Body=b"tar")
    aws_client("ssm", target.moto).put_parameter(
        Name=parameter_name(settings, Payload("env-file", b"", secret=True, key=key)), Value="A=1", Type="SecureString")


def cleanups(operator: Operator, cluster: Cluster, name: str) -> list[dict[str, Any]]:
    status, body = http_get(operator.http_port, f"/history/{cluster.namespace}/{name}")
    return list(json.loads(body).get("cleanups", [])) if status == 200 else []


@over("local", "ssh", "ssm")
def test_delete_removes_the_containers_images_and_files_from_the_host(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, docker_engine: DockerEngine, target: Target) -> None:
    port = free_port()
    cluster.apply(deployment("web", app_repo, port, rollback={"bakeSeconds": 0}, target=target.spec,
                             healthCheck={"periodSeconds": target.period_s}))
    cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "deployed")
    uid = cluster.get("web")["metadata"]["uid"]
    before = on_host(docker_engine, operator, uid)
    assert before["containers"] and before["images"] and before["files"]
    # Another cluster's `web` in a namespace of the same name, sharing the bucket: its payloads are its own.
    other_uid = str(uuid.uuid4())
    if target.ssm:
        left_by_killed_calls(target, cluster.namespace, "web", uid)
        left_by_killed_calls(target, cluster.namespace, "web", other_uid)
        assert len(ssm_leftovers(target, cluster.namespace)) == 4

    cluster.run("delete", "dmd", "web", "--timeout=60s")
    assert gone(cluster, "web")
    assert on_host(docker_engine, operator, uid) == {"containers": [], "images": [], "files": False}
    left = ssm_leftovers(target, cluster.namespace)
    assert len(left) == (2 if target.ssm else 0) and all(other_uid in item for item in left), left
    assert not answers(port)
    cleaned = events_for(cluster, "web", "CleanedUp")
    assert cleaned and cleaned[0]["type"] == "Normal"


def test_orphan_leaves_the_app_running_and_answering(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, docker_engine: DockerEngine) -> None:
    port = free_port()
    cluster.apply(deployment("web", app_repo, port, rollback={"bakeSeconds": 0}, deletionPolicy="Orphan"))
    cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "deployed")
    uid = cluster.get("web")["metadata"]["uid"]
    before = on_host(docker_engine, operator, uid)

    cluster.run("delete", "dmd", "web", "--timeout=60s")
    assert gone(cluster, "web")
    assert on_host(docker_engine, operator, uid) == before
    assert http_get(port) == (200, "revision 1\n")
    assert events_for(cluster, "web", "Orphaned")


def test_delete_against_an_unreachable_host_gives_up_in_bounded_time_with_a_warning(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, docker_engine: DockerEngine,
        world_root: Path, namespace: str) -> None:
    # A private sshd: stopping the session one would break every other test using it.
    server = Sshd.start(private_dir(world_root, f"sshd-{namespace}"), docker_host=docker_engine.host)
    try:
        cluster.run("create", "secret", "generic", "host-key", f"--from-file=key={server.key_path}")
        cluster.run("create", "secret", "generic", "host-known",
                    f"--from-file=known_hosts={server.known_hosts_path}")
        target = {"transport": "ssh", "ssh": {
            "host": "127.0.0.1", "port": server.port, "user": server.user,
            "keySecretRef": {"name": "host-key", "key": "key"},
            "knownHostsSecretRef": {"name": "host-known", "key": "known_hosts"}}}
        port = free_port()
        cluster.apply(deployment("web", app_repo, port, target=target, rollback={"bakeSeconds": 0}))
        cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "deployed over ssh")
        uid = cluster.get("web")["metadata"]["uid"]
    finally:
        server.stop()

    started = time.monotonic()
    cluster.run("delete", "dmd", "web", "--wait=false")
    wait_for(lambda: gone(cluster, "web"), CLEANUP_TIMEOUT_S + 30, "the Deployment to go away", interval=0.5)
    assert time.monotonic() - started <= CLEANUP_TIMEOUT_S + 30
    warnings = events_for(cluster, "web", "CleanupFailed")
    assert warnings and warnings[0]["type"] == "Warning"
    assert uid in warnings[0]["message"]  # tells the user which label to clean up by hand
    assert f"dm-{uid[:8]} (revision " in warnings[0]["message"]  # and which containers remain
    # Nothing was removed: the host could not be reached.
    assert on_host(docker_engine, operator, uid)["containers"]
    [recorded] = wait_for(lambda: cleanups(operator, cluster, "web"), 30, "the cleanup in the history")
    assert (recorded["uid"], recorded["result"]) == (uid, "CleanupFailed")
    assert recorded["message"] == warnings[0]["message"]


def test_a_delete_waits_for_another_deployments_release_on_the_host_then_cleans_up(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, docker_engine: DockerEngine) -> None:
    cluster.apply(deployment("web", app_repo, free_port(), rollback={"bakeSeconds": 0}))
    cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "deployed")
    uid = cluster.get("web")["metadata"]["uid"]
    # Another Deployment on the same host, whose candidate never gets healthy: its release holds the host for
    # its whole startup timeout, three times the cleanup timeout.
    slow_repo = create_app_repo(app_repo.path.parent / (app_repo.path.name + "-slow"), Health.UNHEALTHY)
    cluster.apply(deployment("slow", slow_repo, free_port(), healthCheck={"startupTimeoutSeconds": SLOW_CANDIDATE_S}))
    slow_uid = cluster.get("slow")["metadata"]["uid"]
    wait_for(lambda: host_lease_holder(cluster) == slow_uid and cluster.status("slow").get("phase") == "Deploying",
             60, "the slow release holding the host")

    started = time.monotonic()
    cluster.run("delete", "dmd", "web", "--wait=false")
    wait_for(lambda: gone(cluster, "web"), SLOW_CANDIDATE_S + 60, "the Deployment to go away", interval=0.5)

    assert time.monotonic() - started > CLEANUP_TIMEOUT_S  # it outwaited the cleanup timeout, and did not give up
    assert on_host(docker_engine, operator, uid) == {"containers": [], "images": [], "files": False}
    assert not events_for(cluster, "web", "CleanupFailed")
    [waiting] = events_for(cluster, "web", "CleanupWaiting")
    assert waiting["type"] == "Normal" and slow_uid in waiting["message"]
    assert events_for(cluster, "web", "CleanedUp")
