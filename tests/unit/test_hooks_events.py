"""The controller's edges tell the hooks what history and metrics need: round trips, step outcomes, phases."""

from __future__ import annotations

import pytest

from deploymind.api.enums import StepStatus
from deploymind.api.status import Phase
from deploymind.controller.hooks import Hooks, ReportingTransport, StepReporter
from deploymind.history.listener import HistoryListener
from deploymind.history.recorder import HistoryRecorder
from deploymind.history.store import HistoryStore
from deploymind.hook_events import HookEvent, PhaseChanged, StepFinished, TransportCalled
from deploymind.metrics import Metrics
from deploymind.transport.base import TransportError
from deploymind.transport.local import LocalTransport


def recording_hooks() -> tuple[Hooks, list[HookEvent]]:
    events: list[HookEvent] = []
    return Hooks(listeners=[events.append]), events


async def test_every_round_trip_is_told_with_the_reason_of_a_failed_one() -> None:
    hooks, events = recording_hooks()
    transport = ReportingTransport(LocalTransport(), hooks)

    result = await transport.run("echo ok")
    with pytest.raises(TransportError) as failed:
        await transport.run("sleep 5", timeout=0.2)

    assert result.text() == "ok\n" and transport.calls == 2 and transport.name == "local"
    assert events == [TransportCalled(transport="local"),
                      TransportCalled(transport="local", error_reason=failed.value.reason)]
    assert failed.value.reason == "TransportTimeout"


@pytest.mark.parametrize(("outcome", "status"), [("Built", "Succeeded"), ("Present", "Skipped"),
                                                 ("Released", "Succeeded"), ("Unchanged", "Skipped"),
                                                 ("CandidateUnhealthy", "Failed"), ("DiskFull", "Failed")])
def test_a_steps_host_outcome_becomes_a_step_status_with_the_outcome_as_reason(outcome: str,
                                                                              status: StepStatus) -> None:
    hooks, events = recording_hooks()

    StepReporter(hooks, "uid-1").step("release", outcome, "what the host said", 2.5)

    assert events == [StepFinished(uid="uid-1", step="release", status=status, reason=outcome,
                                   message="what the host said", seconds=2.5)]


def test_a_phase_event_sets_the_objects_phase_gauge() -> None:
    metrics = Metrics()
    listener = HistoryListener(HistoryRecorder(HistoryStore("sqlite://"), metrics), metrics)

    listener(PhaseChanged(namespace="shop", name="web", phase=Phase.BAKING))
    listener(PhaseChanged(namespace="shop", name="web", phase=Phase.ROLLED_BACK))

    value = metrics.registry.get_sample_value
    assert value("deploymind_phase", {"namespace": "shop", "name": "web", "phase": "RolledBack"}) == 1
    assert value("deploymind_phase", {"namespace": "shop", "name": "web", "phase": "Baking"}) == 0
