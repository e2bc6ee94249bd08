"""examples/ssm-minimal.yaml, applied as users would apply it, reaches Ready over SSM on the test world's moto
server. Only what cannot be true here is replaced: the instance id (a moto instance tagged for the test's
namespace), the repository (a local fixture repository: the example's GitHub one is not reachable offline) and
the container port (a free one: 8080 may be taken on this machine). Everything else, the region and every
default the example relies on (ref main, a 60 s probe, a 300 s bake) included, is the file's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dm import Cluster, Operator, http_get, ready
from targets import Target, operator_env_fixture, over, target_fixture, transport_env_fixture, transport_fixture  # noqa: F401

from world.apps import AppRepo
from world.ports import free_port

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ssm-minimal.yaml"


@over("ssm")
def test_the_ssm_minimal_example_reaches_ready_over_ssm(cluster: Cluster, operator: Operator, app_repo: AppRepo,
                                                        target: Target) -> None:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    spec = manifest["spec"]
    port = free_port()
    spec["target"]["instanceId"] = target.instance_id
    spec["source"]["repo"] = app_repo.url
    spec["container"]["port"] = port
    cluster.apply(manifest)

    name = manifest["metadata"]["name"]
    status = cluster.wait_status(name, lambda s: ready(s) == "True/Baking" or ready(s) == "True/Deployed", 90,
                                 "Ready over ssm")
    assert status["revision"]["commit"] == app_repo.head()
    assert status["target"]["instanceId"] == target.instance_id
    assert http_get(port) == (200, "revision 1\n")
