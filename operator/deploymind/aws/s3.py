"""S3 for build contexts: put an object, hand a host a short-lived presigned GET URL for it, delete it; list and
delete what is under a prefix (the sweep of what a killed operator's calls left, transport.ssm_payloads).

A presigned URL is signed with the operator's own credentials: the instance needs no S3 permission to use it, and
it opens this one object only, until it expires (or the object is deleted)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from deploymind.api import reasons
from deploymind.aws import session
from deploymind.aws.errors import ACCESS_DENIED_CODES, AwsError, access_denied, from_boto

T = TypeVar("T")

MISSING_BUCKET_CODES = frozenset({"NoSuchBucket"})
# S3's limit of keys per DeleteObjects request.
DELETE_BATCH = 1000


async def put_object(bucket: str, key: str, data: bytes, region: str | None) -> None:
    """Store `data` at `key`. Raises AwsError: BuildBucketMissing (no such bucket), AccessDenied, AwsUnavailable."""
    s3 = session.client("s3", region)
    await _call(s3.put_object, "s3:PutObject", bucket, _arn(bucket, key), Bucket=bucket, Key=key, Body=data)


async def presigned_get_url(bucket: str, key: str, expires_s: int, region: str | None) -> str:
    """A URL that GETs `key` for `expires_s` seconds. No request is made (signing may refresh credentials)."""
    s3 = session.client("s3", region)
    url = await _call(s3.generate_presigned_url, "s3:GetObject", bucket, _arn(bucket, key), ClientMethod="get_object",
                      Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s)
    return str(url)


async def delete_object(bucket: str, key: str, region: str | None) -> None:
    """Remove `key`; a key that is already gone is no error (S3 answers the same)."""
    s3 = session.client("s3", region)
    await _call(s3.delete_object, "s3:DeleteObject", bucket, _arn(bucket, key), Bucket=bucket, Key=key)


async def list_keys(bucket: str, prefix: str, region: str | None) -> list[str]:
    """Every key under `prefix` (one request per 1,000 keys). Raises AwsError: BuildBucketMissing, AccessDenied
    (s3:ListBucket on the bucket), AwsUnavailable."""
    s3 = session.client("s3", region)
    keys: list[str] = []
    more: dict[str, str] = {}
    while True:
        page = await _call(s3.list_objects_v2, "s3:ListBucket", bucket, _arn(bucket), Bucket=bucket, Prefix=prefix,
                           **more)
        keys += [str(found["Key"]) for found in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return keys
        more = {"ContinuationToken": str(page["NextContinuationToken"])}


async def delete_objects(bucket: str, keys: list[str], region: str | None) -> None:
    """Remove `keys` (one request per 1,000); keys already gone are no error. Raises AwsError: AccessDenied
    (s3:DeleteObject, also when S3 refuses only some of the keys), AwsUnavailable."""
    s3 = session.client("s3", region)
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start:start + DELETE_BATCH]
        answer = await _call(s3.delete_objects, "s3:DeleteObject", bucket, _arn(bucket, batch[0]), Bucket=bucket,
                             Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True})
        refused = answer.get("Errors") or []
        if refused:
            raise _refused_keys(bucket, refused, len(batch))


def _refused_keys(bucket: str, refused: list[dict[str, Any]], asked: int) -> AwsError:
    """DeleteObjects answers 200 and lists the keys it did not delete, each with its own error code."""
    first = refused[0]
    code, text = str(first.get("Code", "")), str(first.get("Message", ""))
    denied = code in ACCESS_DENIED_CODES
    hint = (f"; the operator's role needs permission for s3:DeleteObject on {_arn(bucket, str(first.get('Key')))}"
            if denied else "")
    return AwsError(reasons.AWS_ACCESS_DENIED if denied else reasons.AWS_UNAVAILABLE,
                    f"s3:DeleteObject failed for {len(refused)} of {asked} objects: {code}: {text}{hint}",
                    code=code, aws_message=text, operation="s3:DeleteObject")


def _arn(bucket: str, key: str | None = None) -> str:
    """What a policy statement must name: the bucket (s3:ListBucket), or an object in it."""
    return f"arn:aws:s3:::{bucket}" + (f"/{key}" if key is not None else "")


async def _call(fn: Callable[..., T], operation: str, bucket: str, resource: str, /, **kwargs: Any) -> T:
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
                        resource) from None
