"""The docker command builders produce exactly these argv lists, host-side values render as shell variables, and
the release and restart scripts start and stop containers with the spec's init setting and stop grace."""

from __future__ import annotations

import shlex

import pytest

from deploymind.commands import docker, shell
from deploymind.commands.health import restart_script
from deploymind.commands.release import ReleaseParams, release_script
from deploymind.commands.shell import Var

LABELS = docker.Labels(uid="0123abcd-ef45-6789", namespace="shop", name="web", revision="1a2b3c4d5e6f-9z8y7x6w")


def test_names_follow_the_uid_and_revision() -> None:
    assert docker.stable_name("0123abcd") == "dm-0123abcd"
    assert docker.candidate_name("0123abcd", "1a2b3c4d5e6f-9z8y7x6w") == "dm-0123abcd-1a2b3c4d5e6f-9z8y7x6w"
    assert docker.aside_name("0123abcd") == "dm-0123abcd-previous"
    assert docker.image_tag("0123abcd", "1a2b3c4d5e6f-9z8y7x6w") == "deploymind/0123abcd:1a2b3c4d5e6f-9z8y7x6w"


def test_run_uses_host_network_bounded_logs_labels_hardening_and_puts_port_last() -> None:
    spec = docker.RunSpec(image="deploymind/0123abcd:rev", labels=LABELS, memory="256m", cpus="0.5")
    argv = docker.run(spec, name="dm-0123abcd", port="8080", env_file="/srv/dm/env", role=docker.ROLE_STABLE)
    assert argv == [
        "docker", "run", "--detach",
        "--name", "dm-0123abcd",
        "--network", "host",
        "--restart", "unless-stopped",
        "--stop-timeout", "10",
        "--log-driver", "json-file",
        "--log-opt", "max-size=10m",
        "--log-opt", "max-file=2",
        "--security-opt", "no-new-privileges",
        "--cap-drop", "NET_RAW",
        "--init",
        "--label", "deploymind.io/uid=0123abcd-ef45-6789",
        "--label", "deploymind.io/namespace=shop",
        "--label", "deploymind.io/name=web",
        "--label", "deploymind.io/revision=1a2b3c4d5e6f-9z8y7x6w",
        "--label", "deploymind.io/role=stable",
        "--memory", "256m",
        "--cpus", "0.5",
        "--env-file", "/srv/dm/env",
        "--env", "PORT=8080",
        "deploymind/0123abcd:rev",
    ]  # fmt: skip


def test_run_without_limits_or_init_renders_host_side_port_env_file_and_the_stop_grace() -> None:
    spec = docker.RunSpec(image="nginx:1.27", labels=LABELS, log_max_size="5m", init=False, stop_grace_s=0)
    argv = docker.run(spec, name="dm-0123abcd-rev", port=Var("cport"), env_file=Var("env_file"), role="candidate")
    assert shell.join(argv) == (
        "docker run --detach --name dm-0123abcd-rev --network host --restart unless-stopped --stop-timeout 0 "
        "--log-driver json-file --log-opt max-size=5m --log-opt max-file=2 "
        "--security-opt no-new-privileges --cap-drop NET_RAW --init=false "
        "--label deploymind.io/uid=0123abcd-ef45-6789 --label deploymind.io/namespace=shop "
        "--label deploymind.io/name=web --label deploymind.io/revision=1a2b3c4d5e6f-9z8y7x6w "
        '--label deploymind.io/role=candidate --env-file "${env_file}" --env PORT="${cport}" nginx:1.27'
    )


def test_build_labels_the_image_and_builds_on_the_host_network() -> None:
    argv = docker.build(
        tag="deploymind/0123abcd:rev", dockerfile=Var("dockerfile_path"), context=Var("context_dir"),
        labels={"deploymind.io/uid": "u", "deploymind.io/tree-digest": "d"},
    )  # fmt: skip
    assert shell.join(argv) == (
        'docker build --network host --tag deploymind/0123abcd:rev --file "${dockerfile_path}" '
        '--label deploymind.io/uid=u --label deploymind.io/tree-digest=d "${context_dir}"'
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (docker.stop("dm-x", 10), ["docker", "stop", "--time", "10", "dm-x"]),
        (docker.stop(Var("1"), 0), ["docker", "stop", "--time", "0", Var("1")]),
        (docker.start("dm-x"), ["docker", "start", "dm-x"]),
        (docker.restart("dm-x", 30), ["docker", "restart", "--time", "30", "dm-x"]),
        (docker.rename("dm-x", "dm-x-previous"), ["docker", "rename", "dm-x", "dm-x-previous"]),
        (docker.remove("dm-x"), ["docker", "rm", "--force", "dm-x"]),
        (docker.logs("dm-x", 50), ["docker", "logs", "--tail", "50", "dm-x"]),
        (docker.stats("dm-x"), ["docker", "stats", "--no-stream", "--format", "{{json .}}", "dm-x"]),
        (docker.image_id("img:1"), ["docker", "image", "inspect", "--format", "{{.Id}}", "img:1"]),
        (docker.root_dir(), ["docker", "info", "--format", "{{.DockerRootDir}}"]),
        (docker.remove_image("img:1"), ["docker", "image", "rm", "img:1"]),
        (
            docker.image_tags("deploymind/0123abcd"),
            ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "deploymind/0123abcd"],
        ),
        (
            docker.containers_labelled("deploymind.io/uid", "u-1"),
            ["docker", "ps", "--all", "--quiet", "--no-trunc", "--filter", "label=deploymind.io/uid=u-1"],
        ),
    ],
)
def test_small_commands(argv: list[shell.Word], expected: list[str]) -> None:
    assert argv == expected


def test_inspect_reads_no_env() -> None:
    argv = docker.inspect("dm-x")
    assert argv[:4] == ["docker", "container", "inspect", "--format"]
    assert "Env" not in docker.INSPECT_FORMAT and "Env" not in docker.STATE_FORMAT


def test_a_labelled_filter_on_a_host_side_value_keeps_its_prefix() -> None:
    assert shell.join(docker.containers_labelled("deploymind.io/uid", Var("uid"))) == (
        'docker ps --all --quiet --no-trunc --filter label=deploymind.io/uid="${uid}"'
    )



def _function_body(script: str, name: str) -> str:
    """The one command inside shell function `name` of a generated script (`exec bash -c '…'`)."""
    text = shlex.split(script)[3]
    return text.split(f"\n{name}() {{\n  ", 1)[1].split("\n}", 1)[0]


def test_a_release_starts_containers_with_its_init_setting_and_grace_and_stops_the_old_one_with_that_grace() -> None:
    params = ReleaseParams(uid="0123abcd-ef45-6789", namespace="shop", name="web", revision="1a2b3c4d5e6f-9z8y7x6w",
                           image="deploymind/0123abcd:rev", port=8080, host_dir="/var/lib/deploymind", attempt="a",
                           init=False, stop_grace_s=30)
    script = release_script(params)
    assert _function_body(script, "dm_stop") == 'docker stop --time 30 "${1}"'
    for name in ("dm_run_candidate", "dm_run_stable"):
        run = shlex.split(_function_body(script, name))
        assert run[run.index("--stop-timeout") + 1] == "30" and "--init=false" in run and "--init" not in run


def test_a_restart_gives_the_app_its_grace() -> None:
    assert _function_body(restart_script("0123abcd", 45), "dm_restart") == "docker restart --time 45 dm-0123abcd"
