"""The API server (the emulator, with the CRD from crds/) accepts what `validate` accepts and refuses what it refuses.

Every manifest of tests/data/manifests and every example goes through `kubectl apply` (kubectl 1.35, strict field
validation). A refused manifest must be refused naming the field of its `# expect:` line, with the expected words
(`# server:` gives the apiserver's wording where it differs from ours, e.g. "should be greater than or equal to 1").
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
import yaml

from deploymind.api import DeploymentSpec
from deploymind.api.crd import render_crd
from deploymind.api.validate import KubectlLoader

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "tests" / "data" / "manifests"
VALID = sorted((MANIFESTS / "valid").glob("*.yaml"))
INVALID = sorted((MANIFESTS / "invalid").glob("*.yaml"))
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))

Kubectl = Callable[..., CompletedProcess[str]]


def comment(path: Path, key: str) -> str | None:
    found = re.search(rf"^# {key}: (.+)$", path.read_text(), re.MULTILINE)
    return found.group(1).strip() if found else None


def deployments(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(path.read_text(), Loader=KubectlLoader)
            if d and d.get("apiVersion") == "deploymind.io/v1alpha1" and d.get("kind") == "Deployment"]


def names_field(output: str, path: str) -> bool:
    """kubectl prints `spec.x.y: Invalid value…` for a field error and `unknown field "spec.x.y"` for a strict one."""
    return re.search(rf'(^|[\s"\[*,]){re.escape(path)}(: |")', output, re.MULTILINE) is not None


@pytest.fixture(scope="module")
def namespace(kubectl: Kubectl) -> Iterator[str]:
    """A namespace of this module's own, so names never meet other tests' objects."""
    name = f"manifests-{uuid.uuid4().hex[:8]}"
    done = kubectl("create", "namespace", name)
    assert done.returncode == 0, done.stderr
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


def apply(kubectl: Kubectl, path: Path, namespace: str) -> CompletedProcess[str]:
    """`kubectl apply -f`; documents that name their own namespace get it created and keep it."""
    own = {d["metadata"]["namespace"] for d in deployments(path) if d.get("metadata", {}).get("namespace")}
    for name in own:
        kubectl("create", "namespace", name)
    return kubectl("apply", "-f", str(path), *([] if own else ["-n", namespace]))


def stored_spec(kubectl: Kubectl, doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    done = kubectl("get", "dmd", doc["metadata"]["name"], "-n", doc["metadata"].get("namespace", namespace),
                   "-o", "json")
    assert done.returncode == 0, done.stderr
    spec: dict[str, Any] = json.loads(done.stdout)["spec"]
    return spec


@pytest.mark.parametrize("manifest", VALID, ids=lambda p: p.stem)
def test_valid_manifest_is_accepted_and_stored_as_the_model_reads_it(
        kubectl: Kubectl, namespace: str, manifest: Path) -> None:
    done = apply(kubectl, manifest, namespace)
    assert done.returncode == 0, done.stderr
    for doc in deployments(manifest):
        stored = stored_spec(kubectl, doc, namespace)
        # The server's defaults (from the CRD) and the model's defaults must agree.
        assert DeploymentSpec.model_validate(stored) == DeploymentSpec.model_validate(doc["spec"])


@pytest.mark.parametrize("manifest", INVALID, ids=lambda p: p.stem)
def test_invalid_manifest_is_refused_naming_the_field_and_the_rule(
        kubectl: Kubectl, namespace: str, manifest: Path) -> None:
    expect = comment(manifest, "expect")
    assert expect, f"{manifest.name} has no '# expect:' line"
    field, message = expect.split(": ", 1)
    done = apply(kubectl, manifest, namespace)
    if comment(manifest, "model-only"):
        assert done.returncode == 0, f"{manifest.name} is marked model-only but the server refuses it: {done.stderr}"
        return
    assert done.returncode != 0, f"{manifest.name} was accepted: {done.stdout}"
    assert names_field(done.stderr, field), done.stderr
    words = comment(manifest, "server") or message
    assert words.lower() in done.stderr.lower(), done.stderr
    [doc] = yaml.load_all(manifest.read_text(), Loader=KubectlLoader)
    assert kubectl("get", "dmd", doc["metadata"]["name"], "-n", namespace).returncode != 0, "a refused object exists"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT / "examples")))
def test_example_applies_and_shows_in_get_dmd(kubectl: Kubectl, namespace: str, example: Path) -> None:
    done = apply(kubectl, example, namespace)
    assert done.returncode == 0, done.stderr
    for doc in deployments(example):
        where = doc["metadata"].get("namespace", namespace)
        listed = kubectl("get", "dmd", "-n", where, "-o", "name")
        assert listed.returncode == 0, listed.stderr
        assert f"deployment.deploymind.io/{doc['metadata']['name']}" in listed.stdout.split()


def test_committed_crd_applies_and_the_server_serves_the_rendered_schema(kubectl: Kubectl) -> None:
    done = kubectl("apply", "-f", str(ROOT / "crds"))
    assert done.returncode == 0, done.stderr
    served = kubectl("get", "crd", "deployments.deploymind.io", "-o", "json")
    assert served.returncode == 0, served.stderr
    assert json.loads(served.stdout)["spec"]["versions"] == render_crd()["spec"]["versions"]
