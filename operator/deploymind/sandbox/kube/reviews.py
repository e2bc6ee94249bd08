"""The review APIs: authentication.k8s.io/v1 TokenReview and SelfSubjectReview, authorization.k8s.io/v1
SubjectAccessReview, LocalSubjectAccessReview, SelfSubjectAccessReview and SelfSubjectRulesReview.

Create-only and never stored: the answer is the request with `status` filled in by the emulator's own
authenticator and authorizer (the ones that judge its requests), so a webhook-style delegating authorizer (the
operator's history endpoint) and `kubectl auth can-i` / `kubectl auth whoami` see what the emulator enforces.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from deploymind.sandbox.kube import api_errors
from deploymind.sandbox.kube import field_errors as fe
from deploymind.sandbox.kube.access import Access
from deploymind.sandbox.kube.api_errors import ApiError
from deploymind.sandbox.kube.auth import UserInfo
from deploymind.sandbox.kube.rbac import Decision
from deploymind.sandbox.kube.request_info import RequestAttributes
from deploymind.sandbox.kube.resources import ResourceType

JsonObj = dict[str, Any]
GROUPS: Final = frozenset({"authentication.k8s.io", "authorization.k8s.io"})
# What a token review answers when the caller names no audience: the API server's own (kube-apiserver's default).
API_AUDIENCES: Final = ("https://kubernetes.default.svc.cluster.local",)


def review(rt: ResourceType, body: JsonObj, namespace: str | None, requester: UserInfo, access: Access) -> JsonObj:
    """The answer to creating one review object `body` (its `status` set); raises a 400/422 ApiError."""
    answer = copy.deepcopy(body)
    answer.setdefault("apiVersion", rt.api_version)
    answer.setdefault("kind", rt.kind)
    answer.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    spec: JsonObj = answer["spec"] if isinstance(answer.get("spec"), dict) else {}
    if rt.plural == "tokenreviews":
        answer["status"] = _token_review(spec, access)
    elif rt.plural == "selfsubjectreviews":
        answer["status"] = {"userInfo": requester.as_json()}
    elif rt.plural == "selfsubjectrulesreviews":
        answer["status"] = _rules_review(spec, requester, access)
    else:
        user = requester if rt.plural == "selfsubjectaccessreviews" else _spec_user(rt, spec)
        answer["status"] = _decision(access.authorize(user, _attributes(rt, spec, namespace)))
    return answer


def _token_review(spec: JsonObj, access: Access) -> JsonObj:
    token = str(spec.get("token") or "")
    if not token:
        raise api_errors.bad_request("token is required for TokenReview in authentication")
    user = access.tokens.user(token)
    wanted = [str(a) for a in spec.get("audiences") or []]
    audiences = [a for a in wanted if a in API_AUDIENCES] if wanted else list(API_AUDIENCES)
    if user is None:
        return {"user": {}}
    if not audiences:  # a static token is valid for the API server's own audiences only
        return {"user": {}, "error": f"token audiences {wanted} is invalid for the target audiences "
                                     f"{list(API_AUDIENCES)}"}
    return {"authenticated": True, "user": user.as_json(), "audiences": audiences}


def _rules_review(spec: JsonObj, requester: UserInfo, access: Access) -> JsonObj:
    namespace = str(spec.get("namespace") or "")
    if not namespace:
        raise api_errors.bad_request("no namespace on request")
    rules, errors = access.rules(requester, namespace)
    status: JsonObj = {
        "resourceRules": [_only(r, "verbs", "apiGroups", "resources", "resourceNames") for r in rules
                          if r.get("resources")],
        "nonResourceRules": [_only(r, "verbs", "nonResourceURLs") for r in rules if r.get("nonResourceURLs")],
        "incomplete": bool(errors),
    }
    if errors:
        status["evaluationError"] = ", ".join(errors)
    return status


def _spec_user(rt: ResourceType, spec: JsonObj) -> UserInfo:
    user, groups = str(spec.get("user") or ""), [str(g) for g in spec.get("groups") or []]
    if not user and not groups:
        raise _invalid(rt, fe.invalid("spec.user", "", "at least one of user or group must be specified"))
    return UserInfo(user, str(spec.get("uid") or ""), tuple(groups))


def _attributes(rt: ResourceType, spec: JsonObj, namespace: str | None) -> RequestAttributes:
    resource, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if resource is not None and non_resource is not None:
        raise _invalid(rt, fe.invalid("spec.nonResourceAttributes", non_resource,
                                      "cannot be specified in combination with resourceAttributes"))
    if isinstance(non_resource, dict):
        if rt.plural == "localsubjectaccessreviews":
            raise _invalid(rt, fe.invalid("spec.nonResourceAttributes", non_resource,
                                          "disallowed on this kind of request"))
        return RequestAttributes(verb=str(non_resource.get("verb") or ""),
                                 non_resource_url=str(non_resource.get("path") or ""))
    if not isinstance(resource, dict):
        raise _invalid(rt, fe.invalid("spec.resourceAttributes", None,
                                      "exactly one of nonResourceAttributes or resourceAttributes must be specified"))
    if namespace is not None and (resource.get("namespace") or "") != namespace:
        raise api_errors.bad_request(f"spec.resourceAttributes.namespace must match namespace: {namespace}")
    return RequestAttributes(
        verb=str(resource.get("verb") or ""), api_group=str(resource.get("group") or ""),
        resource=str(resource.get("resource") or ""), subresource=resource.get("subresource") or None,
        namespace=resource.get("namespace") or None, name=resource.get("name") or None)


def _decision(decision: Decision) -> JsonObj:
    status: JsonObj = {"allowed": decision.allowed}
    if decision.reason:
        status["reason"] = decision.reason
    return status


def _only(rule: JsonObj, *fields: str) -> JsonObj:
    return {f: list(rule[f]) for f in fields if rule.get(f)}


def _invalid(rt: ResourceType, error: fe.FieldError) -> ApiError:
    return api_errors.invalid(rt.kind, rt.group, "", [error])
