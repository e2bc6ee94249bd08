"""What every app container gets unless the spec says otherwise: an init as PID 1 (so an app that ignores SIGTERM
still stops at once and a Recreate switch is quick), no raw sockets, no privilege gain; and the spec's stop grace.

The app here is busybox httpd exec'd as the container's process: as PID 1 it ignores SIGTERM (no handler, and the
kernel drops default-action signals to a namespace's init), so without an init every stop waits out the grace.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from dm import Cluster, Operator, deployment, docker, handled, http_get, stable_container

from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import DEFAULT_PORT, AppRepo
from world.ports import free_port

pytestmark = pytest.mark.e2e

# httpd replaces the shell: the app's process ignores SIGTERM when it is PID 1.
SIGTERM_IGNORING_START = f'exec /bin/busybox httpd -f -p "127.0.0.1:${{PORT:-{DEFAULT_PORT}}}" -h /www\n'
CAP_NET_RAW_BIT = 13
# Docker's default stop grace: a switch that waited for the old container to ignore SIGTERM takes at least this.
DEFAULT_GRACE_S = 10
# A Recreate switch of this app (remove the candidate, stop the old container, start the new one, probe it) took
# 0.3-0.4 s with the init on an idle machine, 0.8 s on a loaded one; the bound leaves room and still excludes the grace.
SWITCH_BOUND_S = DEFAULT_GRACE_S / 2


def commit_sigterm_ignoring_revision(repo: AppRepo, body: str) -> str:
    repo.write_file("start.sh", SIGTERM_IGNORING_START)
    repo.write_file("www/index.html", body)
    return repo.commit_all(f"serve {body.strip()!r} with httpd as the container's process")


def release_result(op: Operator, uid: str, revision: str) -> dict[str, Any]:
    """The host job's own JSON result of releasing `revision`: its timings say what the switch took."""
    result: dict[str, Any] = json.loads((op.host_dir / uid[:8] / "releases" / revision / "result.json").read_text())
    return result


def switch_to_a_new_revision(cluster: Cluster, op: Operator, repo: AppRepo,
                             spec: dict[str, Any]) -> tuple[str, float]:
    """Deploy the SIGTERM-ignoring app, then a second revision of it; return the uid and the second switch's time."""
    port = free_port()
    commit_sigterm_ignoring_revision(repo, "first\n")
    cluster.apply(deployment("web", repo, port, rollback={"bakeSeconds": 0}, **spec))
    cluster.wait_status("web", lambda s: s.get("phase") == "Deployed", 90, "the first revision deployed")
    second = commit_sigterm_ignoring_revision(repo, "second\n")
    cluster.annotate("web", "deploymind.io/requested-at", "second")
    status = cluster.wait_status("web", handled("second"), 90, "the second revision released")
    assert status["revision"]["commit"] == second and http_get(port) == (200, "second\n")
    uid = cluster.get("web")["metadata"]["uid"]
    result = release_result(op, uid, status["revision"]["id"])
    assert result["result"] == "Released", result
    return uid, float(result["timings"]["switch_s"])


def exec_in(engine: DockerEngine, container: str, *argv: str) -> str:
    """A busybox applet run inside the container, as a process started there now."""
    return docker(engine, "exec", container, "/bin/busybox", *argv)


def proc_status(engine: DockerEngine, container: str, pid: str) -> dict[str, str]:
    """/proc/<pid>/status as a process inside the container reads it."""
    text = exec_in(engine, container, "cat", f"/proc/{pid}/status")
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def has_capability(caps_hex: str, bit: int) -> bool:
    return bool(int(caps_hex, 16) >> bit & 1)


def test_an_app_that_ignores_sigterm_is_switched_without_waiting_out_the_stop_grace(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, docker_engine: DockerEngine) -> None:
    uid, switch_s = switch_to_a_new_revision(cluster, operator, app_repo, {})
    assert switch_s < SWITCH_BOUND_S, f"the switch took {switch_s} s"
    inspected = stable_container(docker_engine, uid)
    assert inspected["HostConfig"]["Init"] is True
    assert exec_in(docker_engine, inspected["Name"].lstrip("/"), "cat", "/proc/1/comm").strip() == "docker-init"


def test_app_containers_have_no_raw_sockets_and_cannot_gain_privileges(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, docker_engine: DockerEngine) -> None:
    cluster.apply(deployment("web", app_repo, free_port()))
    status = cluster.wait_status("web", lambda s: s.get("phase") in ("Baking", "Deployed"), 90, "released")
    container = status["target"]["container"]
    processes = exec_in(docker_engine, container, "ps", "-o", "pid,args").splitlines()
    app_pids = [line.split()[0] for line in processes if "httpd -f" in line]
    assert app_pids, processes
    # The init, the app, and a process started in the container now: none may hold or regain NET_RAW.
    for pid in ["1", *app_pids, "self"]:
        seen = proc_status(docker_engine, container, pid)
        # Docker's other default capabilities stay in the bounding set; only NET_RAW is gone.
        assert int(seen["CapBnd"], 16) and not has_capability(seen["CapBnd"], CAP_NET_RAW_BIT), (pid, seen["CapBnd"])
        assert seen["NoNewPrivs"].strip() == "1", (pid, seen["NoNewPrivs"])


def test_with_init_off_the_app_is_pid_1_and_a_switch_waits_out_only_the_spec_grace(
        cluster: Cluster, operator: Operator, app_repo: AppRepo, docker_engine: DockerEngine) -> None:
    grace = 2
    uid, switch_s = switch_to_a_new_revision(cluster, operator, app_repo,
                                             {"container": {"init": False, "stopGracePeriodSeconds": grace}})
    # The old httpd ignored SIGTERM and was killed when its grace ran out, not after docker's default.
    assert grace <= switch_s < DEFAULT_GRACE_S, f"the switch took {switch_s} s"
    inspected = stable_container(docker_engine, uid)
    assert inspected["HostConfig"]["Init"] is False and inspected["Config"]["StopTimeout"] == grace
    pid_1 = exec_in(docker_engine, inspected["Name"].lstrip("/"), "cat", "/proc/1/cmdline").replace("\0", " ")
    assert "httpd -f" in pid_1, pid_1
