"""The host scripts (build, release, health, restart, cleanup) run for real against the private Docker engine, as
the non-root login user in the `docker` group, the way a transport runs them: `sh -c <script>` with stdin.

The app is the fixture app (FROM scratch + busybox httpd, non-root USER) from tests/world/apps.py. Every test
gets its own uid, so its containers, images and host files are its own; the `host` fixture removes them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deploymind.commands import docker, hostpaths, results
from deploymind.commands.build import BuildParams, build_script, image_present_script
from deploymind.commands.cleanup import CleanupParams, cleanup_script
from deploymind.commands.health import HealthParams, health_script, restart_script
from deploymind.commands.release import ReleaseParams, env_payload, release_script
from deploymind.sandbox.docker_engine import DockerEngine
from world.apps import START_SCRIPT, AppRepo, Health
from world.dirs import private_dir
from world.ports import free_port
from world.procs import wait_until
from world.sshd import LOGIN_HOME, LOGIN_USER, ensure_login_user

SCRIPT_TIMEOUT_S = 120.0
NAME = "web app's \"front\""  # a name with spaces and both quotes: it must reach the labels intact


@dataclass
class Host:
    """The Docker host as one Deployment (one uid) sees it: scripts run as the non-root docker-group user."""

    engine: DockerEngine
    dir: Path
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    port: int = field(default_factory=free_port)

    @property
    def uid8(self) -> str:
        return self.uid[:8]

    @property
    def stable(self) -> str:
        return docker.stable_name(self.uid8)

    def image(self, revision: str) -> str:
        return docker.image_tag(self.uid8, revision)

    def argv(self, script: str) -> list[str]:
        """`sh -c script` as the login user with a login-like clean environment (what sshd would give it)."""
        env = [f"DOCKER_HOST={self.engine.host}", f"HOME={LOGIN_HOME}", "PATH=/usr/local/bin:/usr/bin:/bin"]
        return ["runuser", "-u", LOGIN_USER, "--", "env", "-i", *env, "sh", "-c", script]

    def run(self, script: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(
            self.argv(script), input=stdin, capture_output=True, timeout=SCRIPT_TIMEOUT_S, check=False
        )
        assert done.returncode == 0, done.stderr.decode()
        return done

    def docker(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["docker", *args], capture_output=True, text=True, check=False, env={**os.environ, **self.engine.env}
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def build(self, repo: AppRepo, revision: str) -> results.BuildResult:
        tarball = subprocess.run(
            ["git", "-C", str(repo.path), "archive", "--format=tar", "HEAD"], capture_output=True, check=True
        ).stdout
        params = BuildParams(
            uid=self.uid, revision=revision, image=self.image(revision),
            tree_digest=hashlib.sha256(tarball).hexdigest(), host_dir=str(self.dir),
        )  # fmt: skip
        return results.parse_build(self.run(build_script(params), tarball).stdout.decode())

    def release_params(self, revision: str, **overrides: object) -> ReleaseParams:
        settings: dict[str, object] = {
            "uid": self.uid, "namespace": "shop", "name": NAME, "revision": revision, "image": self.image(revision),
            "port": self.port, "host_dir": str(self.dir), "startup_timeout_s": 3, "probe_timeout_s": 1,
            "poll_interval_s": 0.5, "min_free_disk_mb": 10, "memory": "64m", "attempt": uuid.uuid4().hex,
        }  # fmt: skip
        settings.update(overrides)
        return ReleaseParams(**settings)  # type: ignore[arg-type]

    def release(self, revision: str, env: str = "", **overrides: object) -> results.ReleaseResult:
        script = release_script(self.release_params(revision, **overrides))
        return results.parse_release(self.run(script, None if overrides.get("env_from_stdin") is False
                                              else payload(env)).stdout.decode())

    def get(self, path: str = "/", port: int | None = None) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port or self.port}{path}", timeout=2) as response:
            body: bytes = response.read()
        return body.decode()

    def containers(self) -> list[str]:
        """Names of every container of this uid, running or not."""
        names = self.docker("ps", "--all", "--filter", f"label={docker.LABEL_UID}={self.uid}", "--format", "{{.Names}}")
        return sorted(names.split())

    def images(self) -> list[str]:
        tags = self.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", docker.image_repository(self.uid8))
        return sorted(tags.split())

    def inspect(self, container: str, template: str) -> str:
        return self.docker("container", "inspect", "--format", template, container)


@pytest.fixture(scope="module")
def host_root(world_root: Path) -> Path:
    """A directory the login user owns, as /var/lib/deploymind would be on a real host."""
    ensure_login_user()
    root = private_dir(world_root, f"hostdirs-{uuid.uuid4().hex[:8]}")
    return root


@pytest.fixture
def host(docker_engine: DockerEngine, host_root: Path) -> Iterator[Host]:
    directory = host_root / uuid.uuid4().hex[:8]
    directory.mkdir()
    subprocess.run(["chown", f"{LOGIN_USER}:", str(directory)], check=True)
    host = Host(engine=docker_engine, dir=directory)
    yield host
    host.run(cleanup_script(CleanupParams(uid=host.uid, host_dir=str(directory))))
    assert host.containers() == []
    assert host.images() == []


def commit(repo: AppRepo, health: Health = Health.HEALTHY, *, log_env: str | None = None, port_fails: int = 0) -> None:
    """Commit a revision of the fixture app; optionally one that logs an env var, or whose /health fails when it
    runs on `port_fails` (healthy as a candidate on a free port, unhealthy once switched to the stable port)."""
    repo.commit_revision(health)
    start = START_SCRIPT.format(comment="test revision", degrade="", port=8080)
    if log_env:
        start = f'/bin/busybox echo "starting with {log_env}=${{{log_env}}}"\n' + start
    if port_fails:
        start = f'[ "$PORT" = "{port_fails}" ] && /bin/busybox rm -f /www/health\n' + start
    if log_env or port_fails:
        repo.write_file("start.sh", start)
        repo.commit_all("test revision")


class Traffic:
    """Requests to the stable port in a loop, counting the ones that fail, while a release runs."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.ok = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.host.get("/")
                self.ok += 1
            except OSError as error:
                self.failed.append(str(error))
            self._stop.wait(0.02)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class CmdlineWatch:
    """Reads every process's /proc/<pid>/cmdline in a loop and records any that contains `secret`; also records
    the mode of the env file whenever it exists."""

    def __init__(self, secret: str, env_glob_root: Path) -> None:
        self.secret = secret.encode()
        self.root = env_glob_root
        self.leaks: list[str] = []
        self.env_modes: set[int] = set()
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    text = cmdline.read_bytes()
                except OSError:
                    continue
                if self.secret in text:
                    self.leaks.append(text.decode(errors="replace"))
            for env_file in self.root.glob("*/releases/*/env"):
                try:
                    self.env_modes.add(env_file.stat().st_mode & 0o777)
                except OSError:
                    continue
            self.scans += 1

    def __enter__(self) -> CmdlineWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_build_checks_the_digest_and_skips_an_image_the_host_has(host: Host, app_repo: AppRepo) -> None:
    tarball = subprocess.run(
        ["git", "-C", str(app_repo.path), "archive", "--format=tar", "HEAD"], capture_output=True, check=True
    ).stdout
    wrong = BuildParams(
        uid=host.uid, revision="r1", image=host.image("r1"), tree_digest="0" * 64, host_dir=str(host.dir)
    )
    refused = results.parse_build(host.run(build_script(wrong), tarball).stdout.decode())
    assert refused.result is results.BuildOutcome.DIGEST_MISMATCH
    assert hashlib.sha256(tarball).hexdigest() in refused.message
    assert host.images() == []

    built = host.build(app_repo, "r1")
    assert built.result is results.BuildOutcome.BUILT, built.logs
    assert built.image_id.startswith("sha256:")
    assert host.docker("image", "inspect", "--format", "{{json .Config.Labels}}", host.image("r1")).count(host.uid) == 1
    present = results.parse_image_presence(host.run(image_present_script(host.image("r1"))).stdout.decode())
    assert present.present and present.image_id == built.image_id

    # The image is there: nothing is read from stdin, nothing rebuilt.
    again = results.parse_build(host.run(build_script(wrong), b"").stdout.decode())
    assert again.result is results.BuildOutcome.PRESENT
    assert again.image_id == built.image_id
    assert list((host.dir / host.uid8 / "builds").iterdir()) == []


def test_failed_build_returns_the_end_of_its_output(host: Host, app_repo: AppRepo) -> None:
    app_repo.write_file("Dockerfile", "FROM scratch\nCOPY no-such-file /x\n")
    app_repo.commit_all("broken Dockerfile")
    failed = host.build(app_repo, "broken")
    assert failed.result is results.BuildOutcome.BUILD_FAILED
    assert any("no-such-file" in line for line in failed.logs)


def payload(env: str) -> bytes:
    """The release's stdin for env file text `env`: as the operator sends it (with its length and digest)."""
    return env_payload(dict(line.split("=", 1) for line in env.splitlines() if line))


def test_good_release_answers_on_the_port_and_the_secret_reaches_only_the_container(
    host: Host, app_repo: AppRepo
) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    assert host.build(app_repo, "r1").ok
    script = release_script(host.release_params("r1"))
    assert secret not in script

    with CmdlineWatch(secret, host.dir) as watch:
        released = results.parse_release(
            host.run(script, payload(f"API_TOKEN={secret}\nGREETING=hello\n")).stdout.decode())
    assert released.result is results.ReleaseOutcome.RELEASED, released.message
    assert host.get("/") == "revision 1\n"
    assert host.get("/health") == "ok\n"
    assert released.container_id == host.inspect(host.stable, "{{.Id}}")
    assert released.image_id == host.inspect(host.stable, "{{.Image}}")
    assert released.timings.healthy_after_s is not None and released.timings.total_s is not None
    assert host.containers() == [host.stable]  # the candidate is gone

    env = host.docker("exec", host.stable, "/bin/busybox", "env")
    assert f"API_TOKEN={secret}" in env.splitlines()
    assert f"PORT={host.port}" in env.splitlines()
    assert host.inspect(host.stable, f'{{{{index .Config.Labels "{docker.LABEL_NAME}"}}}}') == NAME
    assert host.inspect(host.stable, "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.NetworkMode}}") == (
        "unless-stopped host"
    )
    assert host.inspect(host.stable, "{{index .HostConfig.LogConfig.Config \"max-size\"}}") == "10m"

    assert watch.scans > 0 and watch.leaks == []
    assert watch.env_modes == {0o600}
    release_dir = host.dir / host.uid8 / "releases" / "r1"
    # The revision's env file is kept (0600) so a revert runs it exactly as it ran; no other file has the value.
    assert (release_dir / "env").stat().st_mode & 0o777 == 0o600
    assert f"API_TOKEN={secret}" in (release_dir / "env").read_text().splitlines()
    for path in release_dir.iterdir():
        if path.name != "env":
            assert secret not in path.read_text(errors="replace"), path


def test_failed_candidate_leaves_old_container_serving(host: Host, app_repo: AppRepo) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    env = f"API_TOKEN={secret}\n"
    assert host.build(app_repo, "good").ok
    assert host.release("good", env).ok
    old_id = host.inspect(host.stable, "{{.Id}} {{.State.StartedAt}}")
    commit(app_repo, Health.UNHEALTHY, log_env="API_TOKEN")
    assert host.build(app_repo, "bad").ok

    with Traffic(host) as traffic:
        refused = host.release("bad", env)
    assert refused.result is results.ReleaseOutcome.CANDIDATE_UNHEALTHY
    assert traffic.failed == [] and traffic.ok > 10
    assert host.inspect(host.stable, "{{.Id}} {{.State.StartedAt}}") == old_id  # untouched, not even restarted
    assert host.get("/") == "revision 1\n"
    assert host.containers() == [host.stable]
    assert "starting with API_TOKEN=***" in refused.logs
    assert all(secret not in line for line in refused.logs)
    assert secret not in refused.message
    assert refused.container_id == old_id.split()[0]


def test_log_lines_mask_secret_values_and_long_values_but_leave_short_plain_ones_readable(
        host: Host, app_repo: AppRepo) -> None:
    # PIN is short but comes from a Secret; MODE is short and plain; NOTE is plain but long enough to be a key.
    env = "MODE=a\nPIN=42\nNOTE=plain-but-long-value\n"
    commit(app_repo, Health.UNHEALTHY, log_env="MODE")
    app_repo.write_file("start.sh", '/bin/busybox echo "daemon started: MODE=$MODE PIN=$PIN NOTE=$NOTE"\n'
                        + START_SCRIPT.format(comment="logs its env", degrade="", port=8080))
    app_repo.commit_all("logs its env")
    assert host.build(app_repo, "bad").ok
    refused = host.release("bad", env, secret_env_names=("PIN",))
    assert refused.result is results.ReleaseOutcome.CANDIDATE_UNHEALTHY
    assert "daemon started: MODE=a PIN=*** NOTE=***" in refused.logs, refused.logs


def test_release_again_is_a_fast_no_op_and_the_same_attempt_reads_its_result(host: Host, app_repo: AppRepo) -> None:
    assert host.build(app_repo, "r1").ok
    first = host.release("r1", attempt="a1")
    assert first.result is results.ReleaseOutcome.RELEASED
    container = host.inspect(host.stable, "{{.Id}}")

    same_attempt = host.release("r1", attempt="a1")
    assert same_attempt == first

    started = time.monotonic()
    again = host.release("r1", attempt="a2")
    assert again.result is results.ReleaseOutcome.UNCHANGED
    assert time.monotonic() - started < 5
    assert host.inspect(host.stable, "{{.Id}}") == container == again.container_id


def test_dropped_connection_then_the_next_call_reads_the_same_job(host: Host, app_repo: AppRepo) -> None:
    assert host.build(app_repo, "r1").ok
    script = release_script(host.release_params("r1", attempt="once"))
    foreground = subprocess.Popen(
        host.argv(script), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    assert foreground.stdin is not None
    foreground.stdin.write(payload("GREETING=hello\n"))
    foreground.stdin.close()
    job_script = str(host.dir / host.uid8 / "releases" / "r1" / "job.sh")
    wait_until(lambda: _processes_running(job_script) != [], 10, "the detached release job runs")
    os.killpg(foreground.pid, signal.SIGKILL)  # the connection drops: the whole session dies
    foreground.wait()
    assert _processes_running(job_script) != []  # the job left the session: it goes on

    read_back = host.release("r1", attempt="once")
    assert read_back.result is results.ReleaseOutcome.RELEASED
    assert host.get("/") == "revision 1\n"
    again = host.release("r1", attempt="once")
    assert again == read_back  # one job ran; both calls read its result
    assert host.containers() == [host.stable]


def test_switch_failure_restores_the_old_container(host: Host, app_repo: AppRepo) -> None:
    assert host.build(app_repo, "good").ok
    assert host.release("good").ok
    old_id = host.inspect(host.stable, "{{.Id}}")
    commit(app_repo, port_fails=host.port)
    assert host.build(app_repo, "fails-on-stable-port").ok

    failed = host.release("fails-on-stable-port")
    assert failed.result is results.ReleaseOutcome.SWITCH_FAILED, failed.message
    assert failed.timings.healthy_after_s is not None  # the candidate was healthy
    assert host.inspect(host.stable, "{{.Id}} {{.State.Running}}") == f"{old_id} true"
    assert host.inspect(host.stable, f'{{{{index .Config.Labels "{docker.LABEL_REVISION}"}}}}') == "good"
    wait_until(lambda: _answers(host), 10, "the restored container answers")
    assert host.get("/") == "revision 1\n"
    assert host.containers() == [host.stable]


def test_a_truncated_env_file_starts_nothing(host: Host, app_repo: AppRepo) -> None:
    assert host.build(app_repo, "r1").ok
    script = release_script(host.release_params("r1"))
    cut = payload("API_TOKEN=s3cr3t-value\nGREETING=hello\n")[:-30]  # the connection dropped mid-stream
    refused = results.parse_release(host.run(script, cut).stdout.decode())
    assert refused.result is results.ReleaseOutcome.ENV_INCOMPLETE
    assert host.containers() == []
    assert not (host.dir / host.uid8 / "releases" / "r1" / "env").exists()


def test_a_kept_revision_is_released_with_the_env_it_ran_with_not_the_newest(host: Host, app_repo: AppRepo) -> None:
    assert host.build(app_repo, "r1").ok
    assert host.release("r1", "GREETING=one\n").ok
    assert host.build(app_repo, "r2").ok
    assert host.release("r2", "GREETING=two\n", keep_images=(host.image("r1"),), keep_revisions=("r1",)).ok
    assert "GREETING=two" in host.docker("exec", host.stable, "/bin/busybox", "env").splitlines()

    back = host.release("r1", env_from_stdin=False)
    assert back.result is results.ReleaseOutcome.RELEASED, back.message
    env = host.docker("exec", host.stable, "/bin/busybox", "env").splitlines()
    assert "GREETING=one" in env and "GREETING=two" not in env
    assert host.inspect(host.stable, f'{{{{index .Config.Labels "{docker.LABEL_REVISION}"}}}}') == "r1"


def test_a_kept_revision_whose_env_file_is_gone_says_so_and_starts_nothing(host: Host, app_repo: AppRepo) -> None:
    assert host.build(app_repo, "r1").ok
    missing = host.release("r1", env_from_stdin=False)
    assert missing.result is results.ReleaseOutcome.ENV_MISSING
    assert "no longer keeps the env file" in missing.message
    assert host.containers() == []


def test_a_failed_stop_fails_the_release_and_the_old_container_keeps_serving(
        host: Host, app_repo: AppRepo) -> None:
    assert host.build(app_repo, "good").ok
    assert host.release("good").ok
    old_id = host.inspect(host.stable, "{{.Id}}")
    commit(app_repo)
    assert host.build(app_repo, "next").ok
    # The real docker for everything but `docker stop`, which the engine refuses.
    shim = host.dir / "bin"
    shim.mkdir()
    (shim / "docker").write_text('#!/bin/sh\n[ "$1" = stop ] && { echo "cannot stop: refused" >&2; exit 1; }\n'
                                 f'exec {shutil.which("docker")} "$@"\n')
    (shim / "docker").chmod(0o755)
    argv = [a.replace("PATH=/usr/local/bin", f"PATH={shim}:/usr/local/bin") for a in
            host.argv(release_script(host.release_params("next")))]
    done = subprocess.run(argv, input=payload(""), capture_output=True, timeout=SCRIPT_TIMEOUT_S, check=True)
    failed = results.parse_release(done.stdout.decode())
    # Failed, not SwitchFailed: the engine's hiccup is no fault of the new revision (it is retried, not quarantined).
    assert failed.result is results.ReleaseOutcome.FAILED, failed.message
    assert "could not stop" in failed.message
    assert host.inspect(host.stable, "{{.Id}} {{.State.Running}}") == f"{old_id} true"
    assert host.get("/") == "revision 1\n"
    assert host.containers() == [host.stable]


@pytest.mark.parametrize("verified", [False, True], ids=["unverified", "verified"])
def test_recovery_after_a_crash_mid_switch_keeps_the_verified_container(
        host: Host, app_repo: AppRepo, verified: bool) -> None:
    assert host.build(app_repo, "old").ok
    assert host.release("old").ok
    old_id = host.inspect(host.stable, "{{.Id}}")
    commit(app_repo)
    assert host.build(app_repo, "new").ok
    # What a job killed between the new container's start and the end of the switch leaves: the old container
    # renamed aside and stopped, a new one under the stable name; the marker only if the switch had verified it.
    host.docker("stop", "--time", "1", host.stable)
    host.docker("rename", host.stable, docker.aside_name(host.uid8))
    new_id = host.docker("run", "--detach", "--name", host.stable, "--network", "host", "--label",
                         f"{docker.LABEL_UID}={host.uid}", "--label", f"{docker.LABEL_REVISION}=new",
                         "--env", f"PORT={host.port}", host.image("new"))
    if verified:
        (host.dir / host.uid8 / "switch-verified").write_text(new_id)

    # Any later job recovers first; this one then stops short (its image is missing) so nothing else changes.
    assert host.release("never-built").result is results.ReleaseOutcome.IMAGE_MISSING
    kept = host.inspect(host.stable, "{{.Id}} {{.State.Running}}").split()[0]
    assert kept == (new_id if verified else old_id)
    assert docker.aside_name(host.uid8) not in host.containers()


def test_release_refuses_to_start_when_the_disk_is_low(host: Host, app_repo: AppRepo) -> None:
    assert host.build(app_repo, "r1").ok
    refused = host.release("r1", min_free_disk_mb=10**9)
    assert refused.result is results.ReleaseOutcome.DISK_FULL
    assert "free disk space" in refused.message
    assert host.containers() == []


def test_release_of_an_image_the_host_lacks_says_so_and_starts_nothing(host: Host) -> None:
    missing = host.release("never-built")
    assert missing.result is results.ReleaseOutcome.IMAGE_MISSING
    assert "is not on the host" in missing.message
    assert host.containers() == []


def test_releases_on_one_host_wait_for_the_host_lock(host: Host, app_repo: AppRepo) -> None:
    assert host.build(app_repo, "r1").ok
    lock = host.dir / "deploymind.lock"
    holder = subprocess.Popen(host.argv(f"exec flock {lock} sleep 60"), start_new_session=True)
    try:
        probe = host.argv(f"flock -n {lock} true")
        wait_until(lambda: subprocess.run(probe, check=False).returncode != 0, 10, "the test holds the host lock")
        busy = host.release("r1", lock_timeout_s=1)
        assert busy.result is results.ReleaseOutcome.FAILED
        assert busy.message == "another release held the host lock for 1 s: retry later"
        assert host.containers() == []
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    assert host.release("r1").result is results.ReleaseOutcome.RELEASED


def test_prune_keeps_the_images_and_env_files_it_is_told_to_keep(host: Host, app_repo: AppRepo) -> None:
    # revisionHistoryLimit 1 plus lastGood r1: each release keeps the revision before it and r1.
    for number, revision in enumerate(["r1", "r2", "r3", "r4"], start=1):
        if number > 1:
            commit(app_repo)
        assert host.build(app_repo, revision).ok
        keep = (host.image(f"r{number - 1}"), host.image("r1"))
        assert host.release(revision, keep_images=keep, keep_revisions=(f"r{number - 1}", "r1")).ok
        assert host.get("/") == f"revision {number}\n"
    assert host.images() == [host.image("r1"), host.image("r3"), host.image("r4")]
    assert sorted(path.name for path in (host.dir / host.uid8 / "releases").iterdir()) == ["r1", "r3", "r4"]


def test_health_script_reports_probe_container_and_stats(host: Host, app_repo: AppRepo) -> None:
    assert host.build(app_repo, "r1").ok
    assert host.release("r1").ok
    params = HealthParams(uid8=host.uid8, image=host.image("r1"), port=host.port)

    healthy = results.parse_health(host.run(health_script(params)).stdout.decode())
    assert healthy.healthy
    assert healthy.probe.status == 200 and healthy.probe.latency_ms > 0
    assert healthy.container.running and healthy.container.revision == "r1"
    assert healthy.container.id == host.inspect(host.stable, "{{.Id}}")
    assert healthy.stats is not None
    assert 0 < healthy.stats.memory_bytes <= healthy.stats.memory_limit_bytes == 64 * 2**20

    commit(app_repo)
    assert host.build(app_repo, "r2").ok
    wrong = results.parse_health(host.run(health_script(HealthParams(host.uid8, host.image("r2"), host.port))).stdout.decode())
    assert wrong.probe.ok and not wrong.right_image and not wrong.healthy

    host.docker("stop", host.stable)
    stopped = results.parse_health(host.run(health_script(params)).stdout.decode())
    assert stopped.probe.status == 0 and stopped.probe.error
    assert stopped.container.exists and not stopped.container.running and stopped.stats is None

    restarted = results.parse_restart(host.run(restart_script(host.uid8)).stdout.decode())
    assert restarted.result is results.RestartOutcome.RESTARTED
    wait_until(lambda: _answers(host), 10, "the restarted container answers")

    host.docker("rm", "--force", host.stable)
    missing = results.parse_health(host.run(health_script(params)).stdout.decode())
    assert not missing.container.exists and not missing.healthy
    gone = results.parse_restart(host.run(restart_script(host.uid8)).stdout.decode())
    assert gone.result is results.RestartOutcome.MISSING


def test_cleanup_removes_containers_images_and_files(host: Host, app_repo: AppRepo) -> None:
    assert host.build(app_repo, "r1").ok
    assert host.release("r1").ok
    # A candidate and a container left aside by an interrupted switch carry the same uid label.
    host.docker("run", "--detach", "--name", docker.candidate_name(host.uid8, "r1"), "--network", "host",
                "--label", f"{docker.LABEL_UID}={host.uid}", "--env", "PORT=1", host.image("r1"))  # fmt: skip
    host.docker("create", "--name", docker.aside_name(host.uid8), "--label", f"{docker.LABEL_UID}={host.uid}",
                host.image("r1"))  # fmt: skip
    assert len(host.containers()) == 3

    cleaned = results.parse_cleanup(host.run(cleanup_script(CleanupParams(uid=host.uid, host_dir=str(host.dir)))).stdout.decode())
    assert cleaned.result is results.CleanupOutcome.CLEANED
    assert (cleaned.containers, cleaned.images) == (3, 1)
    assert host.containers() == [] and host.images() == []
    assert not (host.dir / host.uid8).exists()
    assert not _answers(host)


def _processes_running(argument: str) -> list[int]:
    """PIDs of processes with `argument` on their command line."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if argument.encode() in cmdline.read_bytes().split(b"\0"):
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def _answers(host: Host) -> bool:
    try:
        host.get("/health")
    except OSError:
        return False
    return True


def test_health_with_a_host_dir_answers_without_waiting_for_stats_and_reports_the_last_sample(
        host: Host, app_repo: AppRepo) -> None:
    assert host.build(app_repo, "r1").ok
    assert host.release("r1").ok
    params = HealthParams(uid8=host.uid8, image=host.image("r1"), port=host.port, host_dir=str(host.dir),
                          background_stats=True)
    started = time.monotonic()
    first = results.parse_health(host.run(health_script(params)).stdout.decode())
    took = time.monotonic() - started
    assert first.healthy and first.stats is None  # no sample yet: this tick started one
    assert took < 1.5, f"the tick waited {took:.1f} s for docker stats"
    sample = host.dir / host.uid8 / "stats.json"
    wait_until(sample.exists, 15, "the background sample")
    second = results.parse_health(host.run(health_script(params)).stdout.decode())
    assert second.healthy and second.stats is not None and second.stats.memory_bytes > 0


def _path_without(shim: Path, *absent: str) -> str:
    """A directory of links to every command of the login user's PATH but `absent`: a host that lacks them."""
    shim.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin"):
        for tool in Path(directory).iterdir():
            if tool.name not in absent and not (shim / tool.name).exists():
                (shim / tool.name).symlink_to(tool)
    return str(shim)


def test_a_host_without_flock_is_not_ready_and_the_release_starts_nothing(host: Host, app_repo: AppRepo) -> None:
    assert host.build(app_repo, "r1").ok
    shim = _path_without(host.dir.parent / f"bin-{host.uid8}", "flock")
    argv = [a.replace("PATH=/usr/local/bin:/usr/bin:/bin", f"PATH={shim}") for a in
            host.argv(release_script(host.release_params("r1")))]
    done = subprocess.run(argv, input=payload("API_TOKEN=x\n"), capture_output=True, timeout=SCRIPT_TIMEOUT_S,
                          check=True)
    with pytest.raises(results.HostNotReady) as raised:
        results.parse_release(done.stdout.decode())
    assert raised.value.missing == ("flock",)
    assert "flock (package util-linux)" in raised.value.message and raised.value.host_dir == str(host.dir)
    assert host.containers() == []
    assert not (host.dir / host.uid8 / "releases").exists()  # no release directory, no env file


def test_without_a_host_dir_a_login_user_deploys_into_its_home(host: Host, app_repo: AppRepo) -> None:
    """A fresh host, no --host-dir: the non-root login user keeps its files in ~/.deploymind, which it creates."""
    home_dir = LOGIN_HOME / ".deploymind"
    tarball = subprocess.run(["git", "-C", str(app_repo.path), "archive", "--format=tar", "HEAD"],
                             capture_output=True, check=True).stdout
    build = BuildParams(uid=host.uid, revision="r1", image=host.image("r1"),
                        tree_digest=hashlib.sha256(tarball).hexdigest(), host_dir=None)
    assert results.parse_build(host.run(build_script(build), tarball).stdout.decode()).ok
    try:
        released = results.parse_release(
            host.run(release_script(host.release_params("r1", host_dir=None)), payload("")).stdout.decode())
        assert released.ok, released.message
        assert released.host_dir == str(home_dir)
        assert (home_dir / host.uid8 / "releases" / "r1" / "env").is_file()
    finally:
        cleaned = results.parse_cleanup(host.run(cleanup_script(CleanupParams(uid=host.uid, host_dir=None))).stdout.decode())
    assert cleaned.result is results.CleanupOutcome.CLEANED, cleaned.message
    assert not (home_dir / host.uid8).exists()


def test_without_a_host_dir_root_uses_var_lib_deploymind() -> None:
    """SSM runs scripts as root: the header's resolution gives /var/lib/deploymind (run here as root)."""
    if os.getuid() != 0:
        pytest.skip("resolving the host directory as root needs the suite to run as root (CI and scripts/run-tests do)")
    done = subprocess.run(["bash", "-c", hostpaths.RESOLVE_HOST_DIR + 'printf %s "$host_dir"'],
                          capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]})
    assert done.stdout == "/var/lib/deploymind"
