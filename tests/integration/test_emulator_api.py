"""The emulator over HTTP behaves like kube-apiserver for the clients the operator and the tests use."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from deploymind.sandbox.api_errors import ApiError
from deploymind.sandbox.apiserver import ApiServer

GROUP, VERSION, PLURAL = "test.deploymind.io", "v1", "widgets"

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP, "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget", "shortNames": ["wdg"]},
        "versions": [{
            "name": VERSION, "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "x-kubernetes-validations": [{"rule": "self.size <= 10", "message": "size is at most 10"}],
                    "properties": {"size": {"type": "integer", "minimum": 1}, "color": {"type": "string"}},
                },
                "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
            }}},
        }],
    },
}


@pytest.fixture(scope="module")
def api() -> Iterator[ApiServer]:
    server = ApiServer(crds=[WIDGET_CRD]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def custom(api: ApiServer) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(client.ApiClient(client.Configuration(host=api.url)))


@pytest.fixture(scope="module")
def core(api: ApiServer) -> client.CoreV1Api:
    return client.CoreV1Api(client.ApiClient(client.Configuration(host=api.url)))


def widget(name: str, size: int = 1, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "metadata": {"name": name},
            "spec": {"size": size, **extra}}


def create(custom: client.CustomObjectsApi, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    result: dict[str, Any] = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body, **kw)
    return result


def fresh_name() -> str:
    return f"w-{uuid.uuid4().hex[:8]}"


def test_create_stamps_uid_resource_version_generation_and_drops_status(custom: client.CustomObjectsApi) -> None:
    obj = create(custom, dict(widget(fresh_name()), status={"phase": "Fake"}))
    meta = obj["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1
    assert int(meta["resourceVersion"]) > 0
    assert "status" not in obj


def test_spec_changes_bump_generation_and_status_changes_do_not(custom: client.CustomObjectsApi) -> None:
    name = fresh_name()
    first = create(custom, widget(name))
    second = custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name, {"spec": {"size": 2}})
    third = custom.patch_namespaced_custom_object_status(GROUP, VERSION, "default", PLURAL, name,
                                                         {"status": {"phase": "Ready"}})
    rvs = [int(o["metadata"]["resourceVersion"]) for o in (first, second, third)]
    assert rvs == sorted(set(rvs))
    assert [o["metadata"]["generation"] for o in (first, second, third)] == [1, 2, 2]
    assert third["status"] == {"phase": "Ready"}


def test_status_subresource_is_isolated_both_ways(custom: client.CustomObjectsApi) -> None:
    name = fresh_name()
    create(custom, widget(name))
    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name, {"status": {"phase": "Sneaky"}})
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, "default", PLURAL, name, {"spec": {"size": 9}})
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    assert obj["spec"] == {"size": 1}
    assert "status" not in obj


def test_stale_resource_version_is_a_409_conflict(custom: client.CustomObjectsApi) -> None:
    name = fresh_name()
    obj = create(custom, widget(name))
    obj["spec"]["size"] = 3
    custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name, obj)
    obj["spec"]["size"] = 4  # still carries the first resourceVersion
    with pytest.raises(ApiException) as caught:
        custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name, obj)
    assert caught.value.status == 409
    assert json.loads(caught.value.body)["reason"] == "Conflict"


def test_failed_json_patch_test_is_a_422(api: ApiServer, custom: client.CustomObjectsApi) -> None:
    name = fresh_name()
    create(custom, widget(name))
    patch = [{"op": "test", "path": "/spec/size", "value": 5}, {"op": "replace", "path": "/spec/size", "value": 6}]
    with pytest.raises(ApiException) as caught:
        custom.api_client.call_api(
            f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}/{name}", "PATCH", body=patch,
            header_params={"Content-Type": "application/json-patch+json"}, response_type="object",
        )
    assert caught.value.status == 422


def test_no_op_patch_keeps_the_resource_version_and_emits_no_event(api: ApiServer,
                                                                    custom: client.CustomObjectsApi) -> None:
    name = fresh_name()
    obj = create(custom, widget(name, color="red"))
    rv = obj["metadata"]["resourceVersion"]
    again = custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name, {"spec": {"color": "red"}})
    assert again["metadata"]["resourceVersion"] == rv
    stream = watch.Watch().stream(custom.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
                                  resource_version=rv, timeout_seconds=1, field_selector=f"metadata.name={name}")
    assert list(stream) == []


def test_watch_from_a_list_resource_version_replays_every_later_change(custom: client.CustomObjectsApi) -> None:
    name = fresh_name()
    listing = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    assert listing["kind"] == "WidgetList" and listing["apiVersion"] == f"{GROUP}/{VERSION}"
    create(custom, widget(name))
    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name, {"spec": {"size": 2}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    events = watch.Watch().stream(custom.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
                                  resource_version=listing["metadata"]["resourceVersion"], timeout_seconds=1,
                                  field_selector=f"metadata.name={name}")
    assert [(e["type"], e["object"]["spec"]["size"]) for e in events] == [("ADDED", 1), ("MODIFIED", 2),
                                                                          ("DELETED", 2)]


def test_label_and_field_selectors_filter_lists(custom: client.CustomObjectsApi) -> None:
    tag = uuid.uuid4().hex[:8]
    for i, tier in enumerate(("web", "db", "web")):
        body = widget(f"sel-{tag}-{i}")
        body["metadata"]["labels"] = {"tag": tag, "tier": tier}
        create(custom, body)

    def names(**kw: str) -> list[str]:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, **kw)["items"]
        return [o["metadata"]["name"] for o in items]

    assert names(label_selector=f"tag={tag},tier=web") == [f"sel-{tag}-0", f"sel-{tag}-2"]
    assert names(label_selector=f"tag={tag},tier notin (web)") == [f"sel-{tag}-1"]
    assert names(label_selector=f"tag={tag},!tier") == []
    assert names(field_selector=f"metadata.name=sel-{tag}-1") == [f"sel-{tag}-1"]


def test_strict_field_validation_refuses_unknown_fields_and_default_prunes_them(
        api: ApiServer, custom: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as caught:
        create(custom, widget(fresh_name(), shape="round"), field_validation="Strict")
    assert caught.value.status == 400
    assert 'unknown field "spec.shape"' in json.loads(caught.value.body)["message"]
    pruned = create(custom, widget(fresh_name(), shape="round"))
    assert pruned["spec"] == {"size": 1}


def test_schema_and_cel_failures_are_422_with_field_causes(custom: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as caught:
        create(custom, widget("too-big", size=11))
    status = json.loads(caught.value.body)
    assert caught.value.status == 422
    assert status["message"] == 'Widget.test.deploymind.io "too-big" is invalid: spec: Invalid value: "object": ' \
                                "size is at most 10"
    assert status["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec",
                                            "message": 'Invalid value: "object": size is at most 10'}]


def test_finalizers_hold_deletion_until_they_are_removed(custom: client.CustomObjectsApi) -> None:
    name = fresh_name()
    body = widget(name)
    body["metadata"]["finalizers"] = ["test.deploymind.io/cleanup"]
    create(custom, body)
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    held = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    assert held["metadata"]["deletionTimestamp"]
    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as caught:
        custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    assert caught.value.status == 404


def test_objects_need_an_existing_namespace_and_go_with_it(core: client.CoreV1Api) -> None:
    ns = f"ns-{uuid.uuid4().hex[:8]}"
    secret = {"metadata": {"name": "s"}, "stringData": {"token": "abc"}}
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_secret(ns, secret)
    assert caught.value.status == 404
    core.create_namespace({"metadata": {"name": ns}})
    created = core.create_namespaced_secret(ns, secret)
    assert created.data == {"token": "YWJj"} and created.type == "Opaque"
    core.delete_namespace(ns)
    with pytest.raises(ApiException):
        core.read_namespaced_secret("s", ns)
    assert ns not in [n.metadata.name for n in core.list_namespace().items]


def test_leases_and_events_are_served(core: client.CoreV1Api, api: ApiServer) -> None:
    coordination = client.CoordinationV1Api(core.api_client)
    lease = coordination.create_namespaced_lease("default", {"metadata": {"name": f"l-{uuid.uuid4().hex[:6]}"},
                                                             "spec": {"holderIdentity": "me"}})
    assert lease.spec.holder_identity == "me"
    event = core.create_namespaced_event("default", {"metadata": {"generateName": "ev-"}, "reason": "Tested",
                                                     "involvedObject": {"kind": "Widget", "name": "x"}})
    assert event.metadata.name.startswith("ev-")


def test_audit_log_records_every_request_with_its_outcome(api: ApiServer, custom: client.CustomObjectsApi) -> None:
    name = fresh_name()
    create(custom, widget(name))
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, "default", PLURAL, name, {"status": {"phase": "X"}})
    with pytest.raises(ApiException):
        create(custom, widget(name))
    audit = api.emulator.audit
    resource = f"{PLURAL}.{GROUP}"
    assert [r.code for r in audit.find("create", resource, name=None) if r.code == 409]
    (status_patch,) = audit.find("patch", resource, namespace="default", name=name, subresource="status")
    assert status_patch.code == 200
    assert [r.verb for r in audit.find(resource=resource, name=name)] == ["patch"]


def test_invalid_cel_rule_in_a_crd_is_refused_at_registration(api: ApiServer) -> None:
    crd = json.loads(json.dumps(WIDGET_CRD).replace("self.size <= 10", "self.sise <= 10").replace(
        f"{PLURAL}.{GROUP}", f"gadgets.{GROUP}").replace('"widgets"', '"gadgets"').replace('"Widget"', '"Gadget"'))
    with pytest.raises(ApiError) as caught:
        api.install_crd(crd)
    assert caught.value.code == 422
    assert "undefined field 'sise'" in caught.value.message


async def test_api_server_runs_inside_a_running_event_loop() -> None:
    async with ApiServer(crds=[WIDGET_CRD]) as server, aiohttp.ClientSession() as session:
        url = f"{server.url}/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}"
        async with session.get(url, params={"watch": "true", "timeoutSeconds": "5"}) as watching:
            assert watching.headers["Content-Type"].startswith("application/json")
            async with session.post(url, json=widget("async-one")) as created:
                assert created.status == 201
            line = await asyncio.wait_for(watching.content.readline(), 5)
            assert json.loads(line)["object"]["metadata"]["name"] == "async-one"
        assert server.emulator.audit.find("watch", f"{PLURAL}.{GROUP}")[0].code == 200
