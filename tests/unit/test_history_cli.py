"""`deploymind history NAME --revision R` prints one revision's attempts, steps and last log lines as inert text;
the CLI presents the kubeconfig's bearer token and turns the operator's refusals into one line that says what to do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from deploymind.cli import main
from deploymind.cli_history import (
    BEARER_TOKEN_REQUIRED,
    HistoryReadError,
    bearer_token,
    fetch_direct,
    history_path,
    load_configuration,
    may_carry_token,
    render_revision,
)

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


KUBECONFIG = """apiVersion: v1
kind: Config
current-context: c
clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:6443', insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {user}}}]
contexts: [{{name: c, context: {{cluster: c, user: u, namespace: shop}}}}]
"""
CERTIFICATE_USER = "{client-certificate-data: Y2VydA==, client-key-data: a2V5}"


def kubeconfig(tmp_path: Path, user: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG.format(user=user))
    return str(path)


def test_the_cli_presents_the_kubeconfigs_token_and_a_certificate_user_has_none(tmp_path: Path) -> None:
    assert bearer_token(load_configuration(kubeconfig(tmp_path, "{token: tok-123}"), None)) == "Bearer tok-123"
    assert bearer_token(load_configuration(kubeconfig(tmp_path, CERTIFICATE_USER), None)) is None


@pytest.mark.parametrize(("url", "carries"), [
    ("http://127.0.0.1:8080", True), ("http://localhost:8080", True), ("http://[::1]:8080", True),
    ("https://deploymind.example.com", True), ("http://10.0.0.7:8080", False),
    ("http://deploymind.example.com", False)])
def test_a_token_goes_only_over_https_or_to_this_machine(url: str, carries: bool) -> None:
    assert may_carry_token(url) is carries


@pytest.fixture
async def operator_like() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """An HTTP server answering /history/shop/{name} with the refusal its name says, recording what it was sent."""
    answers = {
        "unauthenticated": (401, {"reason": "Unauthenticated", "message": "this endpoint needs a bearer token"}),
        "forbidden": (403, {"reason": "Forbidden", "message": "alice may not get deployments.deploymind.io "
                                                              "forbidden in namespace shop, …"}),
        "proxy-forbidden": (403, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                                  "message": 'services "deploymind:http" is forbidden', "code": 403}),
    }
    seen: list[dict[str, Any]] = []

    async def history(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        status, body = answers[request.match_info["name"]]
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_get("/history/shop/{name}", history)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")), seen


async def test_a_401_to_a_user_without_a_token_says_history_needs_one_and_how_to_get_it(
        operator_like: tuple[str, list[dict[str, Any]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, seen = operator_like

    code = await asyncio.to_thread(main, ["history", "unauthenticated", "--url", url,
                                          "--kubeconfig", kubeconfig(tmp_path, CERTIFICATE_USER)])

    error = capsys.readouterr().err
    assert code == 1 and "Authorization" not in seen[0]
    assert error.startswith(f"error: {BEARER_TOKEN_REQUIRED}: reading history needs a Kubernetes bearer token")
    assert "kubectl create token" in error and error.count("\n") == 1


async def test_a_403_of_the_operator_is_one_line_with_its_message_and_the_token_went_in_authorization(
        operator_like: tuple[str, list[dict[str, Any]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, seen = operator_like

    code = await asyncio.to_thread(main, ["history", "forbidden", "--url", url,
                                          "--kubeconfig", kubeconfig(tmp_path, "{token: tok-alice}")])

    assert code == 1 and seen[0]["Authorization"] == "Bearer tok-alice"
    assert capsys.readouterr().err == ("error: Forbidden: alice may not get deployments.deploymind.io forbidden in "
                                       "namespace shop, …\n")


async def test_a_403_of_the_api_server_says_which_permission_the_proxy_needs(
        operator_like: tuple[str, list[dict[str, Any]]]) -> None:
    url, _ = operator_like

    with pytest.raises(HistoryReadError, match=r"needs `get` on `services/proxy`") as refused:
        await asyncio.to_thread(fetch_direct, url, "/history/shop/proxy-forbidden", "Bearer tok")

    assert refused.value.reason == "Forbidden"
