"""The controller's hook events become history rows and metric updates through one listener."""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from deploymind.history.listener import HistoryListener
from deploymind.history.recorder import HistoryRecorder
from deploymind.history.store import HistoryStore
from deploymind.hook_events import (
    CandidateLogsCaptured,
    HealthProbed,
    HostUnreachable,
    ObjectForgotten,
    ReconcileFinished,
    Reverted,
    RolloutFinished,
    RolloutStarted,
    StepFinished,
    TransportCalled,
    WebhookHandled,
)
from deploymind.metrics import Metrics


class Object(TypedDict):
    namespace: str
    name: str
    uid: str


OBJ: Object = {"namespace": "shop", "name": "web", "uid": "uid-web"}


async def test_a_rollout_and_a_revert_told_through_hooks_leave_rows_and_metrics(tmp_path: Path) -> None:
    metrics = Metrics()
    recorder = HistoryRecorder(HistoryStore(f"sqlite:///{tmp_path}/h.sqlite3"), metrics)
    recorder.start()
    listen = HistoryListener(recorder, metrics)
    revision = "aaaaaaaaaaaa-11111111"

    listen(RolloutStarted(**OBJ, trigger="Webhook", revision=revision, generation=4))
    listen(StepFinished(uid="uid-web", step="build", status="Succeeded", reason="Built", seconds=2.5))
    listen(RolloutFinished(**OBJ, revision=revision, result="Succeeded", reason="Released", seconds=12.0))
    listen(ReconcileFinished(**OBJ, trigger="Webhook", stalled=None, waiting=None, seconds=12.5))
    listen(HealthProbed(**OBJ, ok=True, latency_ms=8.0, revision=revision, cpu_percent=12.5, memory_bytes=4096))
    listen(HealthProbed(**OBJ, ok=False, latency_ms=None, revision=revision))
    listen(Reverted(**OBJ, from_revision=revision, to_revision="bbbbbbbbbbbb-22222222",
                    message="3 consecutive failures"))
    listen(TransportCalled(transport="ssh", error_reason="TargetUnreachable"))
    listen(ObjectForgotten(namespace="shop", name="web"))
    assert await recorder.wait_flushed(within=10)
    await recorder.stop()

    history = recorder.store.history("shop", "web")
    assert history is not None
    [entry] = history.rollouts
    assert (entry.attempt.trigger, entry.attempt.generation, entry.attempt.result) == ("Webhook", 4, "Succeeded")
    assert [(s.step, s.status, s.duration_seconds) for s in entry.steps] == [("build", "Succeeded", 2.5)]
    [revert] = history.reverts
    assert (revert.reason, revert.message, revert.attempt_id) == ("RolledBack", "3 consecutive failures", entry.attempt.id)
    [window] = recorder.store.health_windows("uid-web")
    assert (window.probes_ok, window.probes_failed, window.cpu_ratio, window.memory_bytes) == (1, 1, 0.125, 4096)
    sample = metrics.registry.get_sample_value
    assert sample("deploymind_rollouts_total", {"result": "Succeeded"}) == 1
    assert sample("deploymind_reconcile_total", {"result": "Succeeded"}) == 1
    assert sample("deploymind_transport_errors_total", {"transport": "ssh", "reason": "TargetUnreachable"}) == 1
    assert sample("deploymind_reverts_total", {"namespace": "shop", "name": "web"}) is None  # forgotten on delete


async def test_a_refused_releases_log_lines_are_kept_with_the_attempt_that_released_that_revision(
    tmp_path: Path,
) -> None:
    metrics = Metrics()
    recorder = HistoryRecorder(HistoryStore(f"sqlite:///{tmp_path}/h.sqlite3"), metrics)
    recorder.start()
    listen = HistoryListener(recorder, metrics)
    bad, good = "badbadbadbad-11111111", "goodgoodgood-22222222"

    listen(RolloutStarted(**OBJ, trigger="SpecChange", revision=bad, generation=2))
    listen(CandidateLogsCaptured(uid="uid-web", revision=bad, lines=("booting", "panic: no DATABASE_URL")))
    listen(RolloutFinished(**OBJ, revision=bad, result="Failed", reason="RevisionQuarantined", seconds=16.0))
    # a revert releases without an attempt of its own: its lines stand by revision alone
    listen(CandidateLogsCaptured(uid="uid-web", revision=good, lines=("disk full",)))
    listen(CandidateLogsCaptured(uid="uid-web", revision=good, lines=()))
    assert await recorder.wait_flushed(within=10)
    await recorder.stop()

    refused = recorder.store.revision_history("shop", "web", bad)
    assert refused is not None
    [attempt] = refused.rollouts
    [logs] = refused.logs
    assert (logs.lines, logs.attempt_id) == (("booting", "panic: no DATABASE_URL"), attempt.attempt.id)
    reverted_to = recorder.store.revision_history("shop", "web", good)
    assert reverted_to is not None
    assert [(entry.lines, entry.attempt_id) for entry in reverted_to.logs] == [(("disk full",), "")]


async def test_the_source_step_joins_the_attempt_that_starts_after_it_and_never_a_finished_one(tmp_path: Path) -> None:
    metrics = Metrics()
    recorder = HistoryRecorder(HistoryStore(f"sqlite:///{tmp_path}/h.sqlite3"), metrics)
    recorder.start()
    listen = HistoryListener(recorder, metrics)
    source = StepFinished(uid="uid-web", step="source", status="Succeeded", reason="Resolved", seconds=0.5)

    listen(source)  # the source step runs before the plan starts an attempt
    listen(RolloutStarted(**OBJ, trigger="SpecChange", revision="r1", generation=1))
    listen(StepFinished(uid="uid-web", step="release", status="Succeeded", reason="Released", seconds=0.01))
    listen(RolloutFinished(**OBJ, revision="r1", result="Succeeded", reason="Released", seconds=0.6))
    listen(ReconcileFinished(**OBJ, trigger="SpecChange", stalled=None, waiting=None, seconds=3.1))
    listen(source)  # a later reconcile that finds nothing to release
    listen(ReconcileFinished(**OBJ, trigger="Resume", stalled=None, waiting=None, seconds=0.6))
    assert await recorder.wait_flushed(within=10)
    await recorder.stop()

    history = recorder.store.history("shop", "web")
    assert history is not None
    [entry] = history.rollouts
    assert [step.step for step in entry.steps] == ["source", "release"]
    assert recorder.store.row_counts()["history_steps"] == 3  # the later source step stands alone


def test_reconciles_and_unreachable_hosts_are_counted_by_result_and_webhook_requests_by_theirs() -> None:
    metrics = Metrics()
    listen = HistoryListener(HistoryRecorder(HistoryStore("sqlite://"), metrics), metrics)

    listen(ReconcileFinished(**OBJ, trigger="SpecChange", stalled="InvalidSpec", waiting=None, seconds=0.1))
    listen(ReconcileFinished(**OBJ, trigger="SpecChange", stalled=None, waiting="TargetUnreachable", seconds=0.1))
    listen(HostUnreachable(**OBJ))
    listen(WebhookHandled(result="Accepted"))

    sample = metrics.registry.get_sample_value
    assert sample("deploymind_reconcile_total", {"result": "Stalled"}) == 1
    assert sample("deploymind_reconcile_total", {"result": "Waiting"}) == 1
    assert sample("deploymind_health_checks_total", {"namespace": "shop", "name": "web", "result": "Unreachable"}) == 1
    assert sample("deploymind_health_checks_total", {"namespace": "shop", "name": "web", "result": "Failed"}) is None
    assert sample("deploymind_webhook_requests_total", {"result": "Accepted"}) == 1
