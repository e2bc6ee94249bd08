"""Where the ssm transport keeps a call's payloads in AWS, which of them a call of this process holds right now, and
the sweep that removes every other payload of one Deployment.

A call deletes its payloads when it ends (transport.ssm). What a call cut short by the operator's death left behind
(a tarball in S3, an env file in Parameter Store), or what a call could not delete, stays until something removes
it: payload keys are `<namespace>/<name>/<uid>/<revision>` (transport.base.payload_key), so everything a Deployment
object ever stored is under its own prefixes (its `owner_key`), and `sweep` lists them and deletes whatever no call
in flight here holds. Another object of the same name (in another cluster sharing the bucket, or created again after
a delete) has another uid, and so prefixes of its own.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from deploymind.api import reasons
from deploymind.aws import parameters, s3, session
from deploymind.aws.errors import AwsError
from deploymind.settings import Settings
from deploymind.transport.base import Payload

# What the calls of this process hold (`s3://bucket/key`, `ssm:<parameter name>`): from before the payload is
# stored until its removal is over. A count, since two calls may hold one name.
_held: collections.Counter[str] = collections.Counter()
# Payload keys whose removal failed since the last sweep: their Deployment's sweep is due again.
_left: set[str] = set()


def region_of(region: str | None, settings: Settings) -> str:
    """The region a Deployment's payloads are kept in: its instance's (spec.target.region), else the operator's."""
    return region or settings.aws_region or session.default_region() or "us-east-1"


def object_key(settings: Settings, payload: Payload) -> str:
    """`<build prefix>/<payload key>/<name>-<sha256[:12]>`: per revision and content."""
    return _join(settings.build_prefix, payload.key, f"{payload.name}-{payload.sha256[:12]}")


def parameter_name(settings: Settings, payload: Payload) -> str:
    """`<parameter prefix>/<payload key>/<name>` (Parameter Store paths start with a slash)."""
    return "/" + _join(settings.parameter_prefix, payload.key, payload.name)


def object_prefix(settings: Settings, owner: str) -> str:
    """Everything of one Deployment object (`owner_key`) in the build bucket (the slash ends the uid)."""
    return _join(settings.build_prefix, owner) + "/"


def parameter_path(settings: Settings, owner: str) -> str:
    """Everything of one Deployment object (`owner_key`) in Parameter Store (a path matches whole segments only)."""
    return "/" + _join(settings.parameter_prefix, owner)


def held_object(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def held_parameter(name: str) -> str:
    return f"ssm:{name}"


@contextmanager
def holding(held: str) -> Iterator[None]:
    """A call of this process needs `held` (held_object, held_parameter): no sweep removes it meanwhile."""
    _held[held] += 1
    try:
        yield
    finally:
        _held[held] -= 1
        if _held[held] <= 0:
            del _held[held]


def removal_failed(payload_key: str) -> None:
    """A call could not delete its payload: its Deployment's next sweep is due (left_behind)."""
    _left.add(payload_key)


def left_behind(owner: str) -> bool:
    """Whether a call of this process failed to delete a payload of this Deployment object since its last sweep."""
    prefix = f"{owner}/"
    return any(key.startswith(prefix) for key in _left)


@dataclass(frozen=True)
class Swept:
    """What one sweep did: payloads deleted, and those kept because a call in flight holds them."""

    objects: int
    parameters: int
    kept: int


async def sweep(owner: str, region: str, settings: Settings) -> Swept:
    """Delete every parameter under the Deployment object's Parameter Store path (`owner` is its `owner_key`) and
    every object under its build prefix,
    except what a call in flight holds. AWS calls: one list per 10 parameters and one per 1,000 objects (two for a
    Deployment with nothing left; one without a build bucket), one delete per 10 parameters and per 1,000 objects
    found. Raises AwsError: AccessDenied naming the action (ssm:GetParametersByPath, ssm:DeleteParameters,
    s3:ListBucket, s3:DeleteObject), AwsUnavailable."""
    prefix = f"{owner}/"
    left_before = {key for key in _left if key.startswith(prefix)}
    names = await parameters.names_under(parameter_path(settings, owner), region)
    # Checked just before each delete: a call that starts meanwhile holds its names before it stores anything.
    free = [found for found in names if not _held[held_parameter(found)]]
    if free:
        await parameters.delete_parameters(free, region)
    kept = len(names) - len(free)
    objects = 0
    bucket = settings.build_bucket
    if bucket:
        try:
            keys = await s3.list_keys(bucket, object_prefix(settings, owner), region)
        except AwsError as e:
            if e.reason != reasons.BUILD_BUCKET_MISSING:
                raise
            keys = []  # nothing was ever stored in a bucket that does not exist
        loose = [key for key in keys if not _held[held_object(bucket, key)]]
        if loose:
            await s3.delete_objects(bucket, loose, region)
        objects, kept = len(loose), kept + len(keys) - len(loose)
    _left.difference_update(left_before)
    return Swept(objects=objects, parameters=len(free), kept=kept)


def _join(*parts: str) -> str:
    return "/".join(part.strip("/") for part in parts if part.strip("/"))
