"""The attributes kube-apiserver authorizes and audits a request by, computed from its method, path and query.

A port of k8s.io/apiserver `RequestInfoFactory.NewRequestInfo`: `/api/v1/...` and `/apis/<group>/<version>/...`
are resource requests (verb from the method: get/list/watch, create, update, patch, delete/deletecollection;
namespace, resource, name, subresource from the path); everything else (`/api`, `/apis/apps/v1`, `/version`,
`/openapi/v3`, `/metrics`) is a non-resource request whose verb is the lower-cased method. As in the real server,
a list or watch whose fieldSelector requires `metadata.name=X` is a request for the object named X, and
`/api/v1/namespaces/X` is in the namespace X.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

_SPECIAL_VERBS: Final = frozenset({"proxy", "watch"})
_NAMESPACE_SUBRESOURCES: Final = frozenset({"status", "finalize"})
_METHOD_VERBS: Final = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
                        "DELETE": "delete"}
_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})  # Go's strconv.ParseBool


@dataclass(frozen=True)
class RequestAttributes:
    """One request as the authorizer sees it; `non_resource_url` is set exactly for non-resource requests."""

    verb: str
    api_group: str | None = None
    resource: str | None = None
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None
    non_resource_url: str | None = None

    @property
    def is_resource_request(self) -> bool:
        return self.non_resource_url is None


def of_request(method: str, path: str, params: Mapping[str, str]) -> RequestAttributes:
    """The attributes of `method path?params` (`params`: the query, one value per name)."""
    method = method.upper()
    parts = path.strip("/").split("/")
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return RequestAttributes(verb=method.lower(), non_resource_url=path)
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix == "apis":
        if len(parts) < 3:
            return RequestAttributes(verb=method.lower(), non_resource_url=path)
        group, parts = parts[0], parts[1:]
    parts = parts[1:]  # the version
    if parts[0] in _SPECIAL_VERBS and len(parts) > 1:
        verb, parts = parts[0], parts[1:]
    else:
        verb = _METHOD_VERBS.get(method, "")
    namespace: str | None = None
    if parts and parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    resource = parts[0] if parts else None
    name = parts[1] if len(parts) > 1 else None
    subresource = parts[2] if len(parts) > 2 and verb != "proxy" else None
    if name is None and verb == "get":
        verb = "watch" if params.get("watch", "") in _TRUE else "list"
        name = _exact_name(params.get("fieldSelector", ""))
    if name is None and verb == "delete":
        verb = "deletecollection"
    return RequestAttributes(verb=verb, api_group=group, resource=resource, subresource=subresource,
                             namespace=namespace, name=name)


def _exact_name(field_selector: str) -> str | None:
    """The name a field selector pins (`metadata.name=x` or `==x` among its terms), when it is a valid name."""
    for term in field_selector.split(","):
        key, op, value = _split_term(term.strip())
        if key == "metadata.name" and op in ("=", "==") and _valid_path_segment(value):
            return value
    return None


def _split_term(term: str) -> tuple[str, str, str]:
    for op in ("!=", "==", "="):
        key, found, value = term.partition(op)
        if found:
            return key.strip(), op, value.strip()
    return term, "", ""


def _valid_path_segment(name: str) -> bool:
    """apimachinery `path.IsValidPathSegmentName`: not empty, `.` or `..`, and no `/` or `%`."""
    return bool(name) and name not in (".", "..") and "/" not in name and "%" not in name
