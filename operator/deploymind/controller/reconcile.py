"""The reconcile of one Deployment: ordered steps, one signature, typed errors, and the summary written once at the end.

A rollout is `source → (scan, its own issue) → plan → build → release`; the health tick runs `health` alone.
Each step owns one condition; Ready, Reconciling, Stalled and phase are derived once, by `summarize`, and the one
StatusWriter sends them only when they changed.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from deploymind.api import reasons
from deploymind.api.conditions import Conditions, F, Outcome, T, U, now, summarize
from deploymind.api.spec import DeploymentSpec
from deploymind.api.status import ConditionType, DeploymentStatus, FailedRevision, HistoryEntry, Revision, RevisionRef
from deploymind.controller import health as rules
from deploymind.controller.hooks import Hooks, ReportingTransport, StepReporter
from deploymind.controller.hostlease import HostLeases
from deploymind.controller.kube import Kube
from deploymind.controller.plan import REQUESTED_AT, ROLLBACK_TO, Plan, plan
from deploymind.controller.status_writer import StatusWriter
from deploymind.controller.targets import (
    Inputs,
    host_key,
    open_transport,
    resolve_inputs,
    target_status,
    transport_signature,
)
from deploymind.settings import Settings
from deploymind.steps import build, health, release
from deploymind.steps.context import Desired, StepContext
from deploymind.steps.errors import Stalled, Superseded, Waiting
from deploymind.steps.source import source
from deploymind.transport.base import Transport, TransportError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RolloutResult:
    retry: bool = False
    retry_delay: float | None = None


class Runner:
    """Per-object state that outlives one reconcile: the status writer, the open transport, the failure count."""

    def __init__(self, kube: Kube, settings: Settings, hooks: Hooks, obj: dict[str, Any], *,
                 revision_key: bytes) -> None:
        self._revision_key = revision_key
        self._kube = kube
        self._settings = settings
        self._hooks = hooks
        self._leases = HostLeases(kube, settings.lease_namespace, settings.identity, settings.host_lease_seconds,
                                  settings.host_lease_wait_seconds)
        self.writer = StatusWriter(kube, obj)
        self.first = True
        self.spec: DeploymentSpec | None = None
        self._inputs: Inputs | None = None
        self._transport: Transport | None = None
        self._signature: str | None = None
        self._outcome = Outcome()
        self._failures = 0
        self._unreachable = 0
        self._phase: str | None = None

    def refresh(self, obj: dict[str, Any]) -> None:
        self.writer.refresh(obj)

    # ------------------------------------------------------------------ rollout
    async def reconcile(self, obj: dict[str, Any], trigger: str,
                        checkpoint: Callable[[], Awaitable[None]]) -> RolloutResult:
        self.first = False
        meta = obj["metadata"]
        self.writer.refresh(obj)
        status = self.writer.current()
        if trigger == "Resume" and status.observed_generation is None:
            # Never observed: a new object, whose create handler may have run before its actor existed.
            trigger = "SpecChange"
        conds = Conditions(status.conditions, meta.get("generation", 1))
        annotations = dict(meta.get("annotations") or {})
        token = annotations.get(REQUESTED_AT)
        redeploy = bool(token) and token != status.last_handled_reconcile_at
        started = time.monotonic()
        result = RolloutResult()
        try:
            spec = self._parse(obj)
            if redeploy:
                status.last_handled_reconcile_at = token
            if spec.suspend:
                await self._watch_only(obj, spec, status, conds)
                outcome = Outcome(suspended=True)
            else:
                outcome = await self._rollout(obj, spec, status, conds, annotations, trigger, redeploy, checkpoint)
        except Superseded:
            raise
        except Stalled as e:
            outcome = Outcome(stalled_reason=e.reason, stalled_message=e.message)
        except Waiting as e:
            outcome = Outcome(waiting_reason=e.reason, waiting_message=e.message, baking=rules.baking(status))
            result = RolloutResult(retry=True, retry_delay=e.delay)
        except TransportError as e:
            self._unreachable += 1
            outcome = _transport_outcome(e, status)
            if not e.needs_user:
                # The host is away: the retry waits as long as the next health tick would (one backoff per host).
                result = RolloutResult(retry=True, retry_delay=self.tick_delay())
        else:
            if self._transport is not None:
                self._unreachable = 0
        self._outcome = outcome
        log.info("%s/%s: reconciled (%s): %s", meta["namespace"], meta["name"], trigger,
                 outcome.stalled_reason or outcome.waiting_reason or "ok")
        status.observed_generation = meta.get("generation")
        await self._write(status, conds, outcome)
        self._hooks.emit("reconcile_finished", namespace=meta["namespace"], name=meta["name"], uid=meta["uid"],
                         trigger=trigger, stalled=outcome.stalled_reason, waiting=outcome.waiting_reason,
                         seconds=time.monotonic() - started)
        return result

    def _parse(self, obj: dict[str, Any]) -> DeploymentSpec:
        try:
            spec = DeploymentSpec.model_validate(obj.get("spec") or {})
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise Stalled(reasons.INVALID_SPEC, f"spec.{where}: {first['msg']}") from None
        self.spec = spec
        return spec

    async def _context(self, obj: dict[str, Any], spec: DeploymentSpec, status: DeploymentStatus,
                       conds: Conditions, inputs: Inputs) -> StepContext:
        signature = transport_signature(spec, inputs, self._settings)
        if self._transport is None or signature != self._signature:
            if self._transport is not None:
                await self._transport.close()
            self._transport = ReportingTransport(open_transport(spec, inputs, self._settings), self._hooks)
            self._signature = signature
        meta = obj["metadata"]
        health = status.target.health if status.target else None
        status.target = target_status(spec, self._settings, f"dm-{meta['uid'][:8]}", health)
        return StepContext(uid=meta["uid"], namespace=meta["namespace"], name=meta["name"],
                           generation=meta.get("generation", 1), spec=spec, status=status, conditions=conds,
                           settings=self._settings, transport=self._transport, host_key=host_key(spec, self._settings),
                           env=inputs.env, token=inputs.token, revision_key=self._revision_key,
                           reporter=StepReporter(self._hooks, meta["uid"]))

    async def _watch_only(self, obj: dict[str, Any], spec: DeploymentSpec, status: DeploymentStatus,
                          conds: Conditions) -> None:
        """Suspended: nothing rolls out, but the health ticks need the env and the transport, after a restart too."""
        if status.revision is None:
            return
        try:
            self._inputs = await resolve_inputs(self._kube, obj["metadata"]["namespace"], spec)
            await self._context(obj, spec, status, conds, self._inputs)
        except (Stalled, Waiting) as e:
            log.info("%s/%s: suspended and not probed: %s", obj["metadata"]["namespace"], obj["metadata"]["name"],
                     e.message)

    async def _rollout(self, obj: dict[str, Any], spec: DeploymentSpec, status: DeploymentStatus, conds: Conditions,
                       annotations: dict[str, str], trigger: str, redeploy: bool,
                       checkpoint: Callable[[], Awaitable[None]]) -> Outcome:
        inputs = await resolve_inputs(self._kube, obj["metadata"]["namespace"], spec)
        self._inputs = inputs
        ctx = await self._context(obj, spec, status, conds, inputs)
        ctx.trigger = trigger

        async def progress() -> None:
            await self._write(status, conds, Outcome(in_progress=True))
            await checkpoint()

        source_started = time.monotonic()
        await source(ctx)
        source_seconds = time.monotonic() - source_started
        assert ctx.desired is not None
        status.desired_revision = ctx.desired.revision
        the_plan = plan(status, annotations, ctx.desired, redeploy)
        if not the_plan.release:
            return Outcome(baking=rules.baking(status))
        self._check_port(ctx)
        ctx.checkpoint = progress
        await ctx.safe_point()
        env_names, env_hash = self._hooks.env_fingerprint(ctx.env)  # names and a keyed hash only, never values
        detail = (f"{ROLLBACK_TO}={annotations.get(ROLLBACK_TO)}" if the_plan.pinned
                  else f"{REQUESTED_AT}={annotations.get(REQUESTED_AT)}" if redeploy else "")
        self._hooks.emit("rollout_started", namespace=ctx.namespace, name=ctx.name, uid=ctx.uid, trigger=trigger,
                         revision=the_plan.target.revision, generation=ctx.generation, trigger_detail=detail,
                         commit=the_plan.target.commit or "", image=the_plan.target.image,
                         digest=the_plan.target.digest or "", env_names=env_names, env_hash=env_hash,
                         strategy=str(spec.strategy.type))
        self._hooks.emit("step", uid=ctx.uid, step="source", status="Succeeded", reason=reasons.RESOLVED,
                         seconds=source_seconds)
        started = time.monotonic()
        try:
            async with self._leases.hold(ctx.host_key, ctx.uid):
                await self._release(ctx, the_plan)
        except Superseded:
            self._hooks.emit("rollout_finished", namespace=ctx.namespace, name=ctx.name, uid=ctx.uid,
                             revision=the_plan.target.revision, result="Superseded", reason="Superseded",
                             seconds=time.monotonic() - started)
            raise
        except (Stalled, Waiting, TransportError) as e:
            self._hooks.emit("rollout_finished", namespace=ctx.namespace, name=ctx.name, uid=ctx.uid,
                             revision=the_plan.target.revision, result="Failed", reason=getattr(e, "reason", ""),
                             seconds=time.monotonic() - started)
            raise
        self._hooks.emit("rollout_finished", namespace=ctx.namespace, name=ctx.name, uid=ctx.uid,
                         revision=the_plan.target.revision, result="Succeeded", reason=reasons.RELEASED,
                         seconds=time.monotonic() - started)
        self._failures = 0
        return Outcome(baking=rules.baking(status))

    async def _release(self, ctx: StepContext, the_plan: Plan) -> None:
        target = the_plan.target
        buildable = ctx.spec.source is not None and not the_plan.pinned and target.tarball is not None
        kept = _kept_on_host(ctx.status, target.revision)
        if buildable and not kept:
            await build.build(ctx, target)
            await ctx.safe_point()
        else:
            ctx.conditions.set(ConditionType.BUILT, T, reasons.BUILD_SKIPPED,
                               f"rolling back to {target.revision}, already on the host" if the_plan.pinned
                               else f"{target.image} is kept on the host" if buildable
                               else f"{target.image} is used as it is")
        # A revision this Deployment keeps on the host is released straight away (one round trip, no tarball); if
        # someone removed its image meanwhile, it is built after all and released in a second attempt.
        outcome = await release.release(ctx, target, image_may_be_missing=buildable)
        if outcome.reason == reasons.IMAGE_MISSING:
            await build.build(ctx, target)
            await ctx.safe_point()
            outcome = await release.release(ctx, target, purpose="rollout-after-build")
        if outcome.ok:
            self._record_release(ctx, target, result=reasons.RELEASED)
            return
        # The candidate never got healthy, or the switch failed and the old container was restored.
        self._quarantine(ctx.status, target, outcome.reason)
        raise Stalled(reasons.REVISION_QUARANTINED, outcome.message)

    def _record_release(self, ctx: StepContext, target: Desired, result: str) -> None:
        status = ctx.status
        stamp = now()
        status.revision = Revision(id=target.revision, commit=target.commit, image=target.image,
                                   digest=target.digest, deployed_at=stamp)
        if ctx.spec.rollback.bake_seconds == 0 or (status.last_good and status.last_good.id == target.revision):
            status.last_good = RevisionRef(id=target.revision, commit=target.commit, image=target.image)
            status.bake_started_at = None
        else:
            status.bake_started_at = stamp
        entries = [h for h in status.history if h.id != target.revision]
        entries.insert(0, HistoryEntry(id=target.revision, commit=target.commit, image=target.image,
                                       deployed_at=stamp, result=result))
        status.history = entries[: ctx.spec.revision_history_limit]
        ctx.conditions.set(ConditionType.HEALTHY, T, reasons.HEALTHY,
                           f"{ctx.spec.health_check.path} passed before the switch")

    @staticmethod
    def _quarantine(status: DeploymentStatus, target: Desired, reason: str) -> None:
        if any(f.id == target.revision for f in status.failed_revisions):
            return
        status.failed_revisions = [*status.failed_revisions, FailedRevision(
            id=target.revision, commit=target.commit, image=target.image, reason=reason, at=now())][-20:]

    def _check_port(self, ctx: StepContext) -> None:
        port = ctx.spec.container.port
        claims = sorted(self._hooks.port_claims(ctx.host_key, port))
        mine = (ctx.namespace, ctx.name)
        earlier = [c for c in claims if (c[1], c[2]) != mine]
        own = [c for c in claims if (c[1], c[2]) == mine]
        if earlier and (not own or earlier[0] < own[0]):
            other = earlier[0]
            raise Stalled(reasons.PORT_CONFLICT, f"port {port} on {ctx.host_key} is already claimed by Deployment "
                                                 f"{other[1]}/{other[2]}; choose another spec.container.port")

    # ------------------------------------------------------------------ health tick
    @property
    def unreachable(self) -> bool:
        """The last round trip to the host failed in the transport (the host is down, or its sshd/agent is)."""
        return self._unreachable > 0

    def tick_delay(self) -> float:
        if self.spec is None:
            return float(self._settings.backoff_max_seconds)
        period = float(self.spec.probe_period)
        if self._unreachable:
            return float(min(period * 2 ** self._unreachable, self._settings.backoff_max_seconds))
        return period

    async def tick(self, obj: dict[str, Any]) -> None:
        """One health round trip; act on it (promote, revert, restart, repair); write status only if it changed."""
        self.writer.refresh(obj)
        if self.spec is None or self._transport is None or self._inputs is None:
            return
        status = self.writer.current()
        if status.revision is None:
            return
        meta = obj["metadata"]
        conds = Conditions(status.conditions, meta.get("generation", 1))
        ctx = await self._context(obj, self.spec, status, conds, self._inputs)
        outcome = self._outcome
        try:
            observation = await health.probe(ctx)
        except TransportError as e:
            self._unreachable += 1
            self._hooks.emit("health", namespace=ctx.namespace, name=ctx.name, uid=ctx.uid, unreachable=True)
            conds.set(ConditionType.HEALTHY, U, e.reason, e.message)
            await self._write(status, conds, _transport_outcome(e, status, outcome))
            return
        self._unreachable = 0
        self._hooks.emit("health", namespace=ctx.namespace, name=ctx.name, uid=ctx.uid, ok=observation.probe_ok,
                         latency_ms=observation.latency_ms, stats=observation.result.stats,
                         revision=status.revision.id)
        if self.spec.suspend:
            conds.set(ConditionType.HEALTHY, T if observation.probe_ok else F,
                      reasons.HEALTHY if observation.probe_ok else reasons.UNHEALTHY, observation.detail)
            await self._write(status, conds, Outcome(suspended=True))
            return
        decision = rules.decide(observation, self._failures, self.spec, status,
                                datetime.datetime.now(datetime.UTC))
        self._failures = decision.failures
        try:
            outcome = await self._act(ctx, decision, outcome)
        except TransportError as e:
            outcome = Outcome(waiting_reason=e.reason, waiting_message=e.message, baking=rules.baking(status))
        except (Stalled, Waiting) as e:
            outcome = Outcome(stalled_reason=e.reason, stalled_message=e.message) if isinstance(e, Stalled) \
                else Outcome(waiting_reason=e.reason, waiting_message=e.message, baking=rules.baking(status))
        self._outcome = outcome
        await self._write(status, conds, outcome)

    async def _act(self, ctx: StepContext, decision: rules.Decision, outcome: Outcome) -> Outcome:
        status, conds = ctx.status, ctx.conditions
        action = decision.action
        if action == rules.Action.PROMOTE and status.revision is not None:
            status.last_good = RevisionRef(id=status.revision.id, commit=status.revision.commit,
                                           image=status.revision.image)
            status.bake_started_at = None
        if action == rules.Action.REVERT and status.revision is not None and status.last_good is not None:
            bad = Desired(revision=status.revision.id, image=status.revision.image, commit=status.revision.commit,
                          digest=status.revision.digest)
            good = Desired(revision=status.last_good.id, image=status.last_good.image, commit=status.last_good.commit)
            async with self._leases.hold(ctx.host_key, ctx.uid):
                result = await release.release(ctx, good, purpose="revert", nonce=str(time.time_ns()))
            if not result.ok:
                conds.set(ConditionType.HEALTHY, F, reasons.UNHEALTHY, decision.message)
                return Outcome(waiting_reason=result.reason, waiting_message=result.message)
            self._quarantine(status, bad, reasons.ROLLED_BACK)
            self._record_release(ctx, good, result=reasons.RELEASED)
            for entry in status.history:
                if entry.id == bad.revision:
                    entry.result = reasons.ROLLED_BACK
            self._hooks.emit("revert", namespace=ctx.namespace, name=ctx.name, uid=ctx.uid,
                             from_revision=bad.revision, to_revision=good.revision, reason=decision.message)
            return Outcome(stalled_reason=reasons.ROLLED_BACK,
                           stalled_message=f"revision {bad.revision} failed its health checks during the bake window "
                                           f"({decision.message}) and was reverted to {good.revision}; it stays "
                                           "quarantined until the spec names another revision or "
                                           "deploymind.io/retry is set")
        if action == rules.Action.RESTART:
            await health.restart(ctx)
            conds.set(ConditionType.HEALTHY, F, reasons.UNHEALTHY, f"{decision.message}; container restarted")
            return outcome
        if action == rules.Action.REPAIR and status.revision is not None:
            running = Desired(revision=status.revision.id, image=status.revision.image,
                              commit=status.revision.commit, digest=status.revision.digest)
            conds.set(ConditionType.HEALTHY, F, reasons.CONTAINER_MISSING, decision.message)
            async with self._leases.hold(ctx.host_key, ctx.uid):
                result = await release.release(ctx, running, purpose="repair", nonce=str(time.time_ns()))
            if result.ok:
                conds.set(ConditionType.HEALTHY, T, reasons.DRIFT_REPAIRED,
                          f"{decision.message}; released {running.revision} again")
                self._hooks.emit("drift_repaired", namespace=ctx.namespace, name=ctx.name, uid=ctx.uid,
                                 revision=running.revision)
            return outcome
        healthy = conds.get(ConditionType.HEALTHY)
        # A failing probe below the threshold does not make an unhealthy app Healthy again (Ready would flap and post
        # an Event pair per restart); only a passing probe does.
        if not (decision.healthy and decision.failures and healthy is not None and healthy.status == F):
            conds.set(ConditionType.HEALTHY, T if decision.healthy else F, decision.reason, decision.message)
        return Outcome(baking=rules.baking(status), stalled_reason=outcome.stalled_reason,
                       stalled_message=outcome.stalled_message)

    async def _write(self, status: DeploymentStatus, conds: Conditions, outcome: Outcome) -> None:
        healthy = conds.get(ConditionType.HEALTHY)
        if status.target is not None and healthy is not None:
            status.target.health = {T: "Healthy", F: "Unhealthy"}.get(healthy.status, "Unknown")
        status.phase = summarize(conds, outcome)
        status.conditions = conds.as_list()
        await self.writer.write(status)
        if status.phase is not None and status.phase != self._phase:  # also after a restart: metrics start empty
            self._phase = status.phase
            meta = self.writer.obj["metadata"]
            self._hooks.emit("phase", namespace=meta["namespace"], name=meta["name"], phase=str(status.phase))

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.close()


def _transport_outcome(e: TransportError, status: DeploymentStatus, before: Outcome | None = None) -> Outcome:
    """What a transport failure makes of the object: Stalled when only a person can help (a refused key, an unknown
    host key), else Waiting, keeping a stall `before` it already had (a quarantine does not end because the host is
    away)."""
    if e.needs_user:
        return Outcome(stalled_reason=e.reason, stalled_message=e.message)
    before = before or Outcome()
    return Outcome(waiting_reason=e.reason, waiting_message=e.message, baking=rules.baking(status),
                   stalled_reason=before.stalled_reason, stalled_message=before.stalled_message)


def _kept_on_host(status: DeploymentStatus, revision: str) -> bool:
    """The host has this revision's image: it runs it, or keeps it (pruning keeps the history and last good)."""
    if status.revision is not None and status.revision.id == revision:
        return True
    if status.last_good is not None and status.last_good.id == revision:
        return True
    return any(entry.id == revision for entry in status.history)
