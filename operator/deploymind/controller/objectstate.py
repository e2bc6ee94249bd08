"""What outlives one reconcile of one Deployment: the status writer, the open transport, the last rollout's outcome,
the probe counters and the bake clock. The rollout, the health tick and the revert all work on it."""

from __future__ import annotations

import dataclasses
from typing import Any

from deploymind.api.conditions import Conditions, Outcome, summarize
from deploymind.api.spec import DeploymentSpec
from deploymind.api.status import ConditionType, DeploymentStatus
from deploymind.controller.backoff import Backoff
from deploymind.controller.bake import BakeClock
from deploymind.controller.hooks import Hooks, ReportingTransport, StepReporter
from deploymind.controller.hostlease import HostLeases
from deploymind.controller.kube import Kube
from deploymind.controller.status_writer import StatusWriter
from deploymind.controller.targets import Inputs, host_key, open_transport, target_status, transport_signature
from deploymind.hook_events import PhaseChanged
from deploymind.settings import Settings
from deploymind.steps.context import StepContext
from deploymind.transport.base import Transport


@dataclasses.dataclass
class SpecInputs:
    """The resolved inputs of the spec's own revision: its env matches `revision`, nothing else."""

    revision: str
    inputs: Inputs


class ObjectState:
    def __init__(self, kube: Kube, settings: Settings, hooks: Hooks, obj: dict[str, Any], *,
                 revision_key: bytes) -> None:
        self.kube = kube
        self.settings = settings
        self.hooks = hooks
        self.revision_key = revision_key
        self.leases = HostLeases(kube, settings.lease_namespace, settings.identity, settings.host_lease_seconds,
                                 settings.host_lease_wait_seconds)
        self.writer = StatusWriter(kube, obj)
        self.spec: DeploymentSpec | None = None
        """The last spec that parsed (its health check and rollback settings apply to the running revision)."""
        self.inputs: Inputs | None = None
        """The last inputs resolved (the transport's credentials; env of `spec_inputs` only when they match)."""
        self.spec_inputs: SpecInputs | None = None
        self.outcome = Outcome()
        """How the last rollout ended: a wait or a stall of the current generation holds until a rollout ends it."""
        self.failures = 0
        self.unreachable = 0
        self.rebuild = Backoff()
        """Drift repair of a wiped host: its failed rebuilds (by time.monotonic)."""
        self.bake = BakeClock()
        self._transport: Transport | None = None
        self._signature: str | None = None
        self._phase: str | None = None

    async def context(self, obj: dict[str, Any], spec: DeploymentSpec, status: DeploymentStatus,
                      conds: Conditions, inputs: Inputs) -> StepContext:
        signature = transport_signature(spec, inputs, self.settings)
        if self._transport is None or signature != self._signature:
            if self._transport is not None:
                await self._transport.close()
            self._transport = ReportingTransport(open_transport(spec, inputs, self.settings), self.hooks)
            self._signature = signature
        meta = obj["metadata"]
        health = status.target.health if status.target else None
        status.target = target_status(inputs.host, f"dm-{meta['uid'][:8]}", health)
        return StepContext(uid=meta["uid"], namespace=meta["namespace"], name=meta["name"],
                           generation=meta.get("generation", 1), spec=spec, status=status, conditions=conds,
                           settings=self.settings, transport=self._transport, host_key=host_key(spec, self.settings),
                           env=inputs.env, token=inputs.token, revision_key=self.revision_key,
                           reporter=StepReporter(self.hooks, meta["uid"]))

    @property
    def has_transport(self) -> bool:
        return self._transport is not None

    async def write(self, status: DeploymentStatus, conds: Conditions, outcome: Outcome) -> None:
        healthy = conds.get(ConditionType.HEALTHY)
        if status.target is not None and healthy is not None:
            status.target.health = {"True": "Healthy", "False": "Unhealthy"}.get(str(healthy.status), "Unknown")
        status.phase = summarize(conds, outcome)
        status.conditions = conds.as_list()
        await self.writer.write(status)
        if status.phase is not None and status.phase != self._phase:  # also after a restart: metrics start empty
            self._phase = status.phase
            meta = self.writer.obj["metadata"]
            self.hooks.emit(PhaseChanged(namespace=meta["namespace"], name=meta["name"], phase=status.phase))

    def tick_delay(self) -> float:
        if self.spec is None:
            return float(self.settings.backoff_max_seconds)
        period = float(self.spec.probe_period)
        if self.unreachable:
            return float(min(period * 2 ** self.unreachable, self.settings.backoff_max_seconds))
        return period

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.close()
