"""What one health observation means: bake promotion, revert during the bake, restart after it, repair on drift."""

from __future__ import annotations

import datetime

from deploymind.api import reasons
from deploymind.api.spec import DeploymentSpec
from deploymind.api.status import DeploymentStatus, Revision, RevisionRef
from deploymind.controller.health import Action, Observation, decide

NOW = datetime.datetime(2026, 11, 26, 12, 0, 0, tzinfo=datetime.UTC)
OK = Observation(probe_ok=True, latency_ms=3.0, container_ok=True, detail="200")
FAIL = Observation(probe_ok=False, latency_ms=None, container_ok=True, detail="/health answered 404")
GONE = Observation(probe_ok=False, latency_ms=None, container_ok=False, detail="container dm-0123abcd is missing")


def spec(auto: bool = True, bake: int = 60, threshold: int = 3) -> DeploymentSpec:
    return DeploymentSpec.model_validate({
        "source": {"repo": "acme/app"}, "target": {"transport": "local"},
        "healthCheck": {"failureThreshold": threshold, "periodSeconds": 1, "timeoutSeconds": 1},
        "rollback": {"auto": auto, "bakeSeconds": bake}})


def status(baking_for: float | None, last_good: str | None = "old") -> DeploymentStatus:
    s = DeploymentStatus(revision=Revision(id="new", image="img:new"))
    if last_good:
        s.last_good = RevisionRef(id=last_good, image=f"img:{last_good}")
    if baking_for is not None:
        s.bake_started_at = (NOW - datetime.timedelta(seconds=baking_for)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return s


def test_passing_probes_through_the_bake_window_promote_the_revision() -> None:
    assert decide(OK, 0, spec(), status(baking_for=10), NOW).action == Action.NONE
    d = decide(OK, 0, spec(), status(baking_for=61), NOW)
    assert d.action == Action.PROMOTE and d.healthy


def test_failures_below_the_threshold_only_count() -> None:
    d = decide(FAIL, 0, spec(), status(baking_for=5), NOW)
    assert (d.action, d.failures) == (Action.NONE, 1)
    assert decide(OK, d.failures, spec(), status(baking_for=5), NOW).failures == 0


def test_threshold_failures_during_the_bake_revert() -> None:
    d = decide(FAIL, 2, spec(), status(baking_for=5), NOW)
    assert d.action == Action.REVERT and d.reason == reasons.ROLLED_BACK


def test_without_auto_rollback_or_a_last_good_revision_the_object_degrades() -> None:
    assert decide(FAIL, 2, spec(auto=False), status(baking_for=5), NOW).action == Action.DEGRADE
    assert decide(FAIL, 2, spec(), status(baking_for=5, last_good=None), NOW).action == Action.DEGRADE


def test_failures_after_the_bake_restart_and_never_revert() -> None:
    d = decide(FAIL, 2, spec(), status(baking_for=None, last_good="new"), NOW)
    assert d.action == Action.RESTART and d.reason == reasons.UNHEALTHY


def test_a_missing_container_is_repaired_not_counted() -> None:
    d = decide(GONE, 1, spec(), status(baking_for=5), NOW)
    assert (d.action, d.failures) == (Action.REPAIR, 1)
