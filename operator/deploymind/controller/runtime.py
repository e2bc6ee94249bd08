"""The operator process's shared state: API client, settings, hooks, the registry of per-object actors and which
Secrets each Deployment names (watched one by one, see controller.secretwatch)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from deploymind.api.enums import TRIGGER_SECRET_ROTATION
from deploymind.api.spec import DeploymentSpec
from deploymind.controller.actor import Actor
from deploymind.controller.hooks import Hooks
from deploymind.controller.kube import Kube
from deploymind.controller.secretwatch import ApiEndpoint, SecretWatches
from deploymind.controller.targets import host_key
from deploymind.hook_events import ObjectForgotten
from deploymind.settings import Settings


@dataclass
class Runtime:
    kube: Kube
    settings: Settings
    hooks: Hooks = field(default_factory=Hooks)
    revision_key: bytes = b""
    """controller.revisionkey: loaded before Kopf starts, so every actor has it."""
    actors: dict[tuple[str, str], Actor] = field(default_factory=dict)
    rollout_slots: asyncio.Semaphore = field(init=False)
    """settings.max_concurrent_rollouts, shared by every actor of the process."""
    secret_users: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    """(namespace, Deployment name) → the Secrets its spec names."""
    secret_watches: SecretWatches = field(init=False)

    def __post_init__(self) -> None:
        self.rollout_slots = asyncio.Semaphore(self.settings.max_concurrent_rollouts)
        self.secret_watches = SecretWatches(ApiEndpoint(self.kube.configuration), self.secret_changed)
        self.kube.on_secret_read = self.secret_watches.consumer_read

    def actor(self, namespace: str, name: str) -> Actor:
        key = (namespace, name)
        if key not in self.actors:
            self.actors[key] = Actor(self.kube, self.settings, self.hooks, namespace, name,
                                     revision_key=self.revision_key, slots=self.rollout_slots)
        return self.actors[key]

    def forget_actor(self, namespace: str, name: str) -> None:
        self.actors.pop((namespace, name), None)

    def wake(self, namespace: str, name: str, trigger: str, generation: int | None = None) -> None:
        # The actor may not exist yet (a create handler can run before the daemon starts): create it, so the
        # trigger is kept and the daemon picks up the same actor.
        self.actor(namespace, name).wake(trigger, generation)

    def names_secrets(self, namespace: str, name: str, secrets: Iterable[str]) -> None:
        """What a Deployment's spec names now (nothing once it is deleted): the watched Secrets follow, each watched
        while at least one Deployment names it."""
        key, wanted = (namespace, name), frozenset(secrets)
        if self.secret_users.get(key, frozenset()) == wanted:
            return
        if wanted:
            self.secret_users[key] = wanted
        else:
            self.secret_users.pop(key, None)
        self.secret_watches.want({(ns, secret) for (ns, _), named in self.secret_users.items() for secret in named})

    def secret_changed(self, namespace: str, secret: str) -> None:
        """A named Secret was rotated, created or deleted: every Deployment that reads it reconciles."""
        for (ns, name), named in list(self.secret_users.items()):
            if ns == namespace and secret in named:
                self.wake(ns, name, TRIGGER_SECRET_ROTATION)

    async def stop_secret_watches(self) -> None:
        """The handlers stop (operator shutdown, leadership lost): forget what was named, end every watch."""
        self.secret_users.clear()
        await self.secret_watches.close()

    def host_key(self, spec: DeploymentSpec) -> str:
        return host_key(spec, self.settings)

    def metrics_forget(self, namespace: str, name: str) -> None:
        self.hooks.emit(ObjectForgotten(namespace=namespace, name=name))


_current: Runtime | None = None


def install(rt: Runtime) -> None:
    """Set the process's runtime before Kopf starts (the `run` and `sandbox` commands do)."""
    global _current
    _current = rt


def runtime() -> Runtime:
    if _current is None:
        raise RuntimeError("the DeployMind runtime is not installed: start the operator with `deploymind run`")
    return _current
