"""Authentication, impersonation and authorization of every request, chained as kube-apiserver's filters chain them.

A request is authenticated (401 when its token is unknown), recorded under its user in the audit log, possibly
impersonates another user, and is then authorized by RBAC over the emulator's stored roles and bindings (403,
worded as the real server words it). Requests without credentials run as `system:admin` (`system:masters`), which
the privileged-group authorizer lets do anything without looking at RBAC, so they cost nothing extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from deploymind.sandbox.kube import rbac, request_info
from deploymind.sandbox.kube.audit import AuditLog, AuditRecord
from deploymind.sandbox.kube.auth import MASTERS, Tokens, UserInfo, authenticate
from deploymind.sandbox.kube.impersonation import impersonate, is_impersonation
from deploymind.sandbox.kube.rbac import Decision, Policy
from deploymind.sandbox.kube.request_info import RequestAttributes

JsonObj = dict[str, Any]


class Access:
    """The emulator's authenticator and authorizer, over `rbac_objects()` (the stored RBAC objects) as of
    `version()` (the emulator's resourceVersion: the policy is rebuilt only after a write)."""

    def __init__(self, rbac_objects: Callable[[], Iterable[JsonObj]], version: Callable[[], int]) -> None:
        self.tokens = Tokens()
        self._objects = rbac_objects
        self._version = version
        self._policy: tuple[int, Policy] | None = None

    def policy(self) -> Policy:
        version = self._version()
        if self._policy is None or self._policy[0] != version:
            self._policy = (version, Policy.of(self._objects()))
        return self._policy[1]

    def authorize(self, user: UserInfo, attributes: RequestAttributes) -> Decision:
        if MASTERS in user.groups:
            return Decision(True)  # what rbac.authorize decides too, without building the policy
        return rbac.authorize(self.policy(), user, attributes)

    def rules(self, user: UserInfo, namespace: str) -> tuple[list[JsonObj], list[str]]:
        return rbac.rules_for(self.policy(), user, namespace)

    def admit(self, method: str, path: str, params: Mapping[str, str], headers: Mapping[str, Sequence[str]],
              audit: AuditLog, record: AuditRecord) -> UserInfo:
        """The user a request runs as, once it is recorded as theirs; raises the 401/403 ApiError that refuses it.

        `headers`: lower-case names, every value of each.
        """
        authorization = headers.get("authorization")
        user = authenticate(authorization[0] if authorization else None, self.tokens)
        record.user = user.username
        user = impersonate(user, {k: v for k, v in headers.items() if is_impersonation(k)}, self.authorize)
        attributes = request_info.of_request(method, path, params)
        record.user, record.api_group = user.username, attributes.api_group
        audit.note(user.username, attributes)
        decision = self.authorize(user, attributes)
        if not decision.allowed:
            raise rbac.forbidden(user, attributes, decision.reason)
        return user
