"""The API server's service proxy, as the sandbox needs it: `…/namespaces/{ns}/services/{name}[:{port}]/proxy/{path}`.

A real API server forwards to a pod behind the Service. The emulator has no pods: it forwards to the Service
port's `targetPort` (its `port` when targetPort is absent or names a container port) on 127.0.0.1, so whatever
listens there on this machine (the operator's HTTP server in the tests and the sandbox) plays the pod. Only
loopback is ever a target, and only plain HTTP. Like the real server, it forwards every header but the
credentials it consumed: Authorization and the Impersonate-* headers (so a backend that wants the caller's token
must be sent it in another header, such as X-Deploymind-Authorization).
"""

from __future__ import annotations

from typing import Any, Final

import aiohttp

from deploymind.sandbox.kube import api_errors
from deploymind.sandbox.kube.api_errors import ApiError
from deploymind.sandbox.kube.impersonation import is_impersonation
from deploymind.sandbox.kube.kmock_boundary import Call, Reply

JsonObj = dict[str, Any]
PROXY: Final = "proxy"
TIMEOUT_SECONDS: Final = 30.0
_HOP_BY_HOP: Final = frozenset({"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"})


def is_proxy(call: Call) -> bool:
    sub = call.subresource or ""
    return call.group == "" and call.plural == "services" and (sub == PROXY or sub.startswith(PROXY + "/"))


def split_name(name: str) -> tuple[str, str, str]:
    """`[scheme:]name[:port]` → (scheme, service name, port name or number; '' for the first port)."""
    parts = name.split(":")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return "http", parts[0], parts[1]
    return "http", name, ""


def target_port(service: JsonObj, port: str) -> int:
    """The loopback port that plays the Service's endpoint for `port` (a port name or number, '' for the first)."""
    ports = [p for p in (service.get("spec") or {}).get("ports") or [] if isinstance(p, dict)]
    name = service["metadata"]["name"]
    chosen = next((p for p in ports if not port or port in (str(p.get("name", "")), str(p.get("port", "")))), None)
    if chosen is None:
        raise ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"'
                       + (f" port {port!r}" if port else "") + ": give the Service a matching spec.ports entry")
    target = chosen.get("targetPort")
    return int(target) if isinstance(target, int) or (isinstance(target, str) and target.isdigit()) \
        else int(chosen["port"])


def _path(call: Call) -> str:
    """The path after `/proxy` (at least '/')."""
    _, _, rest = call.path.partition(f"/services/{call.name}/{PROXY}")
    return rest or "/"


async def forward(call: Call, service: JsonObj | None) -> Reply:
    """Forward one request to the Service's loopback port and return the answer as it is."""
    assert call.name is not None
    scheme, name, port = split_name(call.name)
    if service is None:
        raise api_errors.not_found("services", "", name)
    if scheme != "http":
        raise ApiError(503, "ServiceUnavailable", f"the emulator proxies plain http only, not {scheme!r}")
    url = f"http://127.0.0.1:{target_port(service, port)}{_path(call)}"
    headers = {k: v for k, v in call.headers.items()
               if k not in _HOP_BY_HOP and k != "authorization" and not is_impersonation(k)}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)) as session, \
                session.request(call.method, url, params=dict(call.params), data=call.body or None,
                                headers=headers, allow_redirects=False) as response:
            body = await response.read()
            kept = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
            return Reply(status=response.status, raw=body, headers=kept)
    except (aiohttp.ClientError, TimeoutError) as e:
        raise ApiError(503, "ServiceUnavailable", f"error trying to reach service: {url}: {e}") from None
