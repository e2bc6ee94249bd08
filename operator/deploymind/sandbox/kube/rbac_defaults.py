"""The bootstrap RBAC policy every cluster starts with (k8s.io/kubernetes `plugin/pkg/auth/authorizer/rbac/
bootstrappolicy`), as manifests: the emulator stores them at start, `rbac.evaluate` assumes them.

Kept: cluster-admin for `system:masters`; discovery, basic-user and public-info-viewer for every authenticated user;
system:monitoring and system:auth-delegator; the aggregated user-facing roles view, edit and admin with their
`system:aggregate-to-*` parts, whose rules are upstream's for the core, apps, batch, autoscaling, policy,
networking and discovery groups (the controller and node roles are left out: nothing here runs as them).
"""

from __future__ import annotations

from typing import Any, Final

JsonObj = dict[str, Any]

_API_VERSION: Final = "rbac.authorization.k8s.io/v1"
_READ: Final = ["get", "list", "watch"]
_WRITE: Final = ["create", "delete", "deletecollection", "patch", "update"]
_AGGREGATE: Final = "rbac.authorization.k8s.io/aggregate-to-"


def _rule(verbs: list[str], group: str, *resources: str) -> JsonObj:
    return {"verbs": list(verbs), "apiGroups": [group], "resources": list(resources)}


def _urls(*urls: str) -> JsonObj:
    return {"verbs": ["get"], "nonResourceURLs": list(urls)}


def _meta(name: str, labels: dict[str, str] | None = None) -> JsonObj:
    return {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults", **(labels or {})},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}}


def _role(name: str, rules: list[JsonObj], *, labels: dict[str, str] | None = None,
          aggregates: str | None = None) -> JsonObj:
    role: JsonObj = {"apiVersion": _API_VERSION, "kind": "ClusterRole", "metadata": _meta(name, labels),
                     "rules": rules}
    if aggregates is not None:
        role["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {f"{_AGGREGATE}{aggregates}": "true"}}]}
    return role


def _binding(role: str, *groups: str) -> JsonObj:
    return {"apiVersion": _API_VERSION, "kind": "ClusterRoleBinding", "metadata": _meta(role),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g} for g in groups]}


_VIEW_RULES: Final = [
    _rule(_READ, "", "pods", "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
          "services/status", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "configmaps"),
    _rule(_READ, "", "limitranges", "resourcequotas", "bindings", "events", "pods/status", "resourcequotas/status",
          "namespaces/status", "replicationcontrollers/status", "pods/log"),
    _rule(_READ, "", "namespaces"),
    _rule(_READ, "discovery.k8s.io", "endpointslices"),
    _rule(_READ, "apps", "controllerrevisions", "statefulsets", "statefulsets/scale", "statefulsets/status",
          "daemonsets", "daemonsets/status", "deployments", "deployments/scale", "deployments/status", "replicasets",
          "replicasets/scale", "replicasets/status"),
    _rule(_READ, "autoscaling", "horizontalpodautoscalers", "horizontalpodautoscalers/status"),
    _rule(_READ, "batch", "jobs", "cronjobs", "cronjobs/status", "jobs/status"),
    _rule(_READ, "policy", "poddisruptionbudgets", "poddisruptionbudgets/status"),
    _rule(_READ, "networking.k8s.io", "networkpolicies", "ingresses", "ingresses/status"),
]

_EDIT_RULES: Final = [
    _rule(_READ, "", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets", "services/proxy"),
    _rule(["impersonate"], "", "serviceaccounts"),
    _rule(_WRITE, "", "pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward"),
    _rule(["create"], "", "pods/eviction"),
    _rule(_WRITE, "", "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
          "services/proxy", "persistentvolumeclaims", "configmaps", "secrets", "events"),
    _rule(["create"], "", "serviceaccounts/token"),
    _rule(_WRITE, "apps", "statefulsets", "statefulsets/scale", "daemonsets", "deployments", "deployments/scale",
          "deployments/rollback", "replicasets", "replicasets/scale"),
    _rule(_WRITE, "autoscaling", "horizontalpodautoscalers"),
    _rule(_WRITE, "batch", "jobs", "cronjobs"),
    _rule(_WRITE, "policy", "poddisruptionbudgets"),
    _rule(_WRITE, "networking.k8s.io", "networkpolicies", "ingresses"),
]

_ADMIN_RULES: Final = [
    _rule(["create"], "authorization.k8s.io", "localsubjectaccessreviews"),
    _rule([*_READ, *_WRITE], "rbac.authorization.k8s.io", "roles", "rolebindings"),
]

MANIFESTS: Final[tuple[JsonObj, ...]] = (
    _role("cluster-admin", [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
                            {"verbs": ["*"], "nonResourceURLs": ["*"]}]),
    _role("system:discovery", [_urls("/livez", "/readyz", "/healthz", "/version", "/version/", "/openapi",
                                     "/openapi/*", "/api", "/api/*", "/apis", "/apis/*")]),
    _role("system:basic-user", [
        _rule(["create"], "authorization.k8s.io", "selfsubjectaccessreviews", "selfsubjectrulesreviews"),
        _rule(["create"], "authentication.k8s.io", "selfsubjectreviews"),
    ]),
    _role("system:public-info-viewer", [_urls("/livez", "/readyz", "/healthz", "/version", "/version/")]),
    _role("system:monitoring", [_urls("/metrics", "/metrics/slis", "/livez", "/readyz", "/healthz", "/livez/*",
                                      "/readyz/*", "/healthz/*")]),
    _role("system:auth-delegator", [_rule(["create"], "authentication.k8s.io", "tokenreviews"),
                                    _rule(["create"], "authorization.k8s.io", "subjectaccessreviews")]),
    _role("admin", [], aggregates="admin"),
    _role("edit", [], labels={f"{_AGGREGATE}admin": "true"}, aggregates="edit"),
    _role("view", [], labels={f"{_AGGREGATE}edit": "true"}, aggregates="view"),
    _role("system:aggregate-to-admin", _ADMIN_RULES, labels={f"{_AGGREGATE}admin": "true"}),
    _role("system:aggregate-to-edit", _EDIT_RULES, labels={f"{_AGGREGATE}edit": "true"}),
    _role("system:aggregate-to-view", _VIEW_RULES, labels={f"{_AGGREGATE}view": "true"}),
    _binding("cluster-admin", "system:masters"),
    _binding("system:discovery", "system:authenticated"),
    _binding("system:basic-user", "system:authenticated"),
    _binding("system:public-info-viewer", "system:authenticated", "system:unauthenticated"),
    _binding("system:monitoring", "system:monitoring"),
)
