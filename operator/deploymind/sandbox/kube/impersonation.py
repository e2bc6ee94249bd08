"""User impersonation (`kubectl --as alice --as-group devs`), as k8s.io/apiserver `WithImpersonation` does it.

`Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid` and `Impersonate-Extra-*` make a request run as
another user, provided the requester may `impersonate` each of them (users, groups, serviceaccounts, uids and
userextras); otherwise 403. Serving these headers matters beyond realism: ignored, a test that checks RBAC with
`--as` would run as the admin and see everything allowed.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from deploymind.sandbox.kube import api_errors
from deploymind.sandbox.kube.auth import AUTHENTICATED, UNAUTHENTICATED, UserInfo, service_account_of, with_default_groups
from deploymind.sandbox.kube.rbac import Decision, forbidden
from deploymind.sandbox.kube.request_info import RequestAttributes

USER: Final = "impersonate-user"
GROUP: Final = "impersonate-group"
UID: Final = "impersonate-uid"
EXTRA_PREFIX: Final = "impersonate-extra-"
_ANONYMOUS: Final = "system:anonymous"


def is_impersonation(header: str) -> bool:
    """Whether a (lower-case) header name is one of the impersonation headers (dropped once they are applied)."""
    return header in (USER, GROUP, UID) or header.startswith(EXTRA_PREFIX)


def impersonate(requester: UserInfo, headers: Mapping[str, Sequence[str]],
                authorize: Callable[[UserInfo, RequestAttributes], Decision]) -> UserInfo:
    """The user a request runs as: `requester`, or whom its impersonation headers name (lower-case names, every
    value of each); raises a 403 ApiError when the requester may not impersonate them, 400 for groups alone."""
    username = (headers.get(USER) or [""])[0]
    groups = list(headers.get(GROUP) or [])
    uid = (headers.get(UID) or [""])[0]
    extras = {urllib.parse.unquote(k.removeprefix(EXTRA_PREFIX)).lower(): list(v)
              for k, v in headers.items() if k.startswith(EXTRA_PREFIX)}
    if not username:
        if groups or uid or extras:
            raise api_errors.bad_request("requested impersonation of groups, a uid or extras without impersonating "
                                         "a user: add Impersonate-User")
        return requester
    checks: list[RequestAttributes] = []
    account = service_account_of(username)
    if account is None:
        checks.append(RequestAttributes("impersonate", "", "users", name=username))
    else:
        checks.append(RequestAttributes("impersonate", "", "serviceaccounts", namespace=account[0], name=account[1]))
    checks += [RequestAttributes("impersonate", "", "groups", name=g) for g in groups]
    checks += [RequestAttributes("impersonate", "authentication.k8s.io", "userextras", subresource=key, name=value)
               for key, values in extras.items() for value in values]
    if uid:
        checks.append(RequestAttributes("impersonate", "authentication.k8s.io", "uids", name=uid))
    for attributes in checks:
        decision = authorize(requester, attributes)
        if not decision.allowed:
            raise forbidden(requester, attributes, decision.reason)
    if account is not None and not groups:
        return with_default_groups(username, uid, ())
    if username != _ANONYMOUS and AUTHENTICATED not in groups and UNAUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)
    return UserInfo(username, uid, tuple(groups))
