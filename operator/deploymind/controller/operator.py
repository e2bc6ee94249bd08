"""Start the operator in the current event loop: Kubernetes client, runtime, history, the operator's HTTP endpoints
(/healthz, /metrics, /history/{namespace}/{name}), and Kopf, which runs only while this replica leads when leader
election is on (controller/leader.py)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import kopf
from aiohttp import web

from deploymind.controller import revisionkey
from deploymind.controller.hooks import Hooks
from deploymind.controller.kube import Kube, load_api_client
from deploymind.controller.leader import LeaderElector, run_while_leading
from deploymind.controller.runtime import Runtime, install
from deploymind.history.authz import Authorizer, PathAccess, guarded
from deploymind.history.config import HistorySettings
from deploymind.history.envkey import load_or_create_key
from deploymind.history.http import add_history_routes
from deploymind.history.listener import HistoryListener
from deploymind.history.recorder import HistoryRecorder
from deploymind.history.records import env_fingerprint
from deploymind.history.store import HistoryStore
from deploymind.metrics import METRICS, Metrics, metrics_handler
from deploymind.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoints:
    """Where the operator's own HTTP server listens (liveness, metrics, history)."""

    host: str = "127.0.0.1"
    port: int = 8080


async def _serve_http(endpoints: Endpoints, app: web.Application) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, endpoints.host, endpoints.port).start()
    return runner


def http_app(rt: Runtime, store: HistoryStore, metrics: Metrics,
             leading: Callable[[], bool] = lambda: True) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "leader": leading(), "identity": rt.settings.identity,
                                  "objects": len(rt.actors)})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    # One Authorizer for both: a caller's TokenReview is cached once, whichever endpoint it reads.
    authorizer = Authorizer(rt.kube)
    metrics_auth = authorizer if rt.settings.metrics_auth == "kubernetes" else None
    app.router.add_get("/metrics", guarded(metrics_handler(metrics), metrics_auth, lambda r: PathAccess(r.path)))
    add_history_routes(app, store, authorizer if rt.settings.history_auth == "kubernetes" else None)
    return app


def start_history(settings: Settings, hooks: Hooks, metrics: Metrics) -> tuple[HistoryRecorder, HistoryListener]:
    """Plug the history recorder and the metrics into `hooks`; the recorder migrates and writes in the background,
    so a database that is down delays history, never the operator."""
    history = HistorySettings.from_env(settings.state_dir)
    hooks.env_fingerprint = functools.partial(env_fingerprint, key=load_or_create_key(history.key_file))
    recorder = HistoryRecorder.from_settings(history, metrics)
    listener = HistoryListener(recorder, metrics)
    hooks.listeners.append(listener)
    recorder.start()
    log.info("history: %s (retention %d days)", recorder.store.url.render_as_string(hide_password=True),
             history.retention_days)
    return recorder, listener


async def run_operator(settings: Settings, *, kubeconfig: str | None = None, namespaces: Sequence[str] = (),
                       endpoints: Endpoints | None = None, hooks: Hooks | None = None,
                       stop_flag: asyncio.Event | None = None, ready_flag: asyncio.Event | None = None) -> None:
    """Run until `stop_flag` is set (or the process is signalled)."""
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig  # Kopf's own login reads it too
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    settings.source_cache.mkdir(parents=True, exist_ok=True)
    api_client = load_api_client(kubeconfig)
    # In the API server's audit log, each write names the replica that made it.
    api_client.user_agent = f"deploymind ({settings.identity})"
    kube = Kube(api_client)
    rt = Runtime(kube, settings, hooks or Hooks(), revision_key=await revisionkey.load_or_create(
        kube, settings.lease_namespace))
    install(rt)
    import deploymind.controller.handlers  # noqa: F401  (registers the Kopf handlers)

    elector = LeaderElector(api_client, settings.operator_namespace, settings.identity,
                            settings.leader_lease_seconds, on_change=METRICS.set_leader) \
        if settings.leader_election else None
    METRICS.set_leader(elector is None)
    leading = (lambda: elector.leading) if elector is not None else (lambda: True)
    recorder, listener = start_history(settings, rt.hooks, METRICS)
    # Before the election: a standby answers /healthz and /metrics (and /history) too.
    http = await _serve_http(endpoints, http_app(rt, recorder.store, METRICS, leading)) if endpoints else None

    async def run_kopf() -> None:
        # Standalone: Kopf's own peering stays off; the leader Lease decides who runs.
        await kopf.operator(standalone=True, clusterwide=not namespaces, namespaces=list(namespaces),
                            stop_flag=stop_flag, ready_flag=ready_flag)

    try:
        if elector is None:
            await run_kopf()
        else:
            await run_while_leading(elector, run_kopf, stop_flag, _exit_now)
    finally:
        if elector is not None:
            elector.close()
        for actor in list(rt.actors.values()):
            await actor.close()
        await rt.stop_secret_watches()  # a cancelled Kopf skips its cleanup handlers, which stop them otherwise
        if http is not None:
            await http.cleanup()
        await recorder.stop()
        rt.hooks.listeners.remove(listener)
        await asyncio.to_thread(recorder.store.dispose)


def _exit_now() -> None:
    """End the process at once with status 1: a replica that lost the leader Lease and did not stop in time must
    not reconcile one moment longer; its pod restarts it as a standby."""
    logging.shutdown()
    sys.stderr.flush()
    os._exit(1)
