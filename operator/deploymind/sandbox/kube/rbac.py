"""RBAC authorization as kube-apiserver does it, over Role/ClusterRole/RoleBinding/ClusterRoleBinding manifests.

A port of k8s.io/kubernetes `plugin/pkg/auth/authorizer/rbac` (rule matching, subjects, the order bindings are
visited in, the reasons), of the privileged-group authorizer in front of it (`system:masters` may do anything),
and of the clusterrole-aggregation controller (an aggregated ClusterRole's rules are the union of the rules of
the ClusterRoles its selectors match). Pure: it takes manifests, so it judges the emulator's stored objects and a
rendered Helm chart alike (`evaluate`). Not ported: the escalation check on writes of roles and bindings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from deploymind.sandbox.kube import rbac_defaults
from deploymind.sandbox.kube.api_errors import ApiError
from deploymind.sandbox.kube.auth import MASTERS, UserInfo, service_account_of
from deploymind.sandbox.kube.field_errors import go_repr
from deploymind.sandbox.kube.request_info import RequestAttributes
from deploymind.sandbox.kube.selectors import matches_label_selector

JsonObj = dict[str, Any]
GROUP: Final = "rbac.authorization.k8s.io"
_KINDS: Final = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


@dataclass(frozen=True)
class Grant:
    """One rule a binding gives the user, with the binding described as the RBAC authorizer's reasons do."""

    source: str
    rule: JsonObj


class Policy:
    """The RBAC objects of a cluster (or of a chart), cluster roles with their aggregated rules resolved."""

    def __init__(self, roles: dict[tuple[str, str], JsonObj], cluster_roles: dict[str, JsonObj],
                 role_bindings: list[JsonObj], cluster_role_bindings: list[JsonObj]) -> None:
        self.roles = roles
        self.cluster_roles = cluster_roles
        self.role_bindings = sorted(role_bindings, key=_name)
        self.cluster_role_bindings = sorted(cluster_role_bindings, key=_name)
        self.cluster_role_rules = {name: list(role.get("rules") or []) for name, role in cluster_roles.items()}
        self.cluster_role_rules.update(aggregated_rules(cluster_roles.values()))

    @classmethod
    def of(cls, manifests: Iterable[JsonObj], namespace: str = "default") -> Policy:
        """From manifests of any kinds (others are ignored); namespaced ones without a namespace are in `namespace`."""
        found: dict[str, list[JsonObj]] = {kind: [] for kind in _KINDS}
        for obj in manifests:
            if str(obj.get("apiVersion", "")).startswith(f"{GROUP}/") and obj.get("kind") in found:
                if obj["kind"] in ("Role", "RoleBinding") and not (obj.get("metadata") or {}).get("namespace"):
                    obj = {**obj, "metadata": {**(obj.get("metadata") or {}), "namespace": namespace}}
                found[str(obj["kind"])].append(obj)
        return cls(roles={(_namespace(r), _name(r)): r for r in found["Role"]},
                   cluster_roles={_name(r): r for r in found["ClusterRole"]},
                   role_bindings=found["RoleBinding"], cluster_role_bindings=found["ClusterRoleBinding"])

    def _role_rules(self, ref: JsonObj, namespace: str) -> list[JsonObj]:
        kind, name = ref.get("kind"), str(ref.get("name") or "")
        if kind == "ClusterRole":
            if name not in self.cluster_role_rules:
                raise LookupError(f'clusterrole.{GROUP} "{name}" not found')
            return self.cluster_role_rules[name]
        if kind == "Role":
            role = self.roles.get((namespace, name))
            if role is None:
                raise LookupError(f'role.{GROUP} "{name}" not found')
            return list(role.get("rules") or [])
        raise LookupError(f"unsupported role reference kind: {go_repr(kind or '')}")

    def grants(self, user: UserInfo, namespace: str) -> Iterator[Grant | str]:
        """Every rule bound to `user` in `namespace` ('' : cluster-wide only), or a message for a broken binding."""
        for binding in self.cluster_role_bindings:
            yield from self._binding_grants(binding, user, "")
        if namespace:
            for binding in self.role_bindings:
                if _namespace(binding) == namespace:
                    yield from self._binding_grants(binding, user, namespace)

    def _binding_grants(self, binding: JsonObj, user: UserInfo, namespace: str) -> Iterator[Grant | str]:
        subject = next((s for s in binding.get("subjects") or [] if _applies(s, user, namespace)), None)
        if subject is None:
            return
        ref = binding.get("roleRef") or {}
        try:
            rules = self._role_rules(ref, namespace)
        except LookupError as e:
            yield str(e)
            return
        kind = "RoleBinding" if namespace else "ClusterRoleBinding"
        name = f"{_name(binding)}/{namespace}" if namespace else _name(binding)
        source = (f"{kind} {_q(name)} of {ref.get('kind')} {_q(str(ref.get('name')))} to "
                  f"{_describe(subject, namespace)}")
        for rule in rules:
            yield Grant(source, rule)


def authorize(policy: Policy, user: UserInfo, attributes: RequestAttributes) -> Decision:
    """The privileged-group authorizer, then RBAC: the first rule that allows the request decides."""
    if MASTERS in user.groups:
        return Decision(True)
    errors: list[str] = []
    for grant in policy.grants(user, attributes.namespace or ""):
        if isinstance(grant, str):
            errors.append(grant)
        elif rule_allows(grant.rule, attributes):
            return Decision(True, f"RBAC: allowed by {grant.source}")
    return Decision(False, f"RBAC: {_aggregate(errors)}" if errors else "")


def evaluate(manifests: Iterable[JsonObj], user: UserInfo, attributes: RequestAttributes, *,
             namespace: str = "default", defaults: bool = True) -> Decision:
    """Would a cluster with these RBAC manifests (and, with `defaults`, the bootstrap policy every cluster has:
    discovery for authenticated users, `system:masters`, view/edit/admin) allow this request?"""
    objects = [*rbac_defaults.MANIFESTS, *manifests] if defaults else list(manifests)
    return authorize(Policy.of(objects, namespace), user, attributes)


def rules_for(policy: Policy, user: UserInfo, namespace: str) -> tuple[list[JsonObj], list[str]]:
    """Every rule `user` holds in `namespace` (SelfSubjectRulesReview), and the errors met on the way."""
    rules: list[JsonObj] = []
    if MASTERS in user.groups:
        rules += [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}, {"verbs": ["*"], "nonResourceURLs": ["*"]}]
    errors: list[str] = []
    for grant in policy.grants(user, namespace):
        if isinstance(grant, str):
            errors.append(grant)
        else:
            rules.append(grant.rule)
    return rules, errors


def rule_allows(rule: JsonObj, attributes: RequestAttributes) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attributes.verb not in verbs:
        return False
    if attributes.non_resource_url is not None:
        return any(_url_matches(url, attributes.non_resource_url) for url in rule.get("nonResourceURLs") or [])
    groups = rule.get("apiGroups") or []
    if "*" not in groups and (attributes.api_group or "") not in groups:
        return False
    resource = attributes.resource or ""
    subresource = attributes.subresource or ""
    combined = f"{resource}/{subresource}" if subresource else resource
    if not any(r in ("*", combined) or (subresource and r == f"*/{subresource}") for r in rule.get("resources") or []):
        return False
    names = rule.get("resourceNames") or []
    return not names or (attributes.name or "") in names


def _url_matches(rule_url: str, url: str) -> bool:
    """`nonResourceURLs` entries: `*`, an exact path, or a prefix ending in `*` (`/apis/*`)."""
    return rule_url in ("*", url) or (rule_url.endswith("*") and url.startswith(rule_url.rstrip("*")))


def aggregated_rules(cluster_roles: Iterable[JsonObj]) -> dict[str, list[JsonObj]]:
    """The rules the clusterrole-aggregation controller leaves on each ClusterRole with an aggregationRule: per
    selector, the rules of the matching ClusterRoles (by name, itself excepted), each once; until nothing changes,
    so roles aggregated into roles that are aggregated themselves (view → edit → admin) end up complete."""
    roles = {_name(r): r for r in cluster_roles}
    current = {name: list(role.get("rules") or []) for name, role in roles.items()}
    aggregating = sorted(name for name, role in roles.items() if isinstance(role.get("aggregationRule"), dict))
    for _ in range(len(aggregating) + 1):
        changed = False
        for name in aggregating:
            rules: list[JsonObj] = []
            for selector in roles[name]["aggregationRule"].get("clusterRoleSelectors") or []:
                for other in sorted(roles):
                    labels = (roles[other].get("metadata") or {}).get("labels") or {}
                    if other == name or not matches_label_selector(selector, labels):
                        continue
                    for rule in current[other]:
                        if rule not in rules:
                            rules.append(rule)
            if rules != current[name]:
                current[name], changed = rules, True
        if not changed:
            break
    return {name: current[name] for name in aggregating}


def stale_aggregates(cluster_roles: Iterable[JsonObj]) -> list[JsonObj]:
    """The aggregated ClusterRoles whose rules the aggregation controller would rewrite, rewritten."""
    roles = {_name(r): r for r in cluster_roles}
    return [{**roles[name], "rules": rules} for name, rules in aggregated_rules(roles.values()).items()
            if rules != (roles[name].get("rules") or [])]


def forbidden(user: UserInfo, attributes: RequestAttributes, reason: str = "") -> ApiError:
    """403 Forbidden, worded as `responsewriters.ForbiddenStatusError` words it."""
    who = f"User {_q(user.username)} cannot {attributes.verb}"
    if attributes.non_resource_url is not None:
        message = f"{who} path {_q(attributes.non_resource_url)}"
    else:
        resource = attributes.resource or ""
        if attributes.subresource:
            resource += f"/{attributes.subresource}"
        where = (f"in the namespace {_q(attributes.namespace)}" if attributes.namespace else "at the cluster scope")
        message = f"{who} resource {_q(resource)} in API group {_q(attributes.api_group or '')} {where}"
    message = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if reason:
        message = f"{message}: {reason}"
    group, resource, name = attributes.api_group or "", attributes.resource or "", attributes.name or ""
    qualified = f"{resource}.{group}" if group else resource
    if not group and not resource:
        full = f"forbidden: {message}"
    elif not name:
        full = f"{qualified} is forbidden: {message}"
    else:
        full = f"{qualified} {_q(name)} is forbidden: {message}"
    details = {k: v for k, v in (("name", name), ("group", group), ("kind", resource)) if v}
    return ApiError(403, "Forbidden", full, details)


def _applies(subject: JsonObj, user: UserInfo, namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return bool(user.username == name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        account_namespace = subject.get("namespace") or namespace
        return bool(account_namespace) and service_account_of(user.username) == (account_namespace, name)
    return False


def _describe(subject: JsonObj, namespace: str) -> str:
    kind, name = str(subject.get("kind")), str(subject.get("name"))
    if kind == "ServiceAccount":
        return f"{kind} {_q(name + '/' + (subject.get('namespace') or namespace))}"
    return f"{kind} {_q(name)}"


def _aggregate(errors: list[str]) -> str:
    """`utilerrors.NewAggregate(errs).Error()`: one message as it is, several in brackets, each once."""
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else f"[{', '.join(unique)}]"


def _q(text: str | None) -> str:
    """Go's `%q` of a string."""
    return go_repr(text or "")


def _name(obj: JsonObj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _namespace(obj: JsonObj) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")
