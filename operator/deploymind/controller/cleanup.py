"""Deletion: `deletionPolicy: Delete` removes the app from the host within a bounded time; `Orphan` leaves it running.

An unreachable host never blocks deletion for ever (a namespace deletion would hang): after the timeout the operator
gives up with a Warning Event naming what is left on the host.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from deploymind.api import reasons
from deploymind.api.spec import DeletionPolicy, DeploymentSpec
from deploymind.controller.targets import open_transport, resolve_inputs
from deploymind.steps import health
from deploymind.steps.errors import StepError
from deploymind.transport.base import TransportError

if TYPE_CHECKING:
    from deploymind.controller.runtime import Runtime

log = logging.getLogger(__name__)


async def on_delete(rt: Runtime, body: dict[str, Any], spec_raw: dict[str, Any]) -> None:
    meta = body["metadata"]
    try:
        spec = DeploymentSpec.model_validate(spec_raw)
    except ValidationError:
        return  # never deployed anything: an invalid spec is Stalled before the host is reached
    if spec.deletion_policy == DeletionPolicy.ORPHAN:
        await _event(rt, body, "Normal", reasons.ORPHANED,
                     f"deletionPolicy Orphan: container dm-{meta['uid'][:8]} keeps running on the host")
        return
    deadline = asyncio.get_running_loop().time() + rt.settings.cleanup_timeout_seconds
    delay = 1.0
    last = ""
    while True:
        try:
            inputs = await resolve_inputs(rt.kube, meta["namespace"], spec)
            transport = open_transport(spec, inputs, rt.settings)
            try:
                removed = await health.cleanup(transport, uid=meta["uid"], host_dir=rt.settings.host_dir,
                                               timeout=rt.settings.cleanup_timeout_seconds)
            finally:
                await transport.close()
            await _event(rt, body, "Normal", reasons.CLEANED_UP, removed)
            return
        except (TransportError, StepError) as e:
            last = e.message
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            await _event(rt, body, "Warning", reasons.CLEANUP_FAILED,
                         f"gave up removing dm-{meta['uid'][:8]} from the host after "
                         f"{rt.settings.cleanup_timeout_seconds:g} s ({last}); remove its containers and images "
                         f"(label deploymind.io/uid={meta['uid']}) by hand")
            return
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, 15.0)


async def _event(rt: Runtime, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
    try:
        await rt.kube.post_event(body, type_, reason, message)
    except Exception:
        log.warning("could not post the %s Event for %s/%s", reason, body["metadata"]["namespace"],
                    body["metadata"]["name"], exc_info=True)
