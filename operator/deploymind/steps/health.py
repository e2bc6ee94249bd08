"""Step `health` — owns condition Healthy (the controller's health rules decide what an observation means).

One round trip per probe period: probe the endpoint, check the container (running, right image), read its stats.
Also the two other small host operations of a running app: restart, and cleanup on delete.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploymind.api import reasons
from deploymind.commands.cleanup import CleanupParams, cleanup_script
from deploymind.commands.health import HealthParams, health_script, restart_script
from deploymind.commands.results import (
    CleanupOutcome,
    HealthResult,
    RestartOutcome,
    ScriptOutputError,
    parse_cleanup,
    parse_health,
    parse_restart,
)
from deploymind.steps.context import StepContext
from deploymind.steps.errors import Waiting
from deploymind.transport.base import Transport, TransportError

PROBE_SLACK_S = 30.0


@dataclass(frozen=True)
class Observation:
    probe_ok: bool
    latency_ms: float | None
    container_ok: bool
    detail: str
    result: HealthResult


def describe(result: HealthResult, path: str, container: str) -> str:
    if not result.container.exists:
        return f"container {container} is missing"
    if not result.container.running:
        return f"container {container} is {result.container.status or 'not running'}"
    if not result.right_image:
        return f"container {container} runs {result.container.image}, not {result.expected_image}"
    if result.probe.ok:
        return f"{path} answered {result.probe.status}"
    if result.probe.status:
        return f"{path} answered {result.probe.status}"
    return f"{path} did not answer ({result.probe.error or 'no response'})"


async def probe(ctx: StepContext) -> Observation:
    assert ctx.status.revision is not None
    check = ctx.spec.health_check
    params = HealthParams(uid8=ctx.uid8, image=ctx.status.revision.image, port=ctx.spec.container.port,
                          health_path=check.path, probe_timeout_s=check.timeout_seconds, host_dir=ctx.settings.host_dir)
    run = await ctx.transport.run(health_script(params), timeout=check.timeout_seconds + PROBE_SLACK_S)
    try:
        result = parse_health(run.text())
    except ScriptOutputError as e:
        # Not a failed probe: we do not know how the app is doing.
        raise TransportError(e.reason, e.message) from None
    container_ok = result.container.exists and result.container.running and result.right_image
    return Observation(probe_ok=result.probe.ok, latency_ms=float(result.probe.latency_ms) if result.probe.status else None,
                       container_ok=container_ok, detail=describe(result, check.path, ctx.stable_container),
                       result=result)


async def restart(ctx: StepContext) -> None:
    run = await ctx.transport.run(restart_script(ctx.uid8), timeout=120.0)
    try:
        result = parse_restart(run.text())
    except ScriptOutputError as e:
        raise TransportError(e.reason, e.message) from None
    if result.result != RestartOutcome.RESTARTED:
        raise Waiting(reasons.RESTARTED, result.message)


async def cleanup(transport: Transport, *, uid: str, host_dir: str, timeout: float) -> str:  # noqa: ASYNC109
    """Remove the object's containers, images and files from the host; return what was removed."""
    run = await transport.run(cleanup_script(CleanupParams(uid=uid, host_dir=host_dir)), timeout=timeout)
    try:
        result = parse_cleanup(run.text())
    except ScriptOutputError as e:
        raise TransportError(e.reason, e.message) from None
    if result.result != CleanupOutcome.CLEANED:
        raise TransportError(reasons.CLEANUP_FAILED, result.message)
    return f"removed {result.containers} container(s) and {result.images} image(s) from the host"
