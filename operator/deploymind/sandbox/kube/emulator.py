"""A Kubernetes API server for tests and the sandbox: kmock's emulator with kube-apiserver's REST semantics.

What it does like a real apiserver: uid, resourceVersion (one counter, bumped by every write), generation
(bumped by spec changes), creationTimestamp; 409 on a stale resourceVersion and on duplicates; finalizers and
deletionTimestamp; the status subresource isolated both ways; no-op writes that change nothing (no new
version, no event); label and field selectors; lists and watches kubectl and client-go accept (Tables, resumable
watches, 410 when too old, BOOKMARKs, timeouts); CRDs created through the API become served resources, with
their schema, defaults, pruning, `fieldValidation=Strict` and CEL rules enforced, and so are Kubernetes' own schemas,
defaults and validations of PersistentVolumeClaims, PodDisruptionBudgets and NetworkPolicies (`builtin_schemas.py`,
`builtin_strategies.py`); namespaces own their objects. /openapi/v2 and /openapi/v3 describe what is served.
Bearer tokens registered with `add_token` authenticate (401 for others) and RBAC over the stored roles and
bindings authorizes (403); a request without credentials is `system:admin`, who may do anything (`access.py`);
the review APIs answer with the same verdicts (`reviews.py`). Every request lands in `audit`, under its user.
Gaps, on purpose: no field ownership for server-side apply, no admission webhooks, no garbage collection of
ownerReferences, no built-in controllers (a Deployment never gets pods, a claim stays Pending, a disruption
budget counts no pods) but the ClusterRole aggregator.
Services proxy (`services/{name}:{port}/proxy/…`) to their targetPort on 127.0.0.1 (`service_proxy.py`).
"""

from __future__ import annotations

import copy
import datetime
import random
import string
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deploymind.sandbox.kube import (
    api_errors,
    bodies,
    openapi,
    openapi_proto,
    patches,
    rbac,
    rbac_defaults,
    reviews,
    service_proxy,
    tables,
)
from deploymind.sandbox.kube import field_errors as fe
from deploymind.sandbox.kube.access import Access
from deploymind.sandbox.kube.admission import STRICT, WARN, admit, warning_header
from deploymind.sandbox.kube.api_errors import ApiError
from deploymind.sandbox.kube.audit import AuditRecord
from deploymind.sandbox.kube.auth import UserInfo
from deploymind.sandbox.kube.kmock_boundary import Call, EmulatorBase, Key, Reply
from deploymind.sandbox.kube.resources import (
    BUILTINS,
    CLUSTER_ROLE_KEY,
    CRD_KEY,
    NAMESPACE_KEY,
    RBAC_KEYS,
    ResourceType,
    from_crd,
)
from deploymind.sandbox.kube.selectors import matches_fields, matches_labels
from deploymind.sandbox.kube.watches import EventLog, WatchRequest, stream

JsonObj = dict[str, Any]

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SERVER_VERSION = {"major": "1", "minor": "35", "gitVersion": "v1.35.0-deploymind-emulator", "platform": "linux/amd64"}
_SERVER_MANAGED = ("uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds",
                   "resourceVersion", "name", "namespace")


@dataclass(frozen=True)
class WriteOptions:
    field_validation: str = WARN
    dry_run: bool = False
    subresource: str | None = None

    @classmethod
    def of(cls, call: Call) -> WriteOptions:
        return cls(field_validation=call.params.get("fieldValidation") or WARN,
                   dry_run=call.params.get("dryRun") == "All", subresource=call.subresource)


def now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RealisticEmulator(EmulatorBase):
    """The emulator; run it over HTTP with `deploymind.sandbox.kube.apiserver.ApiServer`."""

    types: dict[Key, ResourceType]
    events: EventLog
    access: Access

    def setup(self) -> None:
        self.types = {}
        self.events = EventLog()
        self._rv = 0
        self.access = Access(lambda: (obj for key in RBAC_KEYS for obj in self.stored_all(key)), lambda: self._rv)
        for rt in BUILTINS:
            self._declare(rt)
        for name in DEFAULT_NAMESPACES:
            self._create(self.types[NAMESPACE_KEY], {"metadata": {"name": name}}, None, WriteOptions())
        for manifest in rbac_defaults.MANIFESTS:
            self.create_object(manifest)

    # ------------------------------------------------------------ public helpers
    @property
    def resource_version(self) -> int:
        """The last resourceVersion handed out."""
        return self._rv

    def install_crd(self, crd: JsonObj) -> list[ResourceType]:
        """Create (or replace) a CRD as `kubectl apply` would; its served versions become resources.

        Raises a 422 `ApiError` when the CRD is invalid, including CEL rules that do not compile.
        Must run on the emulator's event loop thread (`ApiServer.install_crd` takes care of that).
        """
        rt = self.types[CRD_KEY]
        name = str((crd.get("metadata") or {}).get("name") or "")
        current = self.stored(CRD_KEY, None, name)
        if current is None:
            self._create(rt, copy.deepcopy(crd), None, WriteOptions(STRICT))
        else:
            body = copy.deepcopy(crd)
            body.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
            self._update(rt, current, body, WriteOptions(STRICT))
        return [t for t in self.types.values() if t.crd_name == name]

    def add_token(self, token: str, user: str, groups: tuple[str, ...] | list[str] = (),
                  uid: str | None = None) -> UserInfo:
        """Accept `Authorization: Bearer <token>` as `user` (in `groups`, `system:authenticated`, and the
        ServiceAccount groups when `user` is `system:serviceaccount:<ns>:<name>`); callable from any thread."""
        return self.access.tokens.add(token, user, groups, uid)

    def create_object(self, obj: JsonObj) -> JsonObj:
        """Create one object as a client's POST would; raises its ApiError (409 when it exists, 404 without its
        namespace or type). Must run on the emulator's event loop thread (`ApiServer.create` takes care of that)."""
        group, _, version = str(obj.get("apiVersion") or "").rpartition("/")
        rt = next((t for t in self.types.values() if (t.group, t.version, t.kind) == (group, version, obj.get("kind"))),
                  None)
        if rt is None:
            raise api_errors.bad_request(f"no resource type serves {obj.get('apiVersion')} {obj.get('kind')}")
        namespace = str((obj.get("metadata") or {}).get("namespace") or "default") if rt.namespaced else None
        created, _ = self._create(rt, copy.deepcopy(obj), namespace, WriteOptions(STRICT))
        return created

    # ------------------------------------------------------------ dispatch
    def claims(self, call: Call) -> bool:
        return call.key is not None or call.path == "/version" or call.path.startswith("/openapi/")

    def admit(self, method: str, path: str, params: Mapping[str, str], headers: Mapping[str, list[str]],
              record: AuditRecord) -> UserInfo:
        return self.access.admit(method, path, params, headers, self.audit, record)

    async def serve(self, call: Call) -> Reply:
        if call.key is None:
            return self._serve_special(call)
        if service_proxy.is_proxy(call) and call.namespace and call.name:
            name = service_proxy.split_name(call.name)[1]
            return await service_proxy.forward(call, self.stored(call.key, call.namespace, name))
        rt = self.types.get(call.key)
        if rt is None or (call.namespace and not rt.namespaced) or (
                call.subresource and call.subresource not in rt.subresources):
            raise api_errors.resource_not_found(call.path)
        verb = call.record.verb
        if rt.group in reviews.GROUPS:
            if verb != "create":
                raise api_errors.method_not_allowed(verb, rt.qualified)
            answer = reviews.review(rt, bodies.decode(call), self._url_namespace(rt, call), call.user, self.access)
            return _reply(answer, 201, [])
        if verb == "watch":
            return self._watch(rt, call)
        if verb == "list":
            return self._list(rt, call)
        if verb == "deletecollection":
            return self._delete_collection(rt, call)
        if verb == "create":
            namespace = self._url_namespace(rt, call)
            obj, warnings = self._create(rt, bodies.decode(call), namespace, WriteOptions.of(call))
            return _reply(obj, 201, warnings)
        assert call.name is not None  # the remaining verbs address one object
        current = self.stored(rt.key, call.namespace if rt.namespaced else None, call.name)
        if verb == "patch" and current is None and call.content_type == patches.APPLY and not call.subresource:
            body = patches.parse_body(call.text, patches.APPLY)  # server-side apply of a missing object creates it
            obj, warnings = self._create(rt, body, self._url_namespace(rt, call), WriteOptions.of(call))
            return _reply(obj, 201, warnings)
        if current is None:
            raise api_errors.not_found(rt.plural, rt.group, call.name)
        if verb == "get":
            return self._get(rt, call, current)
        if verb == "update":
            obj, warnings = self._update(rt, current, bodies.decode(call), WriteOptions.of(call))
            return _reply(obj, 200, warnings)
        if verb == "patch":
            body = patches.parse_body(call.text, call.content_type)
            rv = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
            if rv is not None and str(rv) != current["metadata"]["resourceVersion"]:
                raise api_errors.conflict(rt.plural, rt.group, call.name)
            patched = patches.apply(current, body, call.content_type)
            patched.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
            obj, warnings = self._update(rt, current, patched, WriteOptions.of(call))
            return _reply(obj, 200, warnings)
        if verb == "delete":
            return _reply(self._delete(rt, current, bodies.delete_options(call)), 200, [])
        raise api_errors.method_not_allowed(verb, rt.qualified)

    def _serve_special(self, call: Call) -> Reply:
        if call.path == "/version":
            return Reply(body=dict(SERVER_VERSION))
        if call.path == "/openapi/v2":
            return _openapi_v2(openapi.v2(self.types.values()), call.headers.get("accept", ""))
        if call.path.rstrip("/") == "/openapi/v3":
            return Reply(body=openapi.v3_root(self.types.values()))
        return Reply(body=openapi.v3_group_version(self.types.values(), call.path.removeprefix("/openapi/v3/")))

    # ------------------------------------------------------------ writes
    def _create(self, rt: ResourceType, obj: JsonObj, namespace: str | None,
                options: WriteOptions) -> tuple[JsonObj, list[str]]:
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        obj.setdefault("apiVersion", rt.api_version)
        obj.setdefault("kind", rt.kind)
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise api_errors.bad_request("the namespace of the provided object does not match the namespace "
                                             "sent on the request")
            meta["namespace"] = namespace
            self._check_namespace_open(str(namespace))
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
            meta["name"] = f"{meta['generateName']}{suffix}"
        if rt.has_status:
            obj.pop("status", None)  # status is written through its subresource only
        for k in _SERVER_MANAGED:
            if k not in ("name", "namespace"):
                meta.pop(k, None)
        warnings = admit(rt, obj, None, field_validation=options.field_validation, subresource=None)
        name = str(meta["name"])
        if self.stored(rt.key, meta.get("namespace"), name) is not None:
            raise api_errors.already_exists(rt.plural, rt.group, name)
        _complete_builtin(rt, obj)
        new_types = from_crd(obj) if rt.key == CRD_KEY else []
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now())
        if rt.generation:
            meta["generation"] = 1
        if options.dry_run:
            return obj, warnings
        meta["resourceVersion"] = str(self._next_rv())
        self.store(rt.key, meta.get("namespace"), name, obj)
        self.events.append(rt.key, "ADDED", obj, self._rv)
        for t in new_types:
            self._declare(t)
        self._aggregate_cluster_roles(rt)
        return obj, warnings

    def _update(self, rt: ResourceType, current: JsonObj, body: JsonObj,
                options: WriteOptions) -> tuple[JsonObj, list[str]]:
        meta = body.get("metadata")
        if not isinstance(meta, dict):
            meta = body["metadata"] = {}
        cur_meta = current["metadata"]
        if meta.get("name", cur_meta["name"]) != cur_meta["name"]:
            raise api_errors.bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL "
                                         f"({cur_meta['name']})")
        rv = meta.get("resourceVersion")
        if rv is not None and str(rv) != cur_meta["resourceVersion"]:
            raise api_errors.conflict(rt.plural, rt.group, cur_meta["name"])
        if rt.has_status and options.subresource == "status":
            new = copy.deepcopy(current)
            new["status"] = body.get("status")
        elif rt.has_status:
            new = body
            new["status"] = copy.deepcopy(current.get("status"))
        else:
            new = body
        if new.get("status") is None:
            new.pop("status", None)
        new.setdefault("apiVersion", rt.api_version)
        new.setdefault("kind", rt.kind)
        new_meta = new["metadata"]
        for k in _SERVER_MANAGED:
            if k in cur_meta:
                new_meta[k] = cur_meta[k]
            else:
                new_meta.pop(k, None)
        if cur_meta.get("deletionTimestamp"):
            added = set(new_meta.get("finalizers") or ()) - set(cur_meta.get("finalizers") or ())
            if added:
                raise api_errors.invalid(rt.kind, rt.group, cur_meta["name"], [fe.forbidden(
                    "metadata.finalizers", "no new finalizers can be added if the object is being deleted")])
        warnings = admit(rt, new, current, field_validation=options.field_validation,
                         subresource=options.subresource)
        _complete_builtin(rt, new)
        new_types = from_crd(new) if rt.key == CRD_KEY else None
        if new == current or options.dry_run:
            return new, warnings  # a no-op write: no new resourceVersion, no event
        if rt.generation and _spec(new, rt) != _spec(current, rt):
            new_meta["generation"] = int(cur_meta.get("generation", 1)) + 1
        new_meta["resourceVersion"] = str(self._next_rv())
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
            self._remove(rt, new)  # the last finalizer is gone: the object goes
            return new, warnings
        self.store(rt.key, new_meta.get("namespace"), new_meta["name"], new)
        self.events.append(rt.key, "MODIFIED", new, self._rv)
        if new_types is not None:
            self._redeclare(str(new_meta["name"]), new_types)
        self._aggregate_cluster_roles(rt)
        return new, warnings

    def _delete(self, rt: ResourceType, current: JsonObj, options: JsonObj) -> JsonObj:
        meta = current["metadata"]
        preconditions = options.get("preconditions") or {}
        for field in ("uid", "resourceVersion"):
            wanted = preconditions.get(field)
            if wanted and wanted != meta.get(field):
                raise ApiError(409, "Conflict", f"Precondition failed: {field} in precondition: {wanted}, "
                                                f"{field} in object meta: {meta.get(field)}")
        if options.get("dryRun"):
            return current
        if rt.key == NAMESPACE_KEY:
            return self._delete_namespace(current)
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return current
            meta.update(deletionTimestamp=now(), deletionGracePeriodSeconds=0, resourceVersion=str(self._next_rv()))
            self.store(rt.key, meta.get("namespace"), meta["name"], current)
            self.events.append(rt.key, "MODIFIED", current, self._rv)
            return current
        meta["resourceVersion"] = str(self._next_rv())
        self._remove(rt, current)
        return current

    def _remove(self, rt: ResourceType, obj: JsonObj) -> None:
        meta = obj["metadata"]
        self.unstore(rt.key, meta.get("namespace"), meta["name"])
        self.events.append(rt.key, "DELETED", obj, self._rv)
        self._aggregate_cluster_roles(rt)
        if rt.key == CRD_KEY:
            self._redeclare(meta["name"], [])
        if rt.namespaced:
            self._reap_namespace(str(meta["namespace"]))

    def _delete_collection(self, rt: ResourceType, call: Call) -> Reply:
        options = bodies.delete_options(call)
        deleted = [self._delete(rt, obj, options) for obj in self._selected(rt, call)]
        return Reply(body={"apiVersion": rt.api_version, "kind": f"{rt.kind}List",
                           "metadata": {"resourceVersion": str(self._rv)}, "items": deleted})

    # ------------------------------------------------------------ namespaces and CRDs own other objects
    def _check_namespace_open(self, namespace: str) -> None:
        ns = self.stored(NAMESPACE_KEY, None, namespace)
        if ns is None:
            raise api_errors.not_found("namespaces", "", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError(403, "Forbidden", f"unable to create new content in namespace {namespace} because it is "
                                             "being terminated")

    def _delete_namespace(self, ns: JsonObj) -> JsonObj:
        name = ns["metadata"]["name"]
        if not ns["metadata"].get("deletionTimestamp"):
            ns["metadata"].update(deletionTimestamp=now(), resourceVersion=str(self._next_rv()))
            ns["status"] = {"phase": "Terminating"}
            self.store(NAMESPACE_KEY, None, name, ns)
            self.events.append(NAMESPACE_KEY, "MODIFIED", ns, self._rv)
            for rt in list(self.types.values()):
                if rt.namespaced:
                    for obj in self.stored_all(rt.key, name):
                        self._delete(rt, obj, {})
        self._reap_namespace(name)
        return ns

    def _reap_namespace(self, name: str) -> None:
        ns = self.stored(NAMESPACE_KEY, None, name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        if any(self.stored_all(rt.key, name) for rt in self.types.values() if rt.namespaced):
            return  # objects with finalizers still hold the namespace
        ns["metadata"]["resourceVersion"] = str(self._next_rv())
        self.unstore(NAMESPACE_KEY, None, name)
        self.events.append(NAMESPACE_KEY, "DELETED", ns, self._rv)

    def _aggregate_cluster_roles(self, written: ResourceType) -> None:
        """The clusterrole-aggregation controller, run at once: once a ClusterRole changed, the stored rules of
        every aggregated ClusterRole are the union of those of the ClusterRoles it selects."""
        if written.key != CLUSTER_ROLE_KEY:
            return
        for role in rbac.stale_aggregates(self.stored_all(CLUSTER_ROLE_KEY)):
            role["metadata"]["resourceVersion"] = str(self._next_rv())
            self.store(CLUSTER_ROLE_KEY, None, role["metadata"]["name"], role)
            self.events.append(CLUSTER_ROLE_KEY, "MODIFIED", role, self._rv)

    def _declare(self, rt: ResourceType) -> None:
        self.types[rt.key] = rt
        self.declare(rt.key, kind=rt.kind, singular=rt.singular, namespaced=rt.namespaced, verbs=rt.verbs,
                     short_names=rt.short_names, categories=rt.categories, subresources=rt.subresources)

    def _redeclare(self, crd_name: str, types: list[ResourceType]) -> None:
        """Serve exactly `types` for this CRD; objects of versions no longer served are dropped with it."""
        served = {t.key for t in types}
        for old in [t for t in self.types.values() if t.crd_name == crd_name and t.key not in served]:
            for obj in self.stored_all(old.key):
                obj["metadata"]["resourceVersion"] = str(self._next_rv())
                self.unstore(old.key, obj["metadata"].get("namespace"), obj["metadata"]["name"])
                self.events.append(old.key, "DELETED", obj, self._rv)
            del self.types[old.key]
            self.undeclare(old.key)
        for t in types:
            self._declare(t)

    # ------------------------------------------------------------ reads
    def _get(self, rt: ResourceType, call: Call, obj: JsonObj) -> Reply:
        if tables.wants_table(call.headers.get("accept", "")):
            return Reply(body=tables.table(rt, [obj], str(self._rv)))
        return Reply(body=obj)

    def _list(self, rt: ResourceType, call: Call) -> Reply:
        items = self._selected(rt, call)
        if tables.wants_table(call.headers.get("accept", "")):
            return Reply(body=tables.table(rt, items, str(self._rv)))
        return Reply(body={"apiVersion": rt.api_version, "kind": f"{rt.kind}List",
                           "metadata": {"resourceVersion": str(self._rv)}, "items": items})

    def _selected(self, rt: ResourceType, call: Call) -> list[JsonObj]:
        objects = self.stored_all(rt.key, call.namespace if rt.namespaced else None)
        chosen = [o for o in objects if self._matches(call, o)]
        return sorted(chosen, key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))

    @staticmethod
    def _matches(call: Call, obj: JsonObj) -> bool:
        meta = obj.get("metadata") or {}
        if call.namespace and meta.get("namespace") != call.namespace:
            return False
        if call.name and meta.get("name") != call.name:
            return False
        labels, fields = call.params.get("labelSelector"), call.params.get("fieldSelector")
        return ((not labels or matches_labels(labels, meta.get("labels") or {}))
                and (not fields or matches_fields(fields, obj)))

    def _watch(self, rt: ResourceType, call: Call) -> Reply:
        raw_rv = call.params.get("resourceVersion") or "0"
        try:
            since = int(raw_rv)
        except ValueError as e:
            raise api_errors.bad_request(f"resourceVersion {raw_rv!r} is not a resourceVersion of this server") from e
        initial = call.params.get("sendInitialEvents") == "true"
        if since and not initial:
            self.events.since(rt.key, since)  # raises 410 Expired now, before the stream starts
        timeout = float(call.params["timeoutSeconds"]) if call.params.get("timeoutSeconds") else None
        as_table = tables.wants_table(call.headers.get("accept", ""))
        snapshot = self._selected(rt, call) if since == 0 or initial else []
        request = WatchRequest(
            key=rt.key, since=since, initial=initial, timeout=timeout,
            selected=lambda obj: self._matches(call, obj),
            render=(lambda obj: tables.table(rt, [obj], obj["metadata"]["resourceVersion"])) if as_table else _same,
            bookmark=lambda rv: {"apiVersion": rt.api_version, "kind": rt.kind, "metadata": {
                "resourceVersion": str(rv), "annotations": {"k8s.io/initial-events-end": "true"}}},
        )
        call.record.code = 200  # the audit record of a watch is complete once the stream is accepted
        return Reply(stream=stream(self.events, request, snapshot, self._rv))

    def _url_namespace(self, rt: ResourceType, call: Call) -> str | None:
        if rt.namespaced and not call.namespace:
            raise api_errors.resource_not_found(call.path)
        return call.namespace if rt.namespaced else None

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv


def _complete_builtin(rt: ResourceType, obj: JsonObj) -> None:
    """Fields the apiserver's built-in strategies fill in."""
    if rt.key == NAMESPACE_KEY:
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        if not obj["metadata"].get("deletionTimestamp"):
            obj["status"] = {"phase": "Active"}
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif rt.key == CRD_KEY and not obj.get("status"):
        names = (obj.get("spec") or {}).get("names") or {}
        obj["status"] = {
            "acceptedNames": names,
            "storedVersions": [v["name"] for v in (obj.get("spec") or {}).get("versions") or [] if v.get("storage")],
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": now()}
                for t, r, m in (("NamesAccepted", "NoConflicts", "no conflicts found"),
                                ("Established", "InitialNamesAccepted", "the initial names have been accepted"))
            ],
        }


def _spec(obj: JsonObj, rt: ResourceType) -> JsonObj:
    """What counts for metadata.generation: everything but metadata (and status, when it is a subresource)."""
    skipped = ("metadata", "status") if rt.has_status else ("metadata",)
    return {k: v for k, v in obj.items() if k not in skipped}


def _same(obj: JsonObj) -> JsonObj:
    return obj


def _openapi_v2(document: JsonObj, accept: str) -> Reply:
    content_type = openapi_proto.negotiate(accept)
    if content_type is None:
        return Reply(status=406, raw=b"", headers={"Vary": "Accept"})
    if content_type == openapi_proto.CONTENT_TYPE:
        return Reply(raw=openapi_proto.document(document), headers={"Content-Type": content_type, "Vary": "Accept"})
    return Reply(body=document, headers={"Vary": "Accept"})


def _reply(obj: JsonObj, status: int, warnings: list[str]) -> Reply:
    return Reply(status=status, body=obj, headers={"Warning": warning_header(warnings)} if warnings else {})
