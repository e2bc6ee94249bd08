"""Whether Systems Manager manages an instance: `describe_instance_information` → its ping status (Online,
ConnectionLost, Inactive), or None when SSM does not know it (no agent, no instance profile, not registered yet)."""

from __future__ import annotations

import time

from botocore.exceptions import BotoCoreError, ClientError

from deploymind.api import reasons
from deploymind.aws import session
from deploymind.aws.errors import access_denied, from_boto

OPERATION = "ssm:DescribeInstanceInformation"
ONLINE = "Online"
# A command that ran on the instance this recently shows its agent Online without asking: the lookup cache window.
ONLINE_EVIDENCE_SECONDS = 10.0

_ran: dict[tuple[str, str], float] = {}


def note_command_ran(instance_id: str, region: str) -> None:
    """An SSM command has just run on the instance (its agent picked it up and reported back)."""
    _ran[(region, instance_id)] = time.monotonic() + ONLINE_EVIDENCE_SECONDS


def recently_ran(instance_id: str, region: str) -> bool:
    """Whether a command ran on the instance within ONLINE_EVIDENCE_SECONDS: only ever a yes, never a refusal."""
    return _ran.get((region, instance_id), 0.0) > time.monotonic()


async def ping_status(instance_id: str, region: str | None) -> str | None:
    """The instance's SSM ping status, or None when SSM does not list it. Raises AwsError: AccessDenied (naming
    ssm:DescribeInstanceInformation) or AwsUnavailable."""
    ssm = session.client("ssm", region)
    try:
        answer = await session.call(ssm.describe_instance_information,
                                    Filters=[{"Key": "InstanceIds", "Values": [instance_id]}])
    except (ClientError, BotoCoreError) as e:
        denied = isinstance(e, ClientError) and access_denied(e)
        raise from_boto(e, OPERATION, reasons.AWS_ACCESS_DENIED if denied else reasons.AWS_UNAVAILABLE) from None
    for item in answer.get("InstanceInformationList", []):
        if item.get("InstanceId") == instance_id:
            return str(item.get("PingStatus", "")) or None
    return None

