"""Protobuf bodies of typed clients (kubectl create, Helm's release storage) decode to the JSON objects they mean."""

from __future__ import annotations

import base64

import pytest

from deploymind.sandbox.kube import protobuf
from deploymind.sandbox.kube.protobuf import ProtobufError


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, value: bytes | str | int) -> bytes:
    """One protobuf field: ints as varints, text and bytes length-delimited."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def entry(number: int, key: str, value: bytes | str) -> bytes:
    return field(number, field(1, key) + field(2, value))


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    """`k8s\\0` + runtime.Unknown{typeMeta{apiVersion, kind}, raw}."""
    return protobuf.MAGIC + field(1, field(1, api_version) + field(2, kind)) + field(2, raw)


def meta(**fields: str) -> bytes:
    numbers = {"name": 1, "generateName": 2, "namespace": 3}
    # gogo-protobuf writes unset strings as empty fields: the decoder must drop them
    return b"".join(field(numbers[k], v) for k, v in fields.items()) + field(5, "") + field(6, "")


def test_secret_decodes_with_base64_data_labels_and_type() -> None:
    body = envelope("v1", "Secret", field(1, meta(name="s1", namespace="default") + entry(11, "app", "web"))
                    + entry(2, "password", b"\x00\xffbinary") + field(3, "Opaque") + field(5, 1))
    assert protobuf.decode(body) == {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s1", "namespace": "default", "labels": {"app": "web"}},
        "data": {"password": base64.b64encode(b"\x00\xffbinary").decode()},
        "type": "Opaque",
        "immutable": True,
    }


def test_configmap_decodes_text_and_binary_data() -> None:
    body = envelope("v1", "ConfigMap", field(1, meta(generateName="cm-")) + entry(2, "greeting", "hello")
                    + entry(3, "blob", b"\x01\x02") + entry(12, "note", "x"))
    assert protobuf.decode(body) == {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "cm-"},
        "data": {"greeting": "hello"}, "binaryData": {"blob": "AQI="},
    }


def test_delete_options_keep_preconditions_and_propagation() -> None:
    preconditions = field(1, "uid-1") + field(2, "42")
    body = envelope("meta.k8s.io/v1", "DeleteOptions",
                    field(1, 0) + field(2, preconditions) + field(4, "Foreground") + field(5, "All"))
    assert protobuf.decode(body) == {
        "apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
        "preconditions": {"uid": "uid-1", "resourceVersion": "42"},
        "propagationPolicy": "Foreground", "dryRun": ["All"],
    }


def test_lease_decodes_holder_and_micro_times() -> None:
    renew = field(1, 1_700_000_000) + field(2, 123_456_000)
    spec = field(1, "pod-a") + field(2, 15) + field(4, renew) + field(5, 3)
    body = envelope("coordination.k8s.io/v1", "Lease", field(1, meta(name="lock")) + field(2, spec))
    assert protobuf.decode(body)["spec"] == {
        "holderIdentity": "pod-a", "leaseDurationSeconds": 15, "renewTime": "2023-11-14T22:13:20.123456Z",
        "leaseTransitions": 3,
    }


def test_negative_ints_travel_as_ten_byte_varints() -> None:
    body = envelope("meta.k8s.io/v1", "DeleteOptions", field(1, -1))
    assert protobuf.decode(body)["gracePeriodSeconds"] == -1


def test_unsupported_kinds_are_refused_with_advice() -> None:
    with pytest.raises(ProtobufError, match="send JSON"):
        protobuf.decode(envelope("apps/v1", "Deployment", field(1, meta(name="d"))))


def test_bodies_without_the_magic_are_refused() -> None:
    with pytest.raises(ProtobufError):
        protobuf.decode(b'{"kind": "Secret"}')
