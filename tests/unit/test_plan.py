"""Which revision runs: quarantine, rollback pins and retry tokens, state in and state out."""

from __future__ import annotations

import pytest

from deploymind.api import reasons
from deploymind.api.spec import DeploymentSpec
from deploymind.api.status import DeploymentStatus, FailedRevision, HistoryEntry, Revision, RevisionRef
from deploymind.controller import plan as planning
from deploymind.controller.plan import RETRY, ROLLBACK_TO, Plan
from deploymind.steps.context import Desired
from deploymind.steps.errors import Stalled

OLD = Desired(revision="aaaaaaaaaaaa-11111111", image="deploymind/0123abcd:aaaaaaaaaaaa-11111111", commit="a" * 40)
NEW = Desired(revision="bbbbbbbbbbbb-22222222", image="deploymind/0123abcd:bbbbbbbbbbbb-22222222", commit="b" * 40)
NEWER = Desired(revision="cccccccccccc-33333333", image="deploymind/0123abcd:cccccccccccc-33333333", commit="c" * 40)


SPEC = DeploymentSpec.model_validate({"source": {"repo": "acme/app"}, "target": {"transport": "local"}})


def plan(status: DeploymentStatus, annotations: dict[str, str], desired: Desired, *, redeploy: bool,
         generation: int = 1) -> Plan:
    return planning.plan(status, annotations, desired, redeploy, SPEC, generation=generation)


def running(current: Desired, *, last_good: Desired | None = None, failed: Desired | None = None) -> DeploymentStatus:
    history = [HistoryEntry(id=d.revision, commit=d.commit, image=d.image, deployed_at="2026-01-01T00:00:00Z",
                            result="Released") for d in (current, last_good) if d]
    status = DeploymentStatus(
        revision=Revision(id=current.revision, commit=current.commit, image=current.image),
        last_good=RevisionRef(id=(last_good or current).revision, image=(last_good or current).image),
        history=history)
    if failed:
        status.failed_revisions = [FailedRevision(id=failed.revision, image=failed.image, reason=reasons.ROLLED_BACK,
                                                  at="2026-01-01T00:00:00Z")]
    return status


def test_a_new_revision_is_released() -> None:
    p = plan(running(OLD), {}, NEW, redeploy=False)
    assert (p.target.revision, p.release, p.pinned) == (NEW.revision, True, False)


def test_the_running_revision_is_not_released_again_unless_asked() -> None:
    assert not plan(running(OLD), {}, OLD, redeploy=False).release
    assert plan(running(OLD), {}, OLD, redeploy=True).release


def test_a_quarantined_revision_is_refused_with_the_reason_it_failed() -> None:
    with pytest.raises(Stalled) as e:
        plan(running(OLD, failed=NEW), {}, NEW, redeploy=True)
    assert e.value.reason == reasons.ROLLED_BACK
    assert NEW.revision in e.value.message and RETRY in e.value.message


def test_a_retry_token_lifts_the_quarantine_once() -> None:
    status = running(OLD, failed=NEW)
    assert plan(status, {RETRY: "t1"}, NEW, redeploy=False).target.revision == NEW.revision
    assert status.failed_revisions == [] and status.handled_retry == "t1"
    # the same token again does not lift a new quarantine
    status.failed_revisions = [FailedRevision(id=NEW.revision, reason="CandidateUnhealthy", at="x")]
    with pytest.raises(Stalled):
        plan(status, {RETRY: "t1"}, NEW, redeploy=False)


def test_rollback_to_pins_a_kept_revision_until_the_spec_changes() -> None:
    status = running(NEW, last_good=OLD)
    p = plan(status, {ROLLBACK_TO: OLD.revision}, NEW, redeploy=False)
    assert (p.target.revision, p.pinned, p.release) == (OLD.revision, True, True)
    assert p.target.kept, "a pinned revision runs exactly as it ran: its own env file and container settings"
    assert status.rollback_to is not None and status.rollback_to.active
    # a resync with the same spec keeps the pin
    assert plan(status, {ROLLBACK_TO: OLD.revision}, NEW, redeploy=False).target.revision == OLD.revision
    # a change of the spec (a new generation) releases it
    p = plan(status, {ROLLBACK_TO: OLD.revision}, NEWER, redeploy=False, generation=2)
    assert (p.target.revision, p.pinned) == (NEWER.revision, False)
    assert not status.rollback_to.active


def test_an_edit_that_changes_nothing_that_runs_does_not_lift_a_rollback_to_pin() -> None:
    status = running(NEW, last_good=OLD)
    plan(status, {ROLLBACK_TO: OLD.revision}, NEW, redeploy=False)
    # a new generation (say healthCheck edited) whose spec still resolves to the revision it named
    p = plan(status, {ROLLBACK_TO: OLD.revision}, NEW, redeploy=False, generation=2)
    assert (p.target.revision, p.pinned) == (OLD.revision, True)


def test_a_pinned_revision_that_failed_is_not_released_again_until_retried() -> None:
    status = running(NEW, last_good=OLD)
    plan(status, {ROLLBACK_TO: OLD.revision}, NEW, redeploy=False)
    status.failed_revisions = [FailedRevision(id=OLD.revision, image=OLD.image, reason=reasons.ROLLED_BACK,
                                              at="2026-01-01T00:00:00Z")]
    with pytest.raises(Stalled) as e:
        plan(status, {ROLLBACK_TO: OLD.revision}, NEW, redeploy=False)
    assert e.value.reason == reasons.ROLLED_BACK and "quarantined" in e.value.message
    p = plan(status, {ROLLBACK_TO: OLD.revision, RETRY: "t1"}, NEW, redeploy=False)
    assert (p.target.revision, p.pinned) == (OLD.revision, True)


def test_a_new_commit_on_the_branch_does_not_lift_a_rollback_to_pin() -> None:
    status = running(NEW, last_good=OLD)
    plan(status, {ROLLBACK_TO: OLD.revision}, NEW, redeploy=False)
    # same generation, but the branch moved on: the spec resolves to another revision
    p = plan(status, {ROLLBACK_TO: OLD.revision}, NEWER, redeploy=False)
    assert (p.target.revision, p.pinned) == (OLD.revision, True)


def test_removing_the_rollback_to_annotation_forgets_the_pin_so_the_same_value_pins_again() -> None:
    status = running(NEW, last_good=OLD)
    plan(status, {ROLLBACK_TO: OLD.revision}, NEW, redeploy=False)
    plan(status, {ROLLBACK_TO: OLD.revision}, NEWER, redeploy=False, generation=2)  # released by a spec change
    assert status.rollback_to is not None and not status.rollback_to.active

    assert plan(status, {}, NEWER, redeploy=False, generation=2).target.revision == NEWER.revision
    assert status.rollback_to is None
    p = plan(status, {ROLLBACK_TO: OLD.revision}, NEWER, redeploy=False, generation=2)
    assert (p.target.revision, p.pinned) == (OLD.revision, True)


def test_rollback_to_accepts_an_image_reference() -> None:
    status = running(NEW, last_good=OLD)
    assert plan(status, {ROLLBACK_TO: OLD.image}, NEW, redeploy=False).target.revision == OLD.revision


def test_rollback_to_an_unknown_revision_stalls_with_a_clear_reason() -> None:
    with pytest.raises(Stalled) as e:
        plan(running(NEW), {ROLLBACK_TO: "nope"}, NEW, redeploy=False)
    assert e.value.reason == reasons.ROLLBACK_TARGET_GONE
    assert "status.history" in e.value.message
