"""The one argument every step takes: the object, its parsed spec, the working status, the host, and the resolved inputs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from deploymind.api.conditions import Conditions
from deploymind.api.spec import DeploymentSpec
from deploymind.api.status import DeploymentStatus, RunRecord
from deploymind.settings import Settings
from deploymind.transport.base import Transport


@dataclass
class Desired:
    """What the spec resolves to right now."""

    revision: str
    image: str
    commit: str | None = None
    digest: str | None = None
    tarball: Path | None = None
    config: str = ""
    run: RunRecord | None = None
    """How it runs; None: as the current spec's container settings say."""
    build_key: str | None = None
    """What its image is built from (tree digest and build settings): revisions with one key share one image."""
    reuse_image: str | None = None
    """An image on the host with the same build_key: tagged as this revision's image instead of a build."""
    kept: bool = False
    """Released exactly as it ran before (a revert, `rollback-to`, a repair): `run` and the env file the host kept
    for it, nothing from the current spec."""


class Reporter(Protocol):
    """Where steps report timings and outcomes beyond conditions (history, metrics); never raises, never blocks."""

    def step(self, name: str, outcome: str, message: str, seconds: float) -> None:
        """`outcome` is the host's CamelCase result word (Built, Present, Released, CandidateUnhealthy, …)."""

    def logs(self, revision: str, lines: Sequence[str]) -> None:
        """The last log lines (scrubbed on the host) of a refused revision's container: for the history only."""


@dataclass
class StepContext:
    uid: str
    namespace: str
    name: str
    generation: int
    spec: DeploymentSpec
    status: DeploymentStatus
    conditions: Conditions
    settings: Settings
    transport: Transport
    host_key: str
    """Identifies the host across Deployments (`ssh:user@host:port`, `local:<docker host>`, …)."""
    env: dict[str, str] = field(default_factory=dict)
    """Resolved env values, Secret values included: never logged, never stored, sent only on stdin."""
    token: str | None = None
    revision_key: bytes = b""
    """The operator's HMAC key for the env part of revision ids (controller.revisionkey)."""
    trigger: str = "SpecChange"
    desired: Desired | None = None
    redeploy_token: str | None = None
    """The `deploymind.io/requested-at` token this rollout acts on (it names the host job)."""
    checkpoint: Callable[[], Awaitable[None]] | None = None
    """Called between steps: writes visible progress and stops a superseded rollout (raises Superseded)."""
    reporter: Reporter | None = None

    @property
    def uid8(self) -> str:
        return self.uid[:8]

    @property
    def host_dir(self) -> str | None:
        """Where this Deployment keeps its files on the host; None: the host decides (commands.hostpaths)."""
        return self.settings.host_dir_of(self.spec.target)

    @property
    def stable_container(self) -> str:
        return f"dm-{self.uid8}"

    async def safe_point(self) -> None:
        if self.checkpoint is not None:
            await self.checkpoint()
