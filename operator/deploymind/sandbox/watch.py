"""Print each Deployment's status as it changes: the sandbox's live view of what the operator does."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from kubernetes import client, config

from deploymind.api import GROUP, PLURAL, VERSION


def describe(obj: dict[str, Any]) -> str:
    meta, status = obj["metadata"], obj.get("status") or {}
    ready = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), None)
    revision = (status.get("revision") or {}).get("id", "-")
    line = f"{meta['namespace']}/{meta['name']}: phase={status.get('phase', '-')} revision={revision}"
    if ready:
        line += f" Ready={ready['status']} ({ready['reason']}: {ready.get('message', '')})"
    return line


class StatusPrinter:
    """Polls the API (twice a second) and prints a line whenever a Deployment's summary changes."""

    def __init__(self, kubeconfig: str, interval: float = 0.5) -> None:
        self._api = client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))
        self._interval = interval
        self._last: dict[str, str] = {}

    def poll(self) -> list[str]:
        listing: dict[str, Any] = self._api.list_cluster_custom_object(GROUP, VERSION, PLURAL)  # type: ignore[assignment]
        items = listing.get("items", [])
        lines = []
        for obj in items:
            key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
            line = describe(obj)
            if self._last.get(key) != line:
                self._last[key] = line
                lines.append(line)
        return lines

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for line in await asyncio.to_thread(self.poll):
                print(line, flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
