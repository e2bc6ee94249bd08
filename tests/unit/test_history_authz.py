"""Who may read /history and /metrics: the caller's bearer token from either header, a TokenReview and a
SubjectAccessReview against the test world's API emulator, decisions cached briefly by a hash of the token (never the
token) in bounded caches, and every refusal a JSON 401, 403 or 503 that says what to do."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from deploymind.controller.kube import Kube as KubeClient
from deploymind.controller.kube import load_api_client
from deploymind.history.authz import (
    AUTHORIZATION_UNAVAILABLE,
    FORBIDDEN,
    UNAUTHENTICATED,
    Authorizer,
    DeploymentAccess,
    PathAccess,
    Refusal,
    TtlCache,
    bearer_token,
    guarded,
    token_key,
)
from world.kube import Kube
from world.ports import free_port


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_token_comes_from_our_header_first_then_authorization() -> None:
    both = CIMultiDict({"Authorization": "Bearer from-authorization", "x-deploymind-authorization": "bearer ours"})

    assert bearer_token(both) == "ours"
    assert bearer_token(CIMultiDict({"authorization": "Bearer  tok-1 "})) == "tok-1"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer"},
                                     {"Authorization": "Bearer two words"},
                                     {"X-Deploymind-Authorization": "token abc", "Authorization": "Bearer abc"}])
def test_no_token_or_a_header_that_is_not_bearer_is_a_401_saying_how_to_send_one(headers: dict[str, str]) -> None:
    refusal = bearer_token(CIMultiDict(headers))

    assert isinstance(refusal, Refusal) and (refusal.status, refusal.reason) == (401, UNAUTHENTICATED)
    assert "Authorization: Bearer <token>" in refusal.message and "kubectl create token" in refusal.message


def test_the_cache_forgets_an_answer_after_its_ttl() -> None:
    clock = Clock()
    cache: TtlCache[str, str] = TtlCache(ttl_seconds=10, max_entries=8, clock=clock)
    cache.put("k", "v")

    clock.now += 9.9
    assert cache.get("k") == "v"
    clock.now += 0.1
    assert cache.get("k") is None and len(cache) == 0


def test_the_cache_is_bounded_and_drops_the_least_recently_used() -> None:
    cache: TtlCache[int, int] = TtlCache(ttl_seconds=10, max_entries=3, clock=Clock())
    for key in range(3):
        cache.put(key, key)
    assert cache.get(0) == 0  # 1 is now the least recently used

    for key in range(3, 1000):
        cache.put(key, key)
        assert len(cache) <= 3
    assert [k for k in range(1000) if cache.get(k) is not None] == [997, 998, 999]


# --- against the API emulator: TokenReview and SubjectAccessReview as the real API server answers them ---

@pytest.fixture
def namespace() -> str:
    return f"authz-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def reviews(kube: Kube) -> KubeClient:
    """The operator's own client (the emulator's admin, as the operator's service account would be allowed)."""
    return KubeClient(load_api_client(str(kube.kubeconfig)))


def user(kube: Kube, name: str) -> str:
    token = f"tok-{uuid.uuid4().hex}"
    kube.emulator.add_token(token, name)
    return token


def allow_get_deployments(kube: Kube, namespace: str, username: str) -> None:
    kube.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    kube.api.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                     "metadata": {"name": "read-dmd", "namespace": namespace},
                     "rules": [{"apiGroups": ["deploymind.io"], "resources": ["deployments"], "verbs": ["get"]}]})
    kube.api.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                     "metadata": {"name": f"read-dmd-{username}", "namespace": namespace},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-dmd"},
                     "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": username}]})


def allow_metrics(kube: Kube, username: str) -> None:
    role = f"metrics-{username}"
    kube.api.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": role},
                     "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]})
    kube.api.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                     "metadata": {"name": role},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                     "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": username}]})


def reviews_made(kube: Kube, resource: str) -> int:
    return len(kube.emulator.audit.find("create", resource))


def bearer(token: str) -> CIMultiDict[str]:
    return CIMultiDict({"Authorization": f"Bearer {token}"})


@pytest.fixture
def no_token_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Tokens a test used; none of them may appear in anything logged."""
    used: list[str] = []
    with caplog.at_level(logging.DEBUG):
        yield used
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert used and not any(token in logged for token in used)


async def test_a_user_allowed_to_get_the_deployment_reads_its_history_and_nobody_else_does(
        kube: Kube, reviews: KubeClient, namespace: str, no_token_in_logs: list[str]) -> None:
    alice, bob = f"alice-{namespace}", f"bob-{namespace}"
    alice_token, bob_token = user(kube, alice), user(kube, bob)
    no_token_in_logs += [alice_token, bob_token]
    allow_get_deployments(kube, namespace, alice)
    authorizer = Authorizer(reviews)

    assert await authorizer.refusal(bearer(alice_token), DeploymentAccess(namespace, "web")) is None
    refused = await authorizer.refusal(bearer(bob_token), DeploymentAccess(namespace, "web"))
    elsewhere = await authorizer.refusal(bearer(alice_token), DeploymentAccess("default", "web"))

    assert refused is not None and (refused.status, refused.reason) == (403, FORBIDDEN)
    assert refused.message.startswith(f"{bob} may not get deployments.deploymind.io web in namespace {namespace}")
    assert elsewhere is not None and elsewhere.status == 403 and "in namespace default" in elsewhere.message


async def test_a_token_the_api_server_does_not_know_is_a_401(kube: Kube, reviews: KubeClient,
                                                             no_token_in_logs: list[str]) -> None:
    no_token_in_logs.append(forged := f"forged-{uuid.uuid4().hex}")

    refusal = await Authorizer(reviews).refusal(bearer(forged), DeploymentAccess("default", "web"))

    assert refusal is not None and (refusal.status, refusal.reason) == (401, UNAUTHENTICATED)
    assert "did not accept this bearer token" in refusal.message


async def test_metrics_need_the_non_resource_url(kube: Kube, reviews: KubeClient, namespace: str,
                                                 no_token_in_logs: list[str]) -> None:
    scraper, other = f"prometheus-{namespace}", f"other-{namespace}"
    scraper_token, other_token = user(kube, scraper), user(kube, other)
    no_token_in_logs += [scraper_token, other_token]
    allow_metrics(kube, scraper)
    authorizer = Authorizer(reviews)

    assert await authorizer.refusal(bearer(scraper_token), PathAccess("/metrics")) is None
    refused = await authorizer.refusal(bearer(other_token), PathAccess("/metrics"))
    assert refused is not None and refused.status == 403
    assert refused.message == f"{other} may not get /metrics: bind it to a ClusterRole with the rule " \
                              "nonResourceURLs [/metrics], verbs [get]."


async def test_answers_are_cached_by_the_tokens_hash_for_the_ttl(kube: Kube, reviews: KubeClient, namespace: str,
                                                                 no_token_in_logs: list[str]) -> None:
    alice = f"alice-{namespace}"
    no_token_in_logs.append(token := user(kube, alice))
    allow_get_deployments(kube, namespace, alice)
    clock = Clock()
    authorizer = Authorizer(reviews, ttl_seconds=10, clock=clock)
    before = (reviews_made(kube, "tokenreviews.authentication.k8s.io"),
              reviews_made(kube, "subjectaccessreviews.authorization.k8s.io"))

    for _ in range(20):
        assert await authorizer.refusal(bearer(token), DeploymentAccess(namespace, "web")) is None
    once = (reviews_made(kube, "tokenreviews.authentication.k8s.io"),
            reviews_made(kube, "subjectaccessreviews.authorization.k8s.io"))
    clock.now += 10
    assert await authorizer.refusal(bearer(token), DeploymentAccess(namespace, "web")) is None
    again = (reviews_made(kube, "tokenreviews.authentication.k8s.io"),
             reviews_made(kube, "subjectaccessreviews.authorization.k8s.io"))

    assert (once[0] - before[0], once[1] - before[1]) == (1, 1)
    assert (again[0] - once[0], again[1] - once[1]) == (1, 1)
    assert token not in authorizer.callers and token_key(token) in authorizer.callers


async def test_an_api_server_that_does_not_answer_is_a_503_and_is_asked_again_next_time(
        tmp_path: Path, no_token_in_logs: list[str]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                          f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{free_port()}'}}}}]\n"
                          "users: [{name: u, user: {}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n")
    authorizer = Authorizer(KubeClient(load_api_client(str(kubeconfig))))
    no_token_in_logs.append(token := f"tok-{uuid.uuid4().hex}")

    refusal = await authorizer.refusal(bearer(token), DeploymentAccess("default", "web"))

    assert refusal is not None and (refusal.status, refusal.reason) == (503, AUTHORIZATION_UNAVAILABLE)
    assert "tokenreviews.authentication.k8s.io" in refusal.message
    assert len(authorizer.callers) == 0


@pytest.fixture
async def guarded_app(reviews: KubeClient) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async def hello(_: web.Request) -> web.Response:
        return web.json_response({"hello": "world"})

    app = web.Application()
    app.router.add_get("/metrics", guarded(hello, Authorizer(reviews), lambda r: PathAccess(r.path)))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def test_a_guarded_endpoint_answers_json_refusals_and_serves_the_allowed(
        kube: Kube, namespace: str, guarded_app: TestClient[web.Request, web.Application]) -> None:
    scraper = f"prometheus-{namespace}"
    token = user(kube, scraper)
    allow_metrics(kube, scraper)

    anonymous = await guarded_app.get("/metrics")
    forged = await guarded_app.get("/metrics", headers={"Authorization": "Bearer forged"})
    allowed = await guarded_app.get("/metrics", headers={"X-Deploymind-Authorization": f"Bearer {token}"})
    body: dict[str, Any] = await anonymous.json()

    assert anonymous.status == 401 and anonymous.headers["WWW-Authenticate"] == 'Bearer realm="deploymind"'
    assert body["reason"] == UNAUTHENTICATED and "bearer token" in body["message"]
    assert forged.status == 401 and (await forged.json())["reason"] == UNAUTHENTICATED
    assert allowed.status == 200 and await allowed.json() == {"hello": "world"}


def test_without_an_authorizer_the_handler_is_served_as_it_is() -> None:
    async def hello(_: web.Request) -> web.Response:
        return web.Response()

    assert guarded(hello, None, lambda r: PathAccess(r.path)) is hello
