"""Targeted Secret watches against the emulator: a created, rotated or deleted Secret calls back once each,
metadata-only updates never do, and a watch survives the server ending it, a 410 Gone and server errors, noticing
a rotation it could not see while it was down."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import kubernetes.client as k8s
import pytest
from kmock._internal.rendering import Request, Response

from deploymind.controller.kube import Kube, load_api_client
from deploymind.controller.secretwatch import ApiEndpoint, SecretWatches
from world.kube import Kube as WorldKube
from world.procs import wait_until_async

SECRET = "app-secret"


def secret_body(value: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}, "type": "Opaque",
            "data": {"token": base64.b64encode(value.encode()).decode()}}


class Secrets:
    """Writes to Secrets of one fresh namespace, through the kubernetes client (off the loop)."""

    def __init__(self, kube: WorldKube) -> None:
        self.namespace = f"sw-{uuid.uuid4().hex[:8]}"
        kube.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}})
        self._core = k8s.CoreV1Api(load_api_client(str(kube.kubeconfig)))

    async def create(self, value: str) -> None:
        await asyncio.to_thread(self._core.create_namespaced_secret, self.namespace, secret_body(value))

    async def replace(self, value: str) -> None:
        await asyncio.to_thread(self._core.replace_namespaced_secret, SECRET, self.namespace, secret_body(value))

    async def patch(self, patch: dict[str, Any]) -> None:
        await asyncio.to_thread(self._core.patch_namespaced_secret, SECRET, self.namespace, patch)

    async def delete(self) -> None:
        await asyncio.to_thread(self._core.delete_namespaced_secret, SECRET, self.namespace)


class Faults:
    """API server reactions for one namespace, in force from their creation: the next watch of its Secrets answers
    410 Gone, and every read of the Secret answers 500 until `recover()`. (A kmock reaction that lets a request
    through is spent, so these are made only when the faults begin.)"""

    def __init__(self, kube: WorldKube, namespace: str) -> None:
        self.expired = False
        self._failing = True
        collection = f"/api/v1/namespaces/{namespace}/secrets"
        # By path alone: kmock's "watch /path" criterion does not match watches. Only watches reach this path now.
        kube.api.call(lambda emulator: emulator[collection] << self._watch)
        kube.api.call(lambda emulator: emulator[f"get {collection}/{SECRET}"] << self._get)

    def recover(self) -> None:
        self._failing = False

    async def _watch(self, request: Request) -> Response | object:
        if self.expired or request.params.get("watch") != "true":
            return NotImplemented
        self.expired = True
        return Response(status=410, payload={"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                             "reason": "Expired", "code": 410, "message": "too old resource version"})

    async def _get(self, _: Request) -> Response | object:
        if not self._failing:
            return NotImplemented
        return Response(status=500, payload={"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                             "reason": "InternalError", "code": 500})



@pytest.fixture
def secrets(kube: WorldKube) -> Secrets:
    return Secrets(kube)


@pytest.fixture
def changes() -> list[tuple[str, str]]:
    return []


@pytest.fixture
async def watches(kube: WorldKube, changes: list[tuple[str, str]]) -> AsyncIterator[SecretWatches]:
    endpoint = ApiEndpoint(load_api_client(str(kube.kubeconfig)).configuration)
    # The server ends each watch after a second, so every test also sees watches resume.
    watch = SecretWatches(endpoint, lambda ns, name: changes.append((ns, name)), watch_timeout_s=1,
                          max_backoff_s=0.5)
    yield watch
    await watch.close()


def accepted_watches(kube: WorldKube, namespace: str) -> int:
    return len([r for r in kube.emulator.audit.find("watch", "secrets", namespace=namespace) if r.code == 200])


async def test_a_created_rotated_and_deleted_secret_call_back_once_each_and_metadata_changes_never(
        kube: WorldKube, secrets: Secrets, watches: SecretWatches, changes: list[tuple[str, str]]) -> None:
    ns = secrets.namespace
    watches.want({(ns, SECRET)})
    await wait_until_async(lambda: accepted_watches(kube, ns) >= 1, 10, "the watch of a Secret that does not exist yet")

    await secrets.create("one")
    await wait_until_async(lambda: len(changes) >= 1, 10, "the creation")
    await secrets.patch({"metadata": {"labels": {"team": "web"}, "annotations": {"note": "metadata only"}}})
    await secrets.replace("two" * 100_000)  # one event line far beyond aiohttp's readline limit (128 KiB)
    # Events arrive in order: had the label patch called back, the rotation would make three.
    await wait_until_async(lambda: len(changes) >= 2, 10, "the rotation")
    await secrets.delete()
    await wait_until_async(lambda: len(changes) >= 3, 10, "the deletion")
    assert changes == [(ns, SECRET)] * 3

    watches.want(set())
    assert watches.watched == frozenset()
    await secrets.create("three")
    await watches.close()
    assert changes == [(ns, SECRET)] * 3, "a Secret no longer wanted still called back"
    outside = [r for r in kube.emulator.audit.find(resource="secrets", namespace=ns)
               if r.user_agent == "deploymind-secretwatch" and r.verb not in ("get", "watch")]
    assert outside == [], "the watches used verbs beyond get and watch"
    unselected = [r for r in kube.emulator.audit.find("watch", "secrets", namespace=ns)
                  if r.params.get("fieldSelector") != f"metadata.name={SECRET}"]
    assert unselected == []


async def test_a_watch_resumes_after_the_server_ends_it_and_rereads_after_410_and_errors(
        kube: WorldKube, secrets: Secrets, watches: SecretWatches, changes: list[tuple[str, str]]) -> None:
    ns = secrets.namespace
    await secrets.create("one")
    watches.want({(ns, SECRET)})
    await wait_until_async(lambda: accepted_watches(kube, ns) >= 3, 10, "the watch to be ended by the server and resumed")
    reads = kube.emulator.audit.find("get", "secrets", namespace=ns, name=SECRET)
    assert len(reads) == 1, "a resumed watch read the Secret again instead of going on from its resourceVersion"
    resumed = [r.params.get("resourceVersion") for r in kube.emulator.audit.find("watch", "secrets", namespace=ns)]
    assert all(resumed), resumed
    await secrets.replace("two")
    await wait_until_async(lambda: len(changes) >= 1, 10, "the rotation seen by a resumed watch")

    # 410 Gone, then reads that fail: while no watch runs, the Secret is rotated. Once the server answers again,
    # the read shows data other than what was seen last.
    faults = Faults(kube, ns)
    await wait_until_async(
        lambda: len(kube.emulator.audit.find("get", "secrets", namespace=ns, name=SECRET, code=500)) >= 2,
        15, "reads after the 410 to fail")
    await secrets.replace("three")
    faults.recover()
    await wait_until_async(lambda: len(changes) >= 2, 15, "the rotation made while the watch was down")
    assert faults.expired
    assert changes == [(ns, SECRET)] * 2


@pytest.fixture
def reader(kube: WorldKube, watches: SecretWatches) -> Kube:
    """The operator's client, as a Deployment's reconcile reads Secrets with it: it tells the watches what it read."""
    client = Kube(load_api_client(str(kube.kubeconfig)))
    client.on_secret_read = watches.consumer_read
    return client


async def test_a_rotation_between_a_deployments_read_and_the_watchs_first_look_calls_back(
        reader: Kube, secrets: Secrets, watches: SecretWatches, changes: list[tuple[str, str]]) -> None:
    ns = secrets.namespace
    await secrets.create("one")
    # A Deployment reads the Secret, then it is rotated before the watch has taken its first look.
    assert await reader.read_secret_key(ns, SECRET, "token") == b"one"
    await secrets.replace("two")

    watches.want({(ns, SECRET)})
    await wait_until_async(lambda: len(changes) >= 1, 10, "the rotation the first look found")
    assert changes == [(ns, SECRET)]


async def test_a_first_look_that_finds_what_the_deployment_read_is_no_change(
        kube: WorldKube, reader: Kube, secrets: Secrets, watches: SecretWatches,
        changes: list[tuple[str, str]]) -> None:
    ns = secrets.namespace
    await secrets.create("one")
    assert await reader.read_secret_key(ns, SECRET, "token") == b"one"
    assert await reader.read_secret_key(ns, "absent", "token") is None
    await secrets.patch({"metadata": {"labels": {"team": "web"}}})  # metadata only

    watches.want({(ns, SECRET), (ns, "absent")})
    await wait_until_async(lambda: accepted_watches(kube, ns) >= 2, 10, "both watches running")
    await secrets.replace("two")
    await wait_until_async(lambda: len(changes) >= 1, 10, "the later rotation")
    assert changes == [(ns, SECRET)], "the first look called back though nothing changed since the read"
