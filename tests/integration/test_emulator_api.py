"""The emulator over HTTP behaves like kube-apiserver: versions, conflicts, subresources, watches, validation, audit."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import yaml

from deploymind.sandbox.kube.api_errors import ApiError
from deploymind.sandbox.kube.apiserver import ApiServer
from deploymind.sandbox.kube.audit import AuditLog, AuditRecord

GROUP, VERSION, PLURAL = "test.deploymind.io", "v1", "widgets"
BASE = f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}"
MERGE, JSON_PATCH = "application/merge-patch+json", "application/json-patch+json"

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


class Failed(Exception):
    def __init__(self, code: int, body: dict[str, Any]) -> None:
        super().__init__(f"{code}: {body.get('message')}")
        self.code = code
        self.body = body


@dataclass(frozen=True)
class Rest:
    """A minimal JSON client: the emulator must be usable by plain HTTP, as kube-apiserver is."""

    url: str

    def call(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json",
             **params: str) -> dict[str, Any]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}{query}", data=data, method=method,
                                         headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                result: dict[str, Any] = json.loads(response.read())
                return result
        except urllib.error.HTTPError as e:
            raise Failed(e.code, json.loads(e.read())) from None

    def watch(self, path: str, **params: str) -> list[dict[str, Any]]:
        """Every event of a watch that ends by its `timeoutSeconds`."""
        query = urllib.parse.urlencode({"watch": "true", **params})
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
            return [json.loads(line) for line in response.read().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def api() -> Iterator[ApiServer]:
    server = ApiServer(crds=[WIDGET_CRD]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rest(api: ApiServer) -> Rest:
    return Rest(api.url)


def widget(name: str, size: int = 1, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "metadata": {"name": name},
            "spec": {"size": size, **extra}}


def fresh_name() -> str:
    return f"w-{uuid.uuid4().hex[:8]}"


def test_create_stamps_uid_resource_version_generation_and_drops_status(rest: Rest) -> None:
    obj = rest.call("POST", BASE, dict(widget(fresh_name()), status={"phase": "Fake"}))
    meta = obj["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1
    assert int(meta["resourceVersion"]) > 0
    assert "status" not in obj


def test_spec_changes_bump_generation_and_status_changes_do_not(rest: Rest) -> None:
    name = fresh_name()
    first = rest.call("POST", BASE, widget(name))
    second = rest.call("PATCH", f"{BASE}/{name}", {"spec": {"size": 2}}, content_type=MERGE)
    third = rest.call("PATCH", f"{BASE}/{name}/status", {"status": {"phase": "Ready"}}, content_type=MERGE)
    rvs = [int(o["metadata"]["resourceVersion"]) for o in (first, second, third)]
    assert rvs == sorted(set(rvs))
    assert [o["metadata"]["generation"] for o in (first, second, third)] == [1, 2, 2]
    assert third["status"] == {"phase": "Ready"}


def test_status_subresource_is_isolated_both_ways(rest: Rest) -> None:
    name = fresh_name()
    rest.call("POST", BASE, widget(name))
    rest.call("PATCH", f"{BASE}/{name}", {"status": {"phase": "Sneaky"}}, content_type=MERGE)
    rest.call("PATCH", f"{BASE}/{name}/status", {"spec": {"size": 9}}, content_type=MERGE)
    obj = rest.call("GET", f"{BASE}/{name}")
    assert obj["spec"] == {"size": 1}
    assert "status" not in obj


def test_stale_resource_version_is_a_409_conflict(rest: Rest) -> None:
    name = fresh_name()
    obj = rest.call("POST", BASE, widget(name))
    obj["spec"]["size"] = 3
    rest.call("PUT", f"{BASE}/{name}", obj)
    obj["spec"]["size"] = 4  # still carries the first resourceVersion
    with pytest.raises(Failed) as caught:
        rest.call("PUT", f"{BASE}/{name}", obj)
    assert caught.value.code == 409
    assert caught.value.body["reason"] == "Conflict"


def test_failed_json_patch_test_is_a_422(rest: Rest) -> None:
    name = fresh_name()
    rest.call("POST", BASE, widget(name))
    patch = [{"op": "test", "path": "/spec/size", "value": 5}, {"op": "replace", "path": "/spec/size", "value": 6}]
    with pytest.raises(Failed) as caught:
        rest.call("PATCH", f"{BASE}/{name}", patch, content_type=JSON_PATCH)
    assert caught.value.code == 422
    assert rest.call("GET", f"{BASE}/{name}")["spec"]["size"] == 1


def test_no_op_patch_keeps_the_resource_version_and_emits_no_event(rest: Rest) -> None:
    name = fresh_name()
    rv = rest.call("POST", BASE, widget(name, color="red"))["metadata"]["resourceVersion"]
    again = rest.call("PATCH", f"{BASE}/{name}", {"spec": {"color": "red"}}, content_type=MERGE)
    assert again["metadata"]["resourceVersion"] == rv
    assert rest.watch(BASE, resourceVersion=rv, timeoutSeconds="1", fieldSelector=f"metadata.name={name}") == []


def test_watch_from_a_list_resource_version_replays_every_later_change(rest: Rest) -> None:
    name = fresh_name()
    listing = rest.call("GET", BASE)
    assert listing["kind"] == "WidgetList" and listing["apiVersion"] == f"{GROUP}/{VERSION}"
    rest.call("POST", BASE, widget(name))
    rest.call("PATCH", f"{BASE}/{name}", {"spec": {"size": 2}}, content_type=MERGE)
    rest.call("DELETE", f"{BASE}/{name}")
    events = rest.watch(BASE, resourceVersion=listing["metadata"]["resourceVersion"], timeoutSeconds="1",
                        fieldSelector=f"metadata.name={name}")
    assert [(e["type"], e["object"]["spec"]["size"]) for e in events] == [("ADDED", 1), ("MODIFIED", 2),
                                                                          ("DELETED", 2)]


def test_watch_list_sends_initial_events_then_a_bookmark(rest: Rest) -> None:
    name = fresh_name()
    rest.call("POST", BASE, widget(name))
    events = rest.watch(BASE, sendInitialEvents="true", resourceVersionMatch="NotOlderThan", timeoutSeconds="1",
                        fieldSelector=f"metadata.name={name}")
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_label_and_field_selectors_filter_lists(rest: Rest) -> None:
    tag = uuid.uuid4().hex[:8]
    for i, tier in enumerate(("web", "db", "web")):
        body = widget(f"sel-{tag}-{i}")
        body["metadata"]["labels"] = {"tag": tag, "tier": tier}
        rest.call("POST", BASE, body)

    def names(**params: str) -> list[str]:
        return [o["metadata"]["name"] for o in rest.call("GET", BASE, **params)["items"]]

    assert names(labelSelector=f"tag={tag},tier=web") == [f"sel-{tag}-0", f"sel-{tag}-2"]
    assert names(labelSelector=f"tag={tag},tier notin (web)") == [f"sel-{tag}-1"]
    assert names(labelSelector=f"tag={tag},!tier") == []
    assert names(fieldSelector=f"metadata.name=sel-{tag}-1") == [f"sel-{tag}-1"]


def test_strict_field_validation_refuses_unknown_fields_and_default_prunes_them(rest: Rest) -> None:
    with pytest.raises(Failed) as caught:
        rest.call("POST", BASE, widget(fresh_name(), shape="round"), fieldValidation="Strict")
    assert caught.value.code == 400
    assert 'unknown field "spec.shape"' in caught.value.body["message"]
    assert rest.call("POST", BASE, widget(fresh_name(), shape="round"))["spec"] == {"size": 1}


def test_schema_and_cel_failures_are_422_with_field_causes(rest: Rest) -> None:
    with pytest.raises(Failed) as caught:
        rest.call("POST", BASE, widget("too-big", size=11))
    assert caught.value.code == 422
    assert caught.value.body["message"] == ('Widget.test.deploymind.io "too-big" is invalid: spec: Invalid value: '
                                            '"object": size is at most 10')
    assert caught.value.body["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec",
                                                       "message": 'Invalid value: "object": size is at most 10'}]


def test_finalizers_hold_deletion_until_they_are_removed(rest: Rest) -> None:
    name = fresh_name()
    body = widget(name)
    body["metadata"]["finalizers"] = ["test.deploymind.io/cleanup"]
    rest.call("POST", BASE, body)
    rest.call("DELETE", f"{BASE}/{name}")
    assert rest.call("GET", f"{BASE}/{name}")["metadata"]["deletionTimestamp"]
    rest.call("PATCH", f"{BASE}/{name}", {"metadata": {"finalizers": None}}, content_type=MERGE)
    with pytest.raises(Failed) as caught:
        rest.call("GET", f"{BASE}/{name}")
    assert caught.value.code == 404


def test_objects_need_an_existing_namespace_and_go_with_it(rest: Rest) -> None:
    ns = f"ns-{uuid.uuid4().hex[:8]}"
    secret = {"metadata": {"name": "s"}, "stringData": {"token": "abc"}}
    with pytest.raises(Failed) as caught:
        rest.call("POST", f"/api/v1/namespaces/{ns}/secrets", secret)
    assert caught.value.code == 404
    rest.call("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    created = rest.call("POST", f"/api/v1/namespaces/{ns}/secrets", secret)
    assert created["data"] == {"token": "YWJj"} and created["type"] == "Opaque" and "stringData" not in created
    rest.call("DELETE", f"/api/v1/namespaces/{ns}")
    with pytest.raises(Failed):
        rest.call("GET", f"/api/v1/namespaces/{ns}/secrets/s")
    assert ns not in [n["metadata"]["name"] for n in rest.call("GET", "/api/v1/namespaces")["items"]]


def test_leases_and_events_are_served(rest: Rest) -> None:
    lease = rest.call("POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases",
                      {"metadata": {"name": f"l-{uuid.uuid4().hex[:6]}"}, "spec": {"holderIdentity": "me"}})
    assert lease["spec"]["holderIdentity"] == "me"
    event = rest.call("POST", "/api/v1/namespaces/default/events",
                      {"metadata": {"generateName": "ev-"}, "reason": "Tested",
                       "involvedObject": {"kind": "Widget", "name": "x"}})
    assert event["metadata"]["name"].startswith("ev-")


def test_audit_log_records_every_request_with_its_outcome(api: ApiServer, rest: Rest) -> None:
    name = fresh_name()
    rest.call("POST", BASE, widget(name))
    rest.call("PATCH", f"{BASE}/{name}/status", {"status": {"phase": "X"}}, content_type=MERGE)
    with pytest.raises(Failed):
        rest.call("POST", BASE, widget(name))
    audit = api.emulator.audit
    resource = f"{PLURAL}.{GROUP}"
    assert 409 in [r.code for r in audit.find("create", resource, namespace="default")]
    (status_patch,) = audit.find("patch", resource, namespace="default", name=name, subresource="status")
    assert status_patch.code == 200
    assert [r.verb for r in audit.find(resource=resource, name=name)] == ["patch"]


def test_served_requests_are_not_kept_so_a_long_session_does_not_slow_down(api: ApiServer, rest: Rest) -> None:
    name = fresh_name()
    rest.call("POST", BASE, widget(name))
    for _ in range(300):
        rest.call("GET", f"{BASE}/{name}")
    # kmock matches each request by scanning the requests it keeps: they must not pile up (only in-flight ones).
    assert api.call(lambda emulator: len(emulator._requests)) <= 2
    assert len(api.emulator.audit.find("get", f"{PLURAL}.{GROUP}", name=name)) == 300


def fetch(url: str, accept: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a GET, errors included."""
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def proto_fields(data: bytes) -> dict[int, list[Any]]:
    """The fields of one protobuf message by number: varints as int, length-delimited ones as bytes (the only wire
    types of an OpenAPI v2 document without numbers)."""
    def varint(i: int) -> tuple[int, int]:
        value = shift = 0
        while data[i] & 0x80:
            value, shift, i = value | (data[i] & 0x7F) << shift, shift + 7, i + 1
        return value | data[i] << shift, i + 1

    fields: dict[int, list[Any]] = {}
    i = 0
    while i < len(data):
        key, i = varint(i)
        value: Any
        if key & 7 == 0:
            value, i = varint(i)
        else:
            size, i = varint(i)
            value, i = data[i:i + size], i + size
        fields.setdefault(key >> 3, []).append(value)
    return fields


PDB_PATH = "/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/{name}"
PDB_GVK = {"group": "policy", "version": "v1", "kind": "PodDisruptionBudget"}


def test_openapi_v2_answers_json_or_protobuf_as_asked_and_406_to_anything_else(api: ApiServer) -> None:
    _, _, body = fetch(f"{api.url}/openapi/v2", "application/json")
    patch = json.loads(body)["paths"][PDB_PATH]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == PDB_GVK
    assert [(p["name"], p["in"]) for p in patch["parameters"]] == [("fieldValidation", "query")]

    code, headers, body = fetch(f"{api.url}/openapi/v2", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
    assert (code, headers["Content-Type"]) == (200, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
    document = proto_fields(body)  # gnostic's openapi_v2.Document: swagger=1, paths=8
    assert document[1] == [b"2.0"]
    path_items: dict[str, bytes] = {}
    for named in proto_fields(document[8][0])[2]:  # Paths.path=2: NamedPathItem{name=1, value=2}
        entry = proto_fields(named)
        path_items[entry[1][0].decode()] = entry[2][0]
    operation = proto_fields(proto_fields(path_items[PDB_PATH])[8][0])  # PathItem.patch=8
    # Operation.parameters=8: ParametersItem.parameter=1 → Parameter.non_body_parameter=2 → query_parameter_sub_schema=3
    parameter = proto_fields(proto_fields(proto_fields(proto_fields(operation[8][0])[1][0])[2][0])[3][0])
    assert (parameter[4], parameter[2]) == ([b"fieldValidation"], [b"query"])  # QueryParameterSubSchema name, in
    extension = proto_fields(operation[13][0])  # NamedAny{name=1, value=2: Any{yaml=2}}
    assert extension[1] == [b"x-kubernetes-group-version-kind"]
    assert yaml.safe_load(proto_fields(extension[2][0])[2][0]) == PDB_GVK

    assert fetch(f"{api.url}/openapi/v2", "text/html")[0] == 406


def test_a_reply_carries_its_own_headers_only(api: ApiServer, rest: Rest) -> None:
    fetch(f"{api.url}/openapi/v2", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
    body = json.dumps(widget(fresh_name(), shade="dark")).encode()
    request = urllib.request.Request(f"{api.url}{BASE}", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Warning"] == '299 - "unknown field \\"spec.shade\\""'
    _, headers, _ = fetch(f"{api.url}{BASE}", "application/json")
    assert headers["Content-Type"].startswith("application/json")
    assert "Warning" not in headers


def test_the_audit_log_keeps_the_newest_records_up_to_its_capacity() -> None:
    log = AuditLog(capacity=3)
    for n in range(5):
        log.add(AuditRecord(verb="get", path=f"/{n}"))
    assert [r.path for r in log.records] == ["/2", "/3", "/4"]


def test_invalid_cel_rule_in_a_crd_is_refused_at_registration(api: ApiServer) -> None:
    crd = json.loads(json.dumps(WIDGET_CRD).replace("self.size <= 10", "self.sise <= 10").replace(
        f"{PLURAL}.{GROUP}", f"gadgets.{GROUP}").replace('"widgets"', '"gadgets"').replace('"Widget"', '"Gadget"'))
    with pytest.raises(ApiError) as caught:
        api.install_crd(crd)
    assert caught.value.code == 422
    assert "undefined field 'sise'" in caught.value.message


async def test_api_server_runs_inside_a_running_event_loop() -> None:
    async with ApiServer(crds=[WIDGET_CRD]) as server, aiohttp.ClientSession() as session:
        url = f"{server.url}{BASE}"
        async with session.get(url, params={"watch": "true", "timeoutSeconds": "5"}) as watching:
            assert watching.headers["Content-Type"].startswith("application/json")
            async with session.post(url, json=widget("async-one")) as created:
                assert created.status == 201
            line = await asyncio.wait_for(watching.content.readline(), 5)
            assert json.loads(line)["object"]["metadata"]["name"] == "async-one"
        assert server.emulator.audit.find("watch", f"{PLURAL}.{GROUP}")[0].code == 200
