"""Turn the controller's hook events into history records and metric updates: one listener, plugged into Hooks.

    hooks.listeners.append(HistoryListener(recorder, METRICS))

It takes every deploymind.hook_events type, matched by type (mypy checks that none is left out).
It keeps each uid's latest attempt: a finished rollout replaces the row its start wrote, and a later revert
points at the attempt that released the reverted revision. The source step runs before the plan knows whether
anything is to be released, so a step seen while no attempt of its uid is open is held until the uid's next event:
a RolloutStarted takes it into the new attempt; any other event writes it on its own (a reconcile, revert or
repair that released nothing new), so it never lands in an attempt that had already finished.
"""


from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import assert_never

from deploymind.api.enums import (
    PROBE_FAILED,
    PROBE_PASSED,
    PROBE_UNREACHABLE,
    RECONCILE_STALLED,
    RECONCILE_SUCCEEDED,
    RECONCILE_WAITING,
    RESULT_ROLLED_BACK,
)
from deploymind.history.recorder import HistoryRecorder
from deploymind.history.records import (
    CandidateLogs,
    Cleanup,
    Revert,
    RolloutAttempt,
    StepTransition,
    utcnow,
)
from deploymind.hook_events import (
    CandidateLogsCaptured,
    CleanupFinished,
    DriftRepaired,
    HealthProbed,
    HookEvent,
    HostUnreachable,
    ObjectForgotten,
    PhaseChanged,
    ReconcileFinished,
    Reverted,
    RolloutFinished,
    RolloutStarted,
    StepFinished,
    TransportCalled,
    WebhookHandled,
)
from deploymind.metrics import Metrics

# The events of one object's reconciles that write a held step on its own (RolloutStarted takes it instead).
_CLOSE_HELD_STEP = (RolloutFinished, StepFinished, CandidateLogsCaptured, ReconcileFinished, HealthProbed,
                    HostUnreachable, Reverted, DriftRepaired, CleanupFinished)


class HistoryListener:
    """A Hooks listener: `listener(event)`; never raises (Hooks also guards it)."""

    def __init__(self, recorder: HistoryRecorder, metrics: Metrics) -> None:
        self._recorder = recorder
        self._metrics = metrics
        self._latest: dict[str, RolloutAttempt] = {}
        self._uids: dict[tuple[str, str], str] = {}
        self._held: dict[str, StepTransition] = {}

    def __call__(self, event: HookEvent) -> None:
        if isinstance(event, _CLOSE_HELD_STEP) and (held := self._held.pop(event.uid, None)) is not None:
            self._recorder.record(held)  # no attempt started after it: it stands alone
        match event:
            case RolloutStarted():
                self._rollout_started(event)
            case RolloutFinished():
                self._rollout_finished(event)
            case StepFinished():
                self._step(event)
            case CandidateLogsCaptured():
                self._candidate_logs(event)
            case ReconcileFinished():
                self._reconcile_finished(event)
            case PhaseChanged():
                self._metrics.set_phase(event.namespace, event.name, str(event.phase))
            case HealthProbed():
                self._health(event)
            case HostUnreachable():
                self._uids[(event.namespace, event.name)] = event.uid
                self._metrics.health_check(event.namespace, event.name, PROBE_UNREACHABLE)
            case Reverted():
                self._reverted(event)
            case DriftRepaired():
                pass  # the repair shows in the step it released; the event only closes a held step (above)
            case CleanupFinished():
                self._recorder.record(Cleanup(uid=event.uid, namespace=event.namespace, name=event.name,
                                              result=event.result, message=event.message,
                                              duration_seconds=event.seconds))
            case TransportCalled():
                self._metrics.transport_call(event.transport, event.error_reason)
            case WebhookHandled():
                self._metrics.webhook_request(event.result)
            case ObjectForgotten():
                self._forget(event)
            case _:
                assert_never(event)

    def _rollout_started(self, e: RolloutStarted) -> None:
        self._uids[(e.namespace, e.name)] = e.uid
        attempt = RolloutAttempt(
            uid=e.uid,
            namespace=e.namespace,
            name=e.name,
            generation=e.generation,
            revision=e.revision,
            trigger=e.trigger,
            trigger_detail=e.trigger_detail,
            commit=e.commit,
            image=e.image,
            digest=e.digest,
            env_names=e.env_names,
            env_hash=e.env_hash,
            strategy=str(e.strategy),
        )
        self._latest[e.uid] = attempt
        self._recorder.record(attempt)
        held = self._held.pop(e.uid, None)
        if held is not None:
            self._recorder.record(dataclasses.replace(held, attempt_id=attempt.id))

    def _rollout_finished(self, e: RolloutFinished) -> None:
        attempt = self._latest.get(e.uid)
        if attempt is None or attempt.result is not None:
            # the start was never seen (operator restarted mid-rollout): record what is known
            attempt = RolloutAttempt(
                uid=e.uid,
                namespace=e.namespace,
                name=e.name,
                generation=0,
                revision=e.revision,
                trigger="",
                started_at=utcnow() - timedelta(seconds=e.seconds),
            )
        finished = self._latest[e.uid] = attempt.finish(e.result, e.reason)
        self._recorder.record(finished)
        self._metrics.rollout_finished(e.result, attempt.strategy, e.seconds)

    def _step(self, e: StepFinished) -> None:
        attempt = self._open_attempt(e.uid)
        finished = utcnow()
        step = StepTransition(
            attempt_id=attempt.id if attempt is not None else "",
            uid=e.uid,
            step=e.step,
            status=e.status,
            reason=e.reason,
            message=e.message,
            started_at=finished - timedelta(seconds=e.seconds),
            finished_at=finished,
        )
        if attempt is None:
            self._held[e.uid] = step
        else:
            self._recorder.record(step)

    def _open_attempt(self, uid: str) -> RolloutAttempt | None:
        attempt = self._latest.get(uid)
        return attempt if attempt is not None and attempt.result is None else None

    def _candidate_logs(self, e: CandidateLogsCaptured) -> None:
        if not e.lines:
            return
        attempt = self._open_attempt(e.uid)
        self._recorder.record(
            CandidateLogs(
                uid=e.uid,
                revision=e.revision,
                lines=e.lines,
                # a revert or repair releases without an attempt of its own: then the lines stand by revision alone
                attempt_id=attempt.id if attempt is not None and attempt.revision == e.revision else "",
            )
        )

    def _reconcile_finished(self, e: ReconcileFinished) -> None:
        result = RECONCILE_STALLED if e.stalled else RECONCILE_WAITING if e.waiting else RECONCILE_SUCCEEDED
        self._metrics.reconcile_finished(result, e.seconds)

    def _health(self, e: HealthProbed) -> None:
        self._uids[(e.namespace, e.name)] = e.uid
        latency = None if e.latency_ms is None else e.latency_ms / 1000.0
        cpu_ratio = None if e.cpu_percent is None else e.cpu_percent / 100.0
        self._metrics.health_check(e.namespace, e.name, PROBE_PASSED if e.ok else PROBE_FAILED,
                                   latency if e.ok else None)
        if cpu_ratio is not None and e.memory_bytes is not None:
            self._metrics.container_stats(e.namespace, e.name, cpu_ratio, e.memory_bytes)
        self._recorder.probe(e.uid, e.namespace, e.name, ok=e.ok, latency_seconds=latency, cpu_ratio=cpu_ratio,
                             memory_bytes=e.memory_bytes, revision=e.revision)

    def _reverted(self, e: Reverted) -> None:
        attempt = self._latest.get(e.uid)
        self._recorder.record(
            Revert(
                uid=e.uid,
                namespace=e.namespace,
                name=e.name,
                from_revision=e.from_revision,
                to_revision=e.to_revision,
                reason=RESULT_ROLLED_BACK,
                message=e.message,
                attempt_id=attempt.id if attempt is not None else "",
            )
        )
        self._metrics.revert(e.namespace, e.name)

    def _forget(self, e: ObjectForgotten) -> None:
        uid = self._uids.pop((e.namespace, e.name), "")
        self._metrics.forget(e.namespace, e.name)
        if uid:
            self._latest.pop(uid, None)
            self._held.pop(uid, None)
            self._recorder.forget(uid)
