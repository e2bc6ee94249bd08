"""What one health observation means: bake promotion, revert during the bake, restart after it, repair on drift."""

from __future__ import annotations

from deploymind.api import reasons
from deploymind.api.spec import DeploymentSpec
from deploymind.api.status import DeploymentStatus, FailedRevision, HistoryEntry, Revision, RevisionRef
from deploymind.controller.health_rules import Action, Observation, decide

OK = Observation(probe_ok=True, latency_ms=3.0, container_ok=True, detail="200")
FAIL = Observation(probe_ok=False, latency_ms=None, container_ok=True, detail="/health answered 404")
GONE = Observation(probe_ok=False, latency_ms=None, container_ok=False, detail="container dm-0123abcd is missing")


def spec(auto: bool = True, bake: int = 60, threshold: int = 3) -> DeploymentSpec:
    return DeploymentSpec.model_validate({
        "source": {"repo": "acme/app"}, "target": {"transport": "local"},
        "healthCheck": {"failureThreshold": threshold, "periodSeconds": 1, "timeoutSeconds": 1},
        "rollback": {"auto": auto, "bakeSeconds": bake}})


def status(baking_for: float | None, last_good: str | None = "old",
           earlier: list[HistoryEntry] | None = None) -> tuple[DeploymentStatus, float]:
    """A status with revision `new` running; `baking_for` is the bake time observed so far (None: not baking)."""
    s = DeploymentStatus(revision=Revision(id="new", image="img:new"))
    s.history = [HistoryEntry(id="new", image="img:new", deployed_at="2026-11-26T11:00:00Z", result="Released"),
                 *(earlier or [])]
    if last_good:
        s.last_good = RevisionRef(id=last_good, image=f"img:{last_good}")
    if baking_for is not None:
        s.bake_started_at = "2026-11-26T11:00:00Z"
    return s, baking_for or 0.0


def earlier(rid: str, passed: bool = True) -> HistoryEntry:
    return HistoryEntry(id=rid, image=f"img:{rid}", deployed_at="2026-11-26T10:00:00Z", result="Released",
                        passed_every_probe=passed)


def test_passing_probes_through_the_bake_window_promote_the_revision() -> None:
    assert decide(OK, 0, spec(), *status(baking_for=10)).action == Action.NONE
    d = decide(OK, 0, spec(), *status(baking_for=61))
    assert d.action == Action.PROMOTE and d.healthy


def test_failures_below_the_threshold_only_count() -> None:
    d = decide(FAIL, 0, spec(), *status(baking_for=5))
    assert (d.action, d.failures) == (Action.NONE, 1)
    assert decide(OK, d.failures, spec(), *status(baking_for=5)).failures == 0


def test_threshold_failures_during_the_bake_revert() -> None:
    d = decide(FAIL, 2, spec(), *status(baking_for=5))
    assert d.action == Action.REVERT and d.reason == reasons.ROLLED_BACK


def test_without_auto_rollback_the_object_degrades_and_says_why() -> None:
    d = decide(FAIL, 2, spec(auto=False), *status(baking_for=5))
    assert d.action == Action.DEGRADE and "spec.rollback.auto" in d.message


def test_with_no_earlier_revision_the_object_degrades_saying_there_is_nothing_to_revert_to() -> None:
    d = decide(FAIL, 2, spec(), *status(baking_for=5, last_good=None))
    assert d.action == Action.DEGRADE and "nothing to revert to" in d.message


def test_with_no_baked_revision_yet_the_previous_one_that_passed_every_probe_is_the_revert_target() -> None:
    assert decide(FAIL, 2, spec(), *status(5, None, [earlier("v1")])).action == Action.REVERT
    assert decide(FAIL, 2, spec(), *status(5, None, [earlier("v1", passed=False)])).action == Action.DEGRADE


def test_a_quarantined_revision_is_never_promoted() -> None:
    s, baked = status(baking_for=61)
    s.failed_revisions = [FailedRevision(id="new", reason="RolledBack", at="2026-11-26T11:00:00Z")]
    assert decide(OK, 0, spec(), s, baked).action == Action.NONE


def test_failures_after_the_bake_restart_and_never_revert() -> None:
    d = decide(FAIL, 2, spec(), *status(baking_for=None, last_good="new"))
    assert d.action == Action.RESTART and d.reason == reasons.UNHEALTHY


def test_a_revision_crashing_during_its_bake_counts_as_failing_not_as_drift() -> None:
    crashed = Observation(probe_ok=False, latency_ms=None, container_ok=False, detail="container dm-x is exited",
                          crashed=True)
    assert decide(crashed, 0, spec(), *status(baking_for=5)).action == Action.NONE
    assert decide(crashed, 2, spec(), *status(baking_for=5)).action == Action.REVERT
    # after the bake, a crashed container is put back (docker's restart policy may be gone: repaired)
    assert decide(crashed, 2, spec(), *status(baking_for=None, last_good="new")).action == Action.REPAIR


def test_a_missing_container_is_repaired_not_counted() -> None:
    d = decide(GONE, 1, spec(), *status(baking_for=5))
    assert (d.action, d.failures) == (Action.REPAIR, 1)
