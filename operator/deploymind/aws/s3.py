"""S3 for build contexts: put an object, hand a host a short-lived presigned GET URL for it, delete it.

A presigned URL is signed with the operator's own credentials: the instance needs no S3 permission to use it, and
it opens this one object only, until it expires (or the object is deleted)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from deploymind.api import reasons
from deploymind.aws import session
from deploymind.aws.errors import AwsError, access_denied, from_boto

T = TypeVar("T")

MISSING_BUCKET_CODES = frozenset({"NoSuchBucket"})


async def put_object(bucket: str, key: str, data: bytes, region: str | None) -> None:
    """Store `data` at `key`. Raises AwsError: BuildBucketMissing (no such bucket), AccessDenied, AwsUnavailable."""
    s3 = session.client("s3", region)
    await _call(s3.put_object, "s3:PutObject", bucket, key, Bucket=bucket, Key=key, Body=data)


async def presigned_get_url(bucket: str, key: str, expires_s: int, region: str | None) -> str:
    """A URL that GETs `key` for `expires_s` seconds. No request is made (signing may refresh credentials)."""
    s3 = session.client("s3", region)
    url = await _call(s3.generate_presigned_url, "s3:GetObject", bucket, key, ClientMethod="get_object",
                      Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s)
    return str(url)


async def delete_object(bucket: str, key: str, region: str | None) -> None:
    """Remove `key`; a key that is already gone is no error (S3 answers the same)."""
    s3 = session.client("s3", region)
    await _call(s3.delete_object, "s3:DeleteObject", bucket, key, Bucket=bucket, Key=key)


async def _call(fn: Callable[..., T], operation: str, bucket: str, key: str, /, **kwargs: Any) -> T:
    try:
        return await session.call(fn, **kwargs)
    except (ClientError, BotoCoreError) as e:
        code = str(e.response.get("Error", {}).get("Code", "")) if isinstance(e, ClientError) else ""
        if code in MISSING_BUCKET_CODES:
            said = from_boto(e, operation, reasons.BUILD_BUCKET_MISSING).aws_message
            raise AwsError(reasons.BUILD_BUCKET_MISSING,
                           f"{operation}: the build bucket {bucket!r} does not exist ({said}): create it, or point "
                           "--build-bucket (DEPLOYMIND_BUILD_BUCKET) at one in the instance's region",
                           code=code, aws_message=said, operation=operation) from None
        denied = isinstance(e, ClientError) and access_denied(e)
        raise from_boto(e, operation, reasons.AWS_ACCESS_DENIED if denied else reasons.AWS_UNAVAILABLE,
                        f"arn:aws:s3:::{bucket}/{key}") from None
