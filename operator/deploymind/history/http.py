"""The read-only history endpoint: GET /history/{namespace}/{name}?limit=N[&revision=R] → JSON, newest first.

Reached by `deploymind history` through the Kubernetes API server's service proxy, or directly (the sandbox). With
`--history-auth kubernetes` only a caller whose bearer token names a user allowed to `get` that Deployment reads it
(history/authz.py). Body (keys camelCase, times RFC 3339 UTC):

    {"namespace": "...", "name": "...",
     "rollouts": [{"id", "uid", "generation", "revision", "commit", "image", "digest", "trigger", "triggerDetail",
                   "strategy", "envNames", "envHash", "startedAt", "finishedAt", "result", "reason", "message",
                   "durationSeconds", "steps": [{"step", "status", "reason", "message", "startedAt", "finishedAt",
                   "durationSeconds"}], "scans": [{"revision", "counts", "secrets", "misconfigs", "suppressed",
                   "blocked", "at"}]}],
     "reverts": [{"uid", "fromRevision", "toRevision", "reason", "message", "attemptId", "at"}],
     "cleanups": [{"uid", "result", "message", "durationSeconds", "at"}]}

With `revision=R`, one revision: its attempts (same shape as above), the reverts from or to it, and the last log
lines of each release of it that was refused (status and Events never carry them):

    {"namespace", "name", "revision", "rollouts": [...], "reverts": [...],
     "logs": [{"uid", "attemptId", "revision", "lines": [str], "at"}]}

Errors are JSON too: {"reason": CamelCase, "message": what to do} with 400, 401 (no or a bad token), 403 (not
allowed), 404 (never recorded) or 503.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Final

from aiohttp import web

from deploymind.history.authz import Authorizer, DeploymentAccess, guarded
from deploymind.history.records import CandidateLogs, Cleanup, Revert, ScanSummary, StepTransition
from deploymind.history.store import AttemptHistory, HistoryStore, ObjectHistory, RevisionHistory

DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 500
MAX_REVISION_CHARS: Final = 512  # the store's column: a revision id, or the image a rollback-to named
STORE_KEY: Final = web.AppKey("deploymind_history_store", HistoryStore)

logger = logging.getLogger(__name__)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _step(step: StepTransition) -> dict[str, Any]:
    return {
        "step": step.step,
        "status": step.status,
        "reason": step.reason,
        "message": step.message,
        "startedAt": _time(step.started_at),
        "finishedAt": _time(step.finished_at),
        "durationSeconds": step.duration_seconds,
    }


def _scan(scan: ScanSummary) -> dict[str, Any]:
    return {
        "revision": scan.revision,
        "counts": dict(scan.counts),
        "secrets": scan.secrets,
        "misconfigs": scan.misconfigs,
        "suppressed": scan.suppressed,
        "blocked": scan.blocked,
        "at": _time(scan.at),
    }


def _rollout(entry: AttemptHistory) -> dict[str, Any]:
    attempt = entry.attempt
    return {
        "id": attempt.id,
        "uid": attempt.uid,
        "generation": attempt.generation,
        "revision": attempt.revision,
        "commit": attempt.commit,
        "image": attempt.image,
        "digest": attempt.digest,
        "trigger": attempt.trigger,
        "triggerDetail": attempt.trigger_detail,
        "strategy": attempt.strategy,
        "envNames": list(attempt.env_names),
        "envHash": attempt.env_hash,
        "startedAt": _time(attempt.started_at),
        "finishedAt": _time(attempt.finished_at),
        "result": attempt.result,
        "reason": attempt.reason,
        "message": attempt.message,
        "durationSeconds": attempt.duration_seconds,
        "steps": [_step(step) for step in entry.steps],
        "scans": [_scan(scan) for scan in entry.scans],
    }


def _revert(revert: Revert) -> dict[str, Any]:
    return {
        "uid": revert.uid,
        "fromRevision": revert.from_revision,
        "toRevision": revert.to_revision,
        "reason": revert.reason,
        "message": revert.message,
        "attemptId": revert.attempt_id,
        "at": _time(revert.at),
    }


def _cleanup(cleanup: Cleanup) -> dict[str, Any]:
    return {
        "uid": cleanup.uid,
        "result": cleanup.result,
        "message": cleanup.message,
        "durationSeconds": cleanup.duration_seconds,
        "at": _time(cleanup.at),
    }


def _logs(logs: CandidateLogs) -> dict[str, Any]:
    return {
        "uid": logs.uid,
        "attemptId": logs.attempt_id,
        "revision": logs.revision,
        "lines": list(logs.lines),
        "at": _time(logs.at),
    }


def revision_json(history: RevisionHistory) -> dict[str, Any]:
    """The endpoint's body for one revision of an object."""
    return {
        "namespace": history.namespace,
        "name": history.name,
        "revision": history.revision,
        "rollouts": [_rollout(entry) for entry in history.rollouts],
        "reverts": [_revert(revert) for revert in history.reverts],
        "logs": [_logs(logs) for logs in history.logs],
    }


def history_json(history: ObjectHistory) -> dict[str, Any]:
    """The endpoint's body for one object's history."""
    return {
        "namespace": history.namespace,
        "name": history.name,
        "rollouts": [_rollout(entry) for entry in history.rollouts],
        "reverts": [_revert(revert) for revert in history.reverts],
        "cleanups": [_cleanup(cleanup) for cleanup in history.cleanups],
    }


def _error(status: int, reason: str, message: str) -> web.Response:
    return web.json_response({"reason": reason, "message": message}, status=status)


async def get_history(request: web.Request) -> web.Response:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    raw_limit = request.query.get("limit", str(DEFAULT_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        return _error(400, "InvalidLimit", f"limit must be a whole number from 1 to {MAX_LIMIT}, not {raw_limit!r}.")
    limit, revision = int(raw_limit), request.query.get("revision")
    if revision is not None and not 1 <= len(revision) <= MAX_REVISION_CHARS:
        return _error(400, "InvalidRevision", f"revision must be 1 to {MAX_REVISION_CHARS} characters: a revision id "
                                              f"as `deploymind history {name} -n {namespace}` lists them.")
    store = request.app[STORE_KEY]
    body: dict[str, Any] | None
    try:
        if revision is None:
            history = await asyncio.to_thread(store.history, namespace, name, limit)
            body = None if history is None else history_json(history)
        else:
            one = await asyncio.to_thread(store.revision_history, namespace, name, revision, limit)
            body = None if one is None else revision_json(one)
    except Exception as error:
        logger.warning("HistoryUnavailable: could not read the history of %s/%s: %s", namespace, name, error)
        return _error(
            503,
            "HistoryUnavailable",
            "The history database does not answer; the operator keeps recording in memory. Try again later, "
            "and check the operator's logs and its DEPLOYMIND_DATABASE_URL.",
        )
    if body is None and revision is not None:
        return _error(
            404,
            "NotFound",
            f"No history for revision {revision} of {namespace}/{name}: it was never released, or its rows are past "
            f"retention. `deploymind history {name} -n {namespace}` lists the revisions it has.",
        )
    if body is None:
        return _error(
            404,
            "NotFound",
            f"No history for {namespace}/{name}: it never started a rollout, or its rows are past retention. "
            "Check the namespace and name.",
        )
    return web.json_response(body)


def _access(request: web.Request) -> DeploymentAccess:
    return DeploymentAccess(request.match_info["namespace"], request.match_info["name"])


def add_history_routes(app: web.Application, store: HistoryStore, authorizer: Authorizer | None = None) -> None:
    """Serve GET (and HEAD) /history/{namespace}/{name}[?revision=R] from `store` to whom `authorizer` allows
    (everyone without one); other methods answer 405."""
    app[STORE_KEY] = store
    app.router.add_get("/history/{namespace}/{name}", guarded(get_history, authorizer, _access))
