"""Putting a revision back on the host: the revert (a revision failed its bake) and the drift repair.

A revert is written down before it acts: the bad revision's quarantine and a "reverting to X" intent
(`status.revert`) reach status before the host job runs. Whatever happens next (a dropped connection, a failed
status write, an operator crash), the next tick or rollout finishes the intent; drift is judged by the container's
revision label against `status.revision`, which changes only once the revert target really runs, so a container
running the revert target is never "repaired" back to the bad revision.
"""

from __future__ import annotations

import datetime
import logging
import time

from deploymind.api import reasons
from deploymind.api.conditions import F, Outcome, T, now
from deploymind.api.status import ConditionType, RevertIntent
from deploymind.controller import revisions
from deploymind.controller.health_rules import Decision
from deploymind.controller.objectstate import ObjectState
from deploymind.hook_events import DriftRepaired, Reverted
from deploymind.steps import build, release, source
from deploymind.steps.context import Desired, StepContext
from deploymind.steps.errors import Stalled, Waiting

log = logging.getLogger(__name__)


def later(seconds: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def due(intent: RevertIntent) -> bool:
    """The written-down revert may be tried (now, or its backoff after a failed try has passed)."""
    return intent.next_try_at is None or intent.next_try_at <= now()


def reverted_outcome(intent: RevertIntent) -> Outcome:
    return Outcome(stalled_reason=reasons.ROLLED_BACK,
                   stalled_message=f"revision {intent.from_revision} failed its health checks during the bake window "
                                   f"({intent.message}) and was reverted to {intent.to.id}; it stays quarantined "
                                   "until the spec names another revision or deploymind.io/retry is set")


async def revert(state: ObjectState, ctx: StepContext, decision: Decision) -> Outcome:
    """Quarantine the running revision and put the revert target back, exactly as it ran."""
    status, conds = ctx.status, ctx.conditions
    bad = status.revision
    to = revisions.revert_target(status)
    assert bad is not None and to is not None, "the rules decide Revert only with a target"
    revisions.quarantine(status, bad.id, bad.commit, bad.image, reasons.ROLLED_BACK)
    revisions.mark_rolled_back(status, bad.id)
    intent = RevertIntent(from_revision=bad.id, to=to, message=decision.message, at=now())
    status.revert = intent
    conds.set(ConditionType.HEALTHY, F, reasons.UNHEALTHY, decision.message)
    conds.set(ConditionType.RELEASED, F, reasons.REVERTING, f"reverting from {bad.id} to {to.id}")
    state.outcome = reverted_outcome(intent)
    # Under way until the target runs (Reconciling): the phase says RolledBack only once it is true.
    await state.write(status, conds, Outcome(in_progress=True))
    return await finish(state, ctx)


async def finish(state: ObjectState, ctx: StepContext) -> Outcome:
    """Run the written-down revert on the host (idempotent: a host already running the target answers Unchanged)
    and record it. A target that cannot run as it ran (its image or env file is gone) ends the intent and is never
    a revert target again; a target that does not get healthy keeps it, and a later tick tries again (a new host
    job each try, backing off) while the old container keeps serving."""
    status, conds = ctx.status, ctx.conditions
    intent = status.revert
    assert intent is not None
    target = revisions.kept(intent.to, ctx.spec)
    async with state.leases.hold(ctx.host_key, ctx.uid):
        result = await release.release(ctx, target, purpose="revert", nonce=f"{intent.at}#{intent.tries}",
                                       image_may_be_missing=True)
    if not result.ok:
        gone = result.reason in (reasons.REVISION_ENV_MISSING, reasons.IMAGE_MISSING)
        if gone:
            message = (f"could not revert from {intent.from_revision} to {intent.to.id}: {result.message}; it is "
                       "no revert target any more: fix the revision, or set deploymind.io/rollback-to")
            conds.set(ConditionType.RELEASED, F, reasons.REVERT_FAILED, message)
            status.revert = None
            revisions.unusable(status, intent.to.id)
            state.outcome = Outcome(stalled_reason=reasons.REVERT_FAILED, stalled_message=message)
            return state.outcome
        delay = min(state.settings.backoff_initial_seconds * 2 ** intent.tries, state.settings.backoff_max_seconds)
        status.revert = intent.model_copy(update={"tries": intent.tries + 1, "next_try_at": later(delay)})
        message = (f"could not revert from {intent.from_revision} to {intent.to.id}: {result.message}; trying "
                   f"again in {delay:g} s")
        conds.set(ConditionType.RELEASED, F, reasons.REVERT_FAILED, message)
        # Not RolledBack yet: the bad revision still runs (quarantined), and status says so.
        state.outcome = Outcome(waiting_reason=reasons.REVERT_FAILED, waiting_message=message)
        return state.outcome
    revisions.record_release(status, target, ctx.spec, result=reasons.RELEASED)
    status.revert = None
    state.bake.start(target.revision, time.monotonic())
    state.failures = 0
    conds.set(ConditionType.HEALTHY, T, reasons.HEALTHY, f"{ctx.spec.health_check.path} passed before the switch")
    state.hooks.emit(Reverted(namespace=ctx.namespace, name=ctx.name, uid=ctx.uid,
                              from_revision=intent.from_revision, to_revision=intent.to.id, message=intent.message))
    outcome = reverted_outcome(intent)
    state.outcome = outcome
    return outcome


async def _rebuild_and_release(state: ObjectState, ctx: StepContext, target: Desired,
                               decision: Decision) -> release.Released:
    """The running revision's image is gone too: fetch its commit again, build it, release it. A rebuild that fails
    (the repository unreachable, the build refused, the disk full) is tried again after a backoff, not on every
    probe period. Raises Stalled or Waiting, with Healthy=False (ContainerMissing) and Built saying why."""
    status, conds = ctx.status, ctx.conditions
    assert target.commit is not None and status.revision is not None
    now = time.monotonic()
    if state.rebuild.waiting(now):
        raise Waiting(reasons.CONTAINER_MISSING, f"{decision.message}, and so is its image; building it again is "
                                                 f"tried in {state.rebuild.retry_at - now:.0f} s")
    message = f"{decision.message}, and so is its image: building {status.revision.id} again from {target.commit[:12]}"
    log.info("%s/%s: %s", ctx.namespace, ctx.name, message)
    conds.set(ConditionType.HEALTHY, F, reasons.CONTAINER_MISSING, message)
    # Visible while it builds: the app is down, and nothing else would say so until the tick ends.
    await state.write(status, conds, Outcome(waiting_reason=reasons.CONTAINER_MISSING, waiting_message=message))
    try:
        target = await source.fetch_revision(ctx, target)
        await build.build(ctx, target)  # outside the host Lease, as in a rollout: a build never holds up a revert
    except (Stalled, Waiting):
        state.rebuild.failed(now, state.settings.backoff_initial_seconds, state.settings.backoff_max_seconds)
        raise
    state.rebuild.succeeded()
    async with state.leases.hold(ctx.host_key, ctx.uid):
        return await release.release(ctx, target, purpose="repair-after-build", nonce=str(time.time_ns()))


async def repair(state: ObjectState, ctx: StepContext, decision: Decision) -> None:
    """The container is missing, stopped or runs another revision: release the running revision again, as it
    ran (the spec's own revision with the env just resolved, so a wiped host gets it back too: when its image is
    gone as well, it is built again from the same commit first)."""
    status, conds = ctx.status, ctx.conditions
    running = status.revision
    assert running is not None
    spec_inputs = state.spec_inputs
    if spec_inputs is not None and spec_inputs.revision == running.id:
        target = Desired(revision=running.id, image=running.image, commit=running.commit, digest=running.digest,
                         run=running.run)
        ctx.env = spec_inputs.inputs.env
    else:
        target = revisions.kept(running, ctx.spec)
    conds.set(ConditionType.HEALTHY, F, reasons.CONTAINER_MISSING, decision.message)
    # Only the spec's own revision of a repository, with the tree digest it was built from, is built again.
    rebuildable = (not target.kept and target.commit is not None and target.digest is not None
                   and ctx.spec.source is not None)
    async with state.leases.hold(ctx.host_key, ctx.uid):
        result = await release.release(ctx, target, purpose="repair", nonce=str(time.time_ns()),
                                       image_may_be_missing=rebuildable)
    built = ""
    if result.reason == reasons.IMAGE_MISSING:
        result = await _rebuild_and_release(state, ctx, target, decision)
        built = " (its image built again)"
    if result.ok:
        log.info("%s/%s: %s; released %s again%s", ctx.namespace, ctx.name, decision.message, running.id, built)
        conds.set(ConditionType.HEALTHY, T, reasons.DRIFT_REPAIRED,
                  f"{decision.message}; released {running.id} again{built}")
        state.hooks.emit(DriftRepaired(namespace=ctx.namespace, name=ctx.name, uid=ctx.uid, revision=running.id))
        state.bake.start(running.id, time.monotonic())
    else:
        conds.set(ConditionType.HEALTHY, F, reasons.CONTAINER_MISSING,
                  f"{decision.message}; releasing {running.id} again failed: {result.message}")
