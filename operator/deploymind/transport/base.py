"""The one protocol every transport speaks: run a whole script on a host, with an optional payload and a timeout.

A payload is what the script reads on its stdin (a build's source tarball, a release's env file), handed over named
and with its sha256, so each transport delivers it its own way: ssh and local on stdin; ssm, which has no stdin and
keeps command parameters in the account's history, through S3 (a short-lived presigned URL) or, for a payload with
secret values, Parameter Store (SecureString), piped into the script's stdin on the host. Steps never know which
transport they talk to.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from deploymind.api.reasons import AUTHENTICATION_FAILED, HOST_KEY_REJECTED, TARGET_UNREACHABLE, TRANSPORT_TIMEOUT

# The reasons a TransportError carries (one spelling everywhere: they come from api.reasons).
__all__ = [
    "AUTHENTICATION_FAILED",
    "HOST_KEY_REJECTED",
    "TARGET_UNREACHABLE",
    "TRANSPORT_TIMEOUT",
    "Payload",
    "Result",
    "Transport",
    "TransportError",
    "TransportRefused",
]


@dataclass(frozen=True)
class Payload:
    """Bytes for the script's stdin."""

    name: str
    """What it is (`source-tarball`, `env-file`): part of the names a transport stores it under."""
    data: bytes
    secret: bool = False
    """Holds secret values: never stored where a reader of build artifacts could see it (ssm: Parameter Store,
    encrypted, not S3)."""
    key: str = ""
    """Names the object and revision it belongs to (`payload_key`), for where a transport stores it."""

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def owner_key(namespace: str, name: str, uid: str) -> str:
    """`<namespace>/<name>/<uid>`: what one Deployment object stores under. The uid keeps two objects of one name
    apart: two clusters sharing a bucket and a parameter prefix, or a Deployment deleted and created again."""
    return f"{namespace}/{name}/{uid}"


def payload_key(namespace: str, name: str, uid: str, revision: str) -> str:
    """A payload's `key`: `<namespace>/<name>/<uid>/<revision>`."""
    return f"{owner_key(namespace, name, uid)}/{revision}"


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


class TransportRefused(TransportError):
    """Nothing was run, and retrying cannot help until an administrator changes the operator's settings or its
    permissions (ssm: no build bucket, access denied to S3, Parameter Store or SSM) or the payload changes (too
    large to deliver)."""

    @property
    def needs_user(self) -> bool:
        return True


class Transport(Protocol):
    """A way to reach one host. Implementations: local (sandbox/tests), ssh, ssm."""

    name: str
    calls: int
    """Scripts run so far (round trips to the host), for tests and metrics."""

    async def run(self, script: str, *, payload: Payload | None = None, timeout: float = 300.0) -> Result:  # noqa: ASYNC109 - per-call limit of the protocol
        """Run `script` with `sh` on the host, `payload` on its stdin (else an empty stdin). Raise TransportError,
        never hang past timeout."""
        ...

    async def close(self) -> None:
        """Release connections; the transport may be used again afterwards (it reconnects)."""
        ...
