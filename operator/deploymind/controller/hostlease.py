"""A Kubernetes Lease per host, so two Deployments never release onto one host at once (the host's flock is the second line)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
from collections.abc import AsyncIterator

import kubernetes.client as k8s

from deploymind.api import reasons
from deploymind.controller.kube import Conflict, Kube, NotFound
from deploymind.steps.errors import Waiting


def lease_name(host_key: str) -> str:
    """A stable, DNS-safe Lease name for a host key such as `ssh:ec2-user@10.0.0.1:22` or `ssm:i-0123…`."""
    return "deploymind-host-" + hashlib.sha256(host_key.encode()).hexdigest()[:16]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class HostLeases:
    """Acquire, renew and release per-host Leases in one namespace."""

    def __init__(self, kube: Kube, namespace: str, identity: str, duration: int, wait: float) -> None:
        self._kube = kube
        self._namespace = namespace
        self._identity = identity
        self._duration = duration
        self._wait = wait

    def _body(self, name: str, holder: str, host_key: str, rv: str | None = None, held: bool = True) -> k8s.V1Lease:
        stamp = _now() if held else None
        return k8s.V1Lease(
            metadata=k8s.V1ObjectMeta(name=name, namespace=self._namespace, resource_version=rv,
                                      annotations={"deploymind.io/host": host_key}),
            spec=k8s.V1LeaseSpec(holder_identity=holder, lease_duration_seconds=self._duration,
                                 acquire_time=stamp, renew_time=stamp))

    async def _try_acquire(self, name: str, holder: str, host_key: str) -> bool:
        try:
            lease = await self._kube.get_lease(self._namespace, name)
        except NotFound:
            try:
                await self._kube.create_lease(self._namespace, self._body(name, holder, host_key))
                return True
            except Conflict:
                return False
        spec = lease.spec
        if spec is None:
            return False
        expired = spec.renew_time is None or (
            spec.renew_time + datetime.timedelta(seconds=spec.lease_duration_seconds or self._duration) < _now())
        if spec.holder_identity not in (None, "", holder) and not expired:
            return False
        try:
            await self._kube.replace_lease(self._namespace, name,
                                           self._body(name, holder, host_key, lease.metadata.resource_version))
            return True
        except Conflict:
            return False

    async def _release(self, name: str, holder: str, host_key: str) -> None:
        with contextlib.suppress(NotFound, Conflict):
            lease = await self._kube.get_lease(self._namespace, name)
            if lease.spec.holder_identity == holder:
                body = self._body(name, "", host_key, lease.metadata.resource_version, held=False)
                await self._kube.replace_lease(self._namespace, name, body)

    @contextlib.asynccontextmanager
    async def hold(self, host_key: str, holder: str) -> AsyncIterator[None]:
        """Hold the host's Lease for the duration of the block, renewing it; wait while another holder has it."""
        name = lease_name(host_key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        delay = 0.2
        while not await self._try_acquire(name, holder, host_key):
            if loop.time() > deadline:
                raise Waiting(reasons.HOST_BUSY, f"another Deployment is releasing onto {host_key}; will retry")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        renewer = asyncio.create_task(self._renew(name, holder, host_key))
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await asyncio.shield(self._release(name, holder, host_key))

    async def _renew(self, name: str, holder: str, host_key: str) -> None:
        while True:
            await asyncio.sleep(self._duration / 3)
            with contextlib.suppress(Conflict, NotFound):
                await self._try_acquire(name, holder, host_key)
