"""The revision records in status: what ran, how it ran, which one is good, which one a revert goes back to.

Pure: functions of the working status (and the spec where a revision comes from it). A revision is a complete record
(image, digest, port, limits; its resolved env file is kept on the host), so a revert or `rollback-to` runs it
exactly as it ran, and `status.revision` always describes what runs.
"""

from __future__ import annotations

from deploymind.api import reasons
from deploymind.api.conditions import now
from deploymind.api.spec import DeploymentSpec
from deploymind.api.status import (
    DeploymentStatus,
    FailedRevision,
    HistoryEntry,
    Revision,
    RevisionRef,
    RunRecord,
)
from deploymind.steps.context import Desired
from deploymind.steps.release import run_record

MAX_FAILED_REVISIONS = 20


def run_of(target: Desired, spec: DeploymentSpec) -> RunRecord:
    return target.run if target.run is not None else run_record(spec)


def running_port(status: DeploymentStatus, spec: DeploymentSpec) -> int:
    """The port the running revision listens on (the spec's, for a revision recorded before runs were kept)."""
    if status.revision is not None and status.revision.run is not None:
        return status.revision.run.port
    return spec.container.port


def kept(entry: Revision | RevisionRef | HistoryEntry, spec: DeploymentSpec) -> Desired:
    """A revision this object ran, to be released again exactly as it ran."""
    return Desired(revision=entry.id, image=entry.image, commit=entry.commit, digest=entry.digest,
                   run=entry.run or run_record(spec), build_key=entry.build_key, kept=True)


def on_host(status: DeploymentStatus, revision: str) -> bool:
    """The host has this revision's image and env file: it runs it, or keeps it (pruning keeps history and
    last good)."""
    if status.revision is not None and status.revision.id == revision:
        return True
    if status.last_good is not None and status.last_good.id == revision:
        return True
    return any(entry.id == revision for entry in status.history)


def known(status: DeploymentStatus, requested: str, spec: DeploymentSpec) -> Desired | None:
    """A revision this object ran before, by id or image, that the host may still keep."""
    entries: list[Revision | RevisionRef | HistoryEntry] = [*status.history]
    if status.last_good:
        entries.append(status.last_good)
    if status.revision:
        entries.append(status.revision)
    for entry in entries:
        if requested in (entry.id, entry.image):
            return kept(entry, spec)
    return None


def record_release(status: DeploymentStatus, target: Desired, spec: DeploymentSpec, *, result: str) -> None:
    """`target` now runs: it is `status.revision` and the newest history entry; its bake starts (or it is good at
    once with bakeSeconds 0, or when it is last good already)."""
    stamp = now()
    run = run_of(target, spec)
    status.revision = Revision(id=target.revision, commit=target.commit, image=target.image, digest=target.digest,
                               deployed_at=stamp, run=run, build_key=target.build_key)
    if spec.rollback.bake_seconds == 0 or (status.last_good and status.last_good.id == target.revision):
        promote(status)
    else:
        status.bake_started_at = stamp
        status.baked_seconds = 0
    # Whatever runs now supersedes a revert still written down (its own finish, or a newer revision released first).
    status.revert = None
    entries = [h for h in status.history if h.id != target.revision]
    entries.insert(0, HistoryEntry(id=target.revision, commit=target.commit, image=target.image, digest=target.digest,
                                   run=run, build_key=target.build_key, deployed_at=stamp, result=result))
    status.history = entries[: spec.revision_history_limit]


def promote(status: DeploymentStatus) -> None:
    """The running revision finished its bake: it is last good."""
    if status.revision is None:
        return
    rev = status.revision
    status.last_good = RevisionRef(id=rev.id, commit=rev.commit, image=rev.image, digest=rev.digest, run=rev.run,
                                   build_key=rev.build_key)
    status.bake_started_at = None
    status.baked_seconds = None


def same_build(status: DeploymentStatus, target: Desired) -> str | None:
    """The image of a revision the host keeps that was built from exactly what `target` builds from."""
    if target.build_key is None:
        return None
    entries: list[Revision | RevisionRef | HistoryEntry] = [*([status.revision] if status.revision else []),
                                                           *([status.last_good] if status.last_good else []),
                                                           *status.history]
    return next((e.image for e in entries if e.build_key == target.build_key and e.image != target.image), None)


def quarantine(status: DeploymentStatus, revision: str, commit: str | None, image: str | None, reason: str) -> None:
    if any(f.id == revision for f in status.failed_revisions):
        return
    status.failed_revisions = [*status.failed_revisions, FailedRevision(
        id=revision, commit=commit, image=image, reason=reason, at=now())][-MAX_FAILED_REVISIONS:]


def quarantined(status: DeploymentStatus, revision: str) -> bool:
    return any(f.id == revision for f in status.failed_revisions)


def saw_failing_probe(status: DeploymentStatus) -> bool:
    """A probe of the running revision failed: it no longer passed every probe while it ran. True when that
    changed the record."""
    if status.revision is None:
        return False
    for entry in status.history:
        if entry.id == status.revision.id and entry.passed_every_probe:
            entry.passed_every_probe = False
            return True
    return False


def revert_target(status: DeploymentStatus) -> HistoryEntry | None:
    """Where a revision failing its bake goes back to: last good; when no revision has finished a bake yet, the
    newest earlier revision that passed every probe while it ran; None when there is none."""
    running = status.revision.id if status.revision else None
    if status.last_good is not None and status.last_good.id != running:
        good = status.last_good
        for entry in status.history:
            if entry.id == good.id:
                return entry
        return HistoryEntry(id=good.id, commit=good.commit, image=good.image, digest=good.digest, run=good.run,
                            deployed_at=now(), result=reasons.RELEASED)
    if status.last_good is not None:
        return None
    for entry in status.history:
        if entry.id != running and entry.passed_every_probe and not quarantined(status, entry.id) \
                and entry.result == reasons.RELEASED:
            return entry
    return None


def unusable(status: DeploymentStatus, revision: str) -> None:
    """`revision` can no longer run as it ran (its image or env file is gone from the host): never a revert
    target again."""
    if status.last_good is not None and status.last_good.id == revision:
        status.last_good = None
    for entry in status.history:
        if entry.id == revision:
            entry.passed_every_probe = False


def mark_rolled_back(status: DeploymentStatus, revision: str) -> None:
    for entry in status.history:
        if entry.id == revision:
            entry.result = reasons.ROLLED_BACK
