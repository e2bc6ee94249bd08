"""Kopf wiring, and nothing else: every handler is thin and wakes the object's actor, which does the work.

Why the actor and not the handlers: a Kopf handler that ran a whole rollout would hold the object's event stream,
so a newer spec could not stop it; Kopf also runs daemons beside change handlers, so one actor per object is the
one lock that keeps a health tick, a rollout and a delete from interleaving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from deploymind.api import GROUP, PLURAL, VERSION
from deploymind.api.spec import DeploymentSpec
from deploymind.controller import cleanup
from deploymind.controller.plan import REQUESTED_AT, RETRY, ROLLBACK_TO
from deploymind.controller.runtime import Runtime, runtime

log = logging.getLogger(__name__)
RESOURCE = (GROUP, VERSION, PLURAL)
FINALIZER = "deploymind.io/cleanup"
MANUAL_ANNOTATIONS = (ROLLBACK_TO, REQUESTED_AT, RETRY)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopf.deploymind.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kopf.deploymind.io", key="last-handled-configuration")
    settings.posting.enabled = False  # Events come from condition changes only (StatusWriter)
    # No list/watch of CRDs and namespaces, so the chart grants neither: the namespaces served are the ones named
    # (`-n` takes names, not globs), and the CRD's resources are discovered once at startup (a new CRD version
    # comes with a chart upgrade, which restarts the operator).
    settings.scanning.disabled = True
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.networking.request_timeout = 30
    # A deleted object's actor is cancelled mid-await (a probe, a sleep); it needs more than Kopf's ten zero-time
    # cycles to unwind. Without this wait Kopf re-checks only after cancellation_timeout, and every delete takes 30 s.
    settings.background.instant_exit_timeout = 5.0


@kopf.on.login()
def login(logger: Any, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the service account; elsewhere the kubeconfig, even one without credentials (the sandbox's)."""
    return kopf.login_with_service_account(logger=logger, **kwargs) or kopf.login_with_kubeconfig(logger=logger, **kwargs)


@kopf.index(*RESOURCE)
def port_claims(spec: kopf.Spec, meta: kopf.Meta, **_: Any) -> dict[tuple[str, int], tuple[str, str, str]]:
    """(host key, port) → (creationTimestamp, namespace, name): who claimed a port on a host first."""
    rt = runtime()
    try:
        parsed = DeploymentSpec.model_validate(dict(spec))
    except ValueError:
        return {}
    return {(rt.host_key(parsed), parsed.container.port):
            (str(meta.get("creationTimestamp", "")), str(meta.get("namespace")), str(meta.get("name")))}


@kopf.on.event(*RESOURCE)
async def secrets_named(type: str | None, spec: kopf.Spec, meta: kopf.Meta, **_: Any) -> None:
    """Every event of a Deployment (the initial listing too) keeps the Secrets the operator watches in step with
    what the specs name; a deleted Deployment names none. A rotated Secret wakes its Deployments
    (Runtime.secret_changed). Async: it runs on the loop, where the watches live."""
    try:
        names = [] if type == "DELETED" else [ref.name for ref in DeploymentSpec.model_validate(dict(spec)).secret_refs()]
    except ValueError:
        names = []  # an invalid spec is Stalled until edited; the edit is the next event
    runtime().names_secrets(str(meta["namespace"]), str(meta["name"]), names)


@kopf.on.cleanup()
async def stop_secret_watches(**_: Any) -> None:
    await runtime().stop_secret_watches()


# Kopf waits this long for a cancelled actor; the actor waits less for its own rollout (actor.ROLLOUT_STOP_WAIT_S).
@kopf.daemon(*RESOURCE, cancellation_timeout=30.0)
async def actor(stopped: kopf.DaemonStopped, body: kopf.Body, meta: kopf.Meta, **kwargs: Any) -> None:
    """The object's actor: rollouts and health ticks, one at a time, until the object goes away.

    `body` is Kopf's live view of the object, refreshed by every watch event: the actor reads it instead of
    asking the API server."""
    port_claims: kopf.Index[Any, Any] = kwargs["port_claims"]
    rt = runtime()
    rt.hooks.port_claims = lambda host, port: list(port_claims.get((host, port), []))
    namespace, name = str(meta["namespace"]), str(meta["name"])
    act = rt.actor(namespace, name)

    async def interrupt_on_stop() -> None:
        await stopped.wait()
        act.interrupt()

    # A stop (operator shutdown, object deleted) ends a sleep at once instead of after the tick period or backoff.
    watcher = asyncio.create_task(interrupt_on_stop())
    try:
        await act.run(lambda: bool(stopped), lambda: body)
    finally:
        watcher.cancel()
        rt.forget_actor(namespace, name)
        await asyncio.shield(act.close())  # its transport: a kept SSH connection


@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
@kopf.on.resume(*RESOURCE)
async def spec_changed(meta: kopf.Meta, reason: str, **_: Any) -> None:
    # async, so Kopf runs it on the event loop: a sync handler runs in a worker thread, where setting the
    # actor's asyncio.Event (and creating the actor) is not safe.
    runtime().wake(str(meta["namespace"]), str(meta["name"]), "Resume" if reason == "resume" else "SpecChange",
                   int(meta.get("generation") or 0))


@kopf.on.field(*RESOURCE, field="metadata.annotations")
async def annotations_changed(meta: kopf.Meta, old: Any, new: Any, **_: Any) -> None:
    if any((old or {}).get(k) != (new or {}).get(k) for k in MANUAL_ANNOTATIONS):
        runtime().wake(str(meta["namespace"]), str(meta["name"]), "Manual")


@kopf.on.delete(*RESOURCE)
async def deleted(body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, **_: Any) -> None:
    """deletionPolicy Delete removes the app from the host (bounded in time); Orphan leaves it running."""
    rt: Runtime = runtime()
    rt.metrics_forget(str(meta["namespace"]), str(meta["name"]))
    act = rt.actor(str(meta["namespace"]), str(meta["name"]))
    async with act.lock:
        await cleanup.on_delete(rt, dict(body), dict(spec))
    with contextlib.suppress(asyncio.CancelledError):
        rt.forget_actor(str(meta["namespace"]), str(meta["name"]))
