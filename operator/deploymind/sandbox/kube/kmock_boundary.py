"""The one module that touches kmock (pinned to 0.8: parts used here are private and may change).

kmock supplies the HTTP server, request parsing, API discovery and the object store that tests can assert on
(`emulator.objects[...]`). Everything else — the REST semantics of writes, reads and watches — is served by
`EmulatorBase.serve()`, implemented in `emulator.py` with plain typed values (`Call` in, `Reply` out), so
kmock's untyped objects stay in this file. kmock's own write handling is bypassed on purpose: it knows
nothing of resourceVersions, admission or subresources.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
import kmock
from kmock._internal import parsing, rendering

from deploymind.sandbox.kube.api_errors import ApiError
from deploymind.sandbox.kube.audit import AuditLog, AuditRecord
from deploymind.sandbox.kube.auth import ADMIN, UserInfo

JsonObj = dict[str, Any]
Key = tuple[str, str, str]

_HISTORY = 20  # versions kept per object in kmock's store (it keeps all by default: the sandbox runs for hours)

_kmock_parse_path = parsing.parse_path


def _parse_path(path: str) -> Any:
    """kmock 0.8 parses `/api/v1/namespaces/NAME` as "namespace NAME, no resource": read it as the object."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and (
        len(parts) <= 4 or (len(parts) == 5 and parts[4] in ("status", "finalize"))
    ):
        return parsing.ParsedPath(group="", version="v1", plural="namespaces", namespace=None,
                                  name=parts[3] if len(parts) > 3 else None,
                                  subresource=parts[4] if len(parts) > 4 else None)
    return _kmock_parse_path(path)


parsing.parse_path = _parse_path


@dataclass(frozen=True)
class Call:
    """One HTTP request, as the emulator sees it."""

    method: str
    path: str
    params: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    group: str | None = None
    version: str | None = None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    record: AuditRecord = field(default_factory=lambda: AuditRecord(verb="", path=""))
    user: UserInfo = ADMIN  # who the request runs as, authenticated and authorized already

    @property
    def key(self) -> Key | None:
        if self.group is None or self.version is None or self.plural is None:
            return None
        return (self.group, self.version, self.plural)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "application/json").split(";")[0].strip()

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass(frozen=True)
class Reply:
    """A response: a JSON body, a stream of JSON events (watches), or raw bytes (the service proxy)."""

    status: int = 200
    body: JsonObj | None = None
    raw: bytes | None = None
    stream: AsyncIterator[Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def _call(request: Any, record: AuditRecord, raw_body: bytes | None = None, user: UserInfo = ADMIN) -> Call:
    resource = request.resource
    return Call(
        method=str(request.method.value if hasattr(request.method, "value") else request.method).upper(),
        path=str(request.url.path),
        params=dict(request.params),
        headers={str(k).lower(): str(v) for k, v in request.headers.items()},
        body=bytes(request.body) if raw_body is None else raw_body,
        group=None if resource is None else resource.group,
        version=None if resource is None else resource.version,
        plural=None if resource is None else resource.plural,
        namespace=request.namespace,
        name=request.name,
        subresource=request.subresource,
        record=record,
        user=user,
    )


def _is_text(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _all_headers(request: Any) -> dict[str, list[str]]:
    """Every value of every header (Impersonate-Group may repeat), by lower-case name."""
    found: dict[str, list[str]] = {}
    for name, value in request._raw_request.headers.items():
        found.setdefault(str(name).lower(), []).append(str(value))
    return found


def _verb(method: str, plural: str | None, name: str | None, params: Mapping[str, str]) -> str:
    if method == "GET" and plural is None:
        return "get"  # discovery, /version, /openapi
    if method == "GET":
        return "watch" if params.get("watch") in ("true", "1") else "get" if name else "list"
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


class EmulatorBase(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator with the REST semantics delegated to `serve()`."""

    audit: AuditLog

    def __attrs_post_init__(self) -> None:
        self.audit = AuditLog()
        self._records: dict[int, AuditRecord] = {}
        self._users: dict[int, UserInfo] = {}
        self._raw_bodies: dict[int, bytes] = {}
        # Registered before kmock's own fallbacks, so these requests are ours; user reactions
        # (`emulator['get /x'] << 500`) still take precedence, which keeps fault injection possible.
        self._reaction: Any = self.fallback[self._is_claimed] << self._react  # a Reaction (see _react)
        super().__attrs_post_init__()
        self.setup()

    # ------------------------------------------------------------ for subclasses
    def setup(self) -> None:
        """Called once kmock is initialised."""

    def claims(self, call: Call) -> bool:
        """Whether `serve()` answers this request (otherwise kmock's discovery does)."""
        return call.key is not None

    async def serve(self, call: Call) -> Reply:
        raise NotImplementedError

    def admit(self, method: str, path: str, params: Mapping[str, str], headers: Mapping[str, list[str]],
              record: AuditRecord) -> UserInfo:
        """Who a request runs as, before anything serves it (even discovery); raise an ApiError to refuse it.
        `headers`: lower-case names, every value of each. Fill in `record.user`."""
        record.user = ADMIN.username
        return ADMIN

    # ------------------------------------------------------------ object store (kmock's)
    def stored(self, key: Key, namespace: str | None, name: str) -> JsonObj | None:
        address = (kmock.resource(*key), namespace, name)
        if address not in self.objects:
            return None
        view = self.objects[address]
        return None if view.deleted else copy.deepcopy(view.raw)

    def store(self, key: Key, namespace: str | None, name: str, obj: JsonObj) -> None:
        address = (kmock.resource(*key), namespace, name)
        if address in self.objects:
            history = self.objects[address].history
            history.append(copy.deepcopy(obj))
            if len(history) > _HISTORY:
                del history[: len(history) - _HISTORY]
        else:
            self.objects[address] = copy.deepcopy(obj)

    def unstore(self, key: Key, namespace: str | None, name: str) -> None:
        self.objects[(kmock.resource(*key), namespace, name)].delete()

    def stored_all(self, key: Key, namespace: str | None = None) -> list[JsonObj]:
        """Live objects of one resource type (in one namespace, or all), oldest first."""
        found = []
        for (resource, ns, _name), view in self.objects.items():
            if (resource.group, resource.version, resource.plural) != key or view.deleted:
                continue
            if namespace is None or ns == namespace:
                found.append(copy.deepcopy(view.raw))
        return found

    # ------------------------------------------------------------ discovery
    def declare(self, key: Key, *, kind: str, singular: str, namespaced: bool, verbs: tuple[str, ...],
                short_names: tuple[str, ...], categories: tuple[str, ...], subresources: frozenset[str]) -> None:
        self.resources[kmock.resource(*key)] = kmock.ResourceInfo(
            kind=kind, singular=singular, namespaced=namespaced, verbs=set(verbs), shortnames=set(short_names),
            categories=set(categories), subresources=set(subresources),
        )

    def undeclare(self, key: Key) -> None:
        resource = kmock.resource(*key)
        if resource in self.resources:
            del self.resources[resource]

    async def _serve_version(self, request: Any) -> Any:
        result: Any = await super()._serve_version(request)
        result["groupVersion"] = result["groupVersion"].lstrip("/")
        for entry in result["resources"]:
            if "/" in entry["name"]:  # subresources have no short names or categories, and few verbs
                entry.update(shortNames=[], categories=[], verbs=["get", "patch", "update"])
        return result

    # ------------------------------------------------------------ request plumbing
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock decodes every body as UTF-8 text and fails on binary ones (protobuf): keep the bytes aside
        # for `serve()` and let kmock parse an empty body.
        body = await raw_request.read()
        binary = not _is_text(body)
        if binary:
            self._raw_bodies[id(raw_request)] = body
            raw_request._read_bytes = b""  # aiohttp's buffered body, which kmock reads again
        try:
            response: aiohttp.web.StreamResponse = await super().__call__(raw_request)
        finally:
            if binary:
                self._raw_bodies.pop(id(raw_request), None)
        return response

    def _is_claimed(self, request: Any) -> bool:
        record = self._records.get(id(request))
        return record is not None and self.claims(_call(request, record, self._raw_body(request)))

    async def _react(self, request: Any) -> Any:
        reply = await self.serve(_call(request, self._records[id(request)], self._raw_body(request),
                                       self._users.get(id(request), ADMIN)))
        # kmock merges the headers of the Response returned here into the reaction's own Response, which lives as
        # long as the reaction: cleared, each reply goes out with its own headers only, not every header ever sent
        # (a Warning, a proxied Content-Type). Nothing awaits between here and kmock applying them.
        object.__setattr__(self._reaction.response, "headers", None)
        headers = dict(reply.headers)
        if reply.stream is not None:
            headers.setdefault("Content-Type", "application/json")
            return rendering.Response(status=reply.status, headers=headers, payload=reply.stream)
        if reply.raw is not None:
            return rendering.Response(status=reply.status, headers=headers, payload=reply.raw)
        return rendering.Response(status=reply.status, headers=headers, payload=reply.body or {})

    def _raw_body(self, request: Any) -> bytes | None:
        return self._raw_bodies.get(id(request._raw_request))

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        resource = request.resource
        plural = None if resource is None else resource.plural
        group = None if resource is None else resource.group
        record = self.audit.add(AuditRecord(
            verb=_verb(str(request.method.value).upper(), plural, request.name, request.params),
            path=str(request.url.path),
            resource=None if plural is None else (f"{plural}.{group}" if group else plural),
            namespace=request.namespace, name=request.name, subresource=request.subresource,
            user_agent=str(request.headers.get("User-Agent", "")),
            params={str(k): str(v) for k, v in request.params.items()},
        ))
        self._records[id(request)] = record
        try:
            self._users[id(request)] = self.admit(str(request.method.value).upper(), str(request.url.path),
                                                  dict(request.params), _all_headers(request), record)
            # Skip KubernetesEmulator._handle (kmock's own writes); keep the reaction matching of RawHandler.
            response: aiohttp.web.StreamResponse = await kmock.KubernetesScaffold._handle(self, request)
        except ApiError as e:
            response = aiohttp.web.json_response(e.status(), status=e.code)
        except kmock.KubernetesError as e:
            response = await self._render_error(e)
        except Exception:
            record.code = 500
            raise
        finally:
            self._records.pop(id(request), None)
            self._users.pop(id(request), None)
            self._forget(request)
        record.code = response.status
        return response

    def _forget(self, request: Any) -> None:
        """Drop a served request from kmock's request list (the audit log is our record of it).

        kmock keeps every request and matches each new one by scanning that list, so a long session (the sandbox,
        a whole test suite) would slow every request down in proportion to all requests ever served.
        """
        requests: list[Any] = self._requests
        for index in range(len(requests) - 1, -1, -1):
            if requests[index] is request:
                del requests[index]
                return
