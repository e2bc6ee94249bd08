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
from deploymind.api.spec import DeploymentSpec
from deploymind.api.status import ConditionType, RunRecord
from deploymind.commands.release import ReleaseParams, env_payload, release_script
from deploymind.commands.results import HostNotReady, ReleaseOutcome, ScriptOutputError, parse_release
from deploymind.steps.context import Desired, StepContext
from deploymind.steps.errors import Waiting, host_not_ready
from deploymind.transport.base import Payload, payload_key

# Room beyond the startup timeout for pulling, starting, switching and the host lock.
RELEASE_SLACK_S = 600.0


@dataclass(frozen=True)
class Released:
    ok: bool
    reason: str
    message: str


def attempt_id(ctx: StepContext, target: Desired, purpose: str, nonce: str = "") -> str:
    """Stable for one rollout across operator restarts (so a re-run re-attaches to the host's job), new for a retry
    or a redeploy request. A revert or a repair passes a nonce: each one must really run on the host, never read
    back an earlier job's result for the same revision."""
    status = ctx.status
    # What runs now is part of it: going back to a revision released earlier in the same generation (rollback-to,
    # a rotated Secret and back) is a new attempt, never a read-back of that earlier release's result.
    running = f"{status.revision.id}@{status.revision.deployed_at}" if status.revision else ""
    key = "|".join([purpose, str(ctx.generation), ctx.redeploy_token or status.last_handled_reconcile_at or "",
                    status.handled_retry or "", target.revision, running, nonce])
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def keep(ctx: StepContext, target: Desired) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The images and revisions (release directories with their env files) the host keeps: the target becomes the
    newest history entry, so the host keeps revisionHistoryLimit revisions, not one more; and last good, and a
    revert's target."""
    entries = [(target.revision, target.image),
               *((h.id, h.image) for h in ctx.status.history if h.id != target.revision)]
    entries = entries[: ctx.spec.revision_history_limit]
    for extra in (ctx.status.last_good, ctx.status.revert.to if ctx.status.revert else None, ctx.status.revision):
        if extra is not None:
            entries.append((extra.id, extra.image))
    return tuple(dict.fromkeys(i for _, i in entries)), tuple(dict.fromkeys(r for r, _ in entries))


async def release(ctx: StepContext, target: Desired, purpose: str = "rollout", nonce: str = "",
                  image_may_be_missing: bool = False) -> Released:
    """Release `target` on the host in one round trip (the host job verifies the candidate before it switches).

    The spec's own revision is released with the env just resolved (on stdin, digest-checked on the host, kept
    there as the revision's env file); a kept revision (`target.kept`: a revert, `rollback-to`, a repair) with the
    env file and container settings it ran with, nothing from the current spec.
    With `image_may_be_missing`, a host without the image answers Released(ok=False, reason ImageMissing) so the
    caller can build it; otherwise that is Waiting(ImageMissing)."""
    spec = ctx.spec
    run_as = target.run if target.run is not None else run_record(spec)
    images, revisions = keep(ctx, target)
    params = ReleaseParams(
        uid=ctx.uid, namespace=ctx.namespace, name=ctx.name, revision=target.revision, image=target.image,
        port=run_as.port, host_dir=ctx.host_dir, attempt=attempt_id(ctx, target, purpose, nonce),
        health_path=spec.health_check.path, probe_timeout_s=spec.health_check.timeout_seconds,
        startup_timeout_s=spec.health_check.startup_timeout_seconds,
        memory=run_as.memory, cpus=f"{run_as.cpus:g}" if run_as.cpus else None,
        keep_images=images, keep_revisions=revisions, min_free_disk_mb=ctx.settings.min_free_disk_mb,
        init=run_as.init, stop_grace_s=run_as.stop_grace_period_seconds, env_from_stdin=not target.kept,
        reuse_image=target.reuse_image,
        secret_env_names=tuple(sorted(e.name for e in spec.container.env if e.value_from is not None)))
    released = ctx.conditions.get(ConditionType.RELEASED)
    if released is None or released.status != F:
        # A retry keeps the reason it failed with until it has a new one: no Event pair per attempt.
        ctx.conditions.set(ConditionType.RELEASED, F, reasons.RELEASING, f"releasing {target.revision}")
    await ctx.safe_point()
    started = time.monotonic()
    payload = None if target.kept else Payload("env-file", env_payload(ctx.env), secret=True,
                                                key=payload_key(ctx.namespace, ctx.name, ctx.uid, target.revision))
    run = await ctx.transport.run(release_script(params), payload=payload,
                                  timeout=spec.health_check.startup_timeout_seconds
                                  + run_as.stop_grace_period_seconds + RELEASE_SLACK_S)
    try:
        result = parse_release(run.text())
    except HostNotReady as e:
        ctx.conditions.set(ConditionType.RELEASED, F, reasons.HOST_NOT_READY, e.message)
        raise host_not_ready(e) from None
    except ScriptOutputError as e:
        raise Waiting(reasons.RELEASE_FAILED, f"{e.message}; stderr: {run.stderr.decode(errors='replace')[-500:]}") from None
    if ctx.reporter:
        ctx.reporter.step("release", result.result, result.message, time.monotonic() - started)
    if result.ok:
        took = f" in {result.timings.total_s:.1f} s" if result.timings.total_s is not None else ""
        ctx.conditions.set(ConditionType.RELEASED, T, reasons.RELEASED if result.result == ReleaseOutcome.RELEASED
                           else reasons.UNCHANGED, f"{target.revision} serves on port {run_as.port}{took}")
        return Released(True, reasons.RELEASED, result.message)
    if result.result in (ReleaseOutcome.CANDIDATE_UNHEALTHY, ReleaseOutcome.SWITCH_FAILED):
        # Log lines stay out of status and Events (read far more widely than Secrets): they go to the history.
        if ctx.reporter and result.logs:
            ctx.reporter.logs(target.revision, result.logs)
        # A repair puts back a container that is gone: nothing else serves meanwhile.
        serving = ("no container serves it until a later repair succeeds" if purpose.startswith("repair")
                   else "the previous container keeps serving")
        message = (f"revision {target.revision} was refused: {result.message}; {serving}"
                   + (f"; its last log lines: deploymind history {ctx.name} -n {ctx.namespace} "
                      f"--revision {target.revision}" if result.logs else ""))
        ctx.conditions.set(ConditionType.RELEASED, F, str(result.result), message)
        return Released(False, str(result.result), message)
    if result.result == ReleaseOutcome.ENV_MISSING:
        ctx.conditions.set(ConditionType.RELEASED, F, reasons.REVISION_ENV_MISSING, result.message)
        return Released(False, reasons.REVISION_ENV_MISSING, result.message)
    if result.result == ReleaseOutcome.ENV_INCOMPLETE:
        ctx.conditions.set(ConditionType.RELEASED, F, reasons.ENV_INCOMPLETE, result.message)
        raise Waiting(reasons.ENV_INCOMPLETE, result.message)
    if result.result == ReleaseOutcome.IMAGE_MISSING:
        ctx.conditions.set(ConditionType.RELEASED, F, reasons.IMAGE_MISSING, result.message)
        if image_may_be_missing:
            return Released(False, reasons.IMAGE_MISSING, result.message)
        raise Waiting(reasons.IMAGE_MISSING, result.message)
    reason = reasons.DISK_FULL if result.result == ReleaseOutcome.DISK_FULL else reasons.RELEASE_FAILED
    ctx.conditions.set(ConditionType.RELEASED, F, reason, result.message)
    raise Waiting(reason, result.message)


def run_record(spec: DeploymentSpec) -> RunRecord:
    """How the current spec says the container runs (what a revision of this spec keeps as its record)."""
    container = spec.container
    resources = container.resources
    return RunRecord(port=container.port, memory=resources.memory if resources else None,
                     cpus=resources.cpus if resources else None, init=container.init,
                     stop_grace_period_seconds=container.stop_grace_period_seconds)
