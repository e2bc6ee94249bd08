"""What a targeted Secret watch counts as a change, and the credentials it sends: pure, no API server."""

from __future__ import annotations

import base64
from typing import Any

import kubernetes.client as k8s
import pytest

from deploymind.controller.secretwatch import ApiEndpoint, Expired, Seen, WatchFailed


def secret(rv: str, value: str, **metadata: Any) -> dict[str, Any]:
    return {"kind": "Secret", "metadata": {"name": "app", "resourceVersion": rv, **metadata},
            "data": {"token": base64.b64encode(value.encode()).decode()}}


def test_the_first_read_is_the_baseline_and_only_data_changes_count() -> None:
    seen = Seen()
    assert not seen.read(secret("5", "one"))
    assert seen.resource_version == "5"
    assert not seen.event({"type": "MODIFIED", "object": secret("6", "one", labels={"team": "web"})})
    assert seen.event({"type": "MODIFIED", "object": secret("7", "two")})
    assert seen.resource_version == "7"
    assert seen.event({"type": "DELETED", "object": secret("8", "two")})
    assert seen.event({"type": "ADDED", "object": secret("9", "two")}), "a re-created Secret is news"


def test_a_secret_missing_at_first_is_created_by_its_first_added_event() -> None:
    seen = Seen()
    assert not seen.read(None)
    assert seen.resource_version is None
    assert seen.event({"type": "ADDED", "object": secret("3", "one")})


def test_a_bookmark_moves_the_resume_point_and_is_no_change() -> None:
    seen = Seen()
    seen.read(secret("5", "one"))
    assert not seen.event({"type": "BOOKMARK", "object": {"kind": "Secret", "metadata": {"resourceVersion": "40"}}})
    assert seen.resource_version == "40"


def test_error_events_end_the_watch_410_asks_for_a_fresh_read() -> None:
    seen = Seen()
    with pytest.raises(Expired):
        seen.event({"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}})
    with pytest.raises(WatchFailed, match="500 InternalError"):
        seen.event({"type": "ERROR", "object": {"kind": "Status", "code": 500, "reason": "InternalError"}})
    with pytest.raises(WatchFailed, match="not an object"):
        seen.event(["ADDED"])


def test_each_request_carries_the_token_the_client_configuration_holds_now() -> None:
    config = k8s.Configuration(host="https://127.0.0.1:6443")
    config.api_key = {"BearerToken": "first"}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    endpoint = ApiEndpoint(config)
    assert endpoint.headers()["authorization"] == "Bearer first"

    def refresh(c: Any) -> None:  # what the in-cluster loader does when the projected token was renewed
        c.api_key["BearerToken"] = "second"

    config.refresh_api_key_hook = refresh
    assert endpoint.headers()["authorization"] == "Bearer second"


def test_a_plain_http_server_gets_no_tls_and_an_unverified_one_no_checks() -> None:
    assert ApiEndpoint(k8s.Configuration(host="http://127.0.0.1:8001")).ssl_context() is None
    insecure = k8s.Configuration(host="https://127.0.0.1:6443")
    insecure.verify_ssl = False
    context = ApiEndpoint(insecure).ssl_context()
    assert context is not None and not context.check_hostname
