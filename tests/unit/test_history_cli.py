"""`deploymind history NAME --revision R` prints one revision's attempts, steps and last log lines as inert text."""

from __future__ import annotations

from deploymind.cli_history import history_path, render_revision

REVISION = "bbbbbbbbbbbb-22222222"
BODY = {
    "namespace": "shop",
    "name": "web",
    "revision": REVISION,
    "rollouts": [
        {
            "id": "a1",
            "revision": REVISION,
            "trigger": "SpecChange",
            "startedAt": "2025-03-01T10:00:00.123Z",
            "result": "Failed",
            "reason": "RevisionQuarantined",
            "durationSeconds": 16.2,
            "steps": [
                {"step": "source", "status": "Succeeded", "reason": "Resolved", "durationSeconds": 0.1},
                {"step": "release", "status": "Failed", "reason": "CandidateUnhealthy", "durationSeconds": 15.5,
                 "message": "never answered /health"},
            ],
        }
    ],
    "reverts": [],
    "logs": [
        {"uid": "u-1", "attemptId": "a1", "revision": REVISION, "at": "2025-03-01T10:00:16Z",
         "lines": ["starting on :8080", "\x1b]0;pwned\x07\x1b[2Jfatal: cannot open /data/db"]},
    ],
}


def test_the_revision_view_prints_its_attempt_its_steps_and_its_last_log_lines() -> None:
    out = render_revision(BODY)

    assert f"2025-03-01T10:00:00Z  {REVISION}  SpecChange  Failed" in out
    assert "release  Failed     CandidateUnhealthy  15.5s     never answered /health" in out
    assert f"last log lines of {REVISION}, refused 2025-03-01T10:00:16Z:\n  starting on :8080\n" in out


def test_a_log_line_cannot_drive_the_terminal() -> None:
    out = render_revision(BODY)

    assert "\x1b" not in out and "\x07" not in out
    assert r"  \x1b]0;pwned\x07\x1b[2Jfatal: cannot open /data/db" in out


def test_a_revision_without_log_lines_says_why_there_are_none() -> None:
    out = render_revision({**BODY, "logs": []})

    assert "no log lines: only a release that was refused keeps its container's last lines" in out


def test_the_revision_is_asked_for_in_the_query_so_an_image_reference_survives_the_path() -> None:
    assert history_path("shop", "web", 20, "registry.local/web:1.2") == (
        "/history/shop/web?limit=20&revision=registry.local%2Fweb%3A1.2"
    )
    assert history_path("shop", "web", 20) == "/history/shop/web?limit=20"
