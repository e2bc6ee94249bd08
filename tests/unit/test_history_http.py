"""GET /history/{namespace}/{name}[?revision=R]: JSON newest first, JSON errors, read-only; served over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from deploymind.api.enums import (
    RESULT_FAILED,
    RESULT_ROLLED_BACK,
    RESULT_SUCCEEDED,
    STEP_FAILED,
    STEP_SUCCEEDED,
    TRIGGER_MANUAL,
    TRIGGER_SPEC_CHANGE,
)
from deploymind.history.http import add_history_routes
from deploymind.history.records import (
    CandidateLogs,
    Revert,
    RolloutAttempt,
    ScanSummary,
    StepTransition,
    env_fingerprint,
)
from deploymind.history.store import HistoryStore

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


async def client_for(store: HistoryStore) -> TestClient[web.Request, web.Application]:
    app = web.Application()
    add_history_routes(app, store)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    store = HistoryStore(f"sqlite:///{tmp_path}/history.sqlite3")
    store.migrate()
    names, env_hash = env_fingerprint({"DATABASE_PASSWORD": "hunter2"}, b"k" * 32)
    first = RolloutAttempt(
        uid="u-1",
        namespace="shop",
        name="web",
        generation=1,
        revision="aaaaaaaaaaaa-11111111",
        trigger=TRIGGER_SPEC_CHANGE,
        started_at=T0,
        env_names=names,
        env_hash=env_hash,
    )
    second = RolloutAttempt(
        uid="u-1",
        namespace="shop",
        name="web",
        generation=2,
        revision="bbbbbbbbbbbb-22222222",
        trigger=TRIGGER_SPEC_CHANGE,
        started_at=T0 + timedelta(hours=1),
    )
    retry = RolloutAttempt(
        uid="u-1",
        namespace="shop",
        name="web",
        generation=2,
        revision="aaaaaaaaaaaa-11111111",
        trigger=TRIGGER_MANUAL,
        trigger_detail="deploymind.io/rollback-to=aaaaaaaaaaaa-11111111",
        started_at=T0 + timedelta(hours=2),
    )
    store.write(
        [
            first.finish(RESULT_SUCCEEDED, "Deployed", at=T0 + timedelta(seconds=30)),
            StepTransition(
                attempt_id=first.id,
                uid="u-1",
                step="scan",
                status=STEP_SUCCEEDED,
                started_at=T0,
                finished_at=T0 + timedelta(seconds=2),
            ),
            ScanSummary(uid="u-1", revision=first.revision, attempt_id=first.id, counts={"HIGH": 1}, report_json="{}", at=T0),
            second.finish(
                RESULT_ROLLED_BACK,
                "CandidateUnhealthy",
                "health failed 3 times during the bake",
                at=T0 + timedelta(hours=1, minutes=5),
            ),
            StepTransition(
                attempt_id=second.id,
                uid="u-1",
                step="health",
                status=STEP_FAILED,
                reason="CandidateUnhealthy",
                started_at=T0 + timedelta(hours=1),
            ),
            CandidateLogs(
                uid="u-1",
                revision=second.revision,
                attempt_id=second.id,
                lines=("starting on :8080", "fatal: cannot open /data/db"),
                at=T0 + timedelta(hours=1, minutes=1),
            ),
            Revert(
                uid="u-1",
                namespace="shop",
                name="web",
                from_revision=second.revision,
                to_revision=first.revision,
                reason="RolledBack",
                attempt_id=second.id,
                at=T0 + timedelta(hours=1, minutes=5),
            ),
            retry.finish(RESULT_FAILED, "TargetUnreachable", at=T0 + timedelta(hours=2, seconds=10)),
        ]
    )
    client = await client_for(store)
    yield client
    await client.close()


async def test_history_lists_rollouts_newest_first_with_steps_scans_and_reverts(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/history/shop/web")

    assert response.status == 200
    body = await response.json()
    assert [r["result"] for r in body["rollouts"]] == [RESULT_FAILED, RESULT_ROLLED_BACK, RESULT_SUCCEEDED]
    manual, reverted, first = body["rollouts"]
    assert (manual["trigger"], manual["triggerDetail"]) == (
        TRIGGER_MANUAL,
        "deploymind.io/rollback-to=aaaaaaaaaaaa-11111111",
    )
    assert (reverted["reason"], reverted["durationSeconds"]) == ("CandidateUnhealthy", 300.0)
    assert [(s["step"], s["status"], s["reason"]) for s in reverted["steps"]] == [("health", "Failed", "CandidateUnhealthy")]
    assert first["startedAt"] == "2025-03-01T09:00:00Z"
    assert first["envNames"] == ["DATABASE_PASSWORD"]
    assert first["scans"][0]["counts"]["HIGH"] == 1
    assert "report" not in str(first["scans"][0])
    assert body["reverts"] == [
        {
            "uid": "u-1",
            "fromRevision": "bbbbbbbbbbbb-22222222",
            "toRevision": "aaaaaaaaaaaa-11111111",
            "reason": "RolledBack",
            "message": "",
            "attemptId": reverted["id"],
            "at": "2025-03-01T10:05:00Z",
        }
    ]
    assert "hunter2" not in await response.text()


async def test_limit_keeps_only_the_newest_rollouts(client: TestClient[web.Request, web.Application]) -> None:
    body = await (await client.get("/history/shop/web", params={"limit": "1"})).json()

    assert [r["trigger"] for r in body["rollouts"]] == [TRIGGER_MANUAL]


async def test_an_object_never_recorded_answers_404_json(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/history/shop/nothing-here")

    assert response.status == 404
    assert (await response.json())["reason"] == "NotFound"


@pytest.mark.parametrize("limit", ["0", "-1", "many", "100000"])
async def test_a_bad_limit_answers_400_json(client: TestClient[web.Request, web.Application], limit: str) -> None:
    response = await client.get("/history/shop/web", params={"limit": limit})

    assert response.status == 400
    assert (await response.json())["reason"] == "InvalidLimit"


async def test_the_endpoint_is_read_only(client: TestClient[web.Request, web.Application]) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = await client.request(method, "/history/shop/web")
        assert response.status == 405


async def test_a_database_that_does_not_answer_gives_503_json(unused_tcp_port: int) -> None:
    store = HistoryStore(f"postgresql+psycopg://dm@127.0.0.1:{unused_tcp_port}/dm", timeout_seconds=1)
    client = await client_for(store)
    try:
        response = await client.get("/history/shop/web")

        assert response.status == 503
        assert (await response.json())["reason"] == "HistoryUnavailable"
    finally:
        await client.close()


async def test_one_revision_answers_its_attempts_steps_reverts_and_last_log_lines(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/history/shop/web", params={"revision": "bbbbbbbbbbbb-22222222"})

    assert response.status == 200
    body = await response.json()
    assert body["revision"] == "bbbbbbbbbbbb-22222222"
    [attempt] = body["rollouts"]
    assert (attempt["revision"], attempt["result"]) == ("bbbbbbbbbbbb-22222222", RESULT_ROLLED_BACK)
    assert [(s["step"], s["status"]) for s in attempt["steps"]] == [("health", "Failed")]
    assert [r["fromRevision"] for r in body["reverts"]] == ["bbbbbbbbbbbb-22222222"]
    assert body["logs"] == [
        {
            "uid": "u-1",
            "attemptId": attempt["id"],
            "revision": "bbbbbbbbbbbb-22222222",
            "lines": ["starting on :8080", "fatal: cannot open /data/db"],
            "at": "2025-03-01T10:01:00Z",
        }
    ]
    # the object's list view stays small: log lines are read one revision at a time
    assert "fatal: cannot open" not in await (await client.get("/history/shop/web")).text()


async def test_a_revision_never_released_answers_404_json(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/history/shop/web", params={"revision": "cccccccccccc-33333333"})

    assert response.status == 404
    refusal = await response.json()
    assert refusal["reason"] == "NotFound" and "deploymind history web -n shop" in refusal["message"]


@pytest.mark.parametrize("revision", ["", "r" * 513])
async def test_a_bad_revision_answers_400_json(client: TestClient[web.Request, web.Application], revision: str) -> None:
    response = await client.get("/history/shop/web", params={"revision": revision})

    assert response.status == 400
    assert (await response.json())["reason"] == "InvalidRevision"
