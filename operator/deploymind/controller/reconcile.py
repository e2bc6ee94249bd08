"""The reconcile of one Deployment: the rollout's steps (controller.rollout), their typed errors, and the summary
written once at the end; the health tick (controller.tick) between rollouts.

Each step owns one condition; Ready, Reconciling, Stalled and phase are derived once, by `summarize`, and the one
StatusWriter sends them only when they changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from deploymind.api import lenient, reasons
from deploymind.api.conditions import Conditions, Outcome
from deploymind.api.spec import DeploymentSpec
from deploymind.api.status import DeploymentStatus
from deploymind.controller import health_rules as rules
from deploymind.controller import revert, rollout
from deploymind.controller.hooks import Hooks
from deploymind.controller.kube import Kube
from deploymind.controller.objectstate import ObjectState
from deploymind.controller.payload_sweep import PayloadSweep
from deploymind.controller.plan import REQUESTED_AT
from deploymind.controller.status_writer import StatusUnreadable
from deploymind.controller.targets import resolve_inputs
from deploymind.controller.tick import tick, transport_outcome
from deploymind.hook_events import ReconcileFinished
from deploymind.settings import Settings
from deploymind.steps.errors import Stalled, Superseded, Waiting
from deploymind.transport.base import TransportError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RolloutResult:
    retry: bool = False
    retry_delay: float | None = None


class Runner:
    """Per-object state that outlives one reconcile (controller.objectstate), and the two things done with it."""

    def __init__(self, kube: Kube, settings: Settings, hooks: Hooks, obj: dict[str, Any], *,
                 revision_key: bytes) -> None:
        self.state = ObjectState(kube, settings, hooks, obj, revision_key=revision_key)
        self.first = True
        self._unreadable_reported = False
        self._sweep = PayloadSweep(kube, settings)

    @property
    def spec(self) -> DeploymentSpec | None:
        return self.state.spec

    @property
    def unreachable(self) -> bool:
        """The last round trip to the host failed in the transport (the host is down, or its sshd/agent is)."""
        return self.state.unreachable > 0

    def tick_delay(self) -> float:
        return self.state.tick_delay()

    def refresh(self, obj: dict[str, Any]) -> None:
        self.state.writer.refresh(obj)

    async def reconcile(self, obj: dict[str, Any], trigger: str,
                        checkpoint: Callable[[], Awaitable[None]]) -> RolloutResult:
        self.first = False
        state = self.state
        meta = obj["metadata"]
        state.writer.refresh(obj)
        try:
            status = state.writer.current()
        except StatusUnreadable as e:
            await self._report_unreadable(e)
            return RolloutResult(retry=True, retry_delay=state.settings.backoff_max_seconds)
        if trigger == "Resume" and status.observed_generation is None:
            # Never observed: a new object, whose create handler may have run before its actor existed.
            trigger = "SpecChange"
        conds = Conditions(status.conditions, meta.get("generation", 1))
        annotations = dict(meta.get("annotations") or {})
        token = annotations.get(REQUESTED_AT)
        started = time.monotonic()
        result = RolloutResult()
        try:
            spec = self._parse(obj)
            if spec.suspend:
                await self._watch_only(obj, spec, status, conds)
                outcome = Outcome(suspended=True)
            else:
                outcome = await self._rollout(obj, spec, status, conds, annotations, trigger,
                                              token if token and token != status.last_handled_reconcile_at else None,
                                              checkpoint)
        except Superseded:
            raise
        except Stalled as e:
            outcome = Outcome(stalled_reason=e.reason, stalled_message=e.message)
        except Waiting as e:
            outcome = Outcome(waiting_reason=e.reason, waiting_message=e.message, baking=rules.baking(status),
                              retrying=True)
            result = RolloutResult(retry=True, retry_delay=e.delay)
        except TransportError as e:
            state.unreachable += 1
            outcome = transport_outcome(e, status, Outcome(retrying=True))
            if e.reason == reasons.INSTANCE_NOT_RUNNING:
                # Stopped mid-call: the retry's target lookup asks EC2, not the host, and waits with its backoff.
                result = RolloutResult(retry=True)
            elif not e.needs_user:
                # The host is away: the retry waits as long as the next health tick would (one backoff per host).
                result = RolloutResult(retry=True, retry_delay=state.tick_delay())
        else:
            if state.has_transport:
                state.unreachable = 0
                # Once after the operator starts (what a killed call left in AWS), off the steady path, and only
                # for a target the rollout reached: a refused target costs no AWS call.
                await self._sweep.run_if_due(obj, spec)
        state.outcome = outcome
        log.info("%s/%s: reconciled (%s): %s", meta["namespace"], meta["name"], trigger,
                 outcome.stalled_reason or outcome.waiting_reason or "ok")
        status.observed_generation = meta.get("generation")
        await state.write(status, conds, outcome)
        state.hooks.emit(ReconcileFinished(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"],
                                           trigger=trigger, stalled=outcome.stalled_reason,
                                           waiting=outcome.waiting_reason, seconds=time.monotonic() - started))
        return result

    async def tick(self, obj: dict[str, Any]) -> None:
        if self.state.spec is not None and self.state.has_transport:
            await self._sweep.run_if_due(obj, self.state.spec)  # a retry, when the last sweep failed
        try:
            await tick(self.state, obj)
        except StatusUnreadable as e:
            await self._report_unreadable(e)

    def _parse(self, obj: dict[str, Any]) -> DeploymentSpec:
        try:
            # Fields this version does not know are ignored here (strict only in `validate` and the CRD).
            spec = lenient.read(DeploymentSpec, obj.get("spec") or {})
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise Stalled(reasons.INVALID_SPEC, f"spec.{where}: {first['msg']}") from None
        self.state.spec = spec
        return spec

    async def _watch_only(self, obj: dict[str, Any], spec: DeploymentSpec, status: DeploymentStatus,
                          conds: Conditions) -> None:
        """Suspended: nothing rolls out, but the health ticks need the transport, after a restart too."""
        if status.revision is None:
            return
        try:
            self.state.inputs = await resolve_inputs(self.state.kube, obj["metadata"]["namespace"], spec,
                                                     self.state.settings)
            await self.state.context(obj, spec, status, conds, self.state.inputs)
        except (Stalled, Waiting) as e:
            log.info("%s/%s: suspended and not probed: %s", obj["metadata"]["namespace"], obj["metadata"]["name"],
                     e.message)

    async def _rollout(self, obj: dict[str, Any], spec: DeploymentSpec, status: DeploymentStatus, conds: Conditions,
                       annotations: dict[str, str], trigger: str, redeploy_token: str | None,
                       checkpoint: Callable[[], Awaitable[None]]) -> Outcome:
        state = self.state
        retrying = state.outcome.retrying

        async def progress() -> None:
            # During a retry the summary keeps the reason it waits for: no condition flips per attempt.
            await state.write(status, conds, Outcome(in_progress=True, retrying=retrying,
                                                     waiting_reason=state.outcome.waiting_reason if retrying else None,
                                                     waiting_message=state.outcome.waiting_message))
            await checkpoint()

        r = rollout.Rollout(state=state, obj=obj, spec=spec, status=status, conds=conds, annotations=annotations,
                            trigger=trigger, redeploy_token=redeploy_token, progress=progress)
        if status.revert is not None and revert.due(status.revert):
            # A revert written down before a crash or a dropped connection is finished first.
            await rollout.inputs_step(r)
            await revert.finish(state, r.step_context)
        await rollout.run(r)
        return Outcome(baking=rules.baking(status))

    async def _report_unreadable(self, e: StatusUnreadable) -> None:
        log.error("%s", e.message)
        if self._unreadable_reported:
            return
        self._unreadable_reported = True
        obj = self.state.writer.obj
        try:
            await self.state.kube.post_event(obj, "Warning", e.reason, e.message)
        except Exception:  # an Event is informative; the log line above says it too
            log.warning("could not post the %s Event", e.reason, exc_info=True)

    async def close(self) -> None:
        await self.state.close()
