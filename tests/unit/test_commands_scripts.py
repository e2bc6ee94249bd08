"""The host scripts as text: exact generated headers, bash syntax, safe quoting, no env value anywhere in them,
parameter checks; and the parsers of their JSON result lines. (tests/integration/test_host_scripts.py runs them.)"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from deploymind.commands import results, shell
from deploymind.commands.build import BuildParams, build_script, image_present_script
from deploymind.commands.cleanup import CleanupParams, cleanup_script
from deploymind.commands.health import HealthParams, health_script, restart_script
from deploymind.commands.release import ReleaseParams, env_payload, release_script

UID = "0123abcd-ef45-6789-aaaa-bbbbccccdddd"
RELEASE = ReleaseParams(
    uid=UID, namespace="shop", name="web", revision="1a2b3c4d5e6f-9z8y7x6w", image="deploymind/0123abcd:1a2b3c4d5e6f-9z8y7x6w",
    port=8080, host_dir="/var/lib/deploymind", attempt="try-1", keep_images=("deploymind/0123abcd:old",),
)  # fmt: skip
BUILD = BuildParams(
    uid=UID, revision="1a2b3c4d5e6f-9z8y7x6w", image="deploymind/0123abcd:1a2b3c4d5e6f-9z8y7x6w",
    tree_digest="ab" * 32, host_dir="/var/lib/deploymind",
)  # fmt: skip


def inner(script: str) -> str:
    """The bash text inside the `exec bash -c '…' deploymind` wrapper."""
    words = shlex.split(script)
    assert words[:3] == ["exec", "bash", "-c"] and words[4:] == ["deploymind"]
    return words[3]


ALL_SCRIPTS = {
    "release": release_script(RELEASE),
    "build": build_script(BUILD),
    "image_present": image_present_script("deploymind/0123abcd:x"),
    "health": health_script(HealthParams(uid8="0123abcd", image="deploymind/0123abcd:x", port=8080)),
    "restart": restart_script("0123abcd"),
    "cleanup": cleanup_script(CleanupParams(uid=UID, host_dir="/var/lib/deploymind")),
}


@pytest.mark.parametrize("name", sorted(ALL_SCRIPTS))
def test_every_script_is_valid_bash(name: str) -> None:
    checked = subprocess.run(["bash", "-n", "-c", inner(ALL_SCRIPTS[name])], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr


def test_the_release_job_written_on_the_host_is_valid_bash() -> None:
    job = _job(release_script(RELEASE))
    checked = subprocess.run(["bash", "-n", "-c", job], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    assert "dm_run_candidate()" in job and "flock -w" in job


def _job(script: str) -> str:
    return inner(script).split("<<'DM_END'\n", 1)[1].split("\nDM_END\n", 1)[0]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (apt-get install shellcheck)")
@pytest.mark.parametrize("name", [*sorted(ALL_SCRIPTS), "release_job"])
def test_scripts_pass_shellcheck(name: str) -> None:
    text = _job(ALL_SCRIPTS["release"]) if name == "release_job" else inner(ALL_SCRIPTS[name])
    # SC2034/SC2154: the foreground and the job share one generated header, so each sees names only the other uses.
    checked = subprocess.run(
        ["shellcheck", "--shell=bash", "--severity=warning", "--exclude=SC2034,SC2154", "-"],
        input=text, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout


def test_release_header_is_exactly_the_parameters() -> None:
    text = inner(release_script(RELEASE))
    assert text.startswith(
        "# Parameters of this release (generated).\n"
        "revision=1a2b3c4d5e6f-9z8y7x6w\n"
        "attempt=try-1\n"
        "image=deploymind/0123abcd:1a2b3c4d5e6f-9z8y7x6w\n"
        "reuse_image=''\n"
        "image_repo=deploymind/0123abcd\n"
        "port=8080\n"
        "health_path=/health\n"
        "probe_timeout=5\n"
        "startup_timeout=120\n"
        "poll_interval_ms=1000\n"
        "poll_min_ms=100\n"
        "env_from_stdin=1\n"
        "scrub_min_length=12\n"
        "min_free_mb=500\n"
        "lock_timeout=600\n"
        "host_dir=/var/lib/deploymind\n"
        "lock_file=/var/lib/deploymind/deploymind.lock\n"
        "releases_dir=/var/lib/deploymind/0123abcd/releases\n"
        "rel_dir=/var/lib/deploymind/0123abcd/releases/1a2b3c4d5e6f-9z8y7x6w\n"
        "env_file=/var/lib/deploymind/0123abcd/releases/1a2b3c4d5e6f-9z8y7x6w/env\n"
        "secret_names_file=/var/lib/deploymind/0123abcd/releases/1a2b3c4d5e6f-9z8y7x6w/secret-names\n"
        "verified_file=/var/lib/deploymind/0123abcd/switch-verified\n"
        "result_file=/var/lib/deploymind/0123abcd/releases/1a2b3c4d5e6f-9z8y7x6w/result.json\n"
        "stable=dm-0123abcd\n"
        "candidate=dm-0123abcd-1a2b3c4d5e6f-9z8y7x6w\n"
        "aside=dm-0123abcd-previous\n"
        "keep_images=(deploymind/0123abcd:old)\n"
        "keep_revisions=()\n"
        "secret_env_names=()\n"
    )
    assert (
        "# uses $cport and $env_file\n"
        "dm_run_candidate() {\n"
        "  docker run --detach --name dm-0123abcd-1a2b3c4d5e6f-9z8y7x6w --network host --restart unless-stopped "
        "--stop-timeout 10 --log-driver json-file --log-opt max-size=10m --log-opt max-file=2 "
        "--security-opt no-new-privileges --cap-drop NET_RAW --init "
        f"--label deploymind.io/uid={UID} --label deploymind.io/namespace=shop --label deploymind.io/name=web "
        "--label deploymind.io/revision=1a2b3c4d5e6f-9z8y7x6w --label deploymind.io/role=candidate "
        '--env-file "${env_file}" --env PORT="${cport}" deploymind/0123abcd:1a2b3c4d5e6f-9z8y7x6w\n'
        "}\n"
    ) in text
    assert '--env-file "${env_file}" --env PORT=8080 deploymind/0123abcd:1a2b3c4d5e6f-9z8y7x6w\n' in text


def test_the_release_script_carries_no_env_and_reads_it_from_stdin_only() -> None:
    text = inner(release_script(RELEASE))
    # The only writer of the env file is `cat` from stdin (checked against its trailer), in the foreground part.
    assert 'cat > "$tmp"' in text and 'mv -f -- "$env_file.body" "$env_file"' in text
    assert "--env-file" in text and "-e " not in text.replace("--env-file", "")


def test_the_env_payload_ends_with_its_length_and_digest_and_the_script_text_has_neither() -> None:
    payload = env_payload({"B": "2", "A": "s3cret"})
    body = b"A=s3cret\nB=2\n"
    assert payload == body + f"#deploymind-env bytes={len(body)} sha256={hashlib.sha256(body).hexdigest()}\n".encode()
    text = release_script(RELEASE)
    assert hashlib.sha256(body).hexdigest() not in text and "s3cret" not in text


def test_build_header_and_command() -> None:
    text = inner(build_script(BUILD))
    assert text.startswith(
        "# Parameters of this build (generated).\n"
        "revision=1a2b3c4d5e6f-9z8y7x6w\n"
        "image=deploymind/0123abcd:1a2b3c4d5e6f-9z8y7x6w\n"
        f"digest={'ab' * 32}\n"
        "dockerfile=Dockerfile\n"
        "context_subdir=.\n"
        "host_dir=/var/lib/deploymind\n"
        "builds_dir=/var/lib/deploymind/0123abcd/builds\n"
        "min_free_mb=500\n"
        "log_tail=50\n"
        "needs=(docker tar sha256sum flock)\n"
    )
    assert (
        '  docker build --network host --tag deploymind/0123abcd:1a2b3c4d5e6f-9z8y7x6w --file "${dockerfile_path}" '
        f"--label deploymind.io/uid={UID} --label deploymind.io/revision=1a2b3c4d5e6f-9z8y7x6w "
        f'--label deploymind.io/tree-digest={"ab" * 32} "${{context_dir}}"\n'
    ) in text


@pytest.mark.parametrize(
    "hostile",
    ["web app's \"front\"", "$(touch /tmp/pwned)", "`id`", "a;b && c | d", "back\\slash", "tab\there", "ünï ✓"],
)
def test_hostile_names_reach_bash_unchanged(hostile: str) -> None:
    params = ReleaseParams(
        uid=UID, namespace=hostile, name=hostile, revision="r1", image="img:1", port=8080, host_dir="/srv/dm", attempt="1",
        health_path=f"/health?x={hostile}",
    )  # fmt: skip
    text = inner(release_script(params))
    header = text.split("# Writes the detached job's script", 1)[0]
    # A stand-in `docker` prints the argv it gets, NUL-separated: exactly what the real CLI would receive.
    shown = subprocess.run(
        ["bash", "-c", header + 'docker() { printf "%s\\0" "$@"; }\nenv_file=/e\ndm_run_stable\nprintf "%s" "$health_path"'],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    *argv, health_path = shown.stdout.split("\0")
    assert f"deploymind.io/namespace={hostile}" in argv
    assert f"deploymind.io/name={hostile}" in argv
    assert argv[-5:] == ["--env-file", "/e", "--env", "PORT=8080", "img:1"]
    assert health_path == f"/health?x={hostile}"


def test_a_value_containing_the_heredoc_marker_cannot_end_the_job_early() -> None:
    params = ReleaseParams(
        uid=UID, namespace="DM_END", name="x\nDM_END\n", revision="r1", image="i", port=1, host_dir="/d", attempt="a"
    )
    text = inner(release_script(params))
    assert "<<'DM_END_'" in text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("revision", "../etc"),
        ("revision", "has space"),
        ("host_dir", "relative/dir"),
        ("health_path", "health"),
        ("port", 0),
        ("uid", "../x"),
    ],
)
def test_release_refuses_unsafe_parameters(field: str, value: object) -> None:
    settings: dict[str, object] = {
        "uid": UID, "namespace": "ns", "name": "n", "revision": "r1", "image": "i", "port": 8080, "host_dir": "/d",
        "attempt": "1",
    }  # fmt: skip
    settings[field] = value
    with pytest.raises(ValueError, match=field.split("_")[0]):
        release_script(ReleaseParams(**settings))  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "value"), [("context", "../up"), ("dockerfile", "/etc/passwd"), ("tree_digest", "xyz")])
def test_build_refuses_paths_outside_the_tarball_and_bad_digests(field: str, value: str) -> None:
    settings = {"uid": UID, "revision": "r1", "image": "i", "tree_digest": "ab" * 32, "host_dir": "/d", field: value}
    with pytest.raises(ValueError):
        build_script(BuildParams(**settings))  # type: ignore[arg-type]


def test_without_a_host_dir_the_header_resolves_it_on_the_host_and_derives_every_path() -> None:
    text = inner(release_script(dataclasses.replace(RELEASE, host_dir=None)))
    assert (
        "lock_timeout=600\n"
        "# No host directory was configured: root keeps its files in /var/lib/deploymind, any other login user in\n"
        "# ~/.deploymind, the one place it can always create.\n"
        'if [ "$(id -u)" = 0 ]; then host_dir=/var/lib/deploymind; else host_dir=~/.deploymind; fi\n'
        'lock_file="$host_dir"/deploymind.lock\n'
        'releases_dir="$host_dir"/0123abcd/releases\n'
        'rel_dir="$host_dir"/0123abcd/releases/1a2b3c4d5e6f-9z8y7x6w\n'
    ) in text
    assert "/var/lib/deploymind/0123abcd" not in text
    build = inner(build_script(dataclasses.replace(BUILD, host_dir=None)))
    assert 'builds_dir="$host_dir"/0123abcd/builds\n' in build
    cleanup = inner(cleanup_script(CleanupParams(uid=UID, host_dir=None)))
    assert 'object_dir="$host_dir"/0123abcd\n' in cleanup


@pytest.mark.parametrize(
    ("script", "needs"),
    [
        (release_script(RELEASE), "needs=(docker flock curl sha256sum)\n"),
        (build_script(BUILD), "needs=(docker tar sha256sum flock)\n"),
        (health_script(HealthParams(uid8="0123abcd", image="i", port=1)), "needs=(curl docker)\n"),
        (cleanup_script(CleanupParams(uid=UID, host_dir="/d")), "needs=(docker flock)\n"),
        (restart_script("0123abcd"), "needs=(docker)\n"),
        (image_present_script("i"), "needs=(docker)\n"),
    ],
)
def test_every_script_checks_what_it_needs_before_anything_else(script: str, needs: str) -> None:
    text = inner(script)
    assert needs in text
    assert re.search(r'\nset -u\n(umask 077\n)?preflight (--dir )?"\$\{needs\[@\]\}"\n', text)


def test_the_preflight_line_names_what_is_missing_and_the_host_dir(tmp_path: Path) -> None:
    """The preflight of lib.sh, run by bash with a PATH holding only `cat`: HostNotReady, one JSON line."""
    (tmp_path / "bin").mkdir()
    for tool in ("cat", "mkdir", "id"):
        found = shutil.which(tool)
        assert found is not None
        (tmp_path / "bin" / tool).symlink_to(found)
    script = (f"host_dir={shlex.quote(str(tmp_path / 'dm'))}\n" + shell.body("lib")
              + 'set -u\npreflight --dir docker flock\necho "not reached"\n')
    bash = shutil.which("bash")
    assert bash is not None
    done = subprocess.run([bash, "-c", script], input="", capture_output=True, text=True, check=False,
                          env={"PATH": str(tmp_path / "bin")})
    assert done.returncode == 0 and "not reached" not in done.stdout
    line = json.loads(done.stdout)
    assert line["result"] == "HostNotReady" and line["missing"] == ["docker", "flock"]
    assert line["host_dir"] == str(tmp_path / "dm")
    assert "flock (package util-linux)" in line["message"]
    with pytest.raises(results.HostNotReady) as raised:
        results.parse_health("banner\n" + done.stdout)
    assert raised.value.missing == ("docker", "flock") and raised.value.reason == "HostNotReady"


def test_an_unwritable_host_dir_is_host_not_ready_naming_it() -> None:
    script = "host_dir=/proc/deploymind-test\n" + shell.body("lib") + "set -u\npreflight --dir bash\n"
    done = subprocess.run(["bash", "-c", script], input="", capture_output=True, text=True, check=True)
    with pytest.raises(results.HostNotReady, match="cannot create or write the host directory /proc/deploymind-test"):
        results.parse_release(done.stdout)


def test_heredoc_marker_grows_until_unique() -> None:
    assert shell.heredoc('"$f"', "DM_END\nDM_END_\n").startswith("cat > \"$f\" <<'DM_END__'\n")


RELEASE_LINE = {
    "result": "CandidateUnhealthy", "revision": "r2", "attempt": "7", "image": "deploymind/0123abcd:r2",
    "image_id": "sha256:aa", "container_id": "c0ffee", "port": 8080, "candidate_port": 23456,
    "timings": {"candidate_start_s": 0.2, "healthy_after_s": None, "switch_s": None, "total_s": 3.5},
    "logs": ["starting with API_TOKEN=***"], "message": "candidate never answered",
}  # fmt: skip


def test_release_result_is_parsed_after_noise_lines() -> None:
    stdout = "Welcome to the host!\n{not json\n" + json.dumps(RELEASE_LINE) + "\n\n"
    parsed = results.parse_release(stdout)
    assert parsed.result is results.ReleaseOutcome.CANDIDATE_UNHEALTHY and not parsed.ok
    assert parsed.container_id == "c0ffee" and parsed.candidate_port == 23456
    assert parsed.timings == results.ReleaseTimings(0.2, None, None, 3.5)
    assert parsed.logs == ("starting with API_TOKEN=***",)


@pytest.mark.parametrize("stdout", ["", "bash: docker: command not found\n", '{"result": "Released"', "[1, 2]\n"])
def test_a_missing_or_garbled_result_line_is_a_clear_error(stdout: str) -> None:
    with pytest.raises(results.ScriptOutputError, match="printed no JSON result line") as raised:
        results.parse_release(stdout)
    assert raised.value.reason == "ScriptOutputInvalid"


def test_an_unknown_result_is_a_clear_error() -> None:
    with pytest.raises(results.ScriptOutputError, match="unknown result 'Exploded'"):
        results.parse_release(json.dumps({**RELEASE_LINE, "result": "Exploded"}))


def test_health_result_converts_docker_units_and_checks_the_image() -> None:
    line = {
        "probe": {"status": 200, "latency_ms": 1.25, "curl_exit": 0, "error": ""},
        "container": {
            "id": "c1", "image_id": "sha256:aa", "image": "deploymind/0123abcd:r1", "running": True,
            "status": "running", "restart_count": 2, "started_at": "2026-01-01T00:00:00Z", "revision": "r1",
        },
        "expected_image": "deploymind/0123abcd:r1", "expected_image_id": "sha256:aa",
        "stats": {"CPUPerc": "12.50%", "MemUsage": "1.5MiB / 64MiB"},
    }  # fmt: skip
    parsed = results.parse_health(json.dumps(line))
    assert parsed.healthy and parsed.right_image
    assert parsed.container.restart_count == 2
    assert parsed.stats == results.Stats(cpu_percent=12.5, memory_bytes=1572864, memory_limit_bytes=64 * 2**20)

    wrong = results.parse_health(json.dumps({**line, "expected_image_id": "sha256:bb"}))
    assert wrong.probe.ok and not wrong.right_image and not wrong.healthy

    gone = results.parse_health(json.dumps({**line, "container": None, "stats": None, "probe": {"status": 0}}))
    assert not gone.container.exists and gone.stats is None and not gone.probe.ok


@pytest.mark.parametrize(
    ("text", "size"), [("0B", 0), ("1.5kB", 1500), ("2MiB", 2 * 2**20), ("1.944GiB", int(1.944 * 2**30)), ("?", 0)]
)
def test_docker_sizes(text: str, size: int) -> None:
    assert results.size_bytes(text) == size


def test_build_restart_cleanup_and_presence_results() -> None:
    build = results.parse_build('{"result":"Present","revision":"r","image":"i","image_id":"sha256:1","build_s":0.05}')
    assert build.ok and build.result is results.BuildOutcome.PRESENT
    assert results.parse_image_presence('{"result":"Absent","image":"i","image_id":""}').present is False
    assert results.parse_restart('{"result":"Missing","message":"m"}').result is results.RestartOutcome.MISSING
    cleaned = results.parse_cleanup('{"result":"Cleaned","containers":3,"images":1,"message":"m"}')
    assert (cleaned.containers, cleaned.images) == (3, 1)
