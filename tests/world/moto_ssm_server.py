"""moto in server mode, extended where DeployMind needs more realism than stock moto gives.

- SSM `AWS-RunShellScript` commands really run, over SSH, on the test host, asynchronously: `send_command`
  returns at once, `get_command_invocation` answers InProgress until the script ends, then Success, Failed or
  TimedOut with the real exit code, stdout (its first 24,000 characters, as SSM keeps) and stderr (first 8,000).
  The script gets an empty stdin, as under the SSM agent. It runs as the SSH login user, not root, in its own
  process group, which `cancel_command` (Cancelled) and the executionTimeout (TimedOut) kill, as the agent does.
  Its environment stands in for an instance role: AWS_ENDPOINT_URL (this server), dummy credentials and region,
  so the host's own AWS CLI and curl reach Parameter Store and S3 presigned URLs here. A command without Targets
  runs on the instances it names only (stock moto adds every instance). Stopping the server ends every script
  still running.
- `DescribeInstanceInformation` lists EC2 instances as SSM-managed: running ones Online, stopped ones
  ConnectionLost. A tag `SSMPingStatus` overrides the ping status; `SSMPingStatus=None` means "no SSM agent"
  (not listed). `send_command` to an instance that is not Online fails with InvalidInstanceId, as in AWS.
- Every EC2 instance address is on loopback: public IP $DM_PUBLIC_IP (127.0.0.1), private IP $DM_PRIVATE_IP
  (127.0.0.2).
- Every AWS request is counted by caller (`operator`: a botocore client with "deploymind" in its user agent;
  `host`: anything else, such as the AWS CLI and curl on the test host) and `service:Operation`:
  `GET /moto-api/deploymind/calls` returns the counts, `POST` resets them.
- Throttling on demand: `POST /moto-api/deploymind/throttle` with `{"count": N, "operations": ["GetCommandInvocation"]}`
  (operations optional: any SSM call) makes the next N matching SSM calls answer ThrottlingException;
  $DM_THROTTLE_SSM_CALLS sets N at start. `GET` on the same path returns what is left.
- A slow SSM agent on demand: `POST /moto-api/deploymind/delivery-delay` with `{"seconds": S}` keeps every command
  sent from then on Pending for S seconds before its script starts (0: at once).
- Delivery faults on demand: `POST /moto-api/deploymind/delivery-fault` with `{"commands": N, "status": S,
  "details": D}` ends the next N commands sent at once with Status S and StatusDetails D, their scripts never run
  (an agent that cannot take them: Failed/Undeliverable, TimedOut/DeliveryTimedOut, Cancelled/Terminated); with
  `{"not_yet": K}` the next K GetCommandInvocation calls answer InvocationDoesNotExist, as SSM does for a moment
  right after a command is sent. `GET` on the same path returns what is left.
- An instance that leaves SSM mid-command (stopped, or its `SSMPingStatus` tag no longer Online): its script's
  outcome is not reported while the instance is not Online; the invocation stays InProgress until it is again, or
  is cancelled, or reaches its executionTimeout (TimedOut), as with an agent that lost its connection.
- S3 presigned URLs expire: a GET after X-Amz-Date + X-Amz-Expires answers 403 AccessDenied "Request has expired",
  as S3 does (moto does not check).
- With IAM enforced, a signed request whose query has a value with a slash (`list_objects_v2(Prefix="a/b")`) is
  checked against the query as the client signed it (moto checks it against werkzeug's decoded URL, and answers
  SignatureDoesNotMatch).

Usage: DM_SSH_PORT=… DM_SSH_KEY=… DM_SSH_KNOWN_HOSTS=… DM_SSH_USER=… python moto_ssm_server.py -H 127.0.0.1 -p 5000
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import moto.ec2.models
import moto.ec2.models.elastic_network_interfaces
import moto.ec2.models.instances
import moto.ec2.models.subnets
import moto.iam.access_control
import moto.ssm.models
import moto.ssm.responses
from moto.core.responses import ActionResult, EmptyResult
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
access_control: Any = moto.iam.access_control

STDOUT_LIMIT = 24_000
STDERR_LIMIT = 8_000
DEFAULT_EXECUTION_TIMEOUT_S = 3600
THROTTLE_PATH = "/moto-api/deploymind/throttle"
CALLS_PATH = "/moto-api/deploymind/calls"
DELAY_PATH = "/moto-api/deploymind/delivery-delay"
FAULT_PATH = "/moto-api/deploymind/delivery-fault"
# How often a held outcome looks whether its instance is Online again.
HOLD_POLL_S = 0.2
PUBLIC_IP = os.environ.get("DM_PUBLIC_IP", "127.0.0.1")
PRIVATE_IP = os.environ.get("DM_PRIVATE_IP", "127.0.0.2")
# What the instance role gives a script on a real instance: credentials, a region; and, in this world, the endpoint.
HOST_AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION")
# Write the script to a file named for the command and run it with stdin closed (the SSM agent gives scripts no
# stdin) as the leader of a new process group, whose id goes to "$f.pid" so a cancel can kill the whole group.
REMOTE_RUNNER = ('{env}f=/tmp/dm-ssm-{command_id}; cat > "$f" && '
                 'setsid -w sh -c \'echo $$ > "$1.pid"; exec sh "$1"\' sh "$f" < /dev/null; rc=$?; '
                 'rm -f "$f" "$f.pid"; exit $rc')
# Kill a command's process group: TERM, then KILL if it is still there after 2 s. Exits 3 when it has not started.
# (The login shell is dash, whose kill takes no `--`.)
REMOTE_KILLER = ('p=$(cat /tmp/dm-ssm-{command_id}.pid 2>/dev/null) || exit 3; kill -TERM "-$p" 2>/dev/null; '
                 'for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "-$p" 2>/dev/null || exit 0; sleep 0.2; done; '
                 'kill -KILL "-$p" 2>/dev/null; exit 0')
KILL_RETRY_S = 0.2
KILL_WAIT_S = 10.0

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def ssh_argv(remote_command: str) -> list[str]:
    """The ssh command line that runs `remote_command` on the test host, from the DM_SSH_* environment."""
    return [
        "ssh", "-p", os.environ["DM_SSH_PORT"], "-i", os.environ["DM_SSH_KEY"],
        "-o", "UserKnownHostsFile=" + os.environ["DM_SSH_KNOWN_HOSTS"], "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
        f"{os.environ.get('DM_SSH_USER', 'ec2-user')}@{os.environ.get('DM_SSH_HOST', '127.0.0.1')}",
        remote_command,
    ]


def runner_command(command_id: str) -> str:
    """The remote command that runs one SSM command's script (on stdin) with the stand-in instance role."""
    env = {name: os.environ[name] for name in HOST_AWS_ENV if name in os.environ}
    env["AWS_ENDPOINT_URL"] = os.environ["DM_MOTO_URL"]
    exports = "".join(f"export {name}={shlex.quote(value)}; " for name, value in sorted(env.items()))
    return REMOTE_RUNNER.format(env=exports, command_id=command_id)


def _iso_duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# --- SSM commands run for real ---------------------------------------------------------------------------

_lock = threading.Lock()
_original_command_init = ssm_models.Command.__init__
_runs: list[Run] = []
_delivery_delay_s = 0.0
# The next `commands` commands sent end at once as `status`/`details`; the next `not_yet` invocation reads fail.
_fault: dict[str, Any] = {"commands": 0, "status": "", "details": "", "not_yet": 0}


def _command_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _original_command_init(self, *args, **kwargs)
    if self.document_name != "AWS-RunShellScript":
        return
    script = "\n".join(self.parameters.get("commands", []))
    timeout = int((self.parameters.get("executionTimeout") or [DEFAULT_EXECUTION_TIMEOUT_S])[0])
    self.status, self.status_details = "InProgress", "InProgress"
    self.completed_count = 0
    self.dm_runs = {}
    with _lock:
        delay = _delivery_delay_s
        faulty = _fault["commands"] > 0
        if faulty:
            _fault["commands"] -= 1
    if faulty:
        _undelivered(self, str(_fault["status"]), str(_fault["details"]))
        return
    first = "Pending" if delay > 0 else "InProgress"
    for index, invocation in enumerate(self.invocations):
        self.invocations[index] = {
            **invocation,
            "Status": first, "StatusDetails": first, "ResponseCode": -1,
            "ExecutionStartDateTime": _now().isoformat(), "ExecutionEndDateTime": "", "ExecutionElapsedTime": "",
            "StandardOutputContent": "", "StandardErrorContent": "",
        }
        run = Run(self.command_id)
        self.dm_runs[invocation["InstanceId"]] = run
        with _lock:
            _runs.append(run)
        threading.Thread(target=_execute, args=(self, index, run, script, timeout, delay), daemon=True).start()


def _undelivered(command: Any, status: str, details: str) -> None:
    """The command ends as the agent never ran it: no script, no exit code, no output."""
    for index, invocation in enumerate(command.invocations):
        command.invocations[index] = {
            **invocation, "Status": status, "StatusDetails": details, "ResponseCode": -1,
            "ExecutionStartDateTime": "", "ExecutionEndDateTime": "", "ExecutionElapsedTime": "",
            "StandardOutputContent": "", "StandardErrorContent": "",
        }
    command.completed_count = len(command.invocations)
    command.error_count = len(command.invocations)
    command.status = command.status_details = status


class Run:
    """One invocation's script on the test host: its ssh process, and whether it was cancelled."""

    def __init__(self, command_id: str) -> None:
        self.command_id = command_id
        self.process = subprocess.Popen(
            ssh_argv(runner_command(command_id)), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        self.cancelled = False

    def kill(self) -> None:
        """Kill the script's process group on the host, retrying while it has not started yet; a run that never
        starts within KILL_WAIT_S has its ssh killed instead."""
        deadline = time.monotonic() + KILL_WAIT_S
        while self.process.poll() is None and time.monotonic() < deadline:
            done = subprocess.run(ssh_argv(REMOTE_KILLER.format(command_id=self.command_id)), capture_output=True,
                                  timeout=KILL_WAIT_S, check=False)
            if done.returncode != 3:
                return
            time.sleep(KILL_RETRY_S)
        if self.process.poll() is None:
            self.process.kill()


def _execute(command: Any, index: int, run: Run, script: str, timeout: int, delay: float) -> None:
    time.sleep(delay)
    with _lock:
        if command.invocations[index]["Status"] == "Pending":
            command.invocations[index] = {**command.invocations[index], "Status": "InProgress",
                                          "StatusDetails": "InProgress"}
    started = time.monotonic()
    try:
        out, err = run.process.communicate("" if run.cancelled else script, timeout=timeout)
        code = run.process.returncode
        status = "Success" if code == 0 else "Failed"
    except subprocess.TimeoutExpired:
        run.kill()
        out, err = run.process.communicate()
        code, status, err = -1, "TimedOut", err + "command timed out"
    instance_id = command.invocations[index]["InstanceId"]
    while (status != "TimedOut" and not run.cancelled and time.monotonic() < started + timeout
           and not _online(command.account_id, command.backend_region, instance_id)):
        time.sleep(HOLD_POLL_S)
    if status != "TimedOut" and not run.cancelled and time.monotonic() >= started + timeout:
        code, status, out, err = -1, "TimedOut", "", "command timed out"
    if run.cancelled:
        code, status = -1, "Cancelled"
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
        if all(inv["Status"] not in ("InProgress", "Cancelling") for inv in command.invocations):
            ok = command.error_count == 0
            command.status = command.status_details = "Success" if ok else "Failed"


def cancel_command(self: Any) -> ActionResult:
    """CancelCommand: the running invocations turn Cancelling, their scripts are killed, then they are Cancelled."""
    command = self.ssm_backend.get_command_by_id(self._get_param("CommandId"))
    wanted = set(self._get_param("InstanceIds") or command.instance_ids)
    with _lock:
        for index, invocation in enumerate(command.invocations):
            run = getattr(command, "dm_runs", {}).get(invocation["InstanceId"])
            if (invocation["InstanceId"] in wanted and run is not None
                    and invocation["Status"] in ("Pending", "InProgress")):
                run.cancelled = True
                command.invocations[index] = {**invocation, "Status": "Cancelling", "StatusDetails": "Cancelling"}
                threading.Thread(target=run.kill, daemon=True).start()
    return EmptyResult()


ssm_responses.SimpleSystemManagerResponse.cancel_command = cancel_command


def _end_runs(_signum: int, _frame: Any) -> None:
    """SIGTERM: end every script still running on the host (their ssh would outlive us), then exit."""
    with _lock:
        running = [run for run in _runs if run.process.poll() is None]
    killers = [threading.Thread(target=run.kill, daemon=True) for run in running]
    for killer in killers:
        killer.start()
    for killer in killers:
        killer.join(KILL_WAIT_S)
    os._exit(0)


ssm_models.Command.__init__ = _command_init
_original_instance_ids_from_targets = ssm_models.Command._get_instance_ids_from_targets


def _instance_ids_from_targets(self: Any) -> list[str]:
    """No Targets means no instances from targets (moto filters EC2 by nothing and takes every instance)."""
    return _original_instance_ids_from_targets(self) if self.targets else []


ssm_models.Command._get_instance_ids_from_targets = _instance_ids_from_targets


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


def _online(account_id: str, region: str, instance_id: str) -> bool:
    return any(i.id == instance_id and _ping_status(i) == "Online" for i in _instances(account_id, region))


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


# --- IAM signature checks of a query with a slash ----------------------------------------------------------

_aws_request = access_control.IAMRequestBase._create_aws_request


def _signed_as_sent(self: Any) -> Any:
    """The request moto signs again, its query quoted as SigV4 quotes it (werkzeug's URL has `%2F` decoded)."""
    path, _, query = self._path.partition("?")
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        self._path = f"{path}?{urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote, safe='-_.~')}"
    return _aws_request(self)


access_control.IAMRequestBase._create_aws_request = _signed_as_sent


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


# --- a slow SSM agent, and presigned URLs that expire --------------------------------------------------

class DeliveryDelay:
    """WSGI middleware: `POST DELAY_PATH {"seconds": S}` holds every command sent from then on Pending S s."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        global _delivery_delay_s
        if environ.get("PATH_INFO") != DELAY_PATH:
            return self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            seconds = float(json.loads(environ["wsgi.input"].read(length) or b"{}").get("seconds", 0))
            with _lock:
                _delivery_delay_s = seconds
        with _lock:
            body = json.dumps({"seconds": _delivery_delay_s}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


class DeliveryFault:
    """WSGI middleware: `POST FAULT_PATH` sets the delivery faults (see the module's docstring); pending
    `not_yet` faults answer GetCommandInvocation with InvocationDoesNotExist."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == FAULT_PATH:
            if environ.get("REQUEST_METHOD") == "POST":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                request = json.loads(environ["wsgi.input"].read(length) or b"{}")
                with _lock:
                    _fault.update(commands=int(request.get("commands", 0)), status=str(request.get("status", "")),
                                  details=str(request.get("details", "")), not_yet=int(request.get("not_yet", 0)))
            with _lock:
                body = json.dumps(_fault).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if environ.get("HTTP_X_AMZ_TARGET") == "AmazonSSM.GetCommandInvocation":
            with _lock:
                not_yet = _fault["not_yet"] > 0
                if not_yet:
                    _fault["not_yet"] -= 1
            if not_yet:
                body = json.dumps({"__type": "InvocationDoesNotExist", "message": ""}).encode()
                start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.1"),
                                                   ("Content-Length", str(len(body)))])
                return [body]
        return self.app(environ, start_response)


class PresignedExpiry:
    """WSGI middleware: a presigned request after X-Amz-Date + X-Amz-Expires is refused, as S3 refuses it."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        query = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", "")))
        if "X-Amz-Expires" in query and "X-Amz-Date" in query:
            signed = datetime.datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
            expires = signed + datetime.timedelta(seconds=int(query["X-Amz-Expires"][0]))
            if _now() > expires:
                body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>"
                        f"<Message>Request has expired</Message><X-Amz-Expires>{query['X-Amz-Expires'][0]}"
                        f"</X-Amz-Expires><Expires>{expires:%Y-%m-%dT%H:%M:%SZ}</Expires>"
                        f"<ServerTime>{_now():%Y-%m-%dT%H:%M:%SZ}</ServerTime></Error>").encode()
                start_response("403 Forbidden", [("Content-Type", "application/xml"),
                                                  ("Content-Length", str(len(body)))])
                return [body]
        return self.app(environ, start_response)


# --- counted calls ---------------------------------------------------------------------------------------

_S3_OPERATIONS = {"PUT": "PutObject", "GET": "GetObject", "DELETE": "DeleteObject", "HEAD": "HeadObject"}


class CallCounter:
    """WSGI middleware: counts every AWS request by caller (operator or host) and `service:Operation`."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.counts: dict[str, dict[str, int]] = {"operator": {}, "host": {}}
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path == CALLS_PATH:
            return self._report(environ, start_response)
        if not path.startswith("/moto-api/"):
            caller = "operator" if "deploymind" in str(environ.get("HTTP_USER_AGENT", "")) else "host"
            call = f"{_service(environ)}:{self._operation(environ, path)}"
            with self.lock:
                self.counts[caller][call] = self.counts[caller].get(call, 0) + 1
        return self.app(environ, start_response)

    def _operation(self, environ: dict[str, Any], path: str) -> str:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if target:
            return target.split(".", 1)[-1]
        query = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", "")))
        if "Action" in query:
            return query["Action"][0]
        if "form-urlencoded" in str(environ.get("CONTENT_TYPE", "")):
            # The query protocol (EC2) names the action in the body: read it, and hand the app the same bytes.
            body: bytes = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            return urllib.parse.parse_qs(body.decode(errors="replace")).get("Action", ["?"])[0]
        method = str(environ.get("REQUEST_METHOD", ""))
        if path.strip("/").count("/") == 0:
            return {"PUT": "CreateBucket", "DELETE": "DeleteBucket", "GET": "ListObjects",
                    "POST": "DeleteObjects"}.get(method, method)
        return _S3_OPERATIONS.get(method, method)

    def _report(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        with self.lock:
            body = json.dumps(self.counts).encode()
            if environ.get("REQUEST_METHOD") == "POST":
                self.counts = {"operator": {}, "host": {}}
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def _service(environ: dict[str, Any]) -> str:
    """The signing service of a SigV4 request (header or presigned query), e.g. `ssm`, `s3`, `ec2`."""
    credential = re.search(r"Credential=([^,\s&]+)", str(environ.get("HTTP_AUTHORIZATION", "")))
    scope = credential.group(1) if credential else ""
    if not scope:
        scope = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", ""))).get("X-Amz-Credential", [""])[0]
    parts = urllib.parse.unquote(scope).split("/")
    return parts[3] if len(parts) > 3 else "unsigned"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))
    os.environ.setdefault("DM_MOTO_URL", f"http://{args.host}:{args.port}")
    throttled = Throttle(DomainDispatcherApplication(create_backend_app),
                         int(os.environ.get("DM_THROTTLE_SSM_CALLS", "0")))
    signal.signal(signal.SIGTERM, _end_runs)
    app = CallCounter(DeliveryDelay(DeliveryFault(PresignedExpiry(throttled))))
    run_simple(args.host, args.port, app, threaded=True)


if __name__ == "__main__":
    main(sys.argv[1:])
