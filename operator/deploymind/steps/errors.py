"""The two ways a step stops short: the user must change something (Stalled), or a later try may work (Waiting)."""

from __future__ import annotations


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
