"""Parameter Store for secret payloads: write one SecureString (encrypted with a configurable KMS key), delete it.

The instance reads it with its own role (`aws ssm get-parameter --with-decryption`); the value never appears in an
SSM command's parameters, which the account's command history keeps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from deploymind.api import reasons
from deploymind.aws import session
from deploymind.aws.errors import AwsError, access_denied, from_boto

T = TypeVar("T")

# Parameter Store's value limits in bytes: a Standard parameter holds 4 KB, an Advanced one 8 KB.
STANDARD_MAX_BYTES = 4096
ADVANCED_MAX_BYTES = 8192


def tier(value: str) -> str:
    """The cheapest tier that holds `value` (Advanced parameters are billed, prorated by the hour)."""
    return "Standard" if len(value.encode()) <= STANDARD_MAX_BYTES else "Advanced"


async def put_secure_string(name: str, value: str, *, kms_key_id: str | None, region: str | None) -> None:
    """Write `value` as SecureString `name`, replacing an older value. Raises AwsError: PayloadTooLarge (over 8 KB;
    nothing is sent), AccessDenied (ssm:PutParameter, or kms:Encrypt for the key), AwsUnavailable."""
    size = len(value.encode())
    if size > ADVANCED_MAX_BYTES:
        raise AwsError(reasons.PAYLOAD_TOO_LARGE,
                       f"{name} would hold {size} bytes, and Parameter Store keeps at most {ADVANCED_MAX_BYTES}: "
                       "move large values out of the env (a file the app fetches, say) and keep the env small",
                       code="ValueTooLarge", operation="ssm:PutParameter")
    ssm = session.client("ssm", region)
    await _call(ssm.put_parameter, "ssm:PutParameter", name, Name=name, Value=value, Type="SecureString",
                Overwrite=True, Tier=tier(value), **({"KeyId": kms_key_id} if kms_key_id else {}))


async def delete_parameter(name: str, region: str | None) -> None:
    """Remove `name`; one that is already gone is no error."""
    ssm = session.client("ssm", region)
    try:
        await _call(ssm.delete_parameter, "ssm:DeleteParameter", name, Name=name)
    except AwsError as e:
        if e.code != "ParameterNotFound":
            raise


async def _call(fn: Callable[..., T], operation: str, name: str, /, **kwargs: Any) -> T:
    try:
        return await session.call(fn, **kwargs)
    except (ClientError, BotoCoreError) as e:
        denied = isinstance(e, ClientError) and access_denied(e)
        raise from_boto(e, operation, reasons.AWS_ACCESS_DENIED if denied else reasons.AWS_UNAVAILABLE,
                        f"parameter {name}") from None
