"""A stored status or spec with fields this operator does not know is read, not refused; an unreadable status is
never replaced by an empty one (that would erase lastGood and every quarantine)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deploymind.api import lenient
from deploymind.api.spec import DeploymentSpec
from deploymind.api.status import DeploymentStatus
from deploymind.controller.status_writer import StatusUnreadable, StatusWriter

STORED = {
    "observedGeneration": 3,
    "phase": "RolledBack",
    "futureSummary": {"any": "thing"},
    "revision": {"id": "aaaaaaaaaaaa-11111111", "image": "img:a", "futureField": 1,
                 "run": {"port": 8080, "futureLimit": "2"}},
    "lastGood": {"id": "aaaaaaaaaaaa-11111111", "image": "img:a"},
    "failedRevisions": [{"id": "bbbbbbbbbbbb-22222222", "reason": "RolledBack", "at": "2026-01-01T00:00:00Z",
                         "futureNote": "x"}],
    "conditions": [{"type": "Ready", "status": "False", "reason": "RolledBack", "lastTransitionTime":
                    "2026-01-01T00:00:00Z", "futureSeverity": "high"}],
}


def obj(status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": "shop", "name": "web", "resourceVersion": "7"}, "status": status}


class NoWrites:
    """A Kube that fails the test if anything is written."""

    async def patch_status(self, *args: object) -> dict[str, Any]:
        raise AssertionError("the status must not be written")

    async def post_event(self, *args: object) -> None:
        raise AssertionError("no Event expected")


def test_a_status_with_fields_from_a_newer_operator_keeps_last_good_and_every_quarantine() -> None:
    status = StatusWriter(NoWrites(), obj(STORED)).current()  # type: ignore[arg-type]
    assert status.last_good is not None and status.last_good.id == "aaaaaaaaaaaa-11111111"
    assert [f.id for f in status.failed_revisions] == ["bbbbbbbbbbbb-22222222"]
    assert status.revision is not None and status.revision.run is not None and status.revision.run.port == 8080


class Recording(NoWrites):
    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any], rv: str) -> dict[str, Any]:
        self.patches.append(patch)
        return obj(STORED)


def nulls(patch: Any, path: str = "") -> list[str]:
    if isinstance(patch, dict):
        return [p for k, v in patch.items() for p in ([f"{path}.{k}"] if v is None else nulls(v, f"{path}.{k}"))]
    return []


def test_writing_back_a_leniently_read_status_leaves_the_fields_it_does_not_know_alone() -> None:
    kube = Recording()
    writer = StatusWriter(kube, obj(STORED))  # type: ignore[arg-type]
    asyncio.run(writer.write(writer.current()))
    assert all(nulls(p) == [] for p in kube.patches), "a write removed fields it does not know"
    assert all("futureSummary" not in p for p in kube.patches)


def test_a_condition_type_and_a_phase_from_a_newer_operator_are_left_out_not_fatal() -> None:
    newer = {**STORED, "phase": "Canarying", "conditions": [
        *STORED["conditions"], {"type": "Canaried", "status": "True", "reason": "Done",
                                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    status = StatusWriter(NoWrites(), obj(newer)).current()  # type: ignore[arg-type]
    assert status.phase is None and [c.type for c in status.conditions] == ["Ready"]
    assert status.last_good is not None


def test_an_unreadable_status_raises_instead_of_reading_as_empty() -> None:
    broken = {**STORED, "failedRevisions": [{"id": "b", "reason": "RolledBack"}]}  # `at` is missing
    with pytest.raises(StatusUnreadable) as e:
        StatusWriter(NoWrites(), obj(broken)).current()  # type: ignore[arg-type]
    assert "left as it is" in e.value.message


def test_a_spec_field_this_version_does_not_know_is_ignored_when_reading() -> None:
    spec = lenient.read(DeploymentSpec, {"source": {"repo": "acme/app", "futureMirror": "x"},
                                         "target": {"transport": "local"}, "futureCanary": {"steps": 3}})
    assert spec.source is not None and spec.source.repo == "acme/app"
    with pytest.raises(ValueError):
        DeploymentSpec.model_validate({"source": {"repo": "acme/app"}, "target": {"transport": "local"},
                                       "futureCanary": {}})  # strict, as `deploymind validate` and the CRD are


def test_lenient_reading_still_refuses_wrong_values() -> None:
    with pytest.raises(ValueError):
        lenient.read(DeploymentStatus, {"revision": {"id": "x", "image": "i", "run": {"port": 0}}})
