"""Start the operator in the current event loop: Kubernetes client, runtime, history, the operator's HTTP endpoints
(/healthz, /metrics, /history/{namespace}/{name}), and Kopf."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import kopf
from aiohttp import web

from deploymind.controller import revisionkey
from deploymind.controller.hooks import Hooks
from deploymind.controller.kube import Kube, load_api_client
from deploymind.controller.runtime import Runtime, install
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


def http_app(rt: Runtime, store: HistoryStore, metrics: Metrics) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "objects": len(rt.actors)})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler(metrics))
    add_history_routes(app, store)
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
    kube = Kube(load_api_client(kubeconfig))
    rt = Runtime(kube, settings, hooks or Hooks(), revision_key=await revisionkey.load_or_create(
        kube, settings.lease_namespace))
    install(rt)
    import deploymind.controller.handlers  # noqa: F401  (registers the Kopf handlers)

    recorder, listener = start_history(settings, rt.hooks, METRICS)
    http = await _serve_http(endpoints, http_app(rt, recorder.store, METRICS)) if endpoints else None
    try:
        await kopf.operator(
            standalone=True,
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        for actor in list(rt.actors.values()):
            await actor.close()
        if http is not None:
            await http.cleanup()
        await recorder.stop()
        rt.hooks.listeners.remove(listener)
        await asyncio.to_thread(recorder.store.dispose)
