"""Whether Systems Manager manages an instance: `describe_instance_information` → its ping status (Online,
ConnectionLost, Inactive), or None when SSM does not know it (no agent, no instance profile, not registered yet)."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from deploymind.api import reasons
from deploymind.aws import session
from deploymind.aws.errors import access_denied, from_boto

OPERATION = "ssm:DescribeInstanceInformation"
ONLINE = "Online"


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

