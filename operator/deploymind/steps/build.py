"""Step `build` — owns condition Built.

Builds the image on the host from exactly the source tarball (streamed on stdin; the host checks its sha256 before
building). One round trip; the host skips the build when it already has the image.
"""

from __future__ import annotations

import asyncio
import time

from deploymind.api import reasons
from deploymind.api.conditions import F, T
from deploymind.api.status import ConditionType
from deploymind.commands.build import BuildParams, build_script
from deploymind.commands.results import BuildOutcome, HostNotReady, ScriptOutputError, parse_build
from deploymind.steps.context import Desired, StepContext
from deploymind.steps.errors import Stalled, Waiting, host_not_ready
from deploymind.transport.base import Payload, TransportRefused, payload_key

BUILD_TIMEOUT_S = 1800.0


async def build(ctx: StepContext, target: Desired) -> None:
    assert target.tarball is not None and target.digest is not None
    spec_build = ctx.spec.build
    params = BuildParams(uid=ctx.uid, revision=target.revision, image=target.image, tree_digest=target.digest,
                         host_dir=ctx.host_dir, dockerfile=spec_build.dockerfile if spec_build else "Dockerfile",
                         context=spec_build.context if spec_build else ".", min_free_disk_mb=ctx.settings.min_free_disk_mb)
    tarball = await asyncio.to_thread(target.tarball.read_bytes)
    # Built=True of the previous revision would make the phase say Deploying while this one builds.
    ctx.conditions.set(ConditionType.BUILT, F, reasons.PROGRESSING, f"building {target.image} on the host")
    await ctx.safe_point()
    started = time.monotonic()
    payload = Payload("source-tarball", tarball, key=payload_key(ctx.namespace, ctx.name, ctx.uid, target.revision))
    try:
        run = await ctx.transport.run(build_script(params), payload=payload, timeout=BUILD_TIMEOUT_S)
    except TransportRefused as e:
        # The transport cannot hand the host the source (ssm without a build bucket, access denied): nothing ran.
        ctx.conditions.set(ConditionType.BUILT, F, e.reason, e.message)
        raise Stalled(e.reason, e.message) from None
    try:
        result = parse_build(run.text())
    except HostNotReady as e:
        ctx.conditions.set(ConditionType.BUILT, F, reasons.HOST_NOT_READY, e.message)
        raise host_not_ready(e) from None
    except ScriptOutputError as e:
        ctx.conditions.set(ConditionType.BUILT, F, reasons.BUILD_FAILED, e.message)
        raise Waiting(reasons.BUILD_FAILED, f"{e.message}; stderr: {run.stderr.decode(errors='replace')[-500:]}") from None
    seconds = time.monotonic() - started
    if ctx.reporter:
        ctx.reporter.step("build", result.result, result.message, seconds)
    if result.result in (BuildOutcome.BUILT, BuildOutcome.PRESENT):
        reason = reasons.BUILT if result.result == BuildOutcome.BUILT else reasons.BUILD_SKIPPED
        ctx.conditions.set(ConditionType.BUILT, T, reason, f"{target.image} ({result.image_id[:19]})")
        return
    logs = "\n".join(result.logs[-20:])
    message = f"{result.message}{': ' + logs if logs else ''}"
    ctx.conditions.set(ConditionType.BUILT, F, reasons.BUILD_FAILED if result.result == BuildOutcome.BUILD_FAILED
                       else str(result.result), message)
    if result.result == BuildOutcome.BUILD_FAILED:
        # The Dockerfile or the source is wrong: only a new revision helps.
        raise Stalled(reasons.BUILD_FAILED, f"building {target.revision} failed: {message}")
    if result.result == BuildOutcome.UNSAFE_SOURCE:
        # The host found a symlink leading out of the tree (the source step should have): only a new commit helps.
        raise Stalled(reasons.UNSAFE_SOURCE, f"the host refused to build {target.revision}: {message}")
    if result.result == BuildOutcome.DISK_FULL:
        raise Waiting(reasons.DISK_FULL, message)
    raise Waiting(reasons.BUILD_FAILED, message)
