"""The emulator's service proxy reaches what listens on a Service's targetPort on 127.0.0.1, as kubectl sees it."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from world.kubetools import Kubectl
from world.ports import free_port


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200 if self.path.startswith("/hello") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def namespace(kubectl: Kubectl) -> str:
    name = f"proxy-{uuid.uuid4().hex[:8]}"
    assert kubectl("create", "namespace", name).returncode == 0
    return name


def service(name: str, port: int, target: int | None) -> str:
    entry: dict[str, object] = {"name": "http", "port": port}
    if target is not None:
        entry["targetPort"] = target
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                           "spec": {"ports": [entry]}})


def test_the_proxy_forwards_path_and_query_to_the_target_port(kubectl: Kubectl, namespace: str,
                                                                echo_port: int) -> None:
    assert kubectl("apply", "-n", namespace, "-f", "-", input=service("echo", 80, echo_port)).returncode == 0

    for address in ("echo:http", "echo:80", "echo", "http:echo:http"):
        done = kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/services/{address}/proxy/hello/a?limit=3")
        assert done.returncode == 0, (address, done.stderr)
        assert json.loads(done.stdout) == {"path": "/hello/a?limit=3"}


def test_the_proxy_passes_the_targets_error_status_through(kubectl: Kubectl, namespace: str, echo_port: int) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=service("echo", echo_port, None))

    done = kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/services/echo:http/proxy/missing")

    assert done.returncode != 0 and "NotFound" in done.stderr


def test_a_missing_service_or_port_or_listener_is_refused_with_a_status(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=service("idle", 80, free_port()))
    base = f"/api/v1/namespaces/{namespace}/services"

    missing = kubectl("get", "--raw", f"{base}/nothing:http/proxy/")
    wrong_port = kubectl("get", "--raw", f"{base}/idle:grpc/proxy/")
    nobody_listens = kubectl("get", "--raw", f"{base}/idle:http/proxy/")

    assert 'services "nothing" not found' in missing.stderr
    assert "no endpoints available" in wrong_port.stderr
    assert "error trying to reach service" in nobody_listens.stderr
