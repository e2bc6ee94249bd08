"""The chart's RBAC around the e2e operator: each test's operator runs as the chart's ServiceAccount, under the
Roles and ClusterRoles `charts/deploymind/templates/rbac.yaml` renders for the test's namespace, enforced by the
emulator. So a request the chart does not allow fails the test itself (403), and test_rbac_audit.py compares what
every such operator asked for during the session with what the chart grants.

The namespace N plays the release namespace and the release name (`helm install N charts/deploymind -n N`): the
cluster-scoped ClusterRole and its binding are then named for N too, so the tests' copies never collide.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from deploymind.sandbox.kube.api_errors import ApiError
from deploymind.sandbox.kube.auth import SERVICE_ACCOUNT_PREFIX, service_account_of
from deploymind.sandbox.kube.request_info import RequestAttributes
from world.kube import Kube
from world.tools import helm_path

CHART: Final = Path(__file__).resolve().parents[2] / "charts" / "deploymind"
TEMPLATE: Final = "templates/rbac.yaml"
# Rendered once per variant with this release name and namespace, then replaced by the test's namespace: a render
# costs ~70 ms and parsing it ~15 ms, which the end-of-suite check would pay for every namespace. It contains no
# "deploymind", so the chart's fullname is `<release>-deploymind` for it and for every e2e namespace alike.
PLACEHOLDER: Final = "chart-rbac-release"
WATCH_LIST: Final = "watchNamespaces=[N]"
"""The variant the e2e operator runs under: it is started with `--namespace N`, as the chart starts it when
`watchNamespaces` lists N."""
WATCH_ALL: Final = "watchNamespaces=[]"
"""The chart's default: one ClusterRole for every namespace."""
VARIANTS: Final = (WATCH_LIST, WATCH_ALL)

JsonObj = dict[str, Any]


@functools.cache
def _rendered(variant: str) -> tuple[JsonObj, ...]:
    values = {"watchNamespaces": [PLACEHOLDER] if variant == WATCH_LIST else []}
    done = subprocess.run([str(helm_path()), "template", PLACEHOLDER, str(CHART), "--namespace", PLACEHOLDER,
                           "--show-only", TEMPLATE, "--values", "-"],
                          input=yaml.safe_dump(values), capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise AssertionError(f"helm template {CHART} --show-only {TEMPLATE} failed: {done.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def chart_rbac(namespace: str, variant: str = WATCH_LIST) -> list[JsonObj]:
    """The operator's Roles, ClusterRoles and bindings as the chart renders them for release `namespace` in
    `namespace`."""
    return [_named_for(doc, namespace) for doc in _rendered(variant)]


def _named_for(value: Any, namespace: str) -> Any:
    """`value` (parsed YAML) with the placeholder replaced by `namespace` in every string."""
    if isinstance(value, str):
        return value.replace(PLACEHOLDER, namespace)
    if isinstance(value, list):
        return [_named_for(item, namespace) for item in value]
    if isinstance(value, dict):
        return {key: _named_for(item, namespace) for key, item in value.items()}
    return value


def service_account(namespace: str) -> str:
    """The chart's ServiceAccount in `namespace`, as its ClusterRoleBinding names it."""
    [binding] = [doc for doc in chart_rbac(namespace) if doc["kind"] == "ClusterRoleBinding"]
    [name] = [s["name"] for s in binding["subjects"] if s["kind"] == "ServiceAccount"]
    return str(name)


def operator_user(namespace: str) -> str:
    """The user the chart's operator in `namespace` authenticates as."""
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{service_account(namespace)}"


def chart_operator_kubeconfig(kube: Kube, namespace: str) -> Path:
    """A kubeconfig for an operator watching `namespace` as the chart runs it: the chart's RBAC for that namespace
    is in the emulator (created once; a restarted or second operator in the namespace reuses it), and the token
    authenticates as the chart's ServiceAccount there."""
    for obj in chart_rbac(namespace):
        try:
            kube.api.create(obj)
        except ApiError as e:
            if e.code != 409:
                raise
    return kube.kubeconfig_for(operator_user(namespace), namespace=namespace)


@dataclass(frozen=True)
class ChartOperator:
    """A user the emulator saw that is the chart's ServiceAccount of the release in `namespace`."""

    namespace: str
    user: str


def chart_operators(requesters: list[str]) -> Iterator[ChartOperator]:
    """Those of `requesters` (the audit log's users) that are a chart ServiceAccount of their namespace."""
    for user in requesters:
        account = service_account_of(user)
        if account is not None and account[1] == service_account(account[0]):
            yield ChartOperator(account[0], user)


# --- the audit of several sessions (pytest-xdist workers) judged together -----------------------------------------

AUDIT_DIR_ENV = "DEPLOYMIND_AUDIT_DIR"
"""Where each e2e session writes, as it ends, what its chart operators asked for and which tests it ran."""
AUDIT_FROM_ENV = "DEPLOYMIND_AUDIT_FROM"
"""Where test_rbac_audit.py reads those files from, instead of its own session's audit log."""


def dump_audit(directory: Path, requested: dict[str, set[RequestAttributes]], ran: set[str]) -> Path:
    """One session's part: each chart operator's requests, and the node ids of the tests it ran."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"audit-{os.getpid()}.json"
    body = {"ran": sorted(ran),
            "requested": {user: [dataclasses.asdict(a) for a in attrs] for user, attrs in requested.items()}}
    path.write_text(json.dumps(body))
    return path


@dataclass(frozen=True)
class AuditUnion:
    """The union of every session's part: what the audit test judges when the suite ran in several sessions."""

    requested: dict[str, frozenset[RequestAttributes]]
    ran: frozenset[str]

    @classmethod
    def load(cls, directory: Path) -> AuditUnion:
        requested: dict[str, set[RequestAttributes]] = {}
        ran: set[str] = set()
        for path in sorted(directory.glob("audit-*.json")):
            body = json.loads(path.read_text())
            ran.update(body["ran"])
            for user, attrs in body["requested"].items():
                requested.setdefault(user, set()).update(RequestAttributes(**a) for a in attrs)
        return cls({user: frozenset(attrs) for user, attrs in requested.items()}, frozenset(ran))
