"""Turn the controller's hook events into history records and metric updates: one listener, plugged into Hooks.

    hooks.listeners.append(HistoryListener(recorder, METRICS))

Events and the fields it reads (anything else is ignored; a missing field gets a neutral default):
  rollout_started   namespace, name, uid, trigger, revision, generation [, trigger_detail, commit, image, digest,
                    env_names, env_hash, strategy]
  rollout_finished  namespace, name, uid, revision, result, reason, seconds [, message, strategy]
  step              uid, step, status, reason, seconds [, message]     (joined to the uid's open attempt; see below)
  candidate_logs    uid, revision, lines   (a refused release's last log lines, scrubbed on the host; joined to the
                    uid's open attempt when that releases this revision)
  reconcile_finished  stalled, waiting, seconds [, error]
  phase             namespace, name, phase      (the object's status.phase, when it changes)
  health            namespace, name, uid, ok, latency_ms, stats (.cpu_percent, .memory_bytes) [, revision,
                    unreachable]
  revert            namespace, name, uid, from_revision, to_revision, reason
  transport_call    transport [, error_reason]
  webhook           result
  forget            namespace, name [, uid]
  cleanup           namespace, name, uid, result, message, seconds   (what a delete did on the host)
It keeps each uid's latest attempt: a finished rollout replaces the row its start wrote, and a later revert
points at the attempt that released the reverted revision. The source step runs before the plan knows whether
anything is to be released, so a step seen while no attempt of its uid is open is held until the uid's next event:
a `rollout_started` takes it into the new attempt; any other event writes it on its own (a reconcile, revert or
repair that released nothing new), so it never lands in an attempt that had already finished.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from deploymind.api.enums import (
    PROBE_FAILED,
    PROBE_PASSED,
    PROBE_UNREACHABLE,
    RECONCILE_ERROR,
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
from deploymind.metrics import Metrics


def _str(fields: Mapping[str, object], key: str, default: str = "") -> str:
    value = fields.get(key)
    return default if value is None else str(value)


def _float(fields: Mapping[str, object], key: str) -> float | None:
    value = fields.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class HistoryListener:
    """A Hooks listener: `listener(event, fields)`; never raises (Hooks also guards it)."""

    def __init__(self, recorder: HistoryRecorder, metrics: Metrics) -> None:
        self._recorder = recorder
        self._metrics = metrics
        self._latest: dict[str, RolloutAttempt] = {}
        self._uids: dict[tuple[str, str], str] = {}
        self._held: dict[str, StepTransition] = {}

    def __call__(self, event: str, fields: dict[str, object]) -> None:
        if event != "rollout_started" and (held := self._held.pop(_str(fields, "uid"), None)) is not None:
            self._recorder.record(held)  # no attempt started after it: it stands alone
        handler = getattr(self, f"_on_{event}", None)
        if handler is not None:
            handler(fields)

    def _on_rollout_started(self, f: dict[str, object]) -> None:
        uid, namespace, name = _str(f, "uid"), _str(f, "namespace"), _str(f, "name")
        self._uids[(namespace, name)] = uid
        names = f.get("env_names")
        generation = f.get("generation")
        attempt = RolloutAttempt(
            uid=uid,
            namespace=namespace,
            name=name,
            generation=generation if isinstance(generation, int) else 0,
            revision=_str(f, "revision"),
            trigger=_str(f, "trigger"),
            trigger_detail=_str(f, "trigger_detail"),
            commit=_str(f, "commit"),
            image=_str(f, "image"),
            digest=_str(f, "digest"),
            env_names=tuple(str(n) for n in names) if isinstance(names, list | tuple) else (),
            env_hash=_str(f, "env_hash"),
            strategy=_str(f, "strategy", "Recreate"),
        )
        self._latest[uid] = attempt
        self._recorder.record(attempt)
        held = self._held.pop(uid, None)
        if held is not None:
            self._recorder.record(dataclasses.replace(held, attempt_id=attempt.id))

    def _on_rollout_finished(self, f: dict[str, object]) -> None:
        uid, seconds = _str(f, "uid"), _float(f, "seconds") or 0.0
        attempt = self._latest.get(uid)
        if attempt is None or attempt.result is not None:
            # the start was never seen (operator restarted mid-rollout): record what is known
            attempt = RolloutAttempt(
                uid=uid,
                namespace=_str(f, "namespace"),
                name=_str(f, "name"),
                generation=0,
                revision=_str(f, "revision"),
                trigger="",
                started_at=utcnow() - timedelta(seconds=seconds),
            )
        result = _str(f, "result")
        finished = self._latest[uid] = attempt.finish(result, _str(f, "reason"), _str(f, "message"))
        self._recorder.record(finished)
        self._metrics.rollout_finished(result, _str(f, "strategy", attempt.strategy), seconds)

    def _on_step(self, f: dict[str, object]) -> None:
        uid = _str(f, "uid")
        attempt = self._open_attempt(uid)
        finished = utcnow()
        step = StepTransition(
            attempt_id=attempt.id if attempt is not None else "",
            uid=uid,
            step=_str(f, "step"),
            status=_str(f, "status"),
            reason=_str(f, "reason"),
            message=_str(f, "message"),
            started_at=finished - timedelta(seconds=_float(f, "seconds") or 0.0),
            finished_at=finished,
        )
        if attempt is None:
            self._held[uid] = step
        else:
            self._recorder.record(step)

    def _open_attempt(self, uid: str) -> RolloutAttempt | None:
        attempt = self._latest.get(uid)
        return attempt if attempt is not None and attempt.result is None else None

    def _on_candidate_logs(self, f: dict[str, object]) -> None:
        uid, revision, lines = _str(f, "uid"), _str(f, "revision"), f.get("lines")
        if not isinstance(lines, list | tuple) or not lines:
            return
        attempt = self._open_attempt(uid)
        self._recorder.record(
            CandidateLogs(
                uid=uid,
                revision=revision,
                lines=tuple(str(line) for line in lines),
                # a revert or repair releases without an attempt of its own: then the lines stand by revision alone
                attempt_id=attempt.id if attempt is not None and attempt.revision == revision else "",
            )
        )

    def _on_reconcile_finished(self, f: dict[str, object]) -> None:
        if f.get("error"):
            result = RECONCILE_ERROR
        elif f.get("stalled"):
            result = RECONCILE_STALLED
        elif f.get("waiting"):
            result = RECONCILE_WAITING
        else:
            result = RECONCILE_SUCCEEDED
        self._metrics.reconcile_finished(result, _float(f, "seconds") or 0.0)

    def _on_phase(self, f: dict[str, object]) -> None:
        self._metrics.set_phase(_str(f, "namespace"), _str(f, "name"), _str(f, "phase"))

    def _on_health(self, f: dict[str, object]) -> None:
        uid, namespace, name = _str(f, "uid"), _str(f, "namespace"), _str(f, "name")
        self._uids[(namespace, name)] = uid
        if f.get("unreachable"):
            self._metrics.health_check(namespace, name, PROBE_UNREACHABLE)
            return
        ok = f.get("ok") is True
        latency_ms = _float(f, "latency_ms")
        latency = None if latency_ms is None else latency_ms / 1000.0
        stats: Any = f.get("stats")
        cpu_percent = getattr(stats, "cpu_percent", None)
        memory = getattr(stats, "memory_bytes", None)
        cpu_ratio = cpu_percent / 100.0 if isinstance(cpu_percent, int | float) else None
        memory_bytes = memory if isinstance(memory, int) else None
        self._metrics.health_check(namespace, name, PROBE_PASSED if ok else PROBE_FAILED, latency if ok else None)
        if cpu_ratio is not None and memory_bytes is not None:
            self._metrics.container_stats(namespace, name, cpu_ratio, memory_bytes)
        self._recorder.probe(uid, namespace, name, ok=ok, latency_seconds=latency, cpu_ratio=cpu_ratio,
                             memory_bytes=memory_bytes, revision=_str(f, "revision"))

    def _on_revert(self, f: dict[str, object]) -> None:
        namespace, name = _str(f, "namespace"), _str(f, "name")
        attempt = self._latest.get(_str(f, "uid"))
        self._recorder.record(
            Revert(
                uid=_str(f, "uid"),
                namespace=namespace,
                name=name,
                from_revision=_str(f, "from_revision"),
                to_revision=_str(f, "to_revision"),
                reason=RESULT_ROLLED_BACK,
                message=_str(f, "reason"),
                attempt_id=attempt.id if attempt is not None else "",
            )
        )
        self._metrics.revert(namespace, name)

    def _on_cleanup(self, f: dict[str, object]) -> None:
        self._recorder.record(Cleanup(uid=_str(f, "uid"), namespace=_str(f, "namespace"), name=_str(f, "name"),
                                      result=_str(f, "result"), message=_str(f, "message"),
                                      duration_seconds=_float(f, "seconds")))

    def _on_transport_call(self, f: dict[str, object]) -> None:
        error = f.get("error_reason")
        self._metrics.transport_call(_str(f, "transport"), None if error is None else str(error))

    def _on_webhook(self, f: dict[str, object]) -> None:
        self._metrics.webhook_request(_str(f, "result"))

    def _on_forget(self, f: dict[str, object]) -> None:
        namespace, name = _str(f, "namespace"), _str(f, "name")
        uid = _str(f, "uid") or self._uids.pop((namespace, name), "")
        self._metrics.forget(namespace, name)
        if uid:
            self._latest.pop(uid, None)
            self._held.pop(uid, None)
            self._recorder.forget(uid)
