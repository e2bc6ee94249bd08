"""Who a request comes from: bearer tokens the tests register, and the emulator's all-powerful default user.

kube-apiserver authenticates `Authorization: Bearer <token>` and answers 401 for a token it does not know. The
emulator does the same for the tokens registered with `Tokens.add` (a static token file, in effect), except that
a request without an Authorization header is `system:admin` in `system:masters` rather than `system:anonymous`:
every client that predates authentication (kubectl with the world's kubeconfig, the operator under test, the
sandbox) keeps working with all permissions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from deploymind.sandbox.kube.api_errors import ApiError

MASTERS: Final = "system:masters"
AUTHENTICATED: Final = "system:authenticated"
UNAUTHENTICATED: Final = "system:unauthenticated"
SERVICE_ACCOUNT_PREFIX: Final = "system:serviceaccount:"
SERVICE_ACCOUNTS: Final = "system:serviceaccounts"


@dataclass(frozen=True)
class UserInfo:
    """`user.Info`: a name, an optional uid, and groups (the ones the authorizer matches Group subjects to)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()

    @classmethod
    def service_account(cls, namespace: str, name: str, uid: str = "") -> UserInfo:
        """The user a ServiceAccount's token authenticates as, with the groups its authenticator adds."""
        return with_default_groups(f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}", uid, ())

    def as_json(self) -> dict[str, object]:
        """`authentication.k8s.io/v1 UserInfo` (empty fields omitted, as Go's omitempty does)."""
        body: dict[str, object] = {"username": self.username}
        if self.uid:
            body["uid"] = self.uid
        if self.groups:
            body["groups"] = list(self.groups)
        return body


ADMIN: Final = UserInfo("system:admin", groups=(MASTERS, AUTHENTICATED))


def service_account_of(username: str) -> tuple[str, str] | None:
    """(namespace, name) when `username` is `system:serviceaccount:<namespace>:<name>`."""
    if not username.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    namespace, _, name = username.removeprefix(SERVICE_ACCOUNT_PREFIX).partition(":")
    return (namespace, name) if namespace and name and ":" not in name else None


def with_default_groups(username: str, uid: str, groups: Iterable[str]) -> UserInfo:
    """A token user: its groups, the ServiceAccount groups when it names one, and `system:authenticated`."""
    wanted = list(groups)
    account = service_account_of(username)
    if account is not None:
        wanted += [SERVICE_ACCOUNTS, f"{SERVICE_ACCOUNTS}:{account[0]}"]
    wanted.append(AUTHENTICATED)
    return UserInfo(username, uid, tuple(dict.fromkeys(wanted)))


class Tokens:
    """The bearer tokens the emulator accepts; safe to add to from any thread while requests are served."""

    def __init__(self) -> None:
        self._users: dict[str, UserInfo] = {}
        self._lock = threading.Lock()

    def add(self, token: str, user: str, groups: Iterable[str] = (), uid: str | None = None) -> UserInfo:
        if not token or any(c.isspace() for c in token):
            raise ValueError("a bearer token is a non-empty string without whitespace")
        info = with_default_groups(user, uid or "", groups)
        with self._lock:
            self._users[token] = info
        return info

    def user(self, token: str) -> UserInfo | None:
        with self._lock:
            return self._users.get(token)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def authenticate(authorization: str | None, tokens: Tokens) -> UserInfo:
    """The user behind an Authorization header value (None or blank: the admin); raises a 401 ApiError otherwise."""
    if authorization is None or not authorization.strip():
        return ADMIN
    parts = authorization.strip().split(" ", 2)
    if len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1]:
        raise unauthorized()
    user = tokens.user(parts[1])
    if user is None:
        raise unauthorized()
    return user
