"""Which revision should run, given what the spec resolves to, the quarantine, a rollback pin and a retry token.

Pure: takes the working status and the desired revision, edits the status's bookkeeping (pin, retry, quarantine) and
returns the plan, or raises Stalled when the spec must change first.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploymind.api import reasons
from deploymind.api.spec import DeploymentSpec
from deploymind.api.status import DeploymentStatus, RollbackPin
from deploymind.controller import revisions
from deploymind.steps.context import Desired
from deploymind.steps.errors import Stalled

ROLLBACK_TO = "deploymind.io/rollback-to"
REQUESTED_AT = "deploymind.io/requested-at"
RETRY = "deploymind.io/retry"


@dataclass(frozen=True)
class Plan:
    target: Desired
    """The revision to run."""
    pinned: bool
    """It comes from `deploymind.io/rollback-to`, not from the spec."""
    release: bool
    """The host must be asked (a new revision, or a redeploy request)."""


def apply_retry(status: DeploymentStatus, annotations: dict[str, str], desired: Desired) -> None:
    """A new `deploymind.io/retry` token lifts the quarantine of the desired revision (and of a pinned one), once."""
    token = annotations.get(RETRY)
    if token and token != status.handled_retry:
        status.handled_retry = token
        pin = status.rollback_to
        lifted = {desired.revision, *([pin.revision] if pin is not None and pin.active and pin.revision else [])}
        status.failed_revisions = [f for f in status.failed_revisions if f.id not in lifted]


def plan(status: DeploymentStatus, annotations: dict[str, str], desired: Desired, redeploy: bool,
         spec: DeploymentSpec, *, generation: int) -> Plan:
    apply_retry(status, annotations, desired)
    requested = annotations.get(ROLLBACK_TO)
    pin = status.rollback_to
    if not requested and pin is not None:
        # The annotation is gone: so is the pin, and setting the same value again later pins again.
        status.rollback_to = pin = None
    if requested and (pin is None or pin.requested != requested):
        known = revisions.known(status, requested, spec)
        if known is None:
            raise Stalled(reasons.ROLLBACK_TARGET_GONE,
                          f"{ROLLBACK_TO}={requested} names no revision or image this Deployment still keeps; "
                          "use one listed in status.history or status.lastGood")
        pin = RollbackPin(requested=requested, revision=known.revision, spec_revision=desired.revision,
                          generation=generation, active=True)
        status.rollback_to = pin
    if pin is not None and pin.active and (_spec_changed(pin, desired, generation) or requested != pin.requested):
        # The spec itself changed, or the annotation is gone: the pin has done its job.
        pin.active = False
        status.rollback_to = pin
    if pin is not None and pin.active and requested == pin.requested:
        target = revisions.known(status, pin.requested, spec)
        if target is None:
            raise Stalled(reasons.ROLLBACK_TARGET_GONE,
                          f"{ROLLBACK_TO}={pin.requested}: that revision is no longer kept; pick another")
        for failed in status.failed_revisions:
            if failed.id == target.revision:
                # It failed while pinned (reverted, or refused): pinning does not bring a quarantined revision back.
                raise Stalled(reasons.ROLLED_BACK if failed.reason == reasons.ROLLED_BACK
                              else reasons.REVISION_QUARANTINED,
                              f"{ROLLBACK_TO}={pin.requested}: revision {target.revision} failed ({failed.reason}) at "
                              f"{failed.at} and is quarantined; pin another revision, remove the annotation, or set "
                              f"{RETRY}=<new token> to try it again")
        running = status.revision.id if status.revision else None
        return Plan(target=target, pinned=True, release=redeploy or running != target.revision)

    for failed in status.failed_revisions:
        if failed.id == desired.revision:
            # A revert keeps its reason (phase RolledBack) on every later resync, not only the first.
            raise Stalled(reasons.ROLLED_BACK if failed.reason == reasons.ROLLED_BACK else reasons.REVISION_QUARANTINED,
                          f"revision {desired.revision} failed ({failed.reason}) at {failed.at} and is quarantined; "
                          f"the host keeps running {status.revision.id if status.revision else 'what it had'}. "
                          f"Change the spec or push a fix, or set annotation {RETRY}=<new token> to try it again")
    running = status.revision.id if status.revision else None
    return Plan(target=desired, pinned=False, release=redeploy or running != desired.revision)


def _spec_changed(pin: RollbackPin, desired: Desired, generation: int) -> bool:
    """Only a change of the spec that names another revision releases a pin: not a new commit on the branch the spec
    follows (same generation), and not an edit that changes nothing that runs (healthCheck, suspend, …)."""
    if pin.generation is not None and pin.generation == generation:
        return False
    return pin.spec_revision != desired.revision
