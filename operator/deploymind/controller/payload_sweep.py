"""Through ssm, when a Deployment's payload sweep (transport.ssm_payloads) runs, and what its failures do.

A call removes its own payloads; what an operator killed mid-call left in S3 and Parameter Store is removed by a
sweep of the Deployment's prefixes: once after the operator starts, on the object's first reconcile (so a crash's
leftovers go even when no later call uses the same payload key, as when the restarted operator skips a build whose
image is present); again whenever a call of this process could not remove its own payload; and when the object is
deleted, whatever its deletionPolicy. It never runs on the steady path: a warm update or a tick costs no sweep call.

A sweep that fails never holds up a rollout: it is logged and retried with the operator's backoff on a later
reconcile or tick, and after WARN_AFTER failures in a row a Warning Event says what is left and why (AccessDenied
names the missing permission). A delete tries DELETE_ATTEMPTS times, then says so in a Warning Event.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from deploymind.api import reasons
from deploymind.api.spec import DeploymentSpec, Transport
from deploymind.aws.errors import AwsError
from deploymind.controller.backoff import Backoff
from deploymind.controller.kube import Kube
from deploymind.settings import Settings
from deploymind.transport import ssm_payloads
from deploymind.transport.base import owner_key

log = logging.getLogger(__name__)

# A sweep that takes longer (an AWS endpoint that does not answer) is a failure, retried later: it must not hold up
# the rollout it precedes.
SWEEP_TIMEOUT_S = 15.0
WARN_AFTER = 3
DELETE_ATTEMPTS = 3


@dataclass
class SweepSchedule:
    """Whether an object's sweep is due; pure (the caller passes the clock)."""

    swept: bool = False
    backoff: Backoff = field(default_factory=Backoff)

    @property
    def retry_at(self) -> float:
        return self.backoff.retry_at

    def due(self, now: float, left_behind: bool) -> bool:
        return (not self.swept or left_behind) and not self.backoff.waiting(now)

    def failed(self, now: float, initial_s: float, max_s: float) -> bool:
        """Count a failure and back off; True when it is the one that earns a Warning Event."""
        return self.backoff.failed(now, initial_s, max_s) == WARN_AFTER

    def succeeded(self) -> None:
        self.swept = True
        self.backoff.succeeded()


class PayloadSweep:
    """One object's sweep after the operator starts (and after a failed removal), run by its reconciles and ticks."""

    def __init__(self, kube: Kube, settings: Settings) -> None:
        self._kube = kube
        self._settings = settings
        self.schedule = SweepSchedule()

    async def run_if_due(self, obj: dict[str, Any], spec: DeploymentSpec) -> None:
        """Sweep when due and the target is ssm; never raises (but a cancellation)."""
        if spec.target.transport != Transport.SSM:
            return
        meta = obj["metadata"]
        owner = owner_key(str(meta["namespace"]), str(meta["name"]), str(meta["uid"]))
        loop = asyncio.get_running_loop()
        if not self.schedule.due(loop.time(), ssm_payloads.left_behind(owner)):
            return
        failure = await _attempt(owner, spec, self._settings)
        if failure is None:
            self.schedule.succeeded()
            return
        settings = self._settings
        if self.schedule.failed(loop.time(), settings.backoff_initial_seconds, settings.backoff_max_seconds):
            await _warn(self._kube, obj, f"{_what(owner, settings)} after {WARN_AFTER} tries (retried "
                                         f"with backoff; the rollout goes on): {_why(failure)}")


async def on_delete(kube: Kube, settings: Settings, body: dict[str, Any], spec: DeploymentSpec) -> None:
    """The deleted object's sweep: a few tries a second or two apart (none more once AWS refused: only an
    administrator can help), then a Warning Event naming what is left."""
    if spec.target.transport != Transport.SSM:
        return
    meta = body["metadata"]
    owner = owner_key(str(meta["namespace"]), str(meta["name"]), str(meta["uid"]))
    for attempt in range(1, DELETE_ATTEMPTS + 1):
        failure = await _attempt(owner, spec, settings)
        if failure is None:
            return
        if attempt == DELETE_ATTEMPTS or failure.reason == reasons.AWS_ACCESS_DENIED:
            await _warn(kube, body, f"{_what(owner, settings)}: {_why(failure)}; or remove them by hand")
            return
        await asyncio.sleep(attempt)


async def _attempt(owner: str, spec: DeploymentSpec, settings: Settings) -> AwsError | None:
    """One sweep: None when done, else why not."""
    region = ssm_payloads.region_of(spec.target.region, settings)
    try:
        swept = await asyncio.wait_for(ssm_payloads.sweep(owner, region, settings), SWEEP_TIMEOUT_S)
    except AwsError as e:
        log.warning("%s: the payload sweep failed: %s", owner, e.message)
        return e
    except TimeoutError:
        log.warning("%s: the payload sweep did not end within %g s", owner, SWEEP_TIMEOUT_S)
        return AwsError(reasons.AWS_UNAVAILABLE, f"AWS did not answer the sweep within {SWEEP_TIMEOUT_S:g} s")
    if swept.objects or swept.parameters:
        log.info("%s: removed %d object(s) and %d parameter(s) earlier calls left in AWS (%d in use kept)",
                 owner, swept.objects, swept.parameters, swept.kept)
    return None


def _why(e: AwsError) -> str:
    fix = " (grant it: docs/iam.md)" if e.reason == reasons.AWS_ACCESS_DENIED else ""
    return f"{e.reason}: {e.message}{fix}"


def _what(owner: str, settings: Settings) -> str:
    where = f"parameters under {ssm_payloads.parameter_path(settings, owner)}"
    if settings.build_bucket:
        where += f" and objects under s3://{settings.build_bucket}/{ssm_payloads.object_prefix(settings, owner)}"
    return f"could not remove what earlier SSM calls left in AWS ({where})"


async def _warn(kube: Kube, obj: dict[str, Any], message: str) -> None:
    try:
        await kube.post_event(obj, "Warning", reasons.PAYLOAD_SWEEP_FAILED, message)
    except Exception:  # an Event is informative; the log says it too
        log.warning("could not post the %s Event: %s", reasons.PAYLOAD_SWEEP_FAILED, message, exc_info=True)
