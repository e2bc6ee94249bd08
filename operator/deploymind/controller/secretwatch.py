"""Targeted Secret watches: one watch per Secret a Deployment names, kept in step with the set of wanted names,
calling back when that Secret's data changes, or it is created or deleted.

Why not one watch of every Secret: that needs `list` on secrets and hands the operator every Secret's data.
Each watch here reads one Secret by name (`get`), then watches it alone (`watch` with
`fieldSelector=metadata.name=<name>`), so RBAC needs neither `list` nor any other Secret.
Why aiohttp and not the kubernetes client: that client blocks a thread per open watch, and the controller's
executor is small; these watches share the event loop and one connection pool (one connection per open watch).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Set
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

Key = tuple[str, str]
"""(namespace, Secret name)"""
OnChange = Callable[[str, str], None]

USER_AGENT = "deploymind-secretwatch"
WATCH_TIMEOUT_S = 300.0  # the server ends each watch after this; it resumes from the last resourceVersion seen
REQUEST_TIMEOUT_S = 30.0
READ_MARGIN_S = 30.0  # silence beyond the server's own timeout means the connection is gone
MAX_BACKOFF_S = 30.0


class WatchFailed(Exception):
    """A read or watch of a Secret failed; it is tried again after a backoff."""

    reason = "SecretWatchFailed"


class Expired(Exception):
    """410 Gone: the resourceVersion is too old to watch from; read the Secret again."""


def data_digest(secret: dict[str, Any] | None) -> str | None:
    """What a change is judged by: the Secret's data only (None: it does not exist). Labels, annotations and
    managedFields never count, and the data itself is not kept."""
    if secret is None:
        return None
    return hashlib.sha256(json.dumps(secret.get("data") or {}, sort_keys=True).encode()).hexdigest()


@dataclass
class Seen:
    """What one watch knows of its Secret: the resourceVersion to resume from and a digest of its data."""

    resource_version: str | None = None
    digest: str | None = None
    baseline: bool = False
    """Whether anything was observed yet. The first observation only sets the baseline (a Deployment reads its
    Secrets itself when it reconciles, so only later changes are news), unless it differs from what a Deployment
    read before this watch first looked (SecretWatches.consumer_read): a change in between is news too."""

    def read(self, secret: dict[str, Any] | None) -> bool:
        """The Secret as a GET returned it (None: 404); whether its data changed since last seen."""
        self.resource_version = _resource_version(secret) if secret is not None else None
        return self._observe(secret)

    def event(self, event: Any) -> bool:
        """Apply one watch event; whether the Secret's data changed (or it appeared or went).
        Raises Expired on 410 Gone, WatchFailed on any other error event or a malformed one."""
        if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
            raise WatchFailed(f"the API server sent a watch event that is not an object: {str(event)[:200]}")
        kind, obj = event.get("type"), event["object"]
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Expired(str(obj.get("message", "")))
            raise WatchFailed(f"the watch ended with {obj.get('code')} {obj.get('reason')}: {obj.get('message')}")
        if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
            raise WatchFailed(f"the API server sent a watch event of unknown type {kind!r}")
        self.resource_version = _resource_version(obj) or self.resource_version
        if kind == "BOOKMARK":
            return False
        return self._observe(None if kind == "DELETED" else obj)

    def _observe(self, secret: dict[str, Any] | None) -> bool:
        digest = data_digest(secret)
        changed = self.baseline and digest != self.digest
        self.digest, self.baseline = digest, True
        return changed


def _resource_version(obj: dict[str, Any]) -> str | None:
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return str(rv) if rv else None


def backoff_s(failures: int, cap: float = MAX_BACKOFF_S) -> float:
    """0.5 s, 1 s, 2 s … up to `cap`, each with jitter, so watches that failed together do not return together."""
    return min(cap, 0.5 * 2.0 ** (failures - 1)) * random.uniform(0.5, 1.0)


class ApiEndpoint:
    """How to reach the API server, read from the kubernetes client's `Configuration`: the same host, bearer
    token (refreshed as that client refreshes it: the in-cluster token file, exec plugins), CA and client
    certificate as every other call of the operator."""

    def __init__(self, configuration: Any) -> None:
        self._config = configuration

    @property
    def host(self) -> str:
        return str(self._config.host).rstrip("/")

    @property
    def server_hostname(self) -> str | None:
        name = getattr(self._config, "tls_server_name", None)
        return str(name) if name else None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.host.startswith("https:"):
            return None
        config = self._config
        context = ssl.create_default_context(cafile=config.ssl_ca_cert or None)
        if not config.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif config.assert_hostname is False:
            context.check_hostname = False
        if config.cert_file:
            context.load_cert_chain(config.cert_file, config.key_file or None)
        return context

    def headers(self) -> dict[str, str]:
        """Fresh for each request: a refresh may read a file or run an exec plugin, so call it off the loop."""
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        for auth in self._config.auth_settings().values():
            if auth.get("in") == "header" and auth.get("value"):
                headers[str(auth["key"])] = str(auth["value"])
        return headers


class SecretWatches:
    """One watch per wanted Secret (`want`), calling `on_change(namespace, name)` when its data changes, or it is
    created or deleted; metadata-only updates are no change. `close` ends them all."""

    def __init__(self, endpoint: ApiEndpoint, on_change: OnChange, *, watch_timeout_s: float = WATCH_TIMEOUT_S,
                 max_backoff_s: float = MAX_BACKOFF_S) -> None:
        self._endpoint = endpoint
        self._on_change = on_change
        self._watch_timeout_s = watch_timeout_s
        self._max_backoff_s = max_backoff_s
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._consumed: dict[Key, str | None] = {}
        """What the Deployments last read of each Secret (data digest; None: it did not exist)."""
        self._session: aiohttp.ClientSession | None = None

    @property
    def watched(self) -> frozenset[Key]:
        return frozenset(self._tasks)

    def consumer_read(self, namespace: str, name: str, data: Mapping[str, str] | None) -> None:
        """A Deployment read the Secret (its `data`, base64 values as the API server returns them; None: it does
        not exist). A watch whose first look finds other data calls back: the Secret changed after that read and
        before the watch began."""
        self._consumed[(namespace, name)] = None if data is None else data_digest({"data": dict(data)})

    def want(self, wanted: Set[Key]) -> None:
        """Watch exactly `wanted`: start what is new, stop what is no longer named. Call it on the event loop."""
        for key in self._tasks.keys() - wanted:
            task = self._tasks.pop(key)
            task.cancel()
            self._stopping.add(task)  # held until it has unwound, so close() can wait for it
            task.add_done_callback(self._stopping.discard)
        for key in wanted - self._tasks.keys():
            self._tasks[key] = asyncio.create_task(self._follow(*key), name=f"secret watch {key[0]}/{key[1]}")

    async def close(self) -> None:
        """Stop every watch and close the connections; a later `want` starts afresh."""
        self.want(frozenset())
        self._consumed.clear()
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _follow(self, namespace: str, name: str) -> None:
        seen = Seen()
        failures = 0
        while True:
            try:
                if seen.resource_version is None:
                    first = not seen.baseline
                    changed = seen.read(await self._get(namespace, name))
                    key = (namespace, name)
                    if first and key in self._consumed and self._consumed[key] != seen.digest:
                        changed = True  # rotated between a Deployment's read and this watch's first look
                    self._notify(namespace, name, changed)
                await self._watch(namespace, name, seen)
                failures = 0
            except Expired:
                seen.resource_version = None  # read it again; the digest tells whether anything was missed
            except Exception as e:  # any failure: a watch that ended here would never restart, so keep it alive
                failures += 1
                seen.resource_version = None
                delay = backoff_s(failures, self._max_backoff_s)
                log.warning("watching Secret %s/%s failed (%s: %s); retrying in %.1f s", namespace, name,
                            WatchFailed.reason, str(e) or type(e).__name__, delay)
                await asyncio.sleep(delay)

    def _notify(self, namespace: str, name: str, changed: bool) -> None:
        if changed:
            log.info("Secret %s/%s changed", namespace, name)
            self._on_change(namespace, name)

    def _url(self, namespace: str, name: str | None = None) -> str:
        url = f"{self._endpoint.host}/api/v1/namespaces/{namespace}/secrets"
        return f"{url}/{name}" if name else url

    async def _client(self) -> tuple[aiohttp.ClientSession, dict[str, str]]:
        if self._session is None:
            # No connection limit: every open watch holds one connection for as long as it runs.
            connector = aiohttp.TCPConnector(limit=0, ssl=self._endpoint.ssl_context() or True)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session, await asyncio.to_thread(self._endpoint.headers)

    async def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        session, headers = await self._client()
        async with session.get(self._url(namespace, name), headers=headers,
                               server_hostname=self._endpoint.server_hostname,
                               timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as response:
            if response.status == 404:
                return None
            await _check(response, namespace, "get")
            secret = await response.json()
        if not isinstance(secret, dict):
            raise WatchFailed(f"GET Secret {namespace}/{name} returned no object")
        return secret

    async def _watch(self, namespace: str, name: str, seen: Seen) -> None:
        """One watch request, until the server ends it; events go through `seen`."""
        params = {"watch": "true", "fieldSelector": f"metadata.name={name}", "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(max(1, round(self._watch_timeout_s)))}
        if seen.resource_version is not None:
            params["resourceVersion"] = seen.resource_version
        # Without a resourceVersion (the Secret did not exist) the server starts with an ADDED for whatever
        # exists now, so one created since the GET is not missed.
        session, headers = await self._client()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=REQUEST_TIMEOUT_S,
                                        sock_read=self._watch_timeout_s + READ_MARGIN_S)
        async with session.get(self._url(namespace), params=params, headers=headers, timeout=timeout,
                               server_hostname=self._endpoint.server_hostname) as response:
            await _check(response, namespace, "watch")
            async for line in _lines(response.content):
                self._notify(namespace, name, seen.event(json.loads(line)))


async def _check(response: aiohttp.ClientResponse, namespace: str, verb: str) -> None:
    if response.status < 400:
        return
    message = ""
    with contextlib.suppress(aiohttp.ClientError, ValueError):
        message = str((await response.json(content_type=None)).get("message", ""))
    if response.status == 410:
        raise Expired(message)
    hint = (f"; the operator's ServiceAccount needs get and watch on secrets in namespace {namespace}"
            if response.status in (401, 403) else "")
    raise WatchFailed(f"{verb} answered HTTP {response.status} {message}{hint}".strip())


async def _lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The stream's lines, however long (a Secret may hold 1 MiB, beyond aiohttp's readline limit)."""
    buffer = b""
    async for chunk in content.iter_any():
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer
