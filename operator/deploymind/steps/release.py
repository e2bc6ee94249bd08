"""Step `release` — owns condition Released.

One round trip: the host starts a candidate on a free port, waits for it to pass the health check, and only then
switches (Recreate); a candidate that never gets healthy is removed while the old container keeps serving.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from deploymind.api import reasons
from deploymind.api.conditions import F, T
from deploymind.api.status import ConditionType
from deploymind.commands.release import ReleaseParams, release_script
from deploymind.commands.results import ReleaseOutcome, ScriptOutputError, parse_release
from deploymind.steps.context import Desired, StepContext
from deploymind.steps.errors import Waiting

# Room beyond the startup timeout for pulling, starting, switching and the host lock.
RELEASE_SLACK_S = 600.0


@dataclass(frozen=True)
class Released:
    ok: bool
    reason: str
    message: str


def env_file(env: dict[str, str]) -> bytes:
    """The env file the host writes with mode 0600: the only way env values leave the operator."""
    return "".join(f"{k}={v}\n" for k, v in sorted(env.items())).encode()


def attempt_id(ctx: StepContext, target: Desired, purpose: str, nonce: str = "") -> str:
    """Stable for one rollout across operator restarts (so a re-run re-attaches to the host's job), new for a retry
    or a redeploy request. A revert or a repair passes a nonce: each one must really run on the host, never read
    back an earlier job's result for the same revision."""
    status = ctx.status
    key = "|".join([purpose, str(ctx.generation), status.last_handled_reconcile_at or "", status.handled_retry or "",
                    target.revision, nonce])
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def keep_images(ctx: StepContext, target: Desired) -> tuple[str, ...]:
    # The target becomes the newest history entry: with it, the host keeps revisionHistoryLimit revisions, not one more.
    recent = [target.image, *(h.image for h in ctx.status.history if h.image != target.image)]
    images = recent[: ctx.spec.revision_history_limit]
    if ctx.status.last_good:
        images.append(ctx.status.last_good.image)
    return tuple(dict.fromkeys(images))


async def release(ctx: StepContext, target: Desired, purpose: str = "rollout", nonce: str = "",
                  image_may_be_missing: bool = False) -> Released:
    """Release `target` on the host in one round trip (the host job verifies the candidate before it switches).

    With `image_may_be_missing`, a host without the image answers Released(ok=False, reason ImageMissing) so the
    caller can build it; otherwise that is Waiting(ImageMissing)."""
    spec = ctx.spec
    resources = spec.container.resources
    params = ReleaseParams(
        uid=ctx.uid, namespace=ctx.namespace, name=ctx.name, revision=target.revision, image=target.image,
        port=spec.container.port, host_dir=ctx.settings.host_dir, attempt=attempt_id(ctx, target, purpose, nonce),
        health_path=spec.health_check.path, probe_timeout_s=spec.health_check.timeout_seconds,
        startup_timeout_s=spec.health_check.startup_timeout_seconds,
        memory=resources.memory if resources else None,
        cpus=f"{resources.cpus:g}" if resources and resources.cpus else None,
        keep_images=keep_images(ctx, target), min_free_disk_mb=ctx.settings.min_free_disk_mb)
    ctx.conditions.set(ConditionType.RELEASED, F, reasons.RELEASING, f"releasing {target.revision}")
    await ctx.safe_point()
    started = time.monotonic()
    run = await ctx.transport.run(release_script(params), stdin=env_file(ctx.env),
                                  timeout=spec.health_check.startup_timeout_seconds + RELEASE_SLACK_S)
    try:
        result = parse_release(run.text())
    except ScriptOutputError as e:
        raise Waiting(reasons.RELEASE_FAILED, f"{e.message}; stderr: {run.stderr.decode(errors='replace')[-500:]}") from None
    if ctx.reporter:
        ctx.reporter.step("release", result.result, result.message, time.monotonic() - started)
    if result.ok:
        took = f" in {result.timings.total_s:.1f} s" if result.timings.total_s is not None else ""
        ctx.conditions.set(ConditionType.RELEASED, T, reasons.RELEASED if result.result == ReleaseOutcome.RELEASED
                           else reasons.UNCHANGED, f"{target.revision} serves on port {spec.container.port}{took}")
        return Released(True, reasons.RELEASED, result.message)
    if result.result in (ReleaseOutcome.CANDIDATE_UNHEALTHY, ReleaseOutcome.SWITCH_FAILED):
        logs = "\n".join(result.logs[-10:])
        message = (f"revision {target.revision} was refused: {result.message}; the previous container keeps serving"
                   + (f". Last log lines:\n{logs}" if logs else ""))
        ctx.conditions.set(ConditionType.RELEASED, F, str(result.result), message)
        return Released(False, str(result.result), message)
    if result.result == ReleaseOutcome.IMAGE_MISSING:
        ctx.conditions.set(ConditionType.RELEASED, F, reasons.IMAGE_MISSING, result.message)
        if image_may_be_missing:
            return Released(False, reasons.IMAGE_MISSING, result.message)
        raise Waiting(reasons.IMAGE_MISSING, result.message)
    reason = reasons.DISK_FULL if result.result == ReleaseOutcome.DISK_FULL else reasons.RELEASE_FAILED
    ctx.conditions.set(ConditionType.RELEASED, F, reason, result.message)
    raise Waiting(reason, result.message)
