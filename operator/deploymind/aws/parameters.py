"""Parameter Store for secret payloads: write one SecureString (encrypted with a configurable KMS key), delete it;
list and delete what is under a path (the sweep of what a killed operator's calls left, transport.ssm_payloads).

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
# Parameter Store's limits per request: names returned by GetParametersByPath, names given to DeleteParameters.
PAGE_SIZE = 10
DELETE_BATCH = 10


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


async def names_under(path: str, region: str | None) -> list[str]:
    """The names of every parameter under `path`, at any depth (one request per 10). Values are not decrypted, so
    no KMS permission is needed. Raises AwsError: AccessDenied (ssm:GetParametersByPath), AwsUnavailable."""
    ssm = session.client("ssm", region)
    names: list[str] = []
    more: dict[str, str] = {}
    while True:
        page = await _call(ssm.get_parameters_by_path, "ssm:GetParametersByPath", path, Path=path, Recursive=True,
                           WithDecryption=False, MaxResults=PAGE_SIZE, **more)
        names += [str(found["Name"]) for found in page.get("Parameters", [])]
        if not page.get("NextToken"):
            return names
        more = {"NextToken": str(page["NextToken"])}


async def delete_parameters(names: list[str], region: str | None) -> None:
    """Remove `names` (one request per 10); names already gone are no error (Parameter Store lists them as
    invalid). Raises AwsError: AccessDenied (ssm:DeleteParameters), AwsUnavailable."""
    ssm = session.client("ssm", region)
    for start in range(0, len(names), DELETE_BATCH):
        batch = names[start:start + DELETE_BATCH]
        await _call(ssm.delete_parameters, "ssm:DeleteParameters", batch[0], Names=batch)


async def _call(fn: Callable[..., T], operation: str, name: str, /, **kwargs: Any) -> T:
    try:
        return await session.call(fn, **kwargs)
    except (ClientError, BotoCoreError) as e:
        denied = isinstance(e, ClientError) and access_denied(e)
        raise from_boto(e, operation, reasons.AWS_ACCESS_DENIED if denied else reasons.AWS_UNAVAILABLE,
                        f"parameter {name}") from None
