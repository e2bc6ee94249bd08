"""The one error every AWS call raises: a CamelCase reason for conditions, and AWS's own error code and message."""

from __future__ import annotations

from xml.etree import ElementTree

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                                 "AuthFailure", "InvalidClientTokenId", "ExpiredToken"})
THROTTLING_CODES = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded",
                              "TooManyRequestsException", "SlowDown"})


class AwsError(Exception):
    """An AWS call failed. `reason` is a CamelCase constant (api.reasons); `code`/`aws_message` are AWS's own."""

    def __init__(self, reason: str, message: str, *, code: str = "", aws_message: str = "",
                 operation: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.code = code
        self.aws_message = aws_message
        self.operation = operation

    @property
    def access_denied(self) -> bool:
        return self.code in ACCESS_DENIED_CODES

    @property
    def throttled(self) -> bool:
        return self.code in THROTTLING_CODES


def access_denied(e: ClientError) -> bool:
    """AWS refused the caller: a known code, or any 403 (its body may not parse as the protocol's error shape)."""
    code = str(e.response.get("Error", {}).get("Code", ""))
    return code in ACCESS_DENIED_CODES or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403


def _unwrapped(code: str, text: str) -> tuple[str, str]:
    """An error body botocore could not parse (an XML error from an endpoint speaking another protocol) leaves the
    HTTP status as the code and the raw body as the message: take the body's own Code and Message then."""
    if not code.isdigit() or not text.lstrip().startswith("<"):
        return code, text
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return code, text
    found = root if root.tag.rpartition("}")[2] == "Error" else root.find(".//{*}Error")
    if found is None:
        return code, text
    return found.findtext("{*}Code") or code, found.findtext("{*}Message") or text


def from_boto(e: Exception, operation: str, reason: str, resource: str = "") -> AwsError:
    """`e` from botocore as an AwsError with `reason`; the message names the operation (on `resource`, when given:
    what a policy statement must allow) and what AWS said."""
    if isinstance(e, ClientError):
        error = e.response.get("Error", {})
        code, text = _unwrapped(str(error.get("Code", "")), str(error.get("Message", "")))
        on = f" on {resource}" if resource else ""
        hint = f"; the operator's role needs permission for {operation}{on}" if access_denied(e) else ""
        return AwsError(reason, f"{operation} failed: {code}: {text}{hint}", code=code, aws_message=text,
                        operation=operation)
    if isinstance(e, NoCredentialsError):
        return AwsError(reason, f"{operation}: no AWS credentials found (IRSA in a cluster; environment or profile "
                                "locally)", code="NoCredentials", operation=operation)
    if isinstance(e, EndpointConnectionError):
        return AwsError(reason, f"{operation}: cannot reach the AWS endpoint ({e})", code="EndpointConnectionError",
                        operation=operation)
    if isinstance(e, BotoCoreError):
        return AwsError(reason, f"{operation} failed: {e}", code=type(e).__name__, operation=operation)
    raise e
