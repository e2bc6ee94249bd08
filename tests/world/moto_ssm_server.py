"""moto in server mode, extended where DeployMind needs more realism than stock moto gives.

- SSM `AWS-RunShellScript` commands really run, over SSH, on the test host, asynchronously: `send_command`
  returns at once, `get_command_invocation` answers InProgress until the script ends, then Success, Failed or
  TimedOut with the real exit code, stdout (its first 24,000 characters, as SSM keeps) and stderr (first 8,000).
  The script gets an empty stdin, as under the SSM agent. It runs as the SSH login user, not root.
- `DescribeInstanceInformation` lists EC2 instances as SSM-managed: running ones Online, stopped ones
  ConnectionLost. A tag `SSMPingStatus` overrides the ping status; `SSMPingStatus=None` means "no SSM agent"
  (not listed). `send_command` to an instance that is not Online fails with InvalidInstanceId, as in AWS.
- Every EC2 instance address is on loopback: public IP $DM_PUBLIC_IP (127.0.0.1), private IP $DM_PRIVATE_IP
  (127.0.0.2).
- Throttling on demand: `POST /moto-api/deploymind/throttle` with `{"count": N, "operations": ["GetCommandInvocation"]}`
  (operations optional: any SSM call) makes the next N matching SSM calls answer ThrottlingException;
  $DM_THROTTLE_SSM_CALLS sets N at start. `GET` on the same path returns what is left.

Usage: DM_SSH_PORT=… DM_SSH_KEY=… DM_SSH_KNOWN_HOSTS=… DM_SSH_USER=… python moto_ssm_server.py -H 127.0.0.1 -p 5000
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import moto.ec2.models
import moto.ec2.models.elastic_network_interfaces
import moto.ec2.models.instances
import moto.ec2.models.subnets
import moto.ssm.models
import moto.ssm.responses
from moto.core.responses import ActionResult
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.ssm.exceptions import SSMException
from werkzeug.serving import run_simple

# The moto modules patched below, typed Any: replacing their functions at runtime is the point of this file.
eni: Any = moto.ec2.models.elastic_network_interfaces
instances: Any = moto.ec2.models.instances
subnets: Any = moto.ec2.models.subnets
ssm_models: Any = moto.ssm.models
ssm_responses: Any = moto.ssm.responses
ec2_backends: Any = moto.ec2.models.ec2_backends

STDOUT_LIMIT = 24_000
STDERR_LIMIT = 8_000
DEFAULT_EXECUTION_TIMEOUT_S = 3600
THROTTLE_PATH = "/moto-api/deploymind/throttle"
PUBLIC_IP = os.environ.get("DM_PUBLIC_IP", "127.0.0.1")
PRIVATE_IP = os.environ.get("DM_PRIVATE_IP", "127.0.0.2")
# Write the script to a file and run it with stdin closed: the SSM agent gives scripts no stdin.
REMOTE_RUNNER = 'f=$(mktemp) && cat > "$f" && sh "$f" < /dev/null; rc=$?; rm -f "$f"; exit $rc'

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def ssh_argv() -> list[str]:
    """The ssh command line that reaches the test host, from the DM_SSH_* environment."""
    return [
        "ssh", "-p", os.environ["DM_SSH_PORT"], "-i", os.environ["DM_SSH_KEY"],
        "-o", "UserKnownHostsFile=" + os.environ["DM_SSH_KNOWN_HOSTS"], "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
        f"{os.environ.get('DM_SSH_USER', 'ec2-user')}@{os.environ.get('DM_SSH_HOST', '127.0.0.1')}",
        REMOTE_RUNNER,
    ]


def _iso_duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# --- SSM commands run for real ---------------------------------------------------------------------------

_lock = threading.Lock()
_original_command_init = ssm_models.Command.__init__


def _command_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _original_command_init(self, *args, **kwargs)
    if self.document_name != "AWS-RunShellScript":
        return
    script = "\n".join(self.parameters.get("commands", []))
    timeout = int((self.parameters.get("executionTimeout") or [DEFAULT_EXECUTION_TIMEOUT_S])[0])
    self.status, self.status_details = "InProgress", "InProgress"
    self.completed_count = 0
    for index, invocation in enumerate(self.invocations):
        self.invocations[index] = {
            **invocation,
            "Status": "InProgress", "StatusDetails": "InProgress", "ResponseCode": -1,
            "ExecutionStartDateTime": _now().isoformat(), "ExecutionEndDateTime": "", "ExecutionElapsedTime": "",
            "StandardOutputContent": "", "StandardErrorContent": "",
        }
        threading.Thread(target=_execute, args=(self, index, script, timeout), daemon=True).start()


def _execute(command: Any, index: int, script: str, timeout: int) -> None:
    started = time.monotonic()
    try:
        done = subprocess.run(ssh_argv(), input=script, capture_output=True, text=True, timeout=timeout, check=False)
        code, out, err = done.returncode, done.stdout, done.stderr
        status = "Success" if code == 0 else "Failed"
    except subprocess.TimeoutExpired as exc:
        code, status = -1, "TimedOut"
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = "command timed out"
    details = "ExecutionTimedOut" if status == "TimedOut" else status
    with _lock:
        command.invocations[index] = {
            **command.invocations[index],
            "Status": status, "StatusDetails": details, "ResponseCode": code,
            "ExecutionEndDateTime": _now().isoformat(),
            "ExecutionElapsedTime": _iso_duration(time.monotonic() - started),
            "StandardOutputContent": out[:STDOUT_LIMIT], "StandardErrorContent": err[:STDERR_LIMIT],
        }
        command.completed_count += 1
        command.error_count += 0 if status == "Success" else 1
        if all(inv["Status"] != "InProgress" for inv in command.invocations):
            ok = command.error_count == 0
            command.status = command.status_details = "Success" if ok else "Failed"


ssm_models.Command.__init__ = _command_init


# --- which instances SSM manages -------------------------------------------------------------------------

def _instances(account_id: str, region: str) -> list[Any]:
    backend = ec2_backends[account_id][region]
    return [i for r in backend.all_reservations() for i in r.instances if i.state != "terminated"]


def _ping_status(instance: Any) -> str | None:
    """Online / ConnectionLost / … for an SSM-managed instance; None when it has no SSM agent."""
    tags = {t["key"]: t["value"] for t in instance.get_tags()} if hasattr(instance, "get_tags") else {}
    override = tags.get("SSMPingStatus")
    if override is not None:
        return None if override == "None" else str(override)
    return "Online" if instance.state == "running" else "ConnectionLost"


def _instance_information(instance: Any, ping: str) -> dict[str, Any]:
    return {
        "InstanceId": instance.id,
        "PingStatus": ping,
        "LastPingDateTime": _now(),
        "AgentVersion": "3.3.0.0",
        "IsLatestVersion": True,
        "PlatformType": "Linux",
        "PlatformName": "Amazon Linux",
        "PlatformVersion": "2023",
        "ResourceType": "EC2Instance",
        "IPAddress": instance.private_ip,
        "ComputerName": f"ip-{str(instance.private_ip).replace('.', '-')}.ec2.internal",
    }


def _filter_values(filters: list[dict[str, Any]], key: str) -> set[str] | None:
    values: set[str] | None = None
    for item in filters:
        if item.get("key", item.get("Key")) == key:
            values = (values or set()) | set(item.get("valueSet", item.get("Values", [])))
    return values


def describe_instance_information(self: Any) -> ActionResult:
    filters = list(self._get_param("InstanceInformationFilterList", [])) + list(self._get_param("Filters", []))
    wanted_ids = _filter_values(filters, "InstanceIds")
    wanted_pings = _filter_values(filters, "PingStatus")
    found = []
    for instance in _instances(self.current_account, self.region):
        ping = _ping_status(instance)
        if ping is None or (wanted_ids is not None and instance.id not in wanted_ids):
            continue
        if wanted_pings is not None and ping not in wanted_pings:
            continue
        found.append(_instance_information(instance, ping))
    return ActionResult({"InstanceInformationList": found})


ssm_responses.SimpleSystemManagerResponse.describe_instance_information = describe_instance_information

_original_send_command = ssm_models.SimpleSystemManagerBackend.send_command


def _send_command(self: Any, **kwargs: Any) -> Any:
    """Refuse instances SSM does not manage (unknown, no agent, not Online), as AWS does."""
    online = {
        i.id for i in _instances(self.account_id, self.region_name) if _ping_status(i) == "Online"
    }
    for instance_id in kwargs.get("instance_ids") or []:
        if instance_id not in online:
            raise SSMException("InvalidInstanceId", f"Instance {instance_id} is not in a valid state for SSM")
    return _original_send_command(self, **kwargs)


ssm_models.SimpleSystemManagerBackend.send_command = _send_command


# --- every instance address on loopback ------------------------------------------------------------------

eni.random_public_ip = lambda: PUBLIC_IP


def _loopback_subnet_ip(self: Any, instance: Any) -> str:
    self._subnet_ips[PRIVATE_IP] = instance
    return PRIVATE_IP


subnets.Subnet.get_available_subnet_ip = _loopback_subnet_ip
# Instances launched without a subnet draw their private address here instead.
instances.random_private_ip = lambda *_args, **_kwargs: PRIVATE_IP


# --- injected throttling ---------------------------------------------------------------------------------

class Throttle:
    """WSGI middleware: the next `remaining` SSM calls (of `operations`, or any) answer ThrottlingException."""

    def __init__(self, app: WsgiApp, remaining: int) -> None:
        self.app = app
        self.remaining = remaining
        self.operations: set[str] | None = None
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == THROTTLE_PATH:
            return self._configure(environ, start_response)
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if target.startswith("AmazonSSM.") and self._take(target.split(".", 1)[1]):
            body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
            start_response("400 Bad Request", [
                ("Content-Type", "application/x-amz-json-1.1"),
                ("x-amzn-ErrorType", "ThrottlingException"),
                ("Content-Length", str(len(body))),
            ])
            return [body]
        return self.app(environ, start_response)

    def _take(self, operation: str) -> bool:
        with self.lock:
            if self.remaining <= 0 or (self.operations is not None and operation not in self.operations):
                return False
            self.remaining -= 1
            return True

    def _configure(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            request = json.loads(environ["wsgi.input"].read(length) or b"{}")
            with self.lock:
                self.remaining = int(request.get("count", 0))
                operations = request.get("operations")
                self.operations = set(operations) if operations else None
        with self.lock:
            state = {"count": self.remaining, "operations": sorted(self.operations or [])}
        body = json.dumps(state).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = Throttle(DomainDispatcherApplication(create_backend_app), int(os.environ.get("DM_THROTTLE_SSM_CALLS", "0")))
    run_simple(args.host, args.port, app, threaded=True)


if __name__ == "__main__":
    main(sys.argv[1:])
