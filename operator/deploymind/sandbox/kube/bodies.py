"""Request bodies as the emulator reads them: JSON, YAML or Kubernetes protobuf, decoded to one JSON object."""

from __future__ import annotations

import json
from typing import Any

import yaml

from deploymind.sandbox.kube import api_errors, protobuf
from deploymind.sandbox.kube.api_errors import ApiError
from deploymind.sandbox.kube.kmock_boundary import Call

JsonObj = dict[str, Any]


def decode(call: Call) -> JsonObj:
    """The body as an object; 415 for protobuf messages the emulator cannot read, 400 for anything else amiss."""
    content_type = call.content_type
    try:
        if protobuf.is_protobuf(call.body) or content_type == protobuf.CONTENT_TYPE:
            body: Any = protobuf.decode(call.body)
        elif content_type in ("application/yaml", "application/apply-patch+yaml"):
            body = yaml.safe_load(call.text)
        else:
            body = json.loads(call.text or "null")
    except protobuf.ProtobufError as e:
        raise ApiError(415, "UnsupportedMediaType", str(e)) from e
    except (ValueError, yaml.YAMLError) as e:
        raise api_errors.bad_request(f"the request body could not be decoded: {e}") from e
    if not isinstance(body, dict):
        raise api_errors.bad_request("the request body must be a JSON object")
    return body


def delete_options(call: Call) -> JsonObj:
    """A delete's DeleteOptions (its body, if any), with `?dryRun=All` folded in."""
    options = decode(call) if call.body.strip() else {}
    if call.params.get("dryRun") == "All":
        options["dryRun"] = ["All"]
    return options
