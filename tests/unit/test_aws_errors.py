"""aws.errors.from_boto: an error body botocore could not parse (an XML error from an endpoint speaking another
protocol, namespaced or not) still gives AWS's own code and message; a parsed one is kept as it is."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from deploymind.aws.errors import from_boto

DENIED = "User: arn:aws:iam::123456789012:user/operator is not authorized to perform: ssm:SendCommand"


def client_error(code: str, message: str, http_status: int = 403) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": http_status}}, "SendCommand")


@pytest.mark.parametrize("body", [
    f"<ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>{DENIED}</Message></Error></Errors>"
    "</ErrorResponse>",
    f'<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Code>AccessDenied</Code>'
    f"<Message>{DENIED}</Message></Error></ErrorResponse>",
    f"<Error><Code>AccessDenied</Code><Message>{DENIED}</Message></Error>",
], ids=["query-protocol", "namespaced", "bare"])
def test_an_unparsed_xml_error_body_gives_its_own_code_and_message(body: str) -> None:
    error = from_boto(client_error("403", body), "ssm:SendCommand", "AccessDenied")
    assert (error.code, error.aws_message) == ("AccessDenied", DENIED)
    assert error.access_denied and "<" not in error.message
    assert "the operator's role needs permission for ssm:SendCommand" in error.message


@pytest.mark.parametrize(("code", "message"), [
    ("403", "not xml at all"), ("403", "<broken"), ("ThrottlingException", "<Rate exceeded>")])
def test_anything_else_is_kept_as_botocore_parsed_it(code: str, message: str) -> None:
    error = from_boto(client_error(code, message, 400 if code.isalpha() else 403), "ssm:SendCommand", "X")
    assert (error.code, error.aws_message) == (code, message)
