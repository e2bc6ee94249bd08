"""The `ssm` transport: run a script on an EC2 instance as one SSM `AWS-RunShellScript` command.

SSM gives a command no stdin, keeps at most 24,000 characters of its output, and keeps its parameters in the
account's command history for anyone with ssm:ListCommands. So the script is wrapped (`host_wrapper`) in a short
POSIX shell text that carries no values:
- a payload reaches the script's stdin the SSM way: a non-secret one (the source tarball) through S3, fetched with a
  presigned URL; a secret one (the env file) through Parameter Store as a SecureString, read by the instance with
  its own role. The host checks the sha256 before the script starts (a secret's digest travels inside the
  parameter, never in the command: a digest of a short value is a guessable fingerprint). Both are deleted when the
  call ends, whatever its outcome: the host keeps each revision's env file itself. What a call could not delete
  (the operator died, AWS refused) is swept by its Deployment's prefixes (transport.ssm_payloads).
- the script's output goes to a file on the host and only its last STDOUT_KEEP bytes are printed, so the final JSON
  line always survives SSM's limit.
`get_command_invocation` is polled on a schedule (`poll_waits`); a call that times out or is cancelled
cancels the command, within bounds. SSM reports nothing about a command whose instance stopped or lost its agent
until the command's execution timeout: a command still running after LIVENESS_AFTER_S is also checked on (the
instance Online in SSM?) every LIVENESS_EVERY_S; one whose instance stopped is cancelled and reported at once, one
whose agent is out of SSM on two checks in a row likewise.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import shlex
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TypeVar

from deploymind.api import reasons
from deploymind.aws import ec2, parameters, s3, ssm, ssm_info
from deploymind.aws.errors import AwsError
from deploymind.settings import Settings
from deploymind.transport import ssm_payloads
from deploymind.transport.base import TRANSPORT_TIMEOUT, Payload, Result, TransportError, TransportRefused
from deploymind.transport.settle import bounded, start_or_undo

log = logging.getLogger(__name__)
T = TypeVar("T")

# SSM keeps 24,000 characters of stdout and 8,000 of stderr: the wrapper prints at most this many bytes of each.
STDOUT_KEEP = 20_000
STDERR_KEEP = 7_000
# SSM's own execution timeout is this much later than the call's: the call reports the timeout and cancels the
# command; SSM's timeout is the backstop when the cancel cannot arrive.
EXECUTION_GRACE_S = 5
# How long a cancel, or the removal of a delivered payload, may take before the call stops waiting for it.
CLEANUP_WAIT_S = 10.0
# The poll schedule after the first wait (poll_waits): every second for the first ten, then backing off.
STEADY_POLL_S = 1.0
STEADY_FOR_S = 10.0
# Most scripts (a tick, a release) end before the first check; a long build costs one ping every LIVENESS_EVERY_S.
LIVENESS_AFTER_S = 10.0
LIVENESS_EVERY_S = 10.0
# Reasons the host wrapper reports for itself, before the script ran.
HOST_REASONS = frozenset({reasons.HOST_NOT_READY, reasons.PAYLOAD_NOT_DELIVERED})
# AWS errors that retrying cannot fix until an administrator (or a smaller payload) does.
REFUSED_REASONS = frozenset({reasons.AWS_ACCESS_DENIED, reasons.BUILD_BUCKET_MISSING, reasons.PAYLOAD_TOO_LARGE})


class SSMTransport:
    """One EC2 instance reached through SSM Run Command; payloads through S3 and Parameter Store (`settings`)."""

    name = "ssm"

    def __init__(self, instance_id: str, region: str | None, *, settings: Settings) -> None:
        self.instance_id = instance_id
        self.region = ssm_payloads.region_of(region, settings)
        self._settings = settings
        self.calls = 0

    async def run(self, script: str, *, payload: Payload | None = None, timeout: float = 300.0) -> Result:  # noqa: ASYNC109 - per-call limit of the protocol
        self.calls += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        nonce = secrets.token_hex(8)
        async with self._delivered(payload) as fetch:
            wrapper = host_wrapper(script, nonce=nonce, fetch=fetch)
            command_id = await start_or_undo(self._send(wrapper, deadline - loop.time()), self._cancel,
                                             CLEANUP_WAIT_S)
            try:
                invocation = await self._wait(command_id, deadline, timeout)
            except asyncio.CancelledError:
                await bounded(self._cancel(command_id), CLEANUP_WAIT_S)
                raise
            except TransportError as e:
                if e.reason != TRANSPORT_TIMEOUT:
                    raise
                raise await self._timed_out(e) from None
        result = self._result(invocation, nonce)
        ssm_info.note_command_ran(self.instance_id, self.region)
        return result

    async def close(self) -> None:
        """Nothing to release: AWS clients are shared by the process."""

    @asynccontextmanager
    async def _delivered(self, payload: Payload | None) -> AsyncIterator[Fetch]:
        """Store `payload` where the host can fetch it; yield how the host fetches it; remove it when the call ends
        (a store cut short by a cancellation is removed once it is done)."""
        if payload is None:
            yield NO_FETCH
            return
        store: Awaitable[None]
        if payload.secret:
            name = self.parameter_name(payload)
            store = parameters.put_secure_string(name, _parameter_value(payload), kms_key_id=self._settings.kms_key_id,
                                                 region=self.region)
            fetch = Fetch(via="parameter", what=payload.name, parameter=name, region=self.region)
            held = ssm_payloads.held_parameter(name)

            def remove() -> Awaitable[None]:
                return self._remove(parameters.delete_parameter(name, self.region), f"parameter {name}", payload)
        else:
            bucket, key = self._bucket(payload), self.object_key(payload)
            # The host fetches a tarball the moment the command starts, seconds after it is sent; the URL (which
            # is in the command history) opens that one object this long only; the object goes when the call ends.
            expiry = self._settings.ssm_presign_expiry_seconds
            expires = int(time.time()) + expiry
            url = await self._aws(s3.presigned_get_url(bucket, key, expiry, self.region))
            store = s3.put_object(bucket, key, payload.data, self.region)
            fetch = Fetch(via="url", what=payload.name, url=url, sha256=payload.sha256, url_expires=expires,
                          url_expiry_s=expiry)
            held = ssm_payloads.held_object(bucket, key)

            def remove() -> Awaitable[None]:
                return self._remove(s3.delete_object(bucket, key, self.region), f"s3://{bucket}/{key}", payload)
        # Held from before it is stored until its removal is over: a sweep meanwhile leaves it alone.
        with ssm_payloads.holding(held):
            await start_or_undo(self._aws(store), lambda _: remove(), CLEANUP_WAIT_S)
            try:
                yield fetch
            finally:
                await bounded(remove(), CLEANUP_WAIT_S)

    def _bucket(self, payload: Payload) -> str:
        if not self._settings.build_bucket:
            raise TransportRefused(
                reasons.BUILD_BUCKET_MISSING,
                f"building through SSM hands the {payload.name} to instance {self.instance_id} through S3, and the "
                "operator has no build bucket: set --build-bucket (DEPLOYMIND_BUILD_BUCKET) to a bucket in the "
                f"instance's region ({self.region}), or deploy a prebuilt spec.image")
        return self._settings.build_bucket

    def object_key(self, payload: Payload) -> str:
        """`<build prefix>/<payload key>/<name>-<sha256[:12]>`: per revision and content."""
        return ssm_payloads.object_key(self._settings, payload)

    def parameter_name(self, payload: Payload) -> str:
        """`<parameter prefix>/<payload key>/<name>` (Parameter Store paths start with a slash)."""
        return ssm_payloads.parameter_name(self._settings, payload)

    async def _send(self, wrapper: str, left: float) -> str:
        return await self._aws(ssm.send_shell_script(
            self.instance_id, self.region, wrapper, execution_timeout_s=math.ceil(max(left, 1.0)) + EXECUTION_GRACE_S,
            comment="deploymind"))

    async def _wait(self, command_id: str, deadline: float, limit: float) -> ssm.Invocation:
        """Poll until the invocation is final or the deadline passes (then the command is cancelled)."""
        loop = asyncio.get_running_loop()
        waits = poll_waits(self._settings.ssm_poll_initial_seconds, self._settings.ssm_poll_max_seconds)
        check_at = loop.time() + LIVENESS_AFTER_S
        unmanaged = 0  # consecutive checks that found the instance out of SSM while EC2 says it runs
        while True:
            await asyncio.sleep(max(0.0, min(next(waits), deadline - loop.time())))
            try:
                invocation = await ssm.get_command_invocation(command_id, self.instance_id, self.region)
            except AwsError as e:
                if e.code != ssm.INVOCATION_NOT_YET:
                    await bounded(self._cancel(command_id), CLEANUP_WAIT_S)
                    raise TransportError(e.reason, f"{e.message}; the script's outcome on {self.instance_id} is "
                                                   "unknown (SSM was asked to cancel it): it is retried") from None
            else:
                if invocation.final:
                    return invocation
            if loop.time() >= deadline:
                await bounded(self._cancel(command_id), CLEANUP_WAIT_S)
                raise TransportError(
                    TRANSPORT_TIMEOUT,
                    f"the script did not finish within {limit:g} s on instance {self.instance_id}, and SSM was "
                    "asked to cancel it: look for a hung docker command on the host, or raise the timeout")
            if loop.time() >= check_at:
                check_at = loop.time() + LIVENESS_EVERY_S
                left = await self._left()
                unmanaged = unmanaged + 1 if left is not None and left.reason == reasons.INSTANCE_NOT_MANAGED else 0
                # A stopped instance ends the call at once; an agent that dropped out of SSM (a network blip, an
                # agent restart) gets one more check, LIVENESS_EVERY_S later, before its command is cancelled.
                if left is not None and (left.reason == reasons.INSTANCE_NOT_RUNNING or unmanaged >= 2):
                    await bounded(self._cancel(command_id), CLEANUP_WAIT_S)
                    raise left

    def _result(self, invocation: ssm.Invocation, nonce: str) -> Result:
        where = f"instance {self.instance_id}"
        if invocation.stdout.startswith(nonce + " "):
            reason, _, message = invocation.stdout[len(nonce) + 1:].strip().partition(" ")
            raise TransportError(reason if reason in HOST_REASONS else reasons.PAYLOAD_NOT_DELIVERED,
                                 f"{where}: {message}")
        status, details = invocation.status, invocation.details or invocation.status
        ran = status == "Success" or (status == "Failed" and details == "Failed" and invocation.response_code >= 0)
        if ran:
            return Result(exit_code=invocation.response_code, stdout=invocation.stdout.encode(),
                          stderr=invocation.stderr.encode())
        if details in ("Undeliverable", "InvalidPlatform"):
            raise TransportError(reasons.INSTANCE_NOT_MANAGED,
                                 f"SSM could not deliver the command to {where} ({details}): check that the "
                                 "instance runs, that its SSM agent is Online and that it is a Linux instance")
        if details == "DeliveryTimedOut":
            raise TransportError(reasons.TARGET_UNREACHABLE,
                                 f"{where} did not pick the command up in time (DeliveryTimedOut): is its SSM agent "
                                 "connected? It is retried")
        if status == "TimedOut" or details == "ExecutionTimedOut":
            raise TransportError(TRANSPORT_TIMEOUT, f"SSM stopped the script on {where} at its execution timeout "
                                                    f"({details}): look for a hung docker command on the host")
        if status == "Cancelled" or details == "Terminated":
            raise TransportError(reasons.COMMAND_CANCELLED,
                                 f"SSM reports the command on {where} as {details}: something other than this "
                                 "operator cancelled it; it is retried")
        raise TransportError(reasons.TARGET_UNREACHABLE,
                             f"SSM reports the command on {where} as {status} ({details}) without the script's exit "
                             f"code: {invocation.stderr[-300:]!r}; it is retried")

    async def _aws(self, call: Awaitable[T]) -> T:
        """An AWS call of this transport, its AwsError as a TransportError (refused: needs an administrator)."""
        try:
            return await call
        except AwsError as e:
            error = TransportRefused if e.reason in REFUSED_REASONS else TransportError
            raise error(e.reason, e.message) from None

    async def _timed_out(self, expired: TransportError) -> TransportError:
        """The error of a call that timed out: the instance's own when it stopped or left SSM mid-command (its agent
        could not report the outcome), else `expired` itself."""
        return await self._left() or expired

    async def _left(self) -> TransportError | None:
        """Why the instance cannot report on a command that runs there: it stopped (InstanceNotRunning: the rollout
        goes on once it runs), or it is no longer Online in SSM (InstanceNotManaged); None while it is Online, or
        when AWS cannot tell now."""
        try:
            ping = await ssm_info.ping_status(self.instance_id, self.region)
        except AwsError:
            return None
        if ping == ssm_info.ONLINE:
            return None
        try:
            info = await ec2.describe_instance(self.instance_id, self.region, cached=False)
        except AwsError:
            info = None
        if info is not None and not info.running:
            return TransportError(
                reasons.INSTANCE_NOT_RUNNING,
                f"instance {self.instance_id} ({self.region}) is {info.state}: it stopped while the script ran, so the "
                "script's outcome is unknown; SSM was asked to cancel the command, and the rollout goes on once the "
                "instance is running")
        return TransportError(
            reasons.INSTANCE_NOT_MANAGED,
            f"instance {self.instance_id} left SSM while the script ran (ping status now "
            f"{ping or 'not registered'}), so the script's outcome is unknown; SSM was asked to cancel the command "
            "and the call is retried: check that the instance runs, that its SSM agent is connected and that its "
            "instance profile has AmazonSSMManagedInstanceCore")

    async def _cancel(self, command_id: str) -> None:
        try:
            await ssm.cancel_command(command_id, self.instance_id, self.region)
        except AwsError as e:
            log.warning("could not cancel SSM command %s on %s: %s", command_id, self.instance_id, e.message)

    async def _remove(self, removal: Awaitable[None], what: str, payload: Payload) -> None:
        try:
            await removal
        except AwsError as e:
            # Left behind for now: its Deployment's next reconcile or tick sweeps it.
            ssm_payloads.removal_failed(payload.key)
            log.warning("could not remove %s after a call to %s (swept later): %s", what, self.instance_id,
                        e.message)
        except asyncio.CancelledError:
            # Given up on (CLEANUP_WAIT_S): the delete may or may not land.
            ssm_payloads.removal_failed(payload.key)
            raise


def poll_waits(initial: float, cap: float) -> Iterator[float]:
    """The waits before each `get_command_invocation`: `initial`, then every STEADY_POLL_S (at most `cap`) until
    STEADY_FOR_S have passed, then doubling up to `cap`. Most scripts (a release, a tick) end within seconds and are
    seen within about a second of their end; a long build costs a poll every `cap` seconds."""
    yield initial
    step, waited = min(max(initial, STEADY_POLL_S), cap), initial
    while waited < STEADY_FOR_S:
        yield step
        waited += step
    while True:
        step = min(2 * step, cap)
        yield step


def _parameter_value(payload: Payload) -> str:
    """The payload and its sha256 (checked on the host, kept out of the command): Parameter Store holds text."""
    try:
        text = payload.data.decode("utf-8")
    except UnicodeDecodeError:
        raise TransportRefused(reasons.SECRET_NOT_TEXT,
                               f"the {payload.name} is not UTF-8 text, and Parameter Store holds only text: store "
                               "the values it is made of in a text form (base64, say)") from None
    return text + payload.sha256


@dataclass(frozen=True)
class Fetch:
    """How the host gets a payload: `url` (S3 presigned, digest given) or `parameter` (SecureString, digest inside)."""

    via: str
    what: str
    url: str = ""
    sha256: str = ""
    parameter: str = ""
    region: str = ""
    url_expires: int = 0
    """When the URL stops working, in epoch seconds (0: unknown); the host says so when it fetched too late."""
    url_expiry_s: int = 0


NO_FETCH = Fetch(via="none", what="")


@cache
def _wrapper_body() -> str:
    return resources.files("deploymind.transport").joinpath("ssm_wrapper.sh").read_text(encoding="utf-8")


def host_wrapper(script: str, *, nonce: str, fetch: Fetch) -> str:
    """The command SSM runs with sh (ssm_wrapper.sh): fetch the payload, check it, run `script` with it on stdin and
    print the tails of its output; exit with its exit code. Only names, a URL and a digest of a non-secret payload
    are in this text, never a secret value or its digest."""
    values = {
        "nonce": nonce, "via": fetch.via, "what": fetch.what, "url": fetch.url, "sha256": fetch.sha256,
        "parameter": fetch.parameter, "region": fetch.region, "stdout_keep": str(STDOUT_KEEP),
        "stderr_keep": str(STDERR_KEEP), "not_ready": reasons.HOST_NOT_READY,
        "url_expires": str(fetch.url_expires), "url_expiry_s": str(fetch.url_expiry_s),
        "not_delivered": reasons.PAYLOAD_NOT_DELIVERED,
    }
    header = "".join(f"dm_{name}={shlex.quote(value)}\n" for name, value in values.items())
    marker = f"DM_SCRIPT_{nonce}"
    body = script if script.endswith("\n") else script + "\n"
    return (f"{header}{_wrapper_body()}dm_start\n"
            f"cat > \"$dm_dir/script\" <<'{marker}'\n{body}{marker}\ndm_run\n")
