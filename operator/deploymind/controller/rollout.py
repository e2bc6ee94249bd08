"""The rollout: an ordered list of steps with one signature, each owning (at most) one condition.

    inputs   resolve env Secrets and credentials (no condition: a missing Secret waits)
    source   SourceReady: ref → commit → tarball (or the prebuilt image), and the desired revision
    plan     which revision runs (quarantine, rollback-to pin, retry, redeploy request), and the port claim
    build    Built: the image on the host, unless the host keeps it (no host Lease: builds never hold up reverts)
    release  Released: candidate, verify, switch, under the host Lease

A step adds a stage by being one more entry in STEPS (the scan step goes between source and plan). A step ends the
rollout early by setting `r.done` (nothing to do) or raises: Stalled (needs the user), Waiting (retry later),
TransportError, Superseded (a newer spec). The summary (Ready, phase, Events) is written once, by the Runner.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from deploymind.api import reasons
from deploymind.api.conditions import Conditions, T
from deploymind.api.enums import AttemptResult
from deploymind.api.spec import DeploymentSpec
from deploymind.api.status import ConditionType, DeploymentStatus
from deploymind.controller import revisions
from deploymind.controller.objectstate import ObjectState, SpecInputs
from deploymind.controller.plan import REQUESTED_AT, ROLLBACK_TO, Plan, plan
from deploymind.controller.targets import resolve_inputs
from deploymind.hook_events import RolloutFinished, RolloutStarted, StepFinished
from deploymind.steps import build, release
from deploymind.steps.context import Desired, StepContext
from deploymind.steps.errors import Stalled, Superseded
from deploymind.steps.source import source


@dataclass
class Rollout:
    """One rollout's working state, passed to every step."""

    state: ObjectState
    obj: dict[str, Any]
    spec: DeploymentSpec
    status: DeploymentStatus
    conds: Conditions
    annotations: dict[str, str]
    trigger: str
    redeploy_token: str | None
    """A `deploymind.io/requested-at` token not handled yet."""
    progress: Callable[[], Awaitable[None]]
    """Writes visible progress and stops a superseded rollout (raises Superseded)."""
    ctx: StepContext | None = None
    plan: Plan | None = None
    done: bool = False
    """Set by a step when there is nothing more to do (the host already runs the planned revision)."""
    started: float = field(default_factory=time.monotonic)

    @property
    def step_context(self) -> StepContext:
        assert self.ctx is not None, "the inputs step runs first"
        return self.ctx

    @property
    def target(self) -> Desired:
        assert self.plan is not None, "the plan step runs before build and release"
        return self.plan.target


Step = Callable[[Rollout], Awaitable[None]]


async def inputs_step(r: Rollout) -> None:
    inputs = await resolve_inputs(r.state.kube, r.obj["metadata"]["namespace"], r.spec, r.state.settings)
    r.state.inputs = inputs
    r.ctx = await r.state.context(r.obj, r.spec, r.status, r.conds, inputs)
    r.ctx.trigger = r.trigger
    r.ctx.redeploy_token = r.redeploy_token


async def source_step(r: Rollout) -> None:
    ctx = r.step_context
    began = time.monotonic()
    await source(ctx)
    assert ctx.desired is not None and r.state.inputs is not None
    r.state.spec_inputs = SpecInputs(revision=ctx.desired.revision, inputs=r.state.inputs)
    r.status.desired_revision = ctx.desired.revision
    r.state.hooks.emit(StepFinished(uid=ctx.uid, step="source", status="Succeeded", reason=reasons.RESOLVED,
                                    seconds=time.monotonic() - began))


async def plan_step(r: Rollout) -> None:
    ctx = r.step_context
    assert ctx.desired is not None
    try:
        r.plan = plan(r.status, r.annotations, ctx.desired, r.redeploy_token is not None, r.spec,
                      generation=ctx.generation)
    except Stalled:
        # A redeploy request that is refused (the revision is quarantined, the pin's target is gone) was answered.
        _handled(r)
        raise
    if not r.plan.release:
        r.done = True
        return
    _check_port(r.state, ctx, r.plan.target)
    ctx.checkpoint = r.progress
    await ctx.safe_point()
    env_names, env_hash = r.state.hooks.env_fingerprint(ctx.env)  # names and a keyed hash only, never values
    detail = (f"{ROLLBACK_TO}={r.annotations.get(ROLLBACK_TO)}" if r.plan.pinned
              else f"{REQUESTED_AT}={r.redeploy_token}" if r.redeploy_token else "")
    target = r.plan.target
    r.state.hooks.emit(RolloutStarted(namespace=ctx.namespace, name=ctx.name, uid=ctx.uid, trigger=r.trigger,
                                      revision=target.revision, generation=ctx.generation, trigger_detail=detail,
                                      commit=target.commit or "", image=target.image, digest=target.digest or "",
                                      env_names=env_names, env_hash=env_hash, strategy=r.spec.strategy.type))


async def build_step(r: Rollout) -> None:
    ctx, target = r.step_context, r.target
    if _buildable(r) and not revisions.on_host(r.status, target.revision):
        reuse = revisions.same_build(r.status, target)
        if reuse is not None:
            # The same commit and build settings (an env-only change): the host tags that image, nothing is built
            # or sent; if it was removed meanwhile, the release answers ImageMissing and it is built after all.
            target.reuse_image = reuse
            ctx.conditions.set(ConditionType.BUILT, T, reasons.BUILD_SKIPPED,
                               f"{target.image} reuses {reuse} (same commit and build settings)")
            return
        await build.build(ctx, target)
        await ctx.safe_point()
        return
    assert r.plan is not None
    ctx.conditions.set(ConditionType.BUILT, T, reasons.BUILD_SKIPPED,
                       f"rolling back to {target.revision}, already on the host" if r.plan.pinned
                       else f"{target.image} is kept on the host" if _buildable(r)
                       else f"{target.image} is used as it is")


async def release_step(r: Rollout) -> None:
    ctx, target = r.step_context, r.target
    state = r.state
    async with state.leases.hold(ctx.host_key, ctx.uid):
        # A revision this Deployment keeps on the host is released straight away (one round trip, no tarball); if
        # someone removed its image meanwhile, it is built after all and released in a second attempt.
        outcome = await release.release(ctx, target, image_may_be_missing=_buildable(r))
    if outcome.reason == reasons.IMAGE_MISSING:
        await build.build(ctx, target)
        await ctx.safe_point()
        async with state.leases.hold(ctx.host_key, ctx.uid):
            outcome = await release.release(ctx, target, purpose="rollout-after-build")
    # The redeploy request was acted on, whatever the host answered.
    _handled(r)
    if outcome.ok:
        revisions.record_release(r.status, target, r.spec, result=reasons.RELEASED)
        state.bake.start(target.revision, time.monotonic())
        state.failures = 0
        ctx.conditions.set(ConditionType.HEALTHY, T, reasons.HEALTHY,
                           f"{r.spec.health_check.path} passed before the switch")
        return
    if outcome.reason == reasons.REVISION_ENV_MISSING:
        raise Stalled(reasons.REVISION_ENV_MISSING, f"{outcome.message}; set {ROLLBACK_TO} to another revision "
                                                    "or remove it")
    # The candidate never got healthy, or the switch failed and the old container was restored.
    revisions.quarantine(r.status, target.revision, target.commit, target.image, outcome.reason)
    raise Stalled(reasons.REVISION_QUARANTINED, outcome.message)


STEPS: tuple[Step, ...] = (inputs_step, source_step, plan_step, build_step, release_step)


async def run(r: Rollout) -> None:
    """Run the steps in order, with rollout_finished telling history and metrics how it ended."""
    for step in STEPS:
        try:
            await step(r)
        except BaseException as e:
            if r.plan is not None and r.plan.release:
                superseded = isinstance(e, Superseded)
                _finished(r, "Superseded" if superseded else "Failed",
                          "Superseded" if superseded else getattr(e, "reason", type(e).__name__))
            raise
        if r.done:
            return
    _finished(r, "Succeeded", reasons.RELEASED)


def _finished(r: Rollout, result: AttemptResult, reason: str) -> None:
    ctx = r.step_context
    r.state.hooks.emit(RolloutFinished(namespace=ctx.namespace, name=ctx.name, uid=ctx.uid,
                                       revision=r.target.revision, result=result, reason=reason,
                                       seconds=time.monotonic() - r.started))


def _handled(r: Rollout) -> None:
    """Only a request acted on is recorded as handled (not one that waits, or arrives while suspended)."""
    if r.redeploy_token is not None:
        r.status.last_handled_reconcile_at = r.redeploy_token


def _buildable(r: Rollout) -> bool:
    assert r.plan is not None
    return r.spec.source is not None and not r.plan.pinned and r.target.tarball is not None


def _check_port(state: ObjectState, ctx: StepContext, target: Desired) -> None:
    port = target.run.port if target.run is not None else ctx.spec.container.port
    claims = sorted(state.hooks.port_claims(ctx.host_key, port))
    mine = (ctx.namespace, ctx.name)
    earlier = [c for c in claims if (c[1], c[2]) != mine]
    own = [c for c in claims if (c[1], c[2]) == mine]
    if earlier and (not own or earlier[0] < own[0]):
        other = earlier[0]
        raise Stalled(reasons.PORT_CONFLICT, f"port {port} on {ctx.host_key} is already claimed by Deployment "
                                             f"{other[1]}/{other[2]}; choose another spec.container.port")
