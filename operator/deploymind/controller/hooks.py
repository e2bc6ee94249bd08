"""What the controller tells the world besides status: history rows and metrics. Calls never block and never raise."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from deploymind.transport.base import Result, Transport, TransportError

log = logging.getLogger(__name__)

PortClaims = Callable[[str, int], Iterable[tuple[str, str, str]]]
"""(host key, port) → claims as (creationTimestamp, namespace, name)."""


EnvFingerprint = Callable[[Mapping[str, str]], tuple[tuple[str, ...], str]]
"""Resolved env → (sorted names, keyed hash); the values never leave the controller."""


def _no_claims(host: str, port: int) -> Iterable[tuple[str, str, str]]:
    return ()


def _names_only(env: Mapping[str, str]) -> tuple[tuple[str, ...], str]:
    return tuple(sorted(env)), ""


@dataclass
class Hooks:
    """Shared by every actor of one operator process."""

    port_claims: PortClaims = field(default=_no_claims)
    listeners: list[Callable[[str, dict[str, object]], None]] = field(default_factory=list)
    """Receive (event name, fields): rollout_started, rollout_finished, step, health, revert, transport_call, phase,
    cleanup (history.listener lists the fields of each)."""
    env_fingerprint: EnvFingerprint = field(default=_names_only)
    """The operator sets a keyed one (history.envkey) when it records history."""

    def emit(self, event: str, **fields: object) -> None:
        for listener in self.listeners:
            try:
                listener(event, fields)
            except Exception:  # a broken metrics or history sink must never stop a rollout
                log.exception("hook %s failed", event)


# Step outcomes (the host scripts' result words) that mean the step had nothing to do.
_SKIPPED_OUTCOMES = frozenset({"Present", "Unchanged"})
_SUCCEEDED_OUTCOMES = frozenset({"Built", "Released"})


@dataclass
class StepReporter:
    """A steps.context.Reporter that tells the hooks about one object's steps as `step` events."""

    hooks: Hooks
    uid: str

    def step(self, name: str, outcome: str, message: str, seconds: float) -> None:
        status = "Succeeded" if outcome in _SUCCEEDED_OUTCOMES else "Skipped" if outcome in _SKIPPED_OUTCOMES \
            else "Failed"
        self.hooks.emit("step", uid=self.uid, step=name, status=status, reason=outcome, message=message,
                        seconds=seconds)

    def logs(self, revision: str, lines: Sequence[str]) -> None:
        self.hooks.emit("candidate_logs", uid=self.uid, revision=revision, lines=tuple(lines))


class ReportingTransport:
    """Wraps a transport to tell the hooks about every round trip (`transport_call`, with the error's reason)."""

    def __init__(self, inner: Transport, hooks: Hooks) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls = 0
        self._hooks = hooks

    async def run(self, script: str, *, stdin: bytes | None = None, timeout: float = 300.0) -> Result:  # noqa: ASYNC109
        self.calls += 1
        try:
            result = await self.inner.run(script, stdin=stdin, timeout=timeout)
        except TransportError as e:
            self._hooks.emit("transport_call", transport=self.name, error_reason=e.reason)
            raise
        self._hooks.emit("transport_call", transport=self.name)
        return result

    async def close(self) -> None:
        await self.inner.close()
