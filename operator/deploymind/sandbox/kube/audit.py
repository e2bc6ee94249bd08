"""The emulator's audit log: one record per request, so tests can assert what a client really did.

Verbs are the apiserver's audit verbs (get, list, watch, create, update, patch, delete, deletecollection);
`resource` is `plural.group` (`deployments.deploymind.io`, `secrets` for the core group), as in RBAC.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass


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


class AuditLog:
    """The newest `capacity` records (older ones are dropped, so a long-running sandbox stays bounded),
    readable from any thread."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._records: deque[AuditRecord] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def add(self, record: AuditRecord) -> AuditRecord:
        with self._lock:
            self._records.append(record)
        return record

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
