"""The chart's RBAC is exactly what the operator uses: after every other test of the session, the emulator's audit
of each operator that ran as the chart's ServiceAccount (chart_rbac.py) holds no request the chart's rules refuse,
and, when the session ran the whole e2e suite, every verb those rules grant was used by some request.

Both chart variants are judged: `watchNamespaces` listing the namespace (what the e2e operators ran under, started
with `--namespace N`) and the default, one ClusterRole for every namespace, whose rules are the same verbs granted
cluster-wide."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from chart_rbac import AUDIT_FROM_ENV, VARIANTS, AuditUnion, ChartOperator, chart_operators, chart_rbac, service_account

from deploymind.sandbox.kube.auth import UserInfo
from deploymind.sandbox.kube.rbac import evaluate, rule_allows
from deploymind.sandbox.kube.request_info import RequestAttributes
from world.kube import Kube

pytestmark = [pytest.mark.e2e, pytest.mark.after_e2e]

JsonObj = dict[str, Any]


@dataclass(frozen=True)
class Granted:
    """One verb on one resource (or URL) of one rule the chart binds to its ServiceAccount, named as the chart
    names it whatever the release (`<release>-deploymind-operator`)."""

    role: str
    rule: int
    verb: str
    api_group: str | None
    resource: str | None
    resource_names: tuple[str, ...] = ()
    non_resource_url: str | None = None
    namespace: str | None = None
    """The RoleBinding's namespace; None for a ClusterRoleBinding (any namespace, and cluster-scoped requests)."""

    def allows(self, attributes: RequestAttributes) -> bool:
        if self.namespace is not None and attributes.namespace != self.namespace:
            return False
        if self.non_resource_url is not None:
            return rule_allows({"verbs": [self.verb], "nonResourceURLs": [self.non_resource_url]}, attributes)
        return rule_allows({"verbs": [self.verb], "apiGroups": [self.api_group], "resources": [self.resource],
                            "resourceNames": list(self.resource_names)}, attributes)

    def key(self, release: str) -> tuple[str, int, str, str | None, str | None, tuple[str, ...], str | None]:
        """The same grant in every release: the release's name replaced by `<release>`."""
        names = tuple(name.replace(release, "<release>") for name in self.resource_names)
        return (self.role.replace(release, "<release>"), self.rule, self.verb, self.api_group, self.resource, names,
                self.non_resource_url)

    def __str__(self) -> str:
        what = self.non_resource_url or f"{self.resource}.{self.api_group}".rstrip(".")
        names = f" named {', '.join(self.resource_names)}" if self.resource_names else ""
        return f"{self.role} rule {self.rule}: {self.verb} {what}{names}"


def granted(namespace: str, variant: str) -> Iterator[Granted]:
    """Every verb the chart's rules for release `namespace` grant its ServiceAccount, one resource at a time."""
    docs = chart_rbac(namespace, variant)
    roles = {(doc["kind"], doc["metadata"]["name"], doc["metadata"].get("namespace")): doc for doc in docs
             if doc["kind"] in ("Role", "ClusterRole")}
    account = {"kind": "ServiceAccount", "name": service_account(namespace), "namespace": namespace}
    for binding in docs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding") or account not in binding["subjects"]:
            continue
        scope = binding["metadata"].get("namespace")
        ref = binding["roleRef"]
        role = roles[(ref["kind"], ref["name"], scope if ref["kind"] == "Role" else None)]
        label = f"{ref['kind']} {ref['name']}"
        for index, rule in enumerate(role["rules"]):
            for verb in rule["verbs"]:
                for url in rule.get("nonResourceURLs", []):
                    yield Granted(label, index, verb, None, None, non_resource_url=url, namespace=scope)
                for group in rule.get("apiGroups", []):
                    for resource in rule.get("resources", []):
                        yield Granted(label, index, verb, group, resource, tuple(rule.get("resourceNames", [])),
                                      namespace=scope)


def described(attributes: RequestAttributes) -> str:
    if attributes.non_resource_url is not None:
        return f"{attributes.verb} {attributes.non_resource_url}"
    resource = f"{attributes.resource}.{attributes.api_group}".rstrip(".")
    if attributes.subresource:
        resource += f"/{attributes.subresource}"
    where = f" in {attributes.namespace}" if attributes.namespace else ""
    return f"{attributes.verb} {resource}{f' {attributes.name}' if attributes.name else ''}{where}"


class Audit(Protocol):
    def requesters(self) -> list[str]: ...

    def requested_by(self, user: str) -> AbstractSet[RequestAttributes]: ...


@dataclass(frozen=True)
class UnionAudit:
    union: AuditUnion

    def requesters(self) -> list[str]:
        return sorted(self.union.requested)

    def requested_by(self, user: str) -> AbstractSet[RequestAttributes]:
        return self.union.requested.get(user, frozenset())


def every_e2e_test() -> set[str]:
    """The node ids a whole run of tests/e2e (but this module) sets up, as pytest collects them."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
                           "-m", "not after_e2e", "tests/e2e"], cwd=root, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return {line.strip() for line in done.stdout.splitlines() if "::" in line}


@pytest.fixture(scope="module")
def audit_and_gaps(request: pytest.FixtureRequest) -> tuple[Audit, str]:
    """The audit to judge, and why it is not that of the whole e2e suite ("" when it is): this session's own, or
    with $DEPLOYMIND_AUDIT_FROM the union of the parts every session of a split run wrote (scripts/run-tests)."""
    if directory := os.environ.get(AUDIT_FROM_ENV):
        union = AuditUnion.load(Path(directory))
        missing = sorted(every_e2e_test() - union.ran)
        gaps = f"{len(missing)} e2e tests ran in no session ({', '.join(missing[:3])})" if missing else ""
        return UnionAudit(union), gaps
    kube: Kube = request.getfixturevalue("kube")
    return kube.emulator.audit, request.getfixturevalue("e2e_not_whole")


@pytest.fixture
def audit(audit_and_gaps: tuple[Audit, str]) -> Audit:
    return audit_and_gaps[0]


@pytest.fixture
def operators(audit: Audit) -> list[ChartOperator]:
    found = list(chart_operators(audit.requesters()))
    if not found:
        pytest.skip("no operator ran as the chart's ServiceAccount in this session: run it after tests/e2e")
    return found


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_request_of_an_operator_is_one_the_charts_rbac_allows(
        audit: Audit, operators: list[ChartOperator], variant: str) -> None:
    refused = []
    for op in operators:
        rbac = chart_rbac(op.namespace, variant)
        user = UserInfo.service_account(op.namespace, service_account(op.namespace))
        for attributes in audit.requested_by(op.user):
            if not evaluate(rbac, user, attributes, namespace=op.namespace).allowed:
                refused.append(described(attributes).replace(op.namespace, "<namespace>"))

    assert not refused, (f"the operator asked for what charts/deploymind/templates/rbac.yaml ({variant}) does not "
                         f"grant; add a rule there, or stop the call: {sorted(set(refused))}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_verb_the_charts_rbac_grants_was_used_by_an_operator(
        audit: Audit, audit_and_gaps: tuple[Audit, str], operators: list[ChartOperator], variant: str) -> None:
    if gaps := audit_and_gaps[1]:
        pytest.skip(f"only meaningful after the whole e2e suite (pytest tests/e2e, or scripts/run-tests), which "
                    f"this audit is not of: {gaps}")
    grants: dict[tuple[Any, ...], str] = {}
    used: set[tuple[Any, ...]] = set()
    for op in operators:
        requests = audit.requested_by(op.user)
        for grant in granted(op.namespace, variant):
            key = grant.key(op.namespace)
            grants.setdefault(key, str(grant).replace(op.namespace, "<release>"))
            if key not in used and any(grant.allows(attributes) for attributes in requests):
                used.add(key)

    unused = [text for key, text in grants.items() if key not in used]
    assert not unused, (f"charts/deploymind/templates/rbac.yaml ({variant}) grants what no operator request of the "
                        f"whole e2e suite used; remove it, or add the e2e test that needs it: {unused}")
