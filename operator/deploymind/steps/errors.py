"""The two ways a step stops short: the user must change something (Stalled), or a later try may work (Waiting)."""

from __future__ import annotations

from deploymind.api import reasons
from deploymind.commands.results import HostNotReady


class StepError(Exception):
    """A step did not finish. `reason` is a CamelCase constant from deploymind.api.reasons."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Stalled(StepError):
    """Retrying cannot help until the spec, an annotation or a referenced Secret changes: the actor does not retry
    (kstatus: Stalled=True)."""


class Waiting(StepError):
    """Retry after `delay` seconds (None: the actor's backoff); meanwhile Reconciling=True, ProgressingWithRetry."""

    def __init__(self, reason: str, message: str, delay: float | None = None) -> None:
        super().__init__(reason, message)
        self.delay = delay


class Superseded(Exception):
    """A newer spec arrived while a rollout ran; it stopped at a safe point and the newest spec rolls out next."""


def host_not_ready(e: HostNotReady) -> Waiting:
    """A host missing a tool (or a writable host directory) for a rollout step. Waiting, not Stalled, although a
    person must act: what they change is the host, which nothing the operator watches reports, so a Stalled object
    would never notice the fix without a retry annotation. Retried with the actor's backoff (up to
    backoff_max_seconds); the message names what to install and the host directory."""
    where = f" (host directory {e.host_dir})" if e.host_dir else ""
    return Waiting(reasons.HOST_NOT_READY, f"{e.message}{where}")
