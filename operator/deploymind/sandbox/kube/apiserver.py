"""Run the emulator as an HTTP Kubernetes API server on 127.0.0.1 (and HTTPS, for clients with tokens).

Two ways: in its own thread and event loop (`ApiServer().start()` / `with ApiServer() as api:`), usable from
synchronous tests and from any other thread or loop; or inside the caller's running loop
(`async with ApiServer() as api:`), as `deploymind sandbox` does in the operator's process.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiohttp.web
import yaml

from deploymind.sandbox.kube import tls
from deploymind.sandbox.kube.emulator import RealisticEmulator
from deploymind.sandbox.kube.resources import ResourceType

T = TypeVar("T")


class ApiServerError(Exception):
    """The emulator could not be started or reached."""

    reason = "EmulatorNotRunning"


class ApiServer:
    """The emulator on `http://127.0.0.1:<free port>`; `.url`, `.emulator`, `.install_crd()`, `.stop()`.

    The same emulator also answers on `.https_url` (another free port, a certificate signed by `.ca_pem`): client-go
    sends a kubeconfig's bearer token to `https://` servers only.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, crds: Iterable[dict[str, Any]] = ()) -> None:
        self.host = host
        self._requested_port = port
        self._crds = list(crds)
        self._emulator: RealisticEmulator | None = None
        self._runner: aiohttp.web.ServerRunner | None = None
        self._port: int | None = None
        self._https_port: int | None = None
        self._certificate: tls.ServingCertificate | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None

    # ------------------------------------------------------------ what callers use
    @property
    def url(self) -> str:
        if self._port is None:
            raise ApiServerError("the emulator is not running: call start() or enter it first")
        return f"http://{self.host}:{self._port}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise ApiServerError("the emulator is not running: call start() or enter it first")
        return self._port

    @property
    def https_url(self) -> str:
        if self._https_port is None:
            raise ApiServerError("the emulator is not running: call start() or enter it first")
        return f"https://{self.host}:{self._https_port}"

    @property
    def ca_pem(self) -> bytes:
        """The CA that signed the HTTPS listener's certificate (PEM)."""
        if self._certificate is None:
            raise ApiServerError("the emulator is not running: call start() or enter it first")
        return self._certificate.ca_pem

    @property
    def emulator(self) -> RealisticEmulator:
        if self._emulator is None:
            raise ApiServerError("the emulator is not running: call start() or enter it first")
        return self._emulator

    def install_crd(self, crd: dict[str, Any]) -> list[ResourceType]:
        """Register a CRD (a manifest as a dict); raises the emulator's 422 ApiError if it is invalid."""
        return self.call(lambda emulator: emulator.install_crd(crd))

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create one object (a manifest as a dict) and return it as stored; raises the emulator's ApiError."""
        return self.call(lambda emulator: emulator.create_object(obj))

    def call(self, fn: Callable[[RealisticEmulator], T], timeout: float = 10.0) -> T:
        """Run `fn(emulator)` on the emulator's loop (its state belongs to that loop) and return the result."""
        loop = self._loop
        if loop is None:
            raise ApiServerError("the emulator is not running: call start() or enter it first")
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return fn(self.emulator)

        async def on_loop() -> T:
            return fn(self.emulator)

        return asyncio.run_coroutine_threadsafe(on_loop(), loop).result(timeout)

    def write_kubeconfig(self, path: Path, namespace: str = "default", token: str | None = None) -> Path:
        """A kubeconfig for this server, context namespace `namespace`: plain HTTP without credentials (the
        admin), or HTTPS with a bearer `token` (one registered with `emulator.add_token`) and the CA to trust."""
        cluster: dict[str, str] = {"server": self.url}
        user: dict[str, str] = {}
        if token:
            cluster = {"server": self.https_url, "certificate-authority-data": base64.b64encode(self.ca_pem).decode()}
            user = {"token": token}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": cluster}],
            "users": [{"name": "emulator", "user": user}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator",
                                                          "namespace": namespace}}],
            "current-context": "emulator",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    # ------------------------------------------------------------ inside the caller's loop
    async def __aenter__(self) -> ApiServer:
        await self._open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._close()

    # ------------------------------------------------------------ in a thread of its own
    def start(self, timeout: float = 10.0) -> ApiServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run_thread, args=(ready,), name="kube-emulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise ApiServerError(f"the emulator did not start within {timeout} s")
        if self._failure is not None:
            raise ApiServerError(f"the emulator failed to start: {self._failure}") from self._failure
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None or self._loop is None or self._stop is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _run_thread(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve_until_stopped(ready))
        finally:
            loop.close()

    async def _serve_until_stopped(self, ready: threading.Event) -> None:
        self._stop = asyncio.Event()
        try:
            await self._open()
        except BaseException as e:
            self._failure = e
            ready.set()
            raise
        ready.set()
        try:
            await self._stop.wait()
        finally:
            await self._close()

    # ------------------------------------------------------------ both
    async def _open(self) -> None:
        self._loop = asyncio.get_running_loop()
        emulator = RealisticEmulator()
        await emulator.__aenter__()
        self._emulator = emulator
        for crd in self._crds:
            emulator.install_crd(crd)
        sock = self._socket(self._requested_port)
        self._port = int(sock.getsockname()[1])
        tls_sock = self._socket(0)
        self._https_port = int(tls_sock.getsockname()[1])
        self._certificate = tls.issue(self.host)
        # A client that disconnects ends its watch at once (not at its timeout), and stopping does not wait
        # for open watches: they are cancelled after a short grace period.
        server = aiohttp.web.Server(emulator, handler_cancellation=True)
        self._runner = aiohttp.web.ServerRunner(server, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        await aiohttp.web.SockSite(self._runner, sock).start()
        await aiohttp.web.SockSite(self._runner, tls_sock, ssl_context=self._certificate.server_context()).start()

    def _socket(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        return sock

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._emulator is not None:
            await self._emulator.__aexit__(None, None, None)
        self._port = None
        self._https_port = None
        self._loop = None
