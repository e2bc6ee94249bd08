"""Who is asking the operator's HTTP endpoints (/history, /metrics), and may they.

With `--history-auth kubernetes` (and `--metrics-auth kubernetes`) a caller presents a Kubernetes bearer token:
`Authorization: Bearer …` when it reaches the operator directly, `X-Deploymind-Authorization: Bearer …` through the
API server's service proxy (which strips Authorization once it has authenticated the request). A TokenReview says
whose token it is; a SubjectAccessReview whether that user may `get` the Deployment (history) or the path
/metrics, so the same RBAC that guards `kubectl get dmd` guards its history. Answers are remembered for a few
seconds in bounded caches keyed by a hash of the token, never the token, as kube-rbac-proxy does: a dashboard that
refreshes every second costs the API server one review per key and TTL, not one per request.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from aiohttp import web

from deploymind.api import GROUP, PLURAL

TOKEN_HEADERS: Final = ("X-Deploymind-Authorization", "Authorization")
"""Where a caller's token is looked for, ours first: through the service proxy only ours arrives."""
CACHE_TTL_SECONDS: Final = 10.0
CACHE_MAX_ENTRIES: Final = 1024
REVIEW_TIMEOUT_SECONDS: Final = 5.0

UNAUTHENTICATED: Final = "Unauthenticated"
FORBIDDEN: Final = "Forbidden"
AUTHORIZATION_UNAVAILABLE: Final = "AuthorizationUnavailable"

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AccessReviews(Protocol):
    """The two API server calls this module needs (controller.kube.Kube has them); each returns the review's status."""

    async def review_token(self, token: str, timeout: float) -> dict[str, Any]: ...  # noqa: ASYNC109

    async def review_access(self, spec: dict[str, Any], timeout: float) -> dict[str, Any]: ...  # noqa: ASYNC109


@dataclass(frozen=True)
class DeploymentAccess:
    """`get` on one Deployment (deployments.deploymind.io): what reading its history needs."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"deployments.deploymind.io {self.name} in namespace {self.namespace}"

    def attributes(self) -> dict[str, Any]:
        return {"resourceAttributes": {"namespace": self.namespace, "verb": "get", "group": GROUP,
                                       "resource": PLURAL, "name": self.name}}

    def forbidden(self, user: str) -> str:
        return (f"{user} may not get {self}, which reading its history needs: ask your cluster administrator "
                "for a Role there granting get on deployments.deploymind.io (the view ClusterRole does).")


@dataclass(frozen=True)
class PathAccess:
    """`get` on a path of the operator that is no Kubernetes resource: /metrics."""

    path: str

    def __str__(self) -> str:
        return self.path

    def attributes(self) -> dict[str, Any]:
        return {"nonResourceAttributes": {"path": self.path, "verb": "get"}}

    def forbidden(self, user: str) -> str:
        return f"{user} may not get {self}: bind it to a ClusterRole with the rule nonResourceURLs [{self}], verbs [get]."


Access = DeploymentAccess | PathAccess


@dataclass(frozen=True)
class Refusal:
    """An answer that is not the resource: 401, 403 or 503, with a CamelCase reason and what to do."""

    status: int
    reason: str
    message: str

    def response(self) -> web.Response:
        # RFC 6750: a 401 names the scheme the caller should use.
        headers = {"WWW-Authenticate": 'Bearer realm="deploymind"'} if self.status == 401 else None
        return web.json_response({"reason": self.reason, "message": self.message}, status=self.status,
                                 headers=headers)


@dataclass(frozen=True)
class Caller:
    """A user as the TokenReview named it; the SubjectAccessReview asks about exactly this user."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def from_review(cls, user: Mapping[str, Any]) -> Caller:
        extra = user.get("extra") or {}
        return cls(username=str(user.get("username") or ""), uid=str(user.get("uid") or ""),
                   groups=tuple(user.get("groups") or ()),
                   extra=tuple(sorted((str(k), tuple(v or ())) for k, v in extra.items())))

    def subject(self) -> dict[str, Any]:
        subject: dict[str, Any] = {"user": self.username, "groups": list(self.groups)}
        if self.uid:
            subject["uid"] = self.uid
        if self.extra:
            subject["extra"] = {k: list(v) for k, v in self.extra}
        return subject


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""


class ReviewUnavailable(Exception):
    """The API server did not answer a review (unreachable, failing, or refusing the operator itself)."""


class TtlCache(Generic[K, V]):
    """At most `max_entries` answers, each kept `ttl_seconds`; when full, the least recently used goes first."""

    def __init__(self, ttl_seconds: float = CACHE_TTL_SECONDS, max_entries: int = CACHE_MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (self._clock() + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


def token_key(token: str) -> str:
    """What the caches and logs know of a token: its SHA-256, from which the token cannot be recovered."""
    return hashlib.sha256(token.encode()).hexdigest()


def _no_token(detail: str) -> Refusal:
    return Refusal(401, UNAUTHENTICATED,
                   f"{detail}: send a Kubernetes bearer token as `Authorization: Bearer <token>` (through the API "
                   "server's service proxy, as `X-Deploymind-Authorization: Bearer <token>`). `deploymind history` "
                   "sends your kubeconfig's token; `kubectl create token SERVICEACCOUNT` makes one.")


def bearer_token(headers: Mapping[str, str]) -> str | Refusal:
    """The caller's token from the first of TOKEN_HEADERS that is present, or why there is none."""
    for name in TOKEN_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
            return _no_token(f"the {name} header is not `Bearer <token>`")
        return token
    return _no_token("this endpoint needs a bearer token and the request carries none")


def _describe(error: BaseException) -> str:
    """An error without its body: a TokenReview answer echoes the token it was asked about."""
    status = getattr(error, "status", None)
    if isinstance(status, int):
        return f"HTTP {status} {getattr(error, 'reason', '') or ''}".rstrip()
    return type(error).__name__


class Authorizer:
    """Answers "may the sender of these headers do `access`?" with a Refusal, or None when they may."""

    def __init__(self, reviews: AccessReviews, *, ttl_seconds: float = CACHE_TTL_SECONDS,
                 max_entries: int = CACHE_MAX_ENTRIES, clock: Callable[[], float] = time.monotonic) -> None:
        self._reviews = reviews
        self.callers: TtlCache[str, Caller | Refusal] = TtlCache(ttl_seconds, max_entries, clock)
        self.verdicts: TtlCache[tuple[Caller, Access], Verdict] = TtlCache(ttl_seconds, max_entries, clock)

    async def refusal(self, headers: Mapping[str, str], access: Access) -> Refusal | None:
        token = bearer_token(headers)
        if isinstance(token, Refusal):
            return token
        try:
            caller = await self._caller(token)
            if isinstance(caller, Refusal):
                return caller
            verdict = await self._verdict(caller, access)
        except ReviewUnavailable as e:
            log.warning("%s: %s", AUTHORIZATION_UNAVAILABLE, e)
            return Refusal(503, AUTHORIZATION_UNAVAILABLE,
                           f"The operator could not check the caller with the Kubernetes API server ({e}). Try again "
                           "later; if it persists, check the operator's logs: its RBAC needs create on "
                           "tokenreviews.authentication.k8s.io and subjectaccessreviews.authorization.k8s.io.")
        if verdict.allowed:
            return None
        log.info("%s: %s may not get %s%s", FORBIDDEN, caller.username, access,
                 f" ({verdict.reason})" if verdict.reason else "")
        return Refusal(403, FORBIDDEN, access.forbidden(caller.username))

    async def _caller(self, token: str) -> Caller | Refusal:
        key = token_key(token)
        known = self.callers.get(key)
        if known is not None:
            return known
        try:
            status = await self._reviews.review_token(token, REVIEW_TIMEOUT_SECONDS)
        except Exception as e:  # the client raises a different class per failure; each means "no answer"
            raise ReviewUnavailable(f"TokenReview: {_describe(e)}") from None
        user = status.get("user") or {}
        answer: Caller | Refusal
        if status.get("authenticated") and user.get("username"):
            answer = Caller.from_review(user)
        else:
            log.info("%s: the API server did not authenticate token sha256:%s… (%s)", UNAUTHENTICATED, key[:12],
                     status.get("error") or "no error given")
            answer = Refusal(401, UNAUTHENTICATED,
                             "The Kubernetes API server did not accept this bearer token (expired, revoked, or from "
                             "another cluster): get a fresh one, e.g. `kubectl create token SERVICEACCOUNT`, and try "
                             "again.")
        self.callers.put(key, answer)
        return answer

    async def _verdict(self, caller: Caller, access: Access) -> Verdict:
        known = self.verdicts.get((caller, access))
        if known is not None:
            return known
        try:
            status = await self._reviews.review_access({**caller.subject(), **access.attributes()},
                                                       REVIEW_TIMEOUT_SECONDS)
        except Exception as e:  # as in _caller
            raise ReviewUnavailable(f"SubjectAccessReview: {_describe(e)}") from None
        verdict = Verdict(allowed=bool(status.get("allowed")) and not status.get("denied"),
                          reason=str(status.get("reason") or status.get("evaluationError") or ""))
        self.verdicts.put((caller, access), verdict)
        return verdict


def guarded(handler: Handler, authorizer: Authorizer | None, access_of: Callable[[web.Request], Access]) -> Handler:
    """`handler`, answering only requests that `authorizer` lets do `access_of(request)`; with no authorizer
    (`--…-auth none`), `handler` itself."""
    if authorizer is None:
        return handler

    async def guard(request: web.Request) -> web.StreamResponse:
        refusal = await authorizer.refusal(request.headers, access_of(request))
        return await handler(request) if refusal is None else refusal.response()

    return guard
