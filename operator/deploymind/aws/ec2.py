"""EC2 instance lookup: `describe_instances` for one instance, its state, addresses and tags, cached for a few
seconds per (region, instance) so a rollout's steps and a burst of reconciles cost one call, while a changed state
(stopped, started) is still seen within CACHE_SECONDS."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from deploymind.api import reasons
from deploymind.aws import session
from deploymind.aws.errors import AwsError, access_denied, from_boto

OPERATION = "ec2:DescribeInstances"
CACHE_SECONDS = 10.0
# Both mean "no such instance here": a well-formed id of another region or account, or a malformed one.
NOT_FOUND_CODES = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})


@dataclass(frozen=True)
class InstanceInfo:
    """What the operator needs to know about one EC2 instance."""

    instance_id: str
    region: str
    state: str
    """EC2's state name: pending, running, stopping, stopped, shutting-down, terminated."""
    private_address: str | None
    public_address: str | None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state == "running"


_cache: dict[tuple[str, str], tuple[float, InstanceInfo]] = {}


def _region(region: str | None) -> str:
    return region or session.default_region() or "us-east-1"


async def describe_instance(instance_id: str, region: str | None, *, cached: bool = True) -> InstanceInfo:
    """The instance as EC2 reports it: at most CACHE_SECONDS old, or asked afresh when not `cached`. Raises AwsError:
    reason InstanceNotFound (no such instance in that region, or it is terminated), AccessDenied (the message names
    ec2:DescribeInstances), or AwsUnavailable (anything that may pass: the endpoint, throttling beyond the retries,
    a server error)."""
    where = _region(region)
    hit = peek(instance_id, where) if cached else None
    if hit is not None:
        return hit
    ec2 = session.client("ec2", where)
    try:
        answer = await session.call(ec2.describe_instances, InstanceIds=[instance_id])
    except (ClientError, BotoCoreError) as e:
        raise _error(e, instance_id, where) from None
    found = [i for r in answer.get("Reservations", []) for i in r.get("Instances", [])
             if i.get("InstanceId") == instance_id]
    if not found or found[0].get("State", {}).get("Name") == "terminated":
        # A terminated instance stays listed for an hour, but nothing will ever run on it again.
        raise _not_found(instance_id, where)
    info = _info(found[0], where)
    _cache[(where, instance_id)] = (time.monotonic() + CACHE_SECONDS, info)
    return info


def peek(instance_id: str, region: str | None) -> InstanceInfo | None:
    """The cached lookup of the instance while it is at most CACHE_SECONDS old, without calling EC2."""
    hit = _cache.get((_region(region), instance_id))
    return hit[1] if hit is not None and hit[0] > time.monotonic() else None


def _info(raw: dict[str, Any], region: str) -> InstanceInfo:
    return InstanceInfo(
        instance_id=str(raw["InstanceId"]),
        region=region,
        state=str(raw.get("State", {}).get("Name", "unknown")),
        private_address=raw.get("PrivateIpAddress") or None,
        public_address=raw.get("PublicIpAddress") or None,
        tags={str(t["Key"]): str(t.get("Value", "")) for t in raw.get("Tags", [])},
    )


def _not_found(instance_id: str, region: str) -> AwsError:
    return AwsError(reasons.INSTANCE_NOT_FOUND,
                    f"EC2 has no instance {instance_id} in {region} (or it is terminated); check "
                    "spec.target.instanceId and spec.target.region (default: the operator's --aws-region)",
                    code="InvalidInstanceID.NotFound", operation=OPERATION)


def _error(e: ClientError | BotoCoreError, instance_id: str, region: str) -> AwsError:
    if isinstance(e, ClientError):
        if e.response.get("Error", {}).get("Code") in NOT_FOUND_CODES:
            return _not_found(instance_id, region)
        if access_denied(e):
            return from_boto(e, OPERATION, reasons.AWS_ACCESS_DENIED)
    return from_boto(e, OPERATION, reasons.AWS_UNAVAILABLE)


def forget() -> None:
    """Drop every cached instance (tests that change instances behind the cache's back)."""
    _cache.clear()
