"""SSM Run Command: one shell script as one `AWS-RunShellScript` command on one instance, its invocation (status,
exit code, output), cancelling it, and listing commands (what SSM keeps in the account's command history)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from deploymind.api import reasons
from deploymind.aws import session
from deploymind.aws.errors import AwsError, access_denied, from_boto

T = TypeVar("T")

DOCUMENT = "AWS-RunShellScript"
# SSM refuses a delivery timeout (TimeoutSeconds) under 30 s.
MIN_DELIVERY_TIMEOUT_S = 30
# Invocation statuses after which nothing changes any more (StatusDetails says more: Undeliverable,
# Terminated, DeliveryTimedOut, ExecutionTimedOut, …).
FINAL_STATUSES = frozenset({"Success", "Failed", "TimedOut", "Cancelled"})
# Just after send_command, get_command_invocation may not know the invocation yet.
INVOCATION_NOT_YET = "InvocationDoesNotExist"


@dataclass(frozen=True)
class Invocation:
    """One command on one instance, as get_command_invocation reports it."""

    status: str
    """Pending, InProgress, Delayed, Cancelling, or one of FINAL_STATUSES."""
    details: str
    """StatusDetails: finer than status (`ExecutionTimedOut` vs `DeliveryTimedOut` for TimedOut)."""
    response_code: int
    """The script's exit code; -1 while it runs or when it never ran."""
    stdout: str
    stderr: str

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


async def send_shell_script(instance_id: str, region: str | None, script: str, *, execution_timeout_s: int,
                            comment: str = "") -> str:
    """Send `script` to the instance as one command; return its command id. SSM stops the script after
    `execution_timeout_s`, and gives up delivering it after as long (at least 30 s). Raises AwsError:
    InstanceNotManaged (not Online in SSM), AccessDenied, AwsUnavailable."""
    ssm = session.client("ssm", region)
    answer = await _call(
        ssm.send_command, "ssm:SendCommand", instance_id,
        InstanceIds=[instance_id], DocumentName=DOCUMENT, Comment=comment[:100],
        TimeoutSeconds=max(MIN_DELIVERY_TIMEOUT_S, execution_timeout_s),
        # One element: the agent writes it to a file and runs it with sh, newlines and all.
        Parameters={"commands": [script], "executionTimeout": [str(execution_timeout_s)]},
    )
    return str(answer["Command"]["CommandId"])


async def get_command_invocation(command_id: str, instance_id: str, region: str | None) -> Invocation:
    """The command's state on the instance. Raises AwsError; code InvocationDoesNotExist just after sending."""
    ssm = session.client("ssm", region)
    answer = await _call(ssm.get_command_invocation, "ssm:GetCommandInvocation", instance_id,
                         CommandId=command_id, InstanceId=instance_id)
    return Invocation(
        status=str(answer.get("Status", "")),
        details=str(answer.get("StatusDetails", "")),
        response_code=int(answer.get("ResponseCode", -1)),
        stdout=str(answer.get("StandardOutputContent", "")),
        stderr=str(answer.get("StandardErrorContent", "")),
    )


async def cancel_command(command_id: str, instance_id: str, region: str | None) -> None:
    """Ask SSM to stop the command on the instance (the agent kills the script). Raises AwsError."""
    ssm = session.client("ssm", region)
    await _call(ssm.cancel_command, "ssm:CancelCommand", instance_id, CommandId=command_id,
                InstanceIds=[instance_id])


async def list_commands(instance_id: str, region: str | None) -> list[dict[str, Any]]:
    """Every command SSM keeps for the instance, with its parameters: what anyone with ssm:ListCommands reads."""
    ssm = session.client("ssm", region)
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = await _call(ssm.list_commands, "ssm:ListCommands", instance_id, InstanceId=instance_id,
                           **({"NextToken": token} if token else {}))
        found.extend(page.get("Commands", []))
        token = page.get("NextToken")
        if not token:
            return found


async def _call(fn: Callable[..., T], operation: str, instance_id: str, /, **kwargs: Any) -> T:
    try:
        return await session.call(fn, **kwargs)
    except (ClientError, BotoCoreError) as e:
        raise _error(e, operation, instance_id) from None


def _error(e: ClientError | BotoCoreError, operation: str, instance_id: str) -> AwsError:
    code = str(e.response.get("Error", {}).get("Code", "")) if isinstance(e, ClientError) else ""
    if code == "InvalidInstanceId":
        said = from_boto(e, operation, reasons.INSTANCE_NOT_MANAGED).aws_message
        return AwsError(reasons.INSTANCE_NOT_MANAGED,
                        f"{operation}: SSM does not manage instance {instance_id} or it is not Online ({said}): "
                        "check that it runs, that its SSM agent is running and that its instance profile has "
                        "AmazonSSMManagedInstanceCore", code=code, aws_message=said, operation=operation)
    denied = isinstance(e, ClientError) and access_denied(e)
    return from_boto(e, operation, reasons.AWS_ACCESS_DENIED if denied else reasons.AWS_UNAVAILABLE)
