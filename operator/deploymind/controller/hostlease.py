"""A Kubernetes Lease per host, so two Deployments never release onto one host at once (the host's flock is the second line).

`spec.holderIdentity` is the operator process holding the Lease (`settings.identity`); the annotation
`deploymind.io/uid` names the Deployment whose release (or cleanup) holds it, which is what excludes two
Deployments of one operator from each other. A Lease held for the same Deployment is taken over at once, whatever
process held it: that is a restarted operator resuming its own rollout (whose host job it re-attaches to).

Holding a Lease never changes what the block inside it did: the renewer retries the API server's hiccups (5xx,
timeouts, refused connections) for as long as the block runs, and a Lease lost to someone else is logged, never
raised over the block's own result or exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import kubernetes.client as k8s

from deploymind.api import reasons
from deploymind.controller.kube import Conflict, Kube, NotFound, is_transient
from deploymind.steps.errors import Waiting

log = logging.getLogger(__name__)

HOST_ANNOTATION = "deploymind.io/host"
UID_ANNOTATION = "deploymind.io/uid"
# How long the release at the end of a hold keeps retrying the API server; after that the Lease simply expires.
RELEASE_RETRY_S = 10.0

OnWait = Callable[[str], Awaitable[None]]
"""Told once, with who holds the Lease, when a hold has to wait for it."""


def lease_name(host_key: str) -> str:
    """A stable, DNS-safe Lease name for a host key such as `ssh:ec2-user@10.0.0.1:22` or `ssm:i-0123…`."""
    return "deploymind-host-" + hashlib.sha256(host_key.encode()).hexdigest()[:16]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def holder_of(lease: Any) -> str:
    """Who holds `lease`, for messages: the Deployment's uid and the operator process."""
    uid = (lease.metadata.annotations or {}).get(UID_ANNOTATION) or "?"
    return f"Deployment uid {uid} (operator {lease.spec.holder_identity})"


class HostLeases:
    """Acquire, renew and release per-host Leases in one namespace, as the operator process `identity`."""

    def __init__(self, kube: Kube, namespace: str, identity: str, duration: int, wait: float) -> None:
        self._kube = kube
        self._namespace = namespace
        self._identity = identity
        self._duration = duration
        self._wait = wait
        self._request_timeout = max(1.0, duration / 3)

    def _body(self, name: str, uid: str, host_key: str, rv: str | None = None, held: bool = True) -> k8s.V1Lease:
        stamp = _now() if held else None
        annotations = {HOST_ANNOTATION: host_key, **({UID_ANNOTATION: uid} if held else {})}
        return k8s.V1Lease(
            metadata=k8s.V1ObjectMeta(name=name, namespace=self._namespace, resource_version=rv,
                                      annotations=annotations),
            spec=k8s.V1LeaseSpec(holder_identity=self._identity if held else "", lease_duration_seconds=self._duration,
                                 acquire_time=stamp, renew_time=stamp))

    def _free_or_mine(self, lease: Any, uid: str) -> bool:
        spec = lease.spec
        if spec is None:
            return False
        expired = spec.renew_time is None or (
            spec.renew_time + datetime.timedelta(seconds=spec.lease_duration_seconds or self._duration) < _now())
        mine = (lease.metadata.annotations or {}).get(UID_ANNOTATION) == uid
        return not spec.holder_identity or expired or mine

    async def _try_acquire(self, name: str, uid: str, host_key: str) -> str | None:
        """Take or renew the Lease: None when it is ours now, else who holds it. Conflict: it changed meanwhile."""
        timeout = self._request_timeout
        try:
            lease = await self._kube.get_lease(self._namespace, name, timeout=timeout)
        except NotFound:
            await self._kube.create_lease(self._namespace, self._body(name, uid, host_key), timeout=timeout)
            return None
        if not self._free_or_mine(lease, uid):
            return holder_of(lease)
        await self._kube.replace_lease(self._namespace, name,
                                       self._body(name, uid, host_key, lease.metadata.resource_version),
                                       timeout=timeout)
        return None

    @contextlib.asynccontextmanager
    async def hold(self, host_key: str, uid: str, *, wait: float | None = None,
                   on_wait: OnWait | None = None) -> AsyncIterator[None]:
        """Hold the host's Lease for Deployment `uid` for the duration of the block, renewing it; wait (at most
        `wait` s, default the operator's setting) while another Deployment holds it."""
        name = lease_name(host_key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._wait if wait is None else wait)
        delay = 0.2
        told = False
        while True:
            try:
                holder = await self._try_acquire(name, uid, host_key)
                busy = f"is held by {holder}"
            except Conflict:
                holder, busy = "", "was taken by another Deployment just now"
            except Exception as e:
                if not is_transient(e):
                    raise
                holder, busy = "", f"could not be read or written (the API server: {e})"
            if holder is None:
                break
            if loop.time() > deadline:
                raise Waiting(reasons.HOST_BUSY, f"the host's Lease {self._namespace}/{name} for {host_key} {busy}; "
                                                 "will retry")
            if on_wait is not None and holder and not told:
                told = True
                await on_wait(holder)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        renewer = asyncio.create_task(self._renew(name, uid, host_key))
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await asyncio.shield(self._release(name, uid, host_key))

    async def _renew(self, name: str, uid: str, host_key: str) -> None:
        """Renew every third of the duration until cancelled; never raises (the block's outcome is what counts)."""
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        while True:
            await asyncio.sleep(self._duration / 3)
            lost = await self._renew_once(name, uid, host_key, renewed)
            if lost is not None:
                log.warning("stopped renewing the host's Lease %s for %s: %s; the host's own lock still keeps "
                            "releases apart", name, host_key, lost)
                return
            renewed = loop.time()

    async def _renew_once(self, name: str, uid: str, host_key: str, renewed: float) -> str | None:
        """One renewal, retried through conflicts and the API server's hiccups: None when renewed, else why not."""
        loop = asyncio.get_running_loop()
        delay = 0.5
        warned = False
        while True:
            try:
                holder = await self._try_acquire(name, uid, host_key)
                return None if holder is None else f"it is held by {holder}"
            except Conflict:
                pass  # it changed between our read and our write: read it again
            except Exception as e:
                if not is_transient(e):
                    return f"the API server refused the renewal ({e})"
                if not warned and loop.time() + delay > renewed + self._duration:
                    warned = True
                    log.warning("the host's Lease %s for %s was not renewed for %d s (%s); still trying", name,
                                host_key, self._duration, e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._duration / 3)

    async def _release(self, name: str, uid: str, host_key: str) -> None:
        """Give the Lease up if it is still ours; a release the API server never takes leaves it to expire."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RELEASE_RETRY_S
        delay = 0.5
        while True:
            try:
                lease = await self._kube.get_lease(self._namespace, name, timeout=self._request_timeout)
                if (lease.metadata.annotations or {}).get(UID_ANNOTATION) == uid and lease.spec.holder_identity:
                    body = self._body(name, uid, host_key, lease.metadata.resource_version, held=False)
                    await self._kube.replace_lease(self._namespace, name, body, timeout=self._request_timeout)
                return
            except (NotFound, Conflict):
                return  # gone, or someone wrote it since: not ours to clear any more
            except Exception as e:
                if not is_transient(e) or loop.time() + delay > deadline:
                    log.warning("could not give the host's Lease %s for %s up (%s); it expires in %d s", name,
                                host_key, e, self._duration)
                    return
            await asyncio.sleep(delay)
            delay *= 2
