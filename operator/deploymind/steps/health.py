"""Step `health` — owns condition Healthy (the controller's health rules decide what an observation means).

One round trip per probe period: probe the endpoint, check the container (running, right image and revision),
read its stats.
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
    HostNotReady,
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
    crashed: bool = False


def describe(result: HealthResult, path: str, container: str, revision: str) -> str:
    if not result.container.exists:
        return f"container {container} is missing"
    if not result.container.running:
        return f"container {container} is {result.container.status or 'not running'}"
    if not result.right_image:
        return f"container {container} runs {result.container.image}, not {result.expected_image}"
    if not _right_revision(result, revision):
        return f"container {container} runs revision {result.container.revision}, not {revision}"
    if result.probe.ok:
        return f"{path} answered {result.probe.status}"
    if result.probe.status:
        return f"{path} answered {result.probe.status}"
    return f"{path} did not answer ({result.probe.error or 'no response'})"


def _right_revision(result: HealthResult, revision: str) -> bool:
    """Drift is judged by the container's revision label: an env-only change keeps the image and changes the
    revision. A container without the label (made by hand) is judged by its image alone."""
    label = result.container.revision
    return not label or label == "<no value>" or label == revision


async def probe(ctx: StepContext) -> Observation:
    """Probe the running revision where it runs: its own port (a newer spec that never rolled out changes
    nothing here), its container by revision."""
    running = ctx.status.revision
    assert running is not None
    check = ctx.spec.health_check
    port = running.run.port if running.run is not None else ctx.spec.container.port
    params = HealthParams(uid8=ctx.uid8, image=running.image, port=port,
                          health_path=check.path, probe_timeout_s=check.timeout_seconds, host_dir=ctx.host_dir,
                          background_stats=True)
    run = await ctx.transport.run(health_script(params), timeout=check.timeout_seconds + PROBE_SLACK_S)
    try:
        result = parse_health(run.text())
    except (ScriptOutputError, HostNotReady) as e:
        # Not a failed probe: we do not know how the app is doing (a host not ready waits like an unreachable one).
        raise TransportError(e.reason, e.message) from None
    container_ok = (result.container.exists and result.container.running and result.right_image
                    and _right_revision(result, running.id))
    crashed = (result.container.exists and not result.container.running and result.right_image
               and _right_revision(result, running.id))
    return Observation(probe_ok=result.probe.ok and container_ok,
                       latency_ms=float(result.probe.latency_ms) if result.probe.status else None,
                       container_ok=container_ok, detail=describe(result, check.path, ctx.stable_container, running.id),
                       result=result, crashed=crashed)


async def restart(ctx: StepContext) -> None:
    # The grace the running revision was started with (the spec's, for a status written before revisions kept it).
    running = ctx.status.revision
    grace = (running.run.stop_grace_period_seconds if running and running.run
             else ctx.spec.container.stop_grace_period_seconds)
    run = await ctx.transport.run(restart_script(ctx.uid8, grace), timeout=120.0 + grace)
    try:
        result = parse_restart(run.text())
    except (ScriptOutputError, HostNotReady) as e:
        raise TransportError(e.reason, e.message) from None
    if result.result != RestartOutcome.RESTARTED:
        raise Waiting(reasons.RESTARTED, result.message)


async def cleanup(transport: Transport, *, uid: str, host_dir: str | None, timeout: float) -> str:  # noqa: ASYNC109
    """Remove the object's containers, images and files from the host; return what was removed."""
    run = await transport.run(cleanup_script(CleanupParams(uid=uid, host_dir=host_dir)), timeout=timeout)
    try:
        result = parse_cleanup(run.text())
    except (ScriptOutputError, HostNotReady) as e:
        raise TransportError(e.reason, e.message) from None
    if result.result != CleanupOutcome.CLEANED:
        raise TransportError(reasons.CLEANUP_FAILED, result.message)
    return f"removed {result.containers} container(s) and {result.images} image(s) from the host"
