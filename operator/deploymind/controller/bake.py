"""The bake clock: seconds of the bake window actually observed healthy.

Wall-clock time since the release is not enough: an hour with the host unreachable, or with the operator down, says
nothing about the revision. Only the time between two passing probes that follow each other within a couple of
periods counts. The total is saved in `status.bakedSeconds` every little while (status is written only when
something in it changes), so a restart loses at most one step of it.
"""

from __future__ import annotations

from deploymind.api.status import DeploymentStatus

SAVE_MIN_STEP_S = 10
SAVE_STEPS = 10


class BakeClock:
    def __init__(self) -> None:
        self._revision: str | None = None
        self._last_ok: float | None = None
        self._unsaved = 0.0

    def start(self, revision: str, at: float) -> None:
        """The release just proved `revision` healthy (its switch verified it) at monotonic time `at`."""
        self._revision, self._last_ok, self._unsaved = revision, at, 0.0

    def gap(self) -> None:
        """A failing probe, or no probe (host unreachable): the time until the next passing probe does not count."""
        self._last_ok = None

    def passed(self, status: DeploymentStatus, at: float, max_gap: float) -> float:
        """A passing probe of the running revision at `at`; returns the seconds observed healthy so far."""
        assert status.revision is not None
        if status.revision.id != self._revision:
            self._revision, self._last_ok, self._unsaved = status.revision.id, None, 0.0
        if self._last_ok is not None and 0 <= at - self._last_ok <= max_gap:
            self._unsaved += at - self._last_ok
        self._last_ok = at
        return (status.baked_seconds or 0) + self._unsaved

    def save(self, status: DeploymentStatus, bake_seconds: int, *, force: bool = False) -> None:
        """Move whole observed seconds into status when a step's worth has gathered (or `force`)."""
        step = max(SAVE_MIN_STEP_S, bake_seconds // SAVE_STEPS)
        whole = int(self._unsaved)
        if whole and (force or whole >= step):
            status.baked_seconds = (status.baked_seconds or 0) + whole
            self._unsaved -= whole
