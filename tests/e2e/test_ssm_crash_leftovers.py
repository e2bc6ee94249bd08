"""Through SSM, an operator killed during a build whose restart never makes that call again: the build's tarball,
left in S3 by the killed call, is swept by the restarted operator's first reconcile (controller.payload_sweep).
The restart after a kill during a release is test_crash_recovery's: there the next call of the same payload key
replaces and removes what was left, so it cannot show the sweep."""

from __future__ import annotations

import pytest
from dm import Cluster, Operator, ready, wait_for
from targets import Target, operator_env_fixture, over, ssm_leftovers, target_fixture, transport_env_fixture, transport_fixture  # noqa: F401
from test_crash_recovery import Host, assert_converged, commit_slow_build, deployment

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import AppRepo
from world.ports import free_port

pytestmark = pytest.mark.e2e


@over("ssm")
def test_the_tarball_of_a_build_killed_with_the_operator_is_swept_when_the_restart_skips_that_build(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, target: Target, docker_engine: DockerEngine,
        namespace: str) -> None:
    port = free_port()
    cluster.apply(deployment("web", app_repo, port, target))
    host = Host(docker_engine, operator.host_dir, cluster.get("web")["metadata"]["uid"])
    first = assert_converged(cluster, host, port, app_repo.head(), "revision 1\n")["revision"]["id"]
    commit_slow_build(app_repo, "revision 2\n")
    cluster.annotate("web", "deploymind.io/requested-at", "build")
    wait_for(lambda: cluster.status("web").get("phase") == "Building" and host.build_trees(), 60,
             "the build running on the host (its tarball fetched)")

    operator.kill()
    left = ssm_leftovers(target, namespace)
    assert len(left) == 1 and left[0].startswith(f"s3://{target.bucket}/"), left
    # While the operator is down: the build finishes on its own, and the user goes back to revision 1, so the
    # restarted operator has no build to run (the one call that would have replaced the tarball).
    cluster.annotate("web", "deploymind.io/rollback-to", first)
    wait_for(lambda: not host.build_trees(), 60, "the orphaned build ends")
    operator.start()

    status = cluster.wait_status("web", lambda s: s.get("phase") == "Deployed" and "Reconciling" not in
                                 {c["type"] for c in s["conditions"]}, 60, "revision 1 pinned and running")
    assert status["revision"]["id"] == first and (ready(status) or "").startswith("True/")
    assert ssm_leftovers(target, namespace) == []
