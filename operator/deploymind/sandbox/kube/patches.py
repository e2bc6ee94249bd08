"""PATCH bodies applied to a stored object: JSON merge patch, JSON patch, strategic merge and server-side apply.

Strategic merge patch is treated as a merge patch (its `$` directives dropped): it is what kubectl sends for
Secrets and ConfigMaps, whose maps merge the same way. Server-side apply is a merge of the applied
configuration; field ownership is not tracked, so fields a manager stops applying are not removed.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import jsonpointer
import yaml

from deploymind.sandbox.kube.api_errors import ApiError, bad_request, unsupported_media_type

JsonObj = dict[str, Any]

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"
PATCH_TYPES = (MERGE, STRATEGIC, JSON_PATCH, APPLY)


def parse_body(text: str, content_type: str) -> Any:
    """The decoded patch document (YAML for apply patches, JSON otherwise)."""
    if content_type not in PATCH_TYPES:
        raise unsupported_media_type(content_type)
    try:
        return yaml.safe_load(text) if content_type == APPLY else json.loads(text)
    except (ValueError, yaml.YAMLError) as e:
        raise bad_request(f"the patch body could not be decoded as {content_type}: {e}") from e


def apply(current: JsonObj, patch: Any, content_type: str) -> JsonObj:
    """The object after `patch`; never mutates `current`."""
    if content_type == JSON_PATCH:
        return _json_patch(current, patch)
    if not isinstance(patch, dict):
        raise bad_request(f"a {content_type} body must be a JSON object")
    if content_type == STRATEGIC:
        patch = _drop_directives(patch)
    merged: JsonObj = merge(current, patch)
    return merged


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def _json_patch(current: JsonObj, patch: Any) -> JsonObj:
    if not isinstance(patch, list):
        raise bad_request("a JSON patch body must be a list of operations")
    try:
        result = jsonpatch.apply_patch(copy.deepcopy(current), patch)
    except jsonpatch.JsonPatchTestFailed as e:
        # Kopf relies on this being a 422 (it retries with a fresh object), as kube-apiserver answers.
        raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: {e}") from e
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
        raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: {e}") from e
    if not isinstance(result, dict):
        raise bad_request("a JSON patch must leave an object")
    return result


def _drop_directives(patch: Any) -> Any:
    if isinstance(patch, dict):
        return {k: _drop_directives(v) for k, v in patch.items() if not k.startswith("$")}
    if isinstance(patch, list):
        return [_drop_directives(v) for v in patch]
    return patch
