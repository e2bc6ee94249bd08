"""The resource types the emulator serves: the built-in ones it knows, and those CRDs declare.

A `ResourceType` carries what discovery, storage and admission need: names, scope, subresources, and for
custom resources the structural schema and compiled CEL rules of their version. The built-in kinds whose
Kubernetes schema the emulator has (`builtin_schemas.py`) carry it too, inlined, and the name it is published under.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from deploymind.sandbox.kube import api_errors, builtin_schemas
from deploymind.sandbox.kube import field_errors as fe
from deploymind.sandbox.kube.cel import CelRuleError, RuleSet
from deploymind.sandbox.kube.field_errors import FieldError

JsonObj = dict[str, Any]

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
CREATE_ONLY = ("create",)


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    # Custom resources (and a few built-ins) count spec changes in metadata.generation.
    generation: bool = False
    custom: bool = False
    schema: JsonObj | None = None
    rules: RuleSet = field(default_factory=lambda: RuleSet(None))
    printer_columns: tuple[JsonObj, ...] = ()
    crd_name: str = ""
    verbs: tuple[str, ...] = VERBS
    # A built-in's schema in /openapi/v3 `components.schemas` (io.k8s.api.core.v1.PersistentVolumeClaim).
    definition: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`plural.group`, the RBAC and audit name (`secrets` for the core group)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


def _core(plural: str, kind: str, **kw: Any) -> ResourceType:
    return ResourceType("", "v1", plural, kind, singular=kind.lower(), **kw)


def _with_schema(group: str, plural: str, kind: str, definition: str, **kw: Any) -> ResourceType:
    """A built-in kind checked against, and published with, its Kubernetes schema."""
    return ResourceType(group, "v1", plural, kind, singular=kind.lower(), definition=definition,
                        schema=builtin_schemas.structural(definition), **kw)


BUILTINS: tuple[ResourceType, ...] = (
    _core("namespaces", "Namespace", namespaced=False, short_names=("ns",), subresources=frozenset({"status"})),
    _core("secrets", "Secret"),
    _core("configmaps", "ConfigMap", short_names=("cm",)),
    _core("events", "Event", short_names=("ev",)),
    _core("services", "Service", short_names=("svc",), subresources=frozenset({"status"})),
    _core("serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _with_schema("", "persistentvolumeclaims", "PersistentVolumeClaim", "io.k8s.api.core.v1.PersistentVolumeClaim",
                 short_names=("pvc",), subresources=frozenset({"status"})),
    _with_schema("policy", "poddisruptionbudgets", "PodDisruptionBudget", "io.k8s.api.policy.v1.PodDisruptionBudget",
                 short_names=("pdb",), subresources=frozenset({"status"}), generation=True),
    _with_schema("networking.k8s.io", "networkpolicies", "NetworkPolicy", "io.k8s.api.networking.v1.NetworkPolicy",
                 short_names=("netpol",), generation=True),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", singular="lease"),
    ResourceType("events.k8s.io", "v1", "events", "Event", singular="event", short_names=("ev",)),
    ResourceType("apps", "v1", "deployments", "Deployment", singular="deployment", short_names=("deploy",),
                 subresources=frozenset({"status"}), generation=True),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", singular="role"),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", singular="rolebinding"),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False,
                 singular="clusterrole"),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False,
                 singular="clusterrolebinding"),
    # The review APIs: create-only, answered and never stored (reviews.py).
    ResourceType("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", namespaced=False,
                 singular="tokenreview", verbs=CREATE_ONLY),
    ResourceType("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", namespaced=False,
                 singular="selfsubjectreview", verbs=CREATE_ONLY),
    ResourceType("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", namespaced=False,
                 singular="subjectaccessreview", verbs=CREATE_ONLY),
    ResourceType("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview",
                 namespaced=False, singular="selfsubjectaccessreview", verbs=CREATE_ONLY),
    ResourceType("authorization.k8s.io", "v1", "localsubjectaccessreviews", "LocalSubjectAccessReview",
                 singular="localsubjectaccessreview", verbs=CREATE_ONLY),
    ResourceType("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview",
                 namespaced=False, singular="selfsubjectrulesreview", verbs=CREATE_ONLY),
    ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
                 namespaced=False, singular="customresourcedefinition", short_names=("crd", "crds"),
                 subresources=frozenset({"status"}), generation=True),
)

CRD_KEY = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
CLUSTER_ROLE_KEY = ("rbac.authorization.k8s.io", "v1", "clusterroles")
RBAC_KEYS = (("rbac.authorization.k8s.io", "v1", "roles"), ("rbac.authorization.k8s.io", "v1", "rolebindings"),
             CLUSTER_ROLE_KEY, ("rbac.authorization.k8s.io", "v1", "clusterrolebindings"))
NAMESPACE_KEY = ("", "v1", "namespaces")

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def from_crd(crd: JsonObj) -> list[ResourceType]:
    """The served versions of a CRD; raises a 422 ApiError naming every problem (bad names, bad CEL rules)."""
    name = str((crd.get("metadata") or {}).get("name") or "")
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    errors: list[FieldError] = []
    for required in ("group", "names", "versions"):
        if not spec.get(required):
            errors.append(fe.required(f"spec.{required}"))
    for required in ("plural", "kind"):
        if names and not names.get(required):
            errors.append(fe.required(f"spec.names.{required}"))
    if spec.get("group") and names.get("plural") and name != f"{names['plural']}.{spec['group']}":
        errors.append(fe.invalid("metadata.name", name, "must be spec.names.plural+\".\"+spec.group"))
    if errors:
        raise api_errors.invalid("CustomResourceDefinition", "apiextensions.k8s.io", name, errors)
    types = []
    for i, version in enumerate(spec["versions"]):
        if not version.get("served", True):
            continue
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        where = f"spec.versions[{i}].schema.openAPIV3Schema"
        try:
            rules = RuleSet.compile(schema, where) if isinstance(schema, dict) else RuleSet(None)
        except CelRuleError as e:
            errors.extend(e.errors)
            continue
        types.append(ResourceType(
            group=spec["group"], version=version["name"], plural=names["plural"], kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            singular=names.get("singular") or names["kind"].lower(),
            short_names=tuple(names.get("shortNames") or ()), categories=tuple(names.get("categories") or ()),
            subresources=frozenset((version.get("subresources") or {}).keys()),
            generation=True, custom=True, schema=schema, rules=rules,
            printer_columns=tuple(version.get("additionalPrinterColumns") or ()), crd_name=name,
        ))
    if errors:
        raise api_errors.invalid("CustomResourceDefinition", "apiextensions.k8s.io", name, errors)
    return types


def is_dns_label(name: str) -> bool:
    return len(name) <= 63 and bool(_DNS_LABEL.fullmatch(name))
