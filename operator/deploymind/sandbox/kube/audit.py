"""The emulator's audit log: one record per request, so tests can assert what a client really did.

Verbs are the apiserver's audit verbs (get, list, watch, create, update, patch, delete, deletecollection);
`resource` is `plural.group` (`deployments.deploymind.io`, `secrets` for the core group), as in RBAC; `user` is
the user the request ran as (after impersonation; empty when it failed authentication).

Besides the bounded records, the log keeps every distinct set of request attributes each user asked for, without
bound (it grows with the API surface and the objects a client names, not with the number of requests), so a test
at the end of a whole suite can compare what a client did with the RBAC rules it is meant to run under.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from deploymind.sandbox.kube.request_info import RequestAttributes


@dataclass
class AuditRecord:
    """One request. `code` is None while the response is still being produced (a watch in flight)."""

    verb: str
    path: str
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    code: int | None = None
    user_agent: str = ""
    user: str = ""
    api_group: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    """The query parameters (a watch's fieldSelector and resourceVersion, for example)."""


class AuditLog:
    """The newest `capacity` records (older ones are dropped, so a long-running sandbox stays bounded),
    readable from any thread."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._records: deque[AuditRecord] = deque(maxlen=capacity)
        self._requested: dict[str, set[RequestAttributes]] = {}
        self._lock = threading.Lock()

    def add(self, record: AuditRecord) -> AuditRecord:
        with self._lock:
            self._records.append(record)
        return record

    def note(self, user: str, attributes: RequestAttributes) -> None:
        """Count `attributes` among what `user` has requested."""
        with self._lock:
            self._requested.setdefault(user, set()).add(attributes)

    def requesters(self) -> list[str]:
        """Every user that has made an authenticated request, sorted."""
        with self._lock:
            return sorted(self._requested)

    def requested_by(self, user: str) -> set[RequestAttributes]:
        """The distinct attributes of every request `user` made, allowed or not (kept even when `clear()` runs)."""
        with self._lock:
            return set(self._requested.get(user, ()))

    @property
    def records(self) -> list[AuditRecord]:
        with self._lock:
            return list(self._records)

    def find(
        self,
        verb: str | None = None,
        resource: str | None = None,
        *,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        code: int | None = None,
    ) -> list[AuditRecord]:
        """Records matching every given criterion (None matches anything; `subresource=""` means none)."""
        wanted = {"verb": verb, "resource": resource, "namespace": namespace, "name": name, "code": code}
        found = []
        for record in self.records:
            if any(v is not None and getattr(record, k) != v for k, v in wanted.items()):
                continue
            if subresource is not None and (record.subresource or "") != subresource:
                continue
            found.append(record)
        return found

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
