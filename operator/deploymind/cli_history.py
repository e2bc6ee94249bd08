"""`deploymind history NAME`: one Deployment's rollouts and reverts, read from the operator's /history endpoint;
with `--revision`, one revision's attempts, steps and (if it was refused) its container's last log lines.

In a cluster the request goes through the Kubernetes API server's service proxy
(`/api/v1/namespaces/{ns}/services/{service}:{port}/proxy/history/{namespace}/{name}`), so no port of the operator
is exposed, and Kubernetes RBAC decides twice: the API server lets the user `get` `services/proxy`, and the operator
(`--history-auth kubernetes`) lets them read only Deployments they may `get`. For that second check the CLI sends the
kubeconfig's bearer token in X-Deploymind-Authorization, since the proxy strips Authorization. The sandbox registers
the same Service, so its kubeconfig works the same way; `--url` reads an operator's HTTP server directly, sending the
token in Authorization (only over https or to a loopback address: never in clear text across a network).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any, Final

DEFAULT_OPERATOR_NAMESPACE: Final = "deploymind-system"
DEFAULT_OPERATOR_SERVICE: Final = "deploymind"
DEFAULT_OPERATOR_PORT: Final = "http"
TIMEOUT_SECONDS: Final = 30.0
MAX_LIMIT: Final = 500  # what the endpoint accepts (history.http.MAX_LIMIT)
TOKEN_HEADER: Final = "X-Deploymind-Authorization"  # history.authz.TOKEN_HEADERS: the proxy strips Authorization
BEARER_TOKEN_REQUIRED: Final = "BearerTokenRequired"
NO_TOKEN_MESSAGE: Final = (
    "reading history needs a Kubernetes bearer token, and your kubeconfig's user has none (client certificates "
    "only?): make one, e.g. `kubectl create token SERVICEACCOUNT -n NAMESPACE`, and add it with `kubectl config "
    "set-credentials USER --token=TOKEN` (or pass --kubeconfig with a token user); any user allowed to get that "
    "Deployment will do.")


class HistoryReadError(Exception):
    """The history could not be read; `reason` is CamelCase, the message says what to do."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def history_path(namespace: str, name: str, limit: int, revision: str | None = None) -> str:
    quoted = "/".join(urllib.parse.quote(part, safe="") for part in (namespace, name))
    query: dict[str, str | int] = {"limit": limit} if revision is None else {"limit": limit, "revision": revision}
    return f"/history/{quoted}?{urllib.parse.urlencode(query)}"


def proxy_path(operator_namespace: str, service: str, port: str, path: str) -> str:
    """The API server path that proxies `path` to the operator's Service."""
    return f"/api/v1/namespaces/{operator_namespace}/services/{service}:{port}/proxy{path}"


def _refusal(status: int, body: bytes, where: str, sent_token: bool = True) -> HistoryReadError:
    """Turn an error answer (the operator's, or the API server's Status) into a message that says what to do."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = {}
    reason = str(parsed.get("reason") or f"HTTP{status}") if isinstance(parsed, dict) else f"HTTP{status}"
    message = str(parsed.get("message") or body[:300].decode(errors="replace")) if isinstance(parsed, dict) else ""
    from_api_server = isinstance(parsed, dict) and parsed.get("kind") == "Status"
    if status == 401 and not from_api_server and not sent_token:
        return HistoryReadError(BEARER_TOKEN_REQUIRED, NO_TOKEN_MESSAGE)
    if status == 401 and from_api_server:
        message += " — the API server did not accept your kubeconfig's credentials; log in again."
    elif status == 403 and from_api_server:
        message += f" — reading history needs `get` on `services/proxy` for {where}; ask your cluster administrator."
    elif reason == "ServiceUnavailable" or (status == 503 and reason != "HistoryUnavailable"):
        message += f" — is the operator running behind {where}? Check --operator-namespace/-service/-port."
    return HistoryReadError(reason, message)


def may_carry_token(url: str) -> bool:
    """A bearer token goes only where nobody on the way can read it: https, or plain http to this machine."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return True
    try:
        return parts.scheme == "http" and ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        return parts.hostname == "localhost"


def fetch_direct(url: str, path: str, token: str | None = None, timeout: float = TIMEOUT_SECONDS) -> dict[str, Any]:
    """GET `path` from the operator at `url` (the sandbox prints it), with `token` ("Bearer …") when it may
    carry one (may_carry_token)."""
    sent = token is not None and may_carry_token(url)
    request = urllib.request.Request(url.rstrip("/") + path, headers={"Authorization": token} if sent and token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body
    except urllib.error.HTTPError as e:
        if e.code == 401 and token is not None and not sent:
            raise HistoryReadError(BEARER_TOKEN_REQUIRED, f"the operator at {url} needs a bearer token, and yours "
                                   "goes only over https or to a loopback address (in clear text across a network "
                                   "anyone could take it): use https, or `kubectl port-forward` and a 127.0.0.1 URL") \
                from None
        raise _refusal(e.code, e.read(), url, sent_token=sent) from None
    except OSError as e:
        raise HistoryReadError("OperatorUnreachable",
                               f"cannot reach the operator at {url} ({e}); is the sandbox running on that port?") from None


def load_configuration(kubeconfig: str | None, context: str | None) -> Any:
    """The kubernetes client's Configuration from the kubeconfig (or, in a pod, its service account)."""
    import kubernetes.client as k8s
    import kubernetes.config as kconfig

    configuration = k8s.Configuration()
    try:
        kconfig.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (kconfig.ConfigException, OSError) as e:
        try:
            kconfig.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except kconfig.ConfigException:
            raise HistoryReadError("NoKubeconfig", f"no usable kubeconfig ({e}); pass --kubeconfig or set "
                                                   "KUBECONFIG (the sandbox prints its own), or --url") from None
    return configuration


def bearer_token(configuration: Any) -> str | None:
    """The "Bearer …" value the client would send (a static token, an exec plugin's, a service account's; the
    client refreshes an expired one first), or None for a user with client certificates only."""
    value = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
    return str(value) if value else None


def fetch_via_proxy(kubeconfig: str | None, context: str | None, operator_namespace: str, service: str, port: str,
                    path: str, timeout: float = TIMEOUT_SECONDS) -> dict[str, Any]:
    """GET `path` from the operator through the API server's service proxy, with the kubeconfig's credentials."""
    import kubernetes.client as k8s

    configuration = load_configuration(kubeconfig, context)
    token = bearer_token(configuration)
    where = f"service {operator_namespace}/{service}:{port}"
    headers = {"Accept": "application/json"}
    if token is not None:
        headers[TOKEN_HEADER] = token
    with k8s.ApiClient(configuration) as client:
        request = client.param_serialize("GET", proxy_path(operator_namespace, service, port, path),
                                         header_params=headers, auth_settings=["BearerToken"])
        try:
            response = client.call_api(*request, _request_timeout=timeout)
            body = response.read()
        except Exception as e:  # urllib3 raises a different class per network failure
            raise HistoryReadError("ApiServerUnreachable",
                                   f"cannot reach the Kubernetes API server at {configuration.host} ({e}); "
                                   "check your kubeconfig and network") from None
    if not 200 <= response.status < 300:
        raise _refusal(response.status, body, where, sent_token=token is not None)
    try:
        parsed: dict[str, Any] = json.loads(body)
    except ValueError:
        raise HistoryReadError("UnexpectedAnswer", f"{where} answered something that is not the history JSON "
                                                   "(is that Service the DeployMind operator?)") from None
    return parsed


def _short_time(value: str | None) -> str:
    return "-" if not value else value.split(".")[0].removesuffix("Z") + "Z"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _table(header: Sequence[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [header, *rows]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def render_table(body: dict[str, Any]) -> str:
    """Rollouts newest first, one row each (revision, trigger, result, durations, reason); then the reverts."""
    reverted = {revert.get("attemptId"): revert for revert in body.get("reverts", [])}
    rows = []
    for rollout in body.get("rollouts", []):
        trigger = rollout.get("trigger") or "-"
        if rollout.get("triggerDetail"):
            trigger += f" ({rollout['triggerDetail']})"
        result = rollout.get("result") or "Running"
        if rollout.get("id") in reverted:
            result += ", reverted"
        steps = ", ".join(f"{step['step']} {_seconds(step.get('durationSeconds'))}" for step in rollout.get("steps", [])
                          if step.get("durationSeconds") is not None)
        rows.append([_short_time(rollout.get("startedAt")), rollout.get("revision") or "-", trigger, result,
                     _seconds(rollout.get("durationSeconds")), steps or "-", rollout.get("reason") or "-"])
    out = [_table(["STARTED", "REVISION", "TRIGGER", "RESULT", "DURATION", "STEPS", "REASON"], rows)]
    reverts = [[_short_time(r.get("at")), r.get("fromRevision") or "-", r.get("toRevision") or "-",
                r.get("reason") or "-", r.get("message") or "-"] for r in body.get("reverts", [])]
    if reverts:
        out.append(_table(["REVERTED", "FROM", "TO", "REASON", "MESSAGE"], reverts))
    return "\n\n".join(out) + "\n"


def _printable(line: str) -> str:
    """A container's log line as inert text: control characters (terminal escapes) are shown, never interpreted."""
    return "".join(c if c.isprintable() or c == "\t" else c.encode("unicode_escape").decode() for c in line)


def render_revision(body: dict[str, Any]) -> str:
    """One revision (`--revision`): its attempts and reverts as `render_table`, each attempt's steps, then the last
    log lines of every release of it that was refused, newest first."""
    out = [render_table(body).rstrip("\n")]
    for rollout in body.get("rollouts", []):
        steps = [[s.get("step") or "-", s.get("status") or "-", s.get("reason") or "-",
                  _seconds(s.get("durationSeconds")), s.get("message") or ""] for s in rollout.get("steps", [])]
        if steps:
            out.append(f"steps of the attempt started {_short_time(rollout.get('startedAt'))}:\n"
                       + _table(["STEP", "STATUS", "REASON", "DURATION", "MESSAGE"], steps))
    for logs in body.get("logs", []):
        out.append(f"last log lines of {logs.get('revision')}, refused {_short_time(logs.get('at'))}:\n"
                   + "\n".join(f"  {_printable(line)}" for line in logs.get("lines", [])))
    if not body.get("logs"):
        out.append("no log lines: only a release that was refused keeps its container's last lines")
    return "\n\n".join(out) + "\n"


def _current_namespace(kubeconfig: str | None, context: str | None) -> str:
    import kubernetes.config as kconfig

    try:
        contexts, active = kconfig.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except (kconfig.ConfigException, OSError):
        return "default"
    chosen = next((c for c in contexts if c["name"] == context), active) if context else active
    return str((chosen or {}).get("context", {}).get("namespace") or "default")


def _token_if_any(kubeconfig: str | None, context: str | None) -> str | None:
    """--url mode: the kubeconfig's token when there is a kubeconfig (an operator without auth needs none)."""
    try:
        return bearer_token(load_configuration(kubeconfig, context))
    except HistoryReadError:
        return None


def run(args: argparse.Namespace) -> int:
    namespace = args.namespace or _current_namespace(args.kubeconfig, args.context)
    path = history_path(namespace, args.name, args.limit, args.revision)
    try:
        if args.url:
            body = fetch_direct(args.url, path, _token_if_any(args.kubeconfig, args.context))
        else:
            body = fetch_via_proxy(args.kubeconfig, args.context, args.operator_namespace, args.operator_service,
                                   args.operator_port, path)
    except HistoryReadError as e:
        print(f"error: {e.reason}: {e.message}", file=sys.stderr)
        return 1
    render = render_revision if args.revision else render_table
    sys.stdout.write(json.dumps(body, indent=2) + "\n" if args.output == "json" else render(body))
    return 0


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_LIMIT}, not {text!r}")
    return int(text)


def add_parser(verbs: Any) -> None:
    """Register `history` on the CLI's subparsers."""
    history = verbs.add_parser("history", help="show a Deployment's rollouts and reverts (from the operator's "
                                                "history, through the Kubernetes API server's service proxy)")
    history.add_argument("name", metavar="NAME", help="the Deployment (deployments.deploymind.io) name")
    history.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's)")
    history.add_argument("--limit", type=_limit, default=20, metavar="N",
                         help=f"newest N rollouts and reverts, 1 to {MAX_LIMIT} (default 20)")
    history.add_argument("--revision", metavar="REV",
                         help="one revision only: its attempts, steps and, if it was refused, its last log lines")
    history.add_argument("-o", "--output", choices=("table", "json"), default="table")
    history.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, ~/.kube/config, in-cluster)")
    history.add_argument("--context", help="kubeconfig context (default: the current one)")
    history.add_argument("--operator-namespace", default=DEFAULT_OPERATOR_NAMESPACE,
                         help=f"namespace of the operator's Service (default {DEFAULT_OPERATOR_NAMESPACE})")
    history.add_argument("--operator-service", default=DEFAULT_OPERATOR_SERVICE,
                         help=f"the operator's Service (default {DEFAULT_OPERATOR_SERVICE})")
    history.add_argument("--operator-port", default=DEFAULT_OPERATOR_PORT,
                         help=f"that Service's port name or number (default {DEFAULT_OPERATOR_PORT})")
    history.add_argument("--url", help="read the operator directly at this URL instead (the sandbox prints it, "
                                       "e.g. http://127.0.0.1:8080), with your kubeconfig's bearer token, if any, "
                                       "in Authorization (only over https or to a loopback address)")
    history.set_defaults(func=run)
