"""The emulator authenticates bearer tokens and authorizes them by RBAC as kube-apiserver does, seen by real clients:
kubectl as a token user, `kubectl auth can-i|whoami`, the kubernetes Python client's reviews, the audit log."""

from __future__ import annotations

import dataclasses
import json
import secrets
import ssl
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from deploymind.sandbox.kube import rbac
from deploymind.sandbox.kube.auth import UserInfo
from deploymind.sandbox.kube.request_info import RequestAttributes, of_request
from world.kube import Kube
from world.kubetools import Kubectl
from world.ports import free_port


def ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def ns(kubectl: Kubectl) -> Iterator[str]:
    name = unique("auth")
    ok(kubectl("create", "namespace", name))
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


def kubectl_as(kube: Kube, kubectl: Kubectl, user: str, *groups: str) -> Kubectl:
    """kubectl with a kubeconfig whose fresh token authenticates as `user`."""
    return dataclasses.replace(kubectl, kubeconfig=kube.kubeconfig_for(user, groups))


def https_get(kube: Kube, path: str, token: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET on the emulator's HTTPS listener with a bearer token: (status, body)."""
    request = urllib.request.Request(kube.api.https_url + path,
                                     headers={"Authorization": f"Bearer {token}", **(headers or {})})
    context = ssl.create_default_context(cadata=kube.api.ca_pem.decode())
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_a_token_user_is_forbidden_with_the_apiservers_message_until_a_rolebinding_allows_it(
        kube: Kube, kubectl: Kubectl, ns: str) -> None:
    user = unique("alice")
    alice = kubectl_as(kube, kubectl, user)
    ok(kubectl("-n", ns, "create", "secret", "generic", "s1", "--from-literal=k=v"))

    listed, named = alice("-n", ns, "get", "secrets"), alice("-n", ns, "get", "secret", "s1")

    assert listed.returncode == 1
    assert (f'Error from server (Forbidden): secrets is forbidden: User "{user}" cannot list resource "secrets" '
            f'in API group "" in the namespace "{ns}"') in listed.stderr
    assert (f'secrets "s1" is forbidden: User "{user}" cannot get resource "secrets" in API group "" in the '
            f'namespace "{ns}"') in named.stderr

    ok(kubectl("-n", ns, "create", "role", "secret-reader", "--verb=get,list", "--resource=secrets"))
    ok(kubectl("-n", ns, "create", "rolebinding", "alice-reads", "--role=secret-reader", f"--user={user}"))

    assert ok(alice("-n", ns, "get", "secrets", "-o", "name")).split() == ["secret/s1"]
    deleting = alice("-n", ns, "delete", "secret", "s1")
    assert 'cannot delete resource "secrets"' in deleting.stderr
    outside = alice("get", "namespaces")
    assert (f'namespaces is forbidden: User "{user}" cannot list resource "namespaces" in API group "" at the '
            "cluster scope") in outside.stderr


def test_kubectl_auth_can_i_and_whoami_answer_for_the_token_user(kube: Kube, kubectl: Kubectl, ns: str) -> None:
    user, group = unique("bob"), unique("devs")
    bob = kubectl_as(kube, kubectl, user, group)

    before = bob("-n", ns, "auth", "can-i", "list", "secrets")
    ok(kubectl("-n", ns, "create", "rolebinding", "devs-edit", "--clusterrole=edit", f"--group={group}"))

    assert (before.returncode, before.stdout.strip()) == (1, "no")
    assert ok(bob("-n", ns, "auth", "can-i", "list", "secrets")).strip() == "yes"
    assert ok(bob("-n", ns, "auth", "can-i", "patch", "deployments.apps")).strip() == "yes"
    assert bob("-n", ns, "auth", "can-i", "create", "rolebindings").stdout.strip() == "no"  # admin, not edit
    assert bob("auth", "can-i", "list", "secrets", "-n", "default").stdout.strip() == "no"
    whoami = json.loads(ok(bob("auth", "whoami", "-o", "json")))
    assert whoami["status"]["userInfo"] == {"username": user, "groups": [group, "system:authenticated"]}
    listed = ok(bob("-n", ns, "auth", "can-i", "--list"))
    assert any(line.split()[:1] == ["secrets"] for line in listed.splitlines())


def test_impersonation_runs_as_the_impersonated_user_and_needs_the_impersonate_verb(
        kube: Kube, kubectl: Kubectl, ns: str) -> None:
    user = unique("carol")
    carol = kubectl_as(kube, kubectl, user)

    as_someone = kubectl("-n", ns, "get", "configmaps", "--as", "dave")
    by_carol = carol("-n", ns, "get", "configmaps", "--as", "dave")

    assert ('configmaps is forbidden: User "dave" cannot list resource "configmaps" in API group "" in the '
            f'namespace "{ns}"') in as_someone.stderr
    assert (f'users "dave" is forbidden: User "{user}" cannot impersonate resource "users" in API group "" at the '
            "cluster scope") in by_carol.stderr


def test_a_cluster_role_aggregated_into_view_grants_its_rules_to_views_subjects_until_it_goes(
        kube: Kube, kubectl: Kubectl, ns: str) -> None:
    user, part = unique("erin"), unique("dmd-viewer")
    erin = kubectl_as(kube, kubectl, user)
    ok(kubectl("-n", ns, "create", "rolebinding", "erin-views", "--clusterrole=view", f"--user={user}"))
    assert "deployments.deploymind.io is forbidden" in erin("-n", ns, "get", "dmd").stderr

    ok(kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": part, "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"apiGroups": ["deploymind.io"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]}],
    })))
    try:
        ok(erin("-n", ns, "get", "dmd"))
        view = json.loads(ok(kubectl("get", "clusterrole", "view", "-o", "json")))
        admin = json.loads(ok(kubectl("get", "clusterrole", "admin", "-o", "json")))
        assert any(r.get("apiGroups") == ["deploymind.io"] for r in view["rules"])
        assert any(r.get("apiGroups") == ["deploymind.io"] for r in admin["rules"])  # view → edit → admin
        assert "secrets is forbidden" in erin("-n", ns, "get", "secrets").stderr  # view never reads Secrets
    finally:
        ok(kubectl("delete", "clusterrole", part))

    assert "deployments.deploymind.io is forbidden" in erin("-n", ns, "get", "dmd").stderr


def test_service_account_subjects_match_the_service_accounts_token_user(
        kube: Kube, kubectl: Kubectl, ns: str) -> None:
    robot = kubectl_as(kube, kubectl, f"system:serviceaccount:{ns}:robot")
    ok(kubectl("-n", ns, "create", "rolebinding", "robot-views", "--clusterrole=view", f"--serviceaccount={ns}:robot"))
    ok(kubectl("-n", ns, "create", "rolebinding", "accounts-edit", "--clusterrole=edit",
               f"--group=system:serviceaccounts:{ns}"))

    ok(robot("-n", ns, "get", "configmaps"))
    ok(robot("-n", ns, "get", "secrets"))  # through its namespace's group
    assert "forbidden" in robot("-n", "default", "get", "configmaps").stderr
    groups = json.loads(ok(robot("auth", "whoami", "-o", "json")))["status"]["userInfo"]["groups"]
    assert groups == ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"]


def client_for(kubeconfig: Path) -> kubernetes.client.ApiClient:
    """The kubernetes Python client, configured from a kubeconfig (a token one: HTTPS with the emulator's CA)."""
    api: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig))
    return api


def token_review(api: kubernetes.client.ApiClient, token: str) -> dict[str, Any]:
    review = kubernetes.client.V1TokenReview(spec=kubernetes.client.V1TokenReviewSpec(token=token))
    return dict(kubernetes.client.AuthenticationV1Api(api).create_token_review(review).to_dict()["status"])


def access_review(api: kubernetes.client.ApiClient, **spec: Any) -> dict[str, Any]:
    review = kubernetes.client.V1SubjectAccessReview(spec=kubernetes.client.V1SubjectAccessReviewSpec(**spec))
    return dict(kubernetes.client.AuthorizationV1Api(api).create_subject_access_review(review).to_dict()["status"])


def test_token_and_subject_access_reviews_answer_with_the_emulators_verdicts(
        kube: Kube, kubectl: Kubectl, ns: str) -> None:
    user, token = unique("frank"), secrets.token_urlsafe(16)
    kube.emulator.add_token(token, user, ["devs"], uid="uid-frank")
    admin = client_for(kube.kubeconfig)

    known, unknown = token_review(admin, token), token_review(admin, "not-a-token")

    assert known["authenticated"] is True
    assert known["user"] == {"username": user, "uid": "uid-frank", "groups": ["devs", "system:authenticated"],
                             "extra": None}
    assert not unknown["authenticated"]

    def may(verb: str, **spec: Any) -> dict[str, Any]:
        attributes = kubernetes.client.V1ResourceAttributes(namespace=ns, verb=verb, group="deploymind.io",
                                                            resource="deployments")
        return access_review(admin, resource_attributes=attributes, **spec)

    assert may("get", user=user, groups=["devs"])["allowed"] is False
    ok(kubectl("-n", ns, "create", "role", "dmd-reader", "--verb=get", "--resource=deployments.deploymind.io"))
    ok(kubectl("-n", ns, "create", "rolebinding", "devs-read", "--role=dmd-reader", "--group=devs"))
    allowed = may("get", user=user, groups=["devs"])
    assert allowed["allowed"] is True
    assert allowed["reason"] == f'RBAC: allowed by RoleBinding "devs-read/{ns}" of Role "dmd-reader" to Group "devs"'
    assert may("delete", user=user, groups=["devs"])["allowed"] is False
    assert may("get", user=user)["allowed"] is False  # a review judges the groups it names, no others
    metrics = kubernetes.client.V1NonResourceAttributes(path="/metrics", verb="get")
    assert access_review(admin, user=user, groups=["system:monitoring"], non_resource_attributes=metrics)["allowed"]


def test_a_token_user_needs_auth_delegator_to_review_tokens(kube: Kube, kubectl: Kubectl, ns: str) -> None:
    account = f"system:serviceaccount:{ns}:operator"
    operator = client_for(kube.kubeconfig_for(account))

    with pytest.raises(kubernetes.client.ApiException) as refused:
        token_review(operator, "any")
    ok(kubectl("create", "clusterrolebinding", unique("operator-delegates"), "--clusterrole=system:auth-delegator",
               f"--serviceaccount={ns}:operator"))

    assert refused.value.status == 403
    assert json.loads(str(refused.value.body))["message"] == (
        f'tokenreviews.authentication.k8s.io is forbidden: User "{account}" cannot create resource "tokenreviews" '
        'in API group "authentication.k8s.io" at the cluster scope')
    assert not token_review(operator, "any")["authenticated"]


def test_an_unknown_token_is_unauthorized(kube: Kube, kubectl: Kubectl, tmp_path: Path) -> None:
    stranger = dataclasses.replace(kubectl, kubeconfig=kube.api.write_kubeconfig(tmp_path / "kc", token="nobody"))

    refused = stranger("get", "namespaces")

    assert refused.returncode == 1
    assert "error: You must be logged in to the server (Unauthorized)" in refused.stderr
    assert any(r.user == "" for r in kube.emulator.audit.find(code=401))


def test_the_audit_log_keeps_each_users_requests_to_judge_them_against_rbac_manifests(
        kube: Kube, ns: str) -> None:
    user, token = unique("grace"), secrets.token_urlsafe(16)
    kube.emulator.add_token(token, user)
    watch = f"/api/v1/namespaces/{ns}/secrets?watch=true&timeoutSeconds=1&fieldSelector=metadata.name%3Dcreds"

    https_get(kube, watch, token)
    https_get(kube, f"/api/v1/namespaces/{ns}/secrets", token)
    https_get(kube, "/api/v1/namespaces", token)
    kube.emulator.audit.clear()  # the aggregate outlives the records

    requested = kube.emulator.audit.requested_by(user)
    assert requested == {
        RequestAttributes("watch", "", "secrets", namespace=ns, name="creds"),
        RequestAttributes("list", "", "secrets", namespace=ns),
        RequestAttributes("list", "", "namespaces"),
    }
    chart = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r", "namespace": ns},
         "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "watch"],
                    "resourceNames": ["creds"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b", "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
         "subjects": [{"kind": "User", "name": user}]},
    ]
    who = UserInfo(user, groups=("system:authenticated",))
    denied = sorted((a.verb, a.resource) for a in requested if not rbac.evaluate(chart, who, a).allowed)
    assert denied == [("list", "namespaces"), ("list", "secrets")]


def test_rbac_evaluate_matches_rules_as_the_apiserver_does() -> None:
    rules = [
        {"apiGroups": ["apps"], "resources": ["deployments/status"], "verbs": ["patch"]},
        {"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["get"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["*"], "resourceNames": ["leader"]},
        {"nonResourceURLs": ["/metrics", "/debug/*"], "verbs": ["get"]},
    ]
    manifests = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "ops"},
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "ops"},
         "roleRef": {"kind": "ClusterRole", "name": "ops"},
         "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "tools"}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "broken"},
         "roleRef": {"kind": "Role", "name": "missing"}, "subjects": [{"kind": "ServiceAccount", "name": "op"}]},
    ]
    op = UserInfo.service_account("tools", "op")

    def allowed(method: str, path: str, **params: str) -> bool:
        return rbac.evaluate(manifests, op, of_request(method, path, params), namespace="tools").allowed

    assert allowed("PATCH", "/apis/apps/v1/namespaces/x/deployments/web/status")
    assert not allowed("PATCH", "/apis/apps/v1/namespaces/x/deployments/web")
    assert allowed("GET", "/apis/apps/v1/namespaces/x/deployments/web/scale")
    assert allowed("PUT", "/apis/coordination.k8s.io/v1/namespaces/x/leases/leader")
    assert not allowed("PUT", "/apis/coordination.k8s.io/v1/namespaces/x/leases/other")
    assert not allowed("POST", "/apis/coordination.k8s.io/v1/namespaces/x/leases")  # a create has no name
    assert allowed("GET", "/metrics") and allowed("GET", "/debug/pprof/heap") and not allowed("GET", "/debugz")
    assert allowed("GET", "/apis/apps/v1") and allowed("GET", "/version")  # the bootstrap discovery roles
    outsider = UserInfo("x")  # not even in system:authenticated
    assert not rbac.evaluate(manifests, outsider, of_request("GET", "/api", {})).allowed
    broken = rbac.evaluate(manifests, op, of_request("GET", "/api/v1/namespaces/tools/pods", {}), namespace="tools")
    assert broken.reason == 'RBAC: role.rbac.authorization.k8s.io "missing" not found'
    assert str(rbac.forbidden(op, of_request("GET", "/api/v1/namespaces/tools/pods", {}), broken.reason)) == (
        'pods is forbidden: User "system:serviceaccount:tools:op" cannot list resource "pods" in API group "" in the '
        'namespace "tools": RBAC: role.rbac.authorization.k8s.io "missing" not found')


class _Headers(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def headers_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Headers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_the_service_proxy_forwards_other_headers_but_never_the_callers_authorization(
        kube: Kube, kubectl: Kubectl, ns: str, headers_port: int) -> None:
    user, token = unique("heidi"), secrets.token_urlsafe(16)
    kube.emulator.add_token(token, user)
    ok(kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": headers_port}]}})))
    path = f"/api/v1/namespaces/{ns}/services/echo:http/proxy/"
    forwarded = {"X-Deploymind-Authorization": "Bearer for-the-backend"}

    refused, refusal = https_get(kube, path, token, forwarded)
    ok(kubectl("-n", ns, "create", "role", "proxy", "--verb=get", "--resource=services/proxy"))
    ok(kubectl("-n", ns, "create", "rolebinding", "proxy", "--role=proxy", f"--user={user}"))
    status, body = https_get(kube, path, token, forwarded)

    assert refused == 403
    assert json.loads(refusal)["message"] == (f'services "echo:http" is forbidden: User "{user}" cannot get resource '
                                              f'"services/proxy" in API group "" in the namespace "{ns}"')
    seen = json.loads(body)
    assert status == 200
    assert seen["x-deploymind-authorization"] == "Bearer for-the-backend"
    assert "authorization" not in seen
