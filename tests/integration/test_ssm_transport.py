"""The ssm transport against the test world's moto server, whose SSM commands really run over SSH on the test host
(this machine, so "nothing left running" is checked in this machine's /proc): one command per script, payloads
through S3 and Parameter Store and gone afterwards, nothing secret in SSM's command history, SSM's output limit,
throttling, cancellation, timeouts, and the AWS calls each kind of call costs. The host wrapper's own failures
(a missing tool, a failed download, a digest that differs) are run with the local shell and a trimmed PATH."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from deploymind.api import reasons
from deploymind.api.conditions import Conditions
from deploymind.api.spec import DeploymentSpec
from deploymind.api.status import ConditionType, DeploymentStatus
from deploymind.aws import session, ssm
from deploymind.metrics import Metrics
from deploymind.settings import Settings
from deploymind.steps.build import build
from deploymind.steps.context import Desired, StepContext
from deploymind.steps.errors import Stalled
from deploymind.transport.base import Payload, TransportError, TransportRefused
from deploymind.transport.local import LocalTransport
from deploymind.transport.ssm import STDOUT_KEEP, Fetch, SSMTransport, host_wrapper, poll_waits
from world.moto_ssm import DUMMY_CREDENTIALS, MotoServer, new_bucket, run_instance
from world.moto_ssm import client as boto
from world.procs import processes_with, wait_until

REGION = DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"]








@pytest.fixture
def instance(aws: MotoServer) -> str:
    """A running instance, Online in SSM; setting it up is not counted."""
    found = run_instance(aws)
    aws.reset_calls()
    return found


@pytest.fixture
def bucket(aws: MotoServer) -> str:
    name = new_bucket(aws)
    aws.reset_calls()
    return name


def transport(instance_id: str, **settings: Any) -> SSMTransport:
    return SSMTransport(instance_id, REGION, settings=Settings(**settings))


def marker() -> str:
    """A sleep length no other process on this machine uses: it finds the script's processes in /proc."""
    return f"{300 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"




def invocations(server: MotoServer, instance_id: str) -> list[dict[str, Any]]:
    client = boto("ssm", server)
    commands = client.list_commands(InstanceId=instance_id)["Commands"]
    return [client.get_command_invocation(CommandId=c["CommandId"], InstanceId=instance_id) for c in commands]


async def test_a_script_runs_as_one_command_and_its_exit_code_and_output_come_back(aws: MotoServer,
                                                                                   instance: str) -> None:
    result = await transport(instance).run("echo out; echo err >&2; exit 3", timeout=30)
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    commands = await ssm.list_commands(instance, REGION)
    assert [c["DocumentName"] for c in commands] == ["AWS-RunShellScript"]
    calls = aws.calls()
    assert calls.pop("ssm:SendCommand") == 1 and calls.pop("ssm:ListCommands") == 1
    # A script of a few milliseconds is seen finished at the first or second poll (0.5 s, then 1 s later).
    assert set(calls) == {"ssm:GetCommandInvocation"} and calls["ssm:GetCommandInvocation"] <= 2


async def test_the_script_text_reaches_the_shell_unchanged_and_reads_an_empty_stdin(aws: MotoServer,
                                                                                    instance: str) -> None:
    script = "x='it'\"'\"'s $HOME'; printf '%s|%s|' \"$x\" \"$(echo a  b)\"; wc -c"
    result = await transport(instance).run(script, timeout=30)
    assert result.stdout == b"it's $HOME|a b|0\n"


async def test_a_payload_reaches_stdin_byte_exact_through_s3_and_the_object_is_gone_afterwards(
        aws: MotoServer, instance: str, bucket: str) -> None:
    payload = Payload("source-tarball", os.urandom(1024 * 1024), key="team-a/web/abc123-def456")
    ssm_transport = transport(instance, build_bucket=bucket)
    result = await ssm_transport.run("sha256sum; echo", payload=payload, timeout=60)
    assert result.ok, result.stderr
    assert result.stdout.split()[0].decode() == payload.sha256
    assert ssm_transport.object_key(payload) == f"deploymind/team-a/web/abc123-def456/source-tarball-{payload.sha256[:12]}"
    assert boto("s3", aws).list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    calls = aws.calls()
    assert (calls["s3:PutObject"], calls["s3:DeleteObject"], calls["ssm:SendCommand"]) == (1, 1, 1)
    assert aws.calls("host")["s3:GetObject"] == 1


async def test_a_secret_payload_reaches_stdin_through_parameter_store_and_never_ssm_history(
        aws: MotoServer, instance: str) -> None:
    secret = f"hunter2-\u00fcber-{uuid.uuid4().hex}"  # not ASCII: the instance's CLI must print it unchanged
    # Over 4 KB: an Advanced parameter, encrypted with the operator's KMS key.
    payload = Payload("env-file", f"DB_PASSWORD={secret}\nPAD={'p' * 5000}\n".encode(), secret=True,
                      key="team-a/web/abc123-def456")
    key_id = boto("kms", aws).create_key(Description="deploymind test")["KeyMetadata"]["KeyId"]
    aws.reset_calls()
    ssm_transport = transport(instance, kms_key_id=key_id)
    name = ssm_transport.parameter_name(payload)
    assert name == "/deploymind/team-a/web/abc123-def456/env-file"
    # The script keeps its stdin where the test reads it (printing a digest of it would put one into SSM's
    # history), and shows the parameter as it is while the call runs, through the instance's own CLI.
    received = Path(f"/tmp/dm-ssm-test-{uuid.uuid4().hex}")
    script = (f"cat > {received}; aws ssm describe-parameters --region {REGION} --endpoint-url \"$AWS_ENDPOINT_URL\" "
              f"--parameter-filters Key=Name,Values={name} --query 'Parameters[0].[Type,Tier,KeyId]' --output text")
    try:
        result = await ssm_transport.run(script, payload=payload, timeout=60)
        assert result.ok, result.stderr
        assert await asyncio.to_thread(received.read_bytes) == payload.data
    finally:
        await asyncio.to_thread(received.unlink, missing_ok=True)
    kind, tier, used_key = result.stdout.split()
    calls, host_calls = aws.calls(), aws.calls("host")
    assert (calls["ssm:PutParameter"], calls["ssm:DeleteParameter"], host_calls["ssm:GetParameter"]) == (1, 1, 1)
    assert (kind, tier) == (b"SecureString", b"Advanced") and key_id in used_key.decode()
    with pytest.raises(boto("ssm", aws).exceptions.ParameterNotFound):
        boto("ssm", aws).get_parameter(Name=name)
    history = repr(boto("ssm", aws).list_commands(InstanceId=instance)["Commands"]) + repr(invocations(aws, instance))
    assert secret not in history and payload.sha256 not in history


async def test_output_beyond_ssms_limit_keeps_the_final_line(aws: MotoServer, instance: str) -> None:
    script = "i=0; while [ $i -lt 3000 ]; do echo \"log line $i ........\"; i=$((i+1)); done; echo '{\"result\":\"ok\"}'"
    result = await transport(instance).run(script, timeout=60)
    lines = result.text().splitlines()
    assert lines[-1] == '{"result":"ok"}' and lines[-2] == "log line 2999 ........"
    assert len(result.stdout) <= STDOUT_KEEP
    assert b"bytes of output were cut" in result.stderr


async def test_throttling_is_survived_and_counted(aws: MotoServer, instance: str) -> None:
    key = ("ssm", "GetCommandInvocation")
    before = session.throttled_calls().get(key, 0)
    aws.throttle(3, ["GetCommandInvocation"])
    result = await transport(instance).run("echo ok", timeout=60)
    assert result.stdout == b"ok\n"
    assert session.throttled_calls().get(key, 0) - before == 3
    exposition = Metrics().exposition().decode()
    assert 'deploymind_aws_throttled_total{operation="GetCommandInvocation",service="ssm"}' in exposition


async def test_a_cancelled_call_cancels_the_command_and_leaves_no_process(aws: MotoServer, instance: str) -> None:
    sleep = marker()
    call = asyncio.create_task(transport(instance).run(f"sleep {sleep}", timeout=120))
    await asyncio.to_thread(wait_until, lambda: bool(processes_with(sleep)), 20, "the script runs")
    started = time.monotonic()
    call.cancel()
    done, _ = await asyncio.wait({call}, timeout=15)
    assert done and call.cancelled()
    assert time.monotonic() - started < 12
    await asyncio.to_thread(wait_until, lambda: not processes_with(sleep), 15, "the cancelled script is gone")
    assert [i["Status"] for i in invocations(aws, instance)] == ["Cancelled"]
    assert aws.calls()["ssm:CancelCommand"] == 1


async def test_a_timeout_ends_within_its_bound_and_stops_the_script(aws: MotoServer, instance: str) -> None:
    sleep = marker()
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        await transport(instance).run(f"sleep {sleep}", timeout=2)
    assert caught.value.reason == reasons.TRANSPORT_TIMEOUT
    assert time.monotonic() - started < 2 + 5
    await asyncio.to_thread(wait_until, lambda: not processes_with(sleep), 15, "the timed-out script is gone")


async def test_an_instance_that_is_not_online_in_ssm_is_a_clear_error(aws: MotoServer) -> None:
    lost = run_instance(aws, {"SSMPingStatus": "ConnectionLost"})
    with pytest.raises(TransportError) as caught:
        await transport(lost).run("true", timeout=30)
    assert caught.value.reason == reasons.INSTANCE_NOT_MANAGED and not caught.value.needs_user
    assert "SSM agent" in caught.value.message and lost in caught.value.message


async def test_without_a_build_bucket_a_build_payload_is_refused_before_any_aws_call(aws: MotoServer,
                                                                                     instance: str) -> None:
    payload = Payload("source-tarball", b"tar", key="team-a/web/abc123-def456")
    with pytest.raises(TransportRefused) as caught:
        await transport(instance, build_bucket=None).run("cat > /dev/null", payload=payload, timeout=30)
    assert caught.value.reason == reasons.BUILD_BUCKET_MISSING and caught.value.needs_user
    assert "--build-bucket" in caught.value.message
    assert aws.calls() == {}


async def test_a_secret_payload_over_8_kb_is_refused_before_any_aws_call(aws: MotoServer, instance: str) -> None:
    payload = Payload("env-file", b"BIG=" + b"x" * 8200 + b"\n", secret=True, key="team-a/web/abc123-def456")
    with pytest.raises(TransportRefused) as caught:
        await transport(instance).run("cat > /dev/null", payload=payload, timeout=30)
    assert caught.value.reason == reasons.PAYLOAD_TOO_LARGE and "8192" in caught.value.message
    assert aws.calls() == {}


async def test_a_build_bucket_that_does_not_exist_is_refused_by_name(aws: MotoServer, instance: str) -> None:
    payload = Payload("source-tarball", b"tar", key="team-a/web/abc123-def456")
    with pytest.raises(TransportRefused) as caught:
        await transport(instance, build_bucket="dm-no-such-bucket").run("cat", payload=payload, timeout=30)
    assert caught.value.reason == reasons.BUILD_BUCKET_MISSING and "dm-no-such-bucket" in caught.value.message


async def test_a_build_over_ssm_without_a_bucket_stalls_with_built_false(aws: MotoServer, instance: str,
                                                                         tmp_path: Path) -> None:
    tarball = tmp_path / "source.tar"
    tarball.write_bytes(b"tar")
    spec = DeploymentSpec.model_validate({"source": {"repo": "https://example.com/app.git"},
                                          "container": {"port": 8080},
                                          "target": {"transport": "ssm", "instanceId": instance}})
    ctx = StepContext(uid="0123456789abcdef", namespace="team-a", name="web", generation=1, spec=spec,
                      status=DeploymentStatus(), conditions=Conditions([], 1), settings=Settings(build_bucket=None),
                      transport=transport(instance, build_bucket=None), host_key=f"ssm:{instance}")
    target = Desired(revision="abc123-def456", image="deploymind/01234567:abc123-def456", digest="0" * 64,
                     tarball=tarball)
    with pytest.raises(Stalled) as caught:
        await build(ctx, target)
    assert caught.value.reason == reasons.BUILD_BUCKET_MISSING
    assert ctx.conditions.reason(ConditionType.BUILT) == reasons.BUILD_BUCKET_MISSING
    assert not ctx.conditions.is_true(ConditionType.BUILT)
    assert aws.calls() == {}


def tool_dir(tmp_path: Path, without: set[str]) -> Path:
    """A PATH directory with the tools the wrapper uses, minus `without`."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in {"sh", "mktemp", "rm", "tr", "tail", "head", "wc", "sha256sum", "cat", "curl", "wget"} - without:
        found = shutil.which(tool)
        assert found, tool
        (tools / tool).symlink_to(found)
    return tools


@pytest.mark.parametrize(("case", "reason", "says"), [
    ("no curl or wget", reasons.HOST_NOT_READY, "neither curl nor wget is installed"),
    ("no sha256sum", reasons.HOST_NOT_READY, "sha256sum (coreutils) is not installed"),
    ("download fails", reasons.PAYLOAD_NOT_DELIVERED, "could not download the source-tarball from S3"),
    ("digest differs", reasons.PAYLOAD_NOT_DELIVERED, "arrived cut short or altered"),
])
async def test_the_wrapper_fails_before_the_script_and_says_why(tmp_path: Path, case: str, reason: str,
                                                                says: str) -> None:
    source = tmp_path / "tarball"
    source.write_bytes(b"data")
    url = "file:///nonexistent/tarball" if case == "download fails" else f"file://{source}"
    digest = "0" * 64 if case == "digest differs" else hashlib.sha256(b"data").hexdigest()
    missing = {"no curl or wget": {"curl", "wget"}, "no sha256sum": {"sha256sum"}}.get(case, set())
    path = tool_dir(tmp_path, missing)
    wrapper = host_wrapper("echo the script ran", nonce="n0nce",
                           fetch=Fetch(via="url", what="source-tarball", url=url, sha256=digest))
    result = await LocalTransport({"PATH": str(path)}, inherit_env=False).run(wrapper, timeout=30)
    nonce, found, message = result.text().split(" ", 2)
    assert (nonce, found) == ("n0nce", reason) and says in message
    assert b"the script ran" not in result.stdout


async def test_the_wrapper_gives_the_script_the_checked_payload_and_its_exit_code(tmp_path: Path) -> None:
    data = os.urandom(4096)
    source = tmp_path / "tarball"
    source.write_bytes(data)
    wrapper = host_wrapper("sha256sum; exit 7", nonce="n0nce",
                           fetch=Fetch(via="url", what="source-tarball", url=f"file://{source}",
                                       sha256=hashlib.sha256(data).hexdigest()))
    result = await LocalTransport({"PATH": str(tool_dir(tmp_path, set()))}, inherit_env=False).run(wrapper, timeout=30)
    assert result.exit_code == 7
    assert result.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (apt-get install shellcheck)")
def test_the_wrapper_is_posix_sh_that_passes_shellcheck() -> None:
    wrapper = host_wrapper("echo hi", nonce="n0nce", fetch=Fetch(via="parameter", what="env-file",
                                                                  parameter="/deploymind/a/b/c/env-file",
                                                                  region=REGION))
    # The instance's sh may be dash: no bash features.
    checked = subprocess.run(["shellcheck", "--shell=sh", "--severity=info", "-"], input=wrapper, capture_output=True,
                             text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout


def test_polls_come_every_second_for_the_first_ten_seconds_then_back_off_to_the_cap() -> None:
    waits = poll_waits(0.5, 3.0)
    first = [next(waits) for _ in range(14)]
    assert first[:11] == [0.5] + [1.0] * 10 and first[11:] == [2.0, 3.0, 3.0]
    # A short first wait stays short; a long one is kept, and nothing waits longer than the cap.
    assert [next(w) for w in [poll_waits(0.25, 3.0)] for _ in range(2)] == [0.25, 1.0]
    assert [next(w) for w in [poll_waits(2.0, 3.0)] for _ in range(7)] == [2.0] * 5 + [3.0, 3.0]
