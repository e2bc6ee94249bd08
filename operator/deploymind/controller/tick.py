"""The health tick: one round trip per probe period, and what follows from it (promote, revert, restart, repair).

The tick never changes what the current generation's rollout concluded: a rollout that waits for a retry, or a
stall, stays in the summary (Ready=False) whatever the running revision's health; only a rollout ends it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable
from typing import Any

from deploymind.api import reasons
from deploymind.api.conditions import Conditions, F, Outcome, T, U
from deploymind.api.status import ConditionType, DeploymentStatus
from deploymind.controller import health_rules as rules
from deploymind.controller import revert, revisions
from deploymind.controller.objectstate import ObjectState
from deploymind.hook_events import HealthProbed, HostUnreachable
from deploymind.steps import health
from deploymind.steps.context import StepContext
from deploymind.steps.errors import Stalled, Waiting
from deploymind.transport.base import TransportError


def transport_outcome(e: TransportError, status: DeploymentStatus, before: Outcome | None = None) -> Outcome:
    """What a transport failure makes of the object: Stalled when only a person can help (a refused key, an unknown
    host key), else Waiting, keeping what the rollout concluded `before` (a quarantine does not end because the
    host is away, and neither does a pending retry)."""
    if e.needs_user:
        return Outcome(stalled_reason=e.reason, stalled_message=e.message)
    before = before or Outcome()
    return Outcome(waiting_reason=e.reason, waiting_message=e.message, baking=rules.baking(status),
                   stalled_reason=before.stalled_reason, stalled_message=before.stalled_message,
                   retrying=before.retrying)


def _carry(before: Outcome, status: DeploymentStatus) -> Outcome:
    return dataclasses.replace(before, in_progress=False, suspended=False, baking=rules.baking(status))


async def tick(state: ObjectState, obj: dict[str, Any]) -> None:
    """One health round trip; act on it; write status only if it changed."""
    state.writer.refresh(obj)
    spec, inputs = state.spec, state.inputs
    if spec is None or inputs is None or not state.has_transport:
        return
    status = state.writer.current()
    if status.revision is None:
        return
    conds = Conditions(status.conditions, obj["metadata"].get("generation", 1))
    ctx = await state.context(obj, spec, status, conds, inputs)
    before = state.outcome
    if status.revert is not None and not spec.suspend:
        # Finish the written-down revert first; between failed tries (backoff) the host is left alone.
        if revert.due(status.revert):
            await state.write(status, conds, await _guarded(state, ctx, before, revert.finish(state, ctx)))
        return
    try:
        observation = await health.probe(ctx)
    except TransportError as e:
        state.unreachable += 1
        state.bake.gap()
        state.hooks.emit(HostUnreachable(namespace=ctx.namespace, name=ctx.name, uid=ctx.uid))
        conds.set(ConditionType.HEALTHY, U, e.reason, e.message)
        await state.write(status, conds, transport_outcome(e, status, before))
        return
    state.unreachable = 0
    stats = observation.result.stats
    state.hooks.emit(HealthProbed(namespace=ctx.namespace, name=ctx.name, uid=ctx.uid, ok=observation.probe_ok,
                                  latency_ms=observation.latency_ms, revision=status.revision.id,
                                  cpu_percent=None if stats is None else stats.cpu_percent,
                                  memory_bytes=None if stats is None else stats.memory_bytes))
    if spec.suspend:
        conds.set(ConditionType.HEALTHY, T if observation.probe_ok else F,
                  reasons.HEALTHY if observation.probe_ok else reasons.UNHEALTHY, observation.detail)
        await state.write(status, conds, Outcome(suspended=True))
        return
    if observation.probe_ok and observation.container_ok:
        max_gap = 2.0 * spec.probe_period + spec.health_check.timeout_seconds
        baked = state.bake.passed(status, time.monotonic(), max_gap)
    else:
        state.bake.gap()
        baked = float(status.baked_seconds or 0)
        if observation.container_ok or observation.crashed:
            revisions.saw_failing_probe(status)
    decision = rules.decide(observation, state.failures, spec, status, baked)
    state.failures = decision.failures
    outcome = await _guarded(state, ctx, before, _act(state, ctx, decision, before))
    if rules.baking(status):
        state.bake.save(status, spec.rollback.bake_seconds)
    await state.write(status, conds, outcome)


async def _guarded(state: ObjectState, ctx: StepContext, before: Outcome, action: Awaitable[Outcome]) -> Outcome:
    """Await a host action of the tick; its failures become the outcome of this write (the rollout's stays)."""
    try:
        return await action
    except TransportError as e:
        state.unreachable += 1
        return transport_outcome(e, ctx.status, before)
    except Stalled as e:
        return Outcome(stalled_reason=e.reason, stalled_message=e.message)
    except Waiting as e:
        return dataclasses.replace(_carry(before, ctx.status), waiting_reason=e.reason, waiting_message=e.message)


async def _act(state: ObjectState, ctx: StepContext, decision: rules.Decision, before: Outcome) -> Outcome:
    status, conds = ctx.status, ctx.conditions
    action = decision.action
    if action == rules.Action.PROMOTE:
        state.bake.save(status, ctx.spec.rollback.bake_seconds, force=True)
        revisions.promote(status)
    if action == rules.Action.REVERT:
        return await revert.revert(state, ctx, decision)
    if action == rules.Action.RESTART:
        await health.restart(ctx)
        conds.set(ConditionType.HEALTHY, F, reasons.UNHEALTHY, f"{decision.message}; container restarted")
        return _carry(before, status)
    if action == rules.Action.REPAIR:
        await revert.repair(state, ctx, decision)
        return _carry(before, status)
    healthy = conds.get(ConditionType.HEALTHY)
    # A failing probe below the threshold does not make an unhealthy app Healthy again (Ready would flap and post
    # an Event pair per restart); only a passing probe does.
    if not (decision.healthy and decision.failures and healthy is not None and healthy.status == F):
        conds.set(ConditionType.HEALTHY, T if decision.healthy else F, decision.reason, decision.message)
    return _carry(before, status)
