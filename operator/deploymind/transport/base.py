"""The one protocol every transport speaks: run a whole script on a host, with optional stdin and a timeout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from deploymind.api.reasons import AUTHENTICATION_FAILED, HOST_KEY_REJECTED, TARGET_UNREACHABLE, TRANSPORT_TIMEOUT

# The reasons a TransportError carries (one spelling everywhere: they come from api.reasons).
__all__ = [
    "AUTHENTICATION_FAILED",
    "HOST_KEY_REJECTED",
    "TARGET_UNREACHABLE",
    "TRANSPORT_TIMEOUT",
    "Result",
    "Transport",
    "TransportError",
]


@dataclass(frozen=True)
class Result:
    """What a script left behind on the host: its exit code and both output streams."""

    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


class TransportError(Exception):
    """The script could not be run or its outcome is unknown (not: the script failed).

    `reason` is a CamelCase constant (`TargetUnreachable`, `TransportTimeout`, `HostKeyRejected`, …) that the
    controller puts into conditions; the message says what to do next.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def needs_user(self) -> bool:
        """Retrying cannot help (a refused key, an unknown host key) until someone changes a Secret or the host;
        a change to the Secrets a Deployment names wakes it."""
        return self.reason in (AUTHENTICATION_FAILED, HOST_KEY_REJECTED)


class Transport(Protocol):
    """A way to reach one host. Implementations: local (sandbox/tests), ssh, ssm."""

    name: str
    calls: int
    """Scripts run so far (round trips to the host), for tests and metrics."""

    async def run(self, script: str, *, stdin: bytes | None = None, timeout: float = 300.0) -> Result:  # noqa: ASYNC109 - per-call limit of the protocol
        """Run `script` with `sh` on the host; feed `stdin` if given. Raise TransportError, never hang past timeout."""
        ...

    async def close(self) -> None:
        """Release connections; the transport may be used again afterwards (it reconnects)."""
        ...
