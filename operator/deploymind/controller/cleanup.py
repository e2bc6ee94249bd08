"""Deletion: `deletionPolicy: Delete` removes the app from the host within a bounded time; `Orphan` leaves it running.

The cleanup takes the host's Lease first, like a release: a release of another Deployment on the same host runs to
its end (it holds the Lease at most `host_lease_wait_seconds`, the bound every release also waits), and the cleanup
says so with a Normal Event while it waits. Holding the Lease, it runs the cleanup script, whose own wait for the
host lock the transport outlasts (`LOCK_TIMEOUT_S`). An unreachable host never blocks deletion for ever (a namespace
deletion would hang): after `cleanup_timeout_seconds` of retries the operator gives up with a Warning Event naming
the containers left on the host. Every outcome is also a `cleanup` hook event, so the history keeps it.
Through ssm, whatever the policy, the Deployment's payloads left in S3 and Parameter Store are swept last
(controller.payload_sweep).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from deploymind.api import reasons
from deploymind.api.spec import DeletionPolicy, DeploymentSpec
from deploymind.commands.cleanup import LOCK_TIMEOUT_S
from deploymind.controller import payload_sweep
from deploymind.controller.hostlease import HostLeases
from deploymind.controller.targets import host_key, open_transport, resolve_host_inputs
from deploymind.hook_events import CleanupFinished
from deploymind.steps import health
from deploymind.steps.errors import StepError, Waiting
from deploymind.transport.base import TransportError

if TYPE_CHECKING:
    from deploymind.controller.runtime import Runtime

log = logging.getLogger(__name__)


async def on_delete(rt: Runtime, body: dict[str, Any], spec_raw: dict[str, Any]) -> None:
    try:
        spec = DeploymentSpec.model_validate(spec_raw)
    except ValidationError:
        return  # never deployed anything: an invalid spec is Stalled before the host is reached
    await _leave_host(rt, body, spec)
    await payload_sweep.on_delete(rt.kube, rt.settings, body, spec)


async def _leave_host(rt: Runtime, body: dict[str, Any], spec: DeploymentSpec) -> None:
    meta = body["metadata"]
    started = asyncio.get_running_loop().time()
    if spec.deletion_policy == DeletionPolicy.ORPHAN:
        await _finish(rt, body, started, "Normal", reasons.ORPHANED,
                      f"deletionPolicy Orphan: container dm-{meta['uid'][:8]} keeps running on the host")
        return
    settings = rt.settings
    host = host_key(spec, settings)
    leases = HostLeases(rt.kube, settings.lease_namespace, settings.identity, settings.host_lease_seconds,
                        settings.host_lease_wait_seconds)

    async def waiting(holder: str) -> None:
        await _event(rt, body, "Normal", reasons.CLEANUP_WAITING,
                     f"waiting up to {settings.host_lease_wait_seconds:g} s for the release of {holder} on {host} "
                     "to end (it holds the host's Lease); the cleanup runs right after it")

    try:
        async with leases.hold(host, meta["uid"], on_wait=waiting):
            failure = await _clean(rt, body, spec)
    except Waiting as e:
        failure = e.message
    if failure is None:
        return
    await _finish(rt, body, started, "Warning", reasons.CLEANUP_FAILED,
                  f"gave up removing the app from {host} ({failure}); these containers remain on the host: "
                  f"{_remaining(body)}. Remove them and the app's images by hand (label "
                  f"deploymind.io/uid={meta['uid']}, images deploymind/{meta['uid'][:8]})")


async def _clean(rt: Runtime, body: dict[str, Any], spec: DeploymentSpec) -> str | None:
    """Remove the app from the host, retrying for `cleanup_timeout_seconds`: None when done, else the last error."""
    meta = body["metadata"]
    loop = asyncio.get_running_loop()
    started = loop.time()
    timeout = rt.settings.cleanup_timeout_seconds
    deadline = started + timeout
    delay = 1.0
    while True:
        try:
            inputs = await resolve_host_inputs(rt.kube, meta["namespace"], spec, rt.settings)
            transport = open_transport(spec, inputs, rt.settings)
            try:
                # The script waits up to LOCK_TIMEOUT_S for the host lock (a release job left running by a
                # restarted operator); the transport must not give up before the script does.
                removed = await health.cleanup(transport, uid=meta["uid"], host_dir=rt.settings.host_dir_of(spec.target),
                                               timeout=LOCK_TIMEOUT_S + timeout)
            finally:
                await transport.close()
            await _finish(rt, body, started, "Normal", reasons.CLEANED_UP, removed)
            return None
        except (TransportError, StepError) as e:
            last = e.message
        left = deadline - loop.time()
        if left <= 0:
            return f"still failing after {timeout:g} s: {last}"
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, 15.0)


def _remaining(body: dict[str, Any]) -> str:
    """The app's containers as its status knows them (the host could not be asked)."""
    uid8 = body["metadata"]["uid"][:8]
    status = body.get("status") or {}
    running = (status.get("revision") or {}).get("id")
    names = [f"dm-{uid8}" + (f" (revision {running})" if running else "")]
    desired = status.get("desiredRevision")
    if desired and desired != running:
        names.append(f"dm-{uid8}-{desired} (the candidate, if its release was under way)")
    return ", ".join(names)


async def _finish(rt: Runtime, body: dict[str, Any], started: float, type_: str, reason: str, message: str) -> None:
    meta = body["metadata"]
    rt.hooks.emit(CleanupFinished(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"], result=reason,
                                  message=message, seconds=asyncio.get_running_loop().time() - started))
    await _event(rt, body, type_, reason, message)


async def _event(rt: Runtime, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
    try:
        await rt.kube.post_event(body, type_, reason, message)
    except Exception:
        log.warning("could not post the %s Event for %s/%s", reason, body["metadata"]["namespace"],
                    body["metadata"]["name"], exc_info=True)
