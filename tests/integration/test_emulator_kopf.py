"""Kopf 1.45 runs against the emulator as against a cluster: handlers, status, retries, finalizers, events."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import kopf

from deploymind.sandbox.kube.apiserver import ApiServer

GROUP, VERSION, PLURAL = "kopf.test.deploymind.io", "v1", "things"
BASE = f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}"
CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP, "scope": "Namespaced", "names": {"plural": PLURAL, "kind": "Thing"},
        "versions": [{
            "name": VERSION, "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            }}},
        }],
    },
}


def operator_registry(url: str) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, default_namespace="default")

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = "kopf.test.deploymind.io/finalizer"
        settings.posting.level = 20
        settings.queueing.idle_timeout = 0.5  # per-object workers end soon after their last event: a quick stop

    @kopf.on.create(GROUP, VERSION, PLURAL, id="created", registry=registry)
    def created(spec: kopf.Spec, patch: kopf.Patch, body: kopf.Body, retry: int, **_: Any) -> dict[str, Any]:
        if retry == 0:
            raise kopf.TemporaryError("the first attempt fails on purpose", delay=0.2)
        kopf.info(body, reason="Created", message="handled")
        patch.status["phase"] = "Created"
        return {"seenSize": spec.get("size")}

    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    def updated(spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> None:
        patch.status["phase"] = f"Updated to {spec.get('size')}"

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def deleted(body: kopf.Body, **_: Any) -> None:
        kopf.info(body, reason="Deleted", message="cleaned up")

    return registry


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_kopf_operator_reconciles_through_the_emulator() -> None:
    # In its own thread: Kopf waits 5 s at exit for any foreign task of its loop (an in-loop server has some).
    with ApiServer(crds=[copy.deepcopy(CRD)]) as api:
        async with aiohttp.ClientSession(api.url) as http:
            stop = asyncio.Event()
            operator = asyncio.create_task(kopf.operator(
                registry=operator_registry(api.url), standalone=True, namespaces=["default"], stop_flag=stop,
            ))
            try:
                async def get() -> dict[str, Any]:
                    async with http.get(f"{BASE}/t1") as response:
                        return dict(await response.json()) if response.status == 200 else {}

                async with http.post(BASE, json={"metadata": {"name": "t1"}, "spec": {"size": 1}}) as response:
                    assert response.status == 201

                async def phase() -> str:
                    return str((await get()).get("status", {}).get("phase"))

                async def handled() -> bool:
                    return await phase() == "Created"

                await eventually(handled)
                obj = await get()
                assert obj["status"]["created"] == {"seenSize": 1}
                assert obj["metadata"]["finalizers"] == ["kopf.test.deploymind.io/finalizer"]

                async with http.patch(f"{BASE}/t1", json={"spec": {"size": 2}},
                                      headers={"Content-Type": "application/merge-patch+json"}) as response:
                    assert response.status == 200

                async def updated() -> bool:
                    return await phase() == "Updated to 2"

                await eventually(updated)
                async with http.delete(f"{BASE}/t1") as response:
                    assert response.status == 200

                async def gone() -> bool:
                    return await get() == {}

                await eventually(gone)
                async with http.get("/api/v1/namespaces/default/events") as response:
                    reasons = {e["reason"] for e in (await response.json())["items"]}
                assert {"Created", "Deleted"} <= reasons
            finally:
                stop.set()
                await asyncio.wait_for(operator, 15)
