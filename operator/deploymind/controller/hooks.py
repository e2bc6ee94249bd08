"""What the controller tells the world besides status: history rows and metrics. Calls never block and never raise."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from deploymind.api.enums import STEP_FAILED, STEP_SKIPPED, STEP_SUCCEEDED, StepStatus
from deploymind.hook_events import CandidateLogsCaptured, HookEvent, StepFinished, TransportCalled
from deploymind.transport.base import Payload, Result, Transport, TransportError

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
    listeners: list[Callable[[HookEvent], None]] = field(default_factory=list)
    """Receive every event (deploymind.hook_events)."""
    env_fingerprint: EnvFingerprint = field(default=_names_only)
    """The operator sets a keyed one (history.envkey) when it records history."""

    def emit(self, event: HookEvent) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a broken metrics or history sink must never stop a rollout
                log.exception("hook %s failed", type(event).__name__)


# Step outcomes (the host scripts' result words) that mean the step had nothing to do.
_SKIPPED_OUTCOMES = frozenset({"Present", "Unchanged"})
_SUCCEEDED_OUTCOMES = frozenset({"Built", "Released"})


@dataclass
class StepReporter:
    """A steps.context.Reporter that tells the hooks about one object's steps as StepFinished events."""

    hooks: Hooks
    uid: str

    def step(self, name: str, outcome: str, message: str, seconds: float) -> None:
        status: StepStatus = STEP_SUCCEEDED if outcome in _SUCCEEDED_OUTCOMES \
            else STEP_SKIPPED if outcome in _SKIPPED_OUTCOMES else STEP_FAILED
        self.hooks.emit(StepFinished(uid=self.uid, step=name, status=status, reason=outcome, message=message,
                                     seconds=seconds))

    def logs(self, revision: str, lines: Sequence[str]) -> None:
        self.hooks.emit(CandidateLogsCaptured(uid=self.uid, revision=revision, lines=tuple(lines)))


class ReportingTransport:
    """Wraps a transport to tell the hooks about every round trip (TransportCalled, with the error's reason)."""

    def __init__(self, inner: Transport, hooks: Hooks) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls = 0
        self._hooks = hooks

    async def run(self, script: str, *, payload: Payload | None = None, timeout: float = 300.0) -> Result:  # noqa: ASYNC109
        self.calls += 1
        try:
            result = await self.inner.run(script, payload=payload, timeout=timeout)
        except TransportError as e:
            self._hooks.emit(TransportCalled(transport=self.name, error_reason=e.reason))
            raise
        self._hooks.emit(TransportCalled(transport=self.name))
        return result

    async def close(self) -> None:
        await self.inner.close()
