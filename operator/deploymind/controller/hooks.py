"""What the controller tells the world besides status: history rows and metrics. Calls never block and never raise."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

PortClaims = Callable[[str, int], Iterable[tuple[str, str, str]]]
"""(host key, port) → claims as (creationTimestamp, namespace, name)."""


def _no_claims(host: str, port: int) -> Iterable[tuple[str, str, str]]:
    return ()


@dataclass
class Hooks:
    """Shared by every actor of one operator process."""

    port_claims: PortClaims = field(default=_no_claims)
    listeners: list[Callable[[str, dict[str, object]], None]] = field(default_factory=list)
    """Receive (event name, fields): rollout_started, rollout_finished, step, health, revert, transport_call."""

    def emit(self, event: str, **fields: object) -> None:
        for listener in self.listeners:
            try:
                listener(event, fields)
            except Exception:  # a broken metrics or history sink must never stop a rollout
                log.exception("hook %s failed", event)
