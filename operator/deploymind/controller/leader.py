"""Leader election through the Lease `deploymind-leader` in the operator's namespace: one replica runs the Kopf
handlers, the others stand by and take over when it dies.

The rules are client-go's (what controller-runtime uses):
- a standby judges the Lease by its own clock, never by the holder's `renewTime` (two nodes' clocks differ): a
  Lease whose resourceVersion it has seen unchanged for `leaseDurationSeconds` is expired and may be taken;
- the leader renews every third of the duration and steps down when it has not renewed for half of it, so it has
  stopped before any standby can count the Lease as expired;
- every write carries the resourceVersion it read: of two replicas writing at once, one gets 409 and stays standby;
- a leader that stops on purpose (SIGTERM) clears `holderIdentity`, and a standby takes the Lease at its next poll.

One refinement over client-go, so a standby takes over within one duration of the leader's last renewal instead of
up to one poll later: it counts "unchanged" from the poll before the one that saw the change (the change came after
that poll was answered), as long as the polls were at most a quarter of the duration apart. Safety holds because a
quarter (the standby's doubt) + a half (the leader's renew deadline) + a sixth (`Timing.stop_grace`, the leader's
time to stop after that) is less than the whole duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import kubernetes.client as k8s
from kubernetes.client.exceptions import ApiException

from deploymind.controller.kube import Conflict, NotFound, is_transient

log = logging.getLogger(__name__)

LEASE_NAME = "deploymind-leader"


class LeaderElectionError(Exception):
    """The leader Lease cannot be read or written at all (not a passing failure); the message says what to grant."""


class LeadershipLost(Exception):
    """This replica can no longer be sure it leads; the message says why. The operator stops and exits non-zero, so
    its pod restarts as a standby."""


@dataclass(frozen=True)
class Timing:
    """Every interval of the election, from the Lease duration (`--leader-lease-seconds`)."""

    duration: float

    @property
    def renew_every(self) -> float:
        return self.duration / 3

    @property
    def renew_deadline(self) -> float:
        """The leader steps down when it has not renewed for this long."""
        return self.duration / 2

    @property
    def retry_every(self) -> float:
        """A standby's poll, and the leader's next try after a failed renewal."""
        return self.duration / 6

    @property
    def stop_grace(self) -> float:
        """How long a leader that stepped down may take to stop reconciling before the process exits regardless."""
        return self.duration / 6


@dataclass(frozen=True)
class _Seen:
    """One version of the Lease as this replica saw it: it was written after `since` (by this replica's clock)."""

    resource_version: str
    since: float


@dataclass(frozen=True)
class _Outcome:
    held: bool
    holder: str = ""
    expires_in: float = 0.0
    """Seconds until the Lease may be taken, when another replica holds it."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _text(error: BaseException) -> str:
    return str(error) or type(error).__name__


class _LeaseApi:
    """The Lease calls, each given `request_timeout`, on threads of their own: a renewal never queues behind the work
    of the default executor (Kubernetes calls of every Deployment, git, the history database)."""

    def __init__(self, api_client: k8s.ApiClient, request_timeout: float) -> None:
        self._api = k8s.CoordinationV1Api(api_client)
        self._timeout = request_timeout
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="leader-lease")

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, _request_timeout=self._timeout)
        try:
            return await loop.run_in_executor(self._pool, call)
        except ApiException as e:
            if e.status == 409:
                raise Conflict(str(e.reason)) from e
            if e.status == 404:
                raise NotFound(str(e.reason)) from e
            raise

    async def get(self, namespace: str, name: str) -> Any:
        return await self._call(self._api.read_namespaced_lease, name, namespace)

    async def create(self, namespace: str, body: k8s.V1Lease) -> Any:
        return await self._call(self._api.create_namespaced_lease, namespace, body)

    async def replace(self, namespace: str, name: str, body: k8s.V1Lease) -> Any:
        return await self._call(self._api.replace_namespaced_lease, name, namespace, body)

    def close(self) -> None:
        self._pool.shutdown(wait=False)


class LeaderElector:
    """Acquire, renew and release the leader Lease `name` in `namespace` as `identity` (the pod's name)."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str, identity: str, duration: int, *,
                 name: str = LEASE_NAME, on_change: Callable[[bool], None] | None = None) -> None:
        self.timing = Timing(float(duration))
        self._leases = _LeaseApi(api_client, request_timeout=self.timing.retry_every)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._duration = duration
        self._on_change = on_change
        self._leading = False
        self._renewed = 0.0
        """When (loop clock) the last successful take or renewal was sent."""
        self._seen: _Seen | None = None
        self._last_read: float | None = None
        """When the last answered read of the Lease was sent."""

    @property
    def leading(self) -> bool:
        return self._leading

    @property
    def where(self) -> str:
        return f"Lease {self.namespace}/{self.name}"

    def _set_leading(self, leading: bool) -> None:
        if leading != self._leading:
            self._leading = leading
            if self._on_change is not None:
                self._on_change(leading)

    async def acquire(self, stop: asyncio.Event | None = None) -> bool:
        """Wait until this replica holds the Lease (True), or until `stop` is set (False). Raises
        LeaderElectionError when the API server refuses the Lease to this replica."""
        loop = asyncio.get_running_loop()
        told = ""
        while stop is None or not stop.is_set():
            sent = loop.time()
            wait = self.timing.retry_every
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that arrives as
                # the inner call completes, and the cancelled loop would then never end.
                async with asyncio.timeout(2 * self.timing.retry_every):
                    outcome = await self._attempt()
            except Conflict:
                outcome = _Outcome(held=False)  # another replica wrote it between our read and write: read again
            except Exception as e:
                self._raise_unless_transient(e)
                if told != "error":
                    told = "error"
                    log.warning("could not read or write the leader %s (%s); still trying", self.where, _text(e))
                outcome = _Outcome(held=False)
            if outcome.held:
                self._renewed = sent
                self._set_leading(True)
                log.info("leading: this replica (%s) holds the leader %s", self.identity, self.where)
                return True
            if outcome.holder:
                wait = min(wait, max(outcome.expires_in, 0.0) + 0.01)
                if told != outcome.holder:
                    told = outcome.holder
                    log.info("standing by: %s holds the leader %s; taking over if it is not renewed for %d s",
                             outcome.holder, self.where, self._duration)
            if stop is None:
                await asyncio.sleep(wait)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await stop.wait()
        return False

    async def keep(self) -> str:
        """Renew the Lease while this replica leads; return why it stopped leading (it never returns otherwise:
        cancel it to stop renewing)."""
        loop = asyncio.get_running_loop()
        failing = False
        while True:
            deadline = self._renewed + self.timing.renew_deadline
            wake = loop.time() + self.timing.retry_every if failing else self._renewed + self.timing.renew_every
            await asyncio.sleep(max(0.0, min(wake, deadline) - loop.time()))
            sent = loop.time()
            if sent >= deadline:
                self._set_leading(False)
                return f"the leader {self.where} was not renewed for {self.timing.renew_deadline:g} s"
            try:
                async with asyncio.timeout(deadline - sent):  # not wait_for: see acquire
                    outcome = await self._attempt(renewing=True)
            except Conflict:
                failing = True  # written since we read it: read it again
                continue
            except Exception as e:
                if isinstance(e, ApiException) and not is_transient(e):
                    self._set_leading(False)
                    return f"the API server refused to renew the leader {self.where} (HTTP {e.status} {e.reason})"
                log.warning("could not renew the leader %s (%s); retrying until %g s have passed since the "
                            "last renewal", self.where, _text(e), self.timing.renew_deadline)
                failing = True
                continue
            if not outcome.held:
                self._set_leading(False)
                return f"{outcome.holder or 'nobody'} holds the leader {self.where} now"
            self._renewed = sent
            failing = False

    async def release(self) -> None:
        """Give the Lease up, if this replica holds it, so a standby takes over at its next poll instead of after
        the duration; a release that does not get through leaves the Lease to expire."""
        if not self._leading:
            return
        self._set_leading(False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timing.renew_every
        while True:
            try:
                lease = await self._leases.get(self.namespace, self.name)
                if lease.spec is not None and lease.spec.holder_identity == self.identity:
                    body = self._body(lease, holder=None)
                    await self._leases.replace(self.namespace, self.name, body)
                log.info("released the leader %s", self.where)
                return
            except (NotFound, Conflict):
                return  # gone, or written since: not ours any more
            except Exception as e:
                if not is_transient(e) or loop.time() + self.timing.retry_every > deadline:
                    log.warning("could not release the leader %s (%s); a standby takes over when it expires in "
                                "%d s", self.where, _text(e), self._duration)
                    return
            await asyncio.sleep(self.timing.retry_every)

    def close(self) -> None:
        """Let the Lease calls' threads go (after `release`)."""
        self._leases.close()

    async def _attempt(self, renewing: bool = False) -> _Outcome:
        """Read the Lease, then renew it when it is ours or, unless `renewing`, take it when it is free or expired.
        Conflict: it was written between the read and the write."""
        loop = asyncio.get_running_loop()
        sent = loop.time()
        try:
            lease = await self._leases.get(self.namespace, self.name)
        except NotFound:
            await self._leases.create(self.namespace, self._body(None, holder=self.identity))
            return _Outcome(held=True)
        expires_in = self._observe(lease, sent, loop.time())
        holder = (lease.spec.holder_identity if lease.spec is not None else None) or ""
        if holder != self.identity and (renewing or (holder and expires_in > 0)):
            return _Outcome(held=False, holder=holder, expires_in=expires_in)
        await self._leases.replace(self.namespace, self.name, self._body(lease, holder=self.identity))
        return _Outcome(held=True)

    def _observe(self, lease: Any, sent: float, received: float) -> float:
        """Note this read of the Lease; return the seconds until it counts as expired (by this replica's clock)."""
        duration = float((lease.spec.lease_duration_seconds if lease.spec is not None else None) or self._duration)
        rv = str(lease.metadata.resource_version)
        if self._seen is None or self._seen.resource_version != rv:
            # Written after our previous read was answered; a gap over a quarter of the duration between two reads
            # would leave too much doubt, so count from no earlier than that before this answer.
            earliest = received if self._last_read is None else max(self._last_read, received - duration / 4)
            self._seen = _Seen(rv, earliest)
        self._last_read = sent
        return self._seen.since + duration - received

    def _body(self, lease: Any, holder: str | None) -> k8s.V1Lease:
        """The Lease as this replica writes it: taken (a new acquireTime, one more transition), renewed, or
        released (no holder); with the resourceVersion read, so a concurrent writer gets a conflict."""
        spec = lease.spec if lease is not None and lease.spec is not None else k8s.V1LeaseSpec()
        stamp = _now()
        renewing = holder is not None and spec.holder_identity == holder
        transitions = spec.lease_transitions or 0
        if lease is not None and holder is not None and not renewing:
            transitions += 1
        return k8s.V1Lease(
            metadata=k8s.V1ObjectMeta(name=self.name, namespace=self.namespace,
                                      resource_version=lease.metadata.resource_version if lease is not None else None,
                                      labels={"app.kubernetes.io/managed-by": "deploymind"}),
            spec=k8s.V1LeaseSpec(holder_identity=holder, lease_duration_seconds=self._duration,
                                 acquire_time=spec.acquire_time if renewing or holder is None else stamp,
                                 renew_time=stamp, lease_transitions=transitions))

    def _raise_unless_transient(self, error: Exception) -> None:
        if is_transient(error):
            return
        if not isinstance(error, ApiException):
            raise error
        raise LeaderElectionError(
            f"the API server refused the leader {self.where} (HTTP {error.status} {error.reason}): the "
            f"operator's ServiceAccount needs get, create and update on leases in namespace {self.namespace} "
            "(the operator's own, $POD_NAMESPACE)") from None


async def run_while_leading(elector: LeaderElector, run: Callable[[], Coroutine[Any, Any, None]],
                            stop: asyncio.Event | None, exit_now: Callable[[], None]) -> None:
    """Stand by until `elector` leads (return if `stop` is set first), then `run()` while it leads, and release the
    Lease when `run` returns. Losing the Lease cancels `run`, gives it `stop_grace` to end, calls `exit_now` when it
    did not, and raises LeadershipLost."""
    if not await elector.acquire(stop):
        return
    # Created before `run` starts: Kopf, when it stops, cancels every task created after it started, and the Lease
    # must stay renewed while Kopf winds down.
    keeper = asyncio.create_task(elector.keep(), name="leader Lease renewal")
    runner = asyncio.create_task(run(), name="leader work")
    lost: str | None = None
    try:
        await asyncio.wait({keeper, runner}, return_when=asyncio.FIRST_COMPLETED)
        if runner.done():
            runner.result()
            return
        lost = keeper.result()
        log.error("stopping: %s; this replica may not reconcile any more, and exits so that it restarts as a "
                  "standby", lost)
        runner.cancel()
        if not (await asyncio.wait({runner}, timeout=elector.timing.stop_grace))[0]:
            log.error("still running %g s after losing the leader %s: exiting now", elector.timing.stop_grace,
                      elector.where)
            exit_now()
        raise LeadershipLost(lost)
    finally:
        pending = [task for task in (keeper, runner) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        if lost is None:
            await asyncio.shield(elector.release())
