"""boto3 clients: the standard credential chain, the region of the target or the operator, AWS_ENDPOINT_URL (and
per-service overrides such as AWS_ENDPOINT_URL_SSM) honoured by botocore itself, and botocore's adaptive retry mode
(client-side rate limiting with jittered backoff for throttling) instead of a hand-written loop. Calls run off the
event loop in a bounded executor."""

from __future__ import annotations

import asyncio
import collections
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import boto3
from botocore.config import Config

from deploymind.aws.errors import THROTTLING_CODES

T = TypeVar("T")

MAX_ATTEMPTS = 8
_EXECUTOR = ThreadPoolExecutor(max_workers=8, thread_name_prefix="aws")
_lock = threading.Lock()
_clients: dict[tuple[str, str], Any] = {}
_throttled: collections.Counter[tuple[str, str]] = collections.Counter()


def default_region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def client(service: str, region: str | None) -> Any:
    """A shared client per (service, region); botocore clients are thread-safe."""
    region = region or default_region() or "us-east-1"
    key = (service, region)
    with _lock:
        found = _clients.get(key)
        if found is None:
            # S3: presigned URLs signed with SigV4 (botocore still signs them with SigV2 in us-east-1, which buckets
            # made since 2020 refuse).
            config = Config(region_name=region, retries={"mode": "adaptive", "max_attempts": MAX_ATTEMPTS},
                            connect_timeout=10, read_timeout=30, user_agent_extra="deploymind",
                            **({"signature_version": "s3v4"} if service == "s3" else {}))
            found = boto3.session.Session().client(service, config=config)
            found.meta.events.register(f"needs-retry.{found.meta.service_model.service_id.hyphenize()}",
                                       _count_throttling)
            _clients[key] = found
        return found


async def call(fn: Callable[..., T], /, **kwargs: Any) -> T:
    """Run one blocking botocore call off the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_EXECUTOR, functools.partial(fn, **kwargs))


def _count_throttling(response: tuple[Any, dict[str, Any]] | None, operation: Any, **_: Any) -> None:
    """Every throttled attempt (botocore retries it), counted by service and operation; returns None so the retry
    handler alone decides."""
    code = str(response[1].get("Error", {}).get("Code", "")) if response is not None else ""
    if code in THROTTLING_CODES:
        with _lock:
            _throttled[(operation.service_model.service_id.hyphenize(), operation.name)] += 1


def throttled_calls() -> dict[tuple[str, str], int]:
    """Throttled attempts so far, by (service, operation): for metrics and tests."""
    with _lock:
        return dict(_throttled)


def forget_clients() -> None:
    """Drop cached clients (tests that change the endpoint or credentials)."""
    with _lock:
        _clients.clear()
