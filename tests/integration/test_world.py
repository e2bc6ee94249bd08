"""Each part of the test world, proven by using it for real."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from sqlalchemy import create_engine, text

from deploymind.sandbox.docker_engine import DockerEngine, DockerEngineError
from world.apps import AppRepo, Health, build_image, fail_health
from world.kubetools import Helm, Kubectl
from world.moto_ssm import DUMMY_CREDENTIALS, MotoServer
from world.ports import free_port
from world.procs import alive, eventually
from world.sshd import Sshd

TESTENV = Path(__file__).resolve().parents[2] / "scripts" / "testenv"
# A GitHub token shape Trivy's secret rules know (random, not a real token).
FAKE_GITHUB_TOKEN = "ghp_" + "R8nq2LkW5vZx7TyP3sJd9HfA1gMc4BeU6oQi"


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def aws_client(service: str, moto_server: MotoServer, attempts: int = 1) -> Any:
    return boto3.client(
        service,
        endpoint_url=moto_server.url,
        region_name=DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"total_max_attempts": attempts, "mode": "standard"}),
    )


def run_instance(moto_server: MotoServer, tags: dict[str, str] | None = None) -> dict[str, Any]:
    ec2 = aws_client("ec2", moto_server)
    tag_spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()]}]
    reservation = ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, TagSpecifications=tag_spec if tags else []
    )
    instance_id = reservation["Instances"][0]["InstanceId"]
    described: dict[str, Any] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return described


def send_script(moto_server: MotoServer, instance_id: str, *commands: str) -> str:
    ssm = aws_client("ssm", moto_server)
    sent = ssm.send_command(
        InstanceIds=[instance_id], DocumentName="AWS-RunShellScript", Parameters={"commands": list(commands)}
    )
    command_id: str = sent["Command"]["CommandId"]
    return command_id


def invocation(moto_server: MotoServer, command_id: str, instance_id: str) -> dict[str, Any]:
    ssm = aws_client("ssm", moto_server)
    answer: dict[str, Any] = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    return answer


def finished(moto_server: MotoServer, command_id: str, instance_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any]:
        answer = invocation(moto_server, command_id, instance_id)
        assert answer["Status"] != "InProgress"
        return answer

    return eventually(check, timeout=30)


def test_container_started_through_sshd_answers_http_on_loopback(
    docker_engine: DockerEngine, sshd: Sshd, app_repo: AppRepo
) -> None:
    build_image(app_repo.path, "world-app:healthy", docker_engine.env)
    port = free_port()

    started = sshd.run(f"docker run -d --rm --network host -e PORT={port} --name world-app-{port} world-app:healthy")

    assert started.returncode == 0, started.stderr
    assert eventually(lambda: http_get(f"http://127.0.0.1:{port}/health")) == (200, "ok\n")
    assert http_get(f"http://127.0.0.1:{port}/") == (200, "revision 1\n")
    assert sshd.run(f"docker exec world-app-{port} /bin/busybox id -u").stdout.strip() == "10001"
    assert sshd.run("id -u").stdout.strip() != "0"


def test_a_second_engine_in_the_same_directory_is_refused(docker_engine: DockerEngine) -> None:
    with pytest.raises(DockerEngineError) as refused:
        DockerEngine.start(docker_engine.root)

    assert refused.value.reason == "DockerEngineAlreadyRunning"
    assert str(docker_engine.pid) in refused.value.message


def test_an_engine_directory_too_long_for_unix_sockets_is_refused(world_root: Path) -> None:
    with pytest.raises(DockerEngineError) as refused:
        DockerEngine.start(world_root / ("d" * 80))

    assert refused.value.reason == "EngineDirectoryTooLong"


def test_degrading_revision_turns_unhealthy_after_its_delay(
    docker_engine: DockerEngine, sshd: Sshd, app_repo: AppRepo
) -> None:
    app_repo.commit_revision(Health.DEGRADING, fail_after=1)
    build_image(app_repo.path, "world-app:degrading", docker_engine.env)
    port = free_port()

    started = sshd.run(f"docker run -d --rm --network host -e PORT={port} world-app:degrading")

    assert started.returncode == 0, started.stderr
    assert eventually(lambda: http_get(f"http://127.0.0.1:{port}/health"))[0] == 200

    def unhealthy() -> None:
        assert http_get(f"http://127.0.0.1:{port}/health")[0] == 404

    eventually(unhealthy, timeout=10)


def test_degrading_revision_fails_health_when_told_to_and_stays_failed_across_a_restart(
    docker_engine: DockerEngine, sshd: Sshd, app_repo: AppRepo
) -> None:
    app_repo.commit_revision(Health.DEGRADING)
    build_image(app_repo.path, "world-app:told", docker_engine.env)
    port = free_port()
    started = sshd.run(f"docker run -d --network host -e PORT={port} world-app:told")
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        assert eventually(lambda: http_get(f"http://127.0.0.1:{port}/health"))[0] == 200
        time.sleep(1.5)
        assert http_get(f"http://127.0.0.1:{port}/health")[0] == 200  # no delay of its own

        fail_health(port)

        assert http_get(f"http://127.0.0.1:{port}/health")[0] == 404
        assert sshd.run(f"docker restart -t 1 {container}").returncode == 0
        assert eventually(lambda: http_get(f"http://127.0.0.1:{port}/"))[0] == 200
        assert http_get(f"http://127.0.0.1:{port}/health")[0] == 404
    finally:
        sshd.run(f"docker rm -f {container}")


def test_unhealthy_revision_fails_health_from_the_start(docker_engine: DockerEngine, app_repo: AppRepo) -> None:
    app_repo.commit_revision(Health.UNHEALTHY)
    build_image(app_repo.path, "world-app:unhealthy", docker_engine.env)
    port = free_port()

    subprocess.run(
        ["docker", "-H", docker_engine.host, "run", "-d", "--rm", "--network", "host", "-e", f"PORT={port}",
         "world-app:unhealthy"],
        check=True, capture_output=True,
    )

    assert eventually(lambda: http_get(f"http://127.0.0.1:{port}/"))[0] == 200
    assert http_get(f"http://127.0.0.1:{port}/health")[0] == 404


def test_instance_addresses_reach_the_test_host_with_its_pinned_key(moto_server: MotoServer, sshd: Sshd) -> None:
    instance = run_instance(moto_server)

    for address in (instance["PublicIpAddress"], instance["PrivateIpAddress"]):
        login = subprocess.run(sshd.ssh_argv("id", "-un", host=address), capture_output=True, text=True, check=False)
        assert (login.returncode, login.stdout) == (0, f"{sshd.user}\n"), login.stderr


def test_ssm_command_runs_on_the_host_in_progress_then_success(moto_server: MotoServer, sshd: Sshd) -> None:
    instance_id = run_instance(moto_server)["InstanceId"]
    gate = Path(f"/tmp/dm-world-gate-{instance_id}")
    gate.unlink(missing_ok=True)

    command_id = send_script(
        moto_server, instance_id, f"while [ ! -e {gate} ]; do sleep 0.05; done", "echo hello from $(id -un)"
    )

    assert invocation(moto_server, command_id, instance_id)["Status"] == "InProgress"
    gate.touch()
    try:
        done = finished(moto_server, command_id, instance_id)
    finally:
        gate.unlink(missing_ok=True)
    assert (done["Status"], done["ResponseCode"]) == ("Success", 0)
    assert done["StandardOutputContent"] == f"hello from {sshd.user}\n"


def test_ssm_command_failure_reports_exit_code_and_stderr(moto_server: MotoServer) -> None:
    instance_id = run_instance(moto_server)["InstanceId"]

    command_id = send_script(moto_server, instance_id, "echo partial", "echo broken >&2", "exit 3")

    done = finished(moto_server, command_id, instance_id)
    assert (done["Status"], done["ResponseCode"]) == ("Failed", 3)
    assert (done["StandardOutputContent"], done["StandardErrorContent"]) == ("partial\n", "broken\n")


def test_ssm_keeps_the_first_24000_characters_of_stdout(moto_server: MotoServer) -> None:
    instance_id = run_instance(moto_server)["InstanceId"]

    command_id = send_script(moto_server, instance_id, "head -c 30000 /dev/zero | tr '\\0' a", "echo END")

    output = finished(moto_server, command_id, instance_id)["StandardOutputContent"]
    assert output == "a" * 24000


def test_instances_are_online_in_ssm_and_addressed_on_loopback(moto_server: MotoServer) -> None:
    instance = run_instance(moto_server)
    hidden = run_instance(moto_server, tags={"SSMPingStatus": "None"})["InstanceId"]
    ssm = aws_client("ssm", moto_server)

    listed = ssm.describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [instance["InstanceId"], hidden]}]
    )["InstanceInformationList"]

    assert [(i["InstanceId"], i["PingStatus"]) for i in listed] == [(instance["InstanceId"], "Online")]
    assert instance["PublicIpAddress"].startswith("127.")
    assert instance["PrivateIpAddress"].startswith("127.")
    with pytest.raises(ClientError) as refused:
        send_script(moto_server, hidden, "true")
    assert refused.value.response["Error"]["Code"] == "InvalidInstanceId"


def test_ssm_throttling_is_injectable(moto_server: MotoServer) -> None:
    instance_id = run_instance(moto_server)["InstanceId"]
    command_id = send_script(moto_server, instance_id, "true")
    moto_server.throttle(1, operations=["GetCommandInvocation"])

    with pytest.raises(ClientError) as throttled:
        invocation(moto_server, command_id, instance_id)

    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    assert invocation(moto_server, command_id, instance_id)["CommandId"] == command_id


def test_postgres_answers_through_sqlalchemy(postgres: Any) -> None:
    engine = create_engine(postgres.url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("select 6 * 7")).scalar_one() == 42
            assert connection.execute(text("show server_version")).scalar_one().startswith("15")
    finally:
        engine.dispose()


def test_kubectl_and_helm_run(kubectl: Kubectl, helm: Helm) -> None:
    client = kubectl("version", "--client")
    server = kubectl("get", "--raw", "/version")
    helm_version = helm("version")

    assert client.returncode == 0 and "v1.35." in client.stdout
    assert server.returncode == 0, server.stderr
    assert "gitVersion" in json.loads(server.stdout)
    assert helm_version.returncode == 0 and "v4.1." in helm_version.stdout


def test_trivy_finds_a_planted_secret_offline(trivy: Path, app_repo: AppRepo, tmp_path: Path) -> None:
    app_repo.write_file("config/settings.env", f"GITHUB_TOKEN={FAKE_GITHUB_TOKEN}\n")
    app_repo.commit_all("plant a fake secret")

    version = subprocess.run([str(trivy), "--version"], capture_output=True, text=True, check=False)
    scan = subprocess.run(
        [str(trivy), "fs", "--cache-dir", str(tmp_path / "trivy-cache"), "--offline-scan", "--skip-db-update",
         "--skip-check-update", "--scanners", "secret,misconfig", "--format", "json", "--quiet",
         str(app_repo.path)],
        capture_output=True, text=True, check=False, timeout=120,
    )

    assert "0.59.1" in version.stdout
    assert scan.returncode == 0, scan.stderr
    secrets = [
        (result["Target"], secret["RuleID"])
        for result in json.loads(scan.stdout).get("Results", [])
        for secret in result.get("Secrets", [])
    ]
    assert secrets == [("config/settings.env", "github-pat")]


def test_testenv_script_starts_parts_for_a_shell_and_stops_them_by_pid(world_root: Path) -> None:
    directory = world_root / "testenv"

    up = subprocess.run([str(TESTENV), "up", "sshd", "--dir", str(directory)], capture_output=True, text=True,
                        check=False, timeout=120)
    try:
        assert up.returncode == 0, up.stderr
        exported = dict(line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines())
        login = subprocess.run(
            ["ssh", "-p", exported["DM_SSH_PORT"], "-i", exported["DM_SSH_KEY"],
             "-o", f"UserKnownHostsFile={exported['DM_SSH_KNOWN_HOSTS']}", "-o", "BatchMode=yes",
             f"{exported['DM_SSH_USER']}@127.0.0.1", "docker version --format '{{.Server.Version}}'"],
            capture_output=True, text=True, check=False, timeout=30,
        )
        assert login.returncode == 0 and login.stdout.strip(), login.stderr
        state = json.loads((directory / "testenv.json").read_text())
        pids = [int(state["docker"]["pid"]), int(state["sshd"]["pid"])]
    finally:
        down = subprocess.run([str(TESTENV), "down", "--dir", str(directory)], capture_output=True, text=True,
                              check=False, timeout=120)

    assert down.returncode == 0, down.stderr
    assert not any(alive(pid) for pid in pids)
    assert not directory.exists()
