"""The release script (DESIGN §3.4): one round trip that puts a built revision into service on a host.

The env file (`NAME=value` lines) is the script's stdin, so no value is ever in the script text or on a
command line; a trailer line carries its length and sha256, so a dropped connection can never start the app
with a truncated env. The host keeps each revision's env file (mode 0600) next to its image, so a revert or
`rollback-to` releases the revision with exactly the env it ran with (`env_from_stdin=False`, no stdin).
A foreground part starts a detached job and prints the job's one JSON result line; the job does the work under
the host lock (scripts/release_job.sh says how). `parse_release` (commands.results) reads the line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from deploymind.commands import docker, hostpaths, preflight, shell
from deploymind.commands.shell import Var

# How many of the candidate's last log lines a failed release returns.
LOG_TAIL_LINES = 50
# Releases on one host queue behind each other; past this a release gives up and reports Failed.
LOCK_TIMEOUT_S = 600
# Plain env values this long or longer are masked too: a value that long may well be a credential.
SCRUB_MIN_LENGTH = 12


@dataclass(frozen=True)
class ReleaseParams:
    """Everything the release script needs, none of it secret (env values travel on stdin).

    `attempt` names one rollout attempt of `revision` (the controller's id for it): calling again with the same
    attempt (after a dropped connection) waits for or reads that attempt's job; a new attempt (a retry, a drift
    repair) runs afresh, and is a fast no-op (Unchanged) when the revision already serves.

    `keep_images` and `keep_revisions` are the images and release directories (with their env files) pruning
    must leave (the last revisionHistoryLimit revisions and lastGood); the released one and the one serving are
    always kept.

    `secret_env_names` are the env names whose values come from Secrets: those values, and any value of
    SCRUB_MIN_LENGTH characters or more, are masked in whatever leaves the host (log lines, docker errors).
    """

    uid: str
    namespace: str
    name: str
    revision: str
    image: str
    port: int
    host_dir: str | None
    """None: the host decides (hostpaths.RESOLVE_HOST_DIR)."""
    attempt: str
    health_path: str = "/health"
    probe_timeout_s: int = 5
    startup_timeout_s: int = 120
    poll_interval_s: float = 1.0
    memory: str | None = None
    cpus: str | None = None
    keep_images: tuple[str, ...] = ()
    min_free_disk_mb: int = 500
    log_max_size: str = "10m"
    lock_timeout_s: int = LOCK_TIMEOUT_S
    init: bool = True
    stop_grace_s: int = docker.STOP_TIMEOUT_S
    reuse_image: str | None = None
    """Tagged as `image` when the host lacks `image` (a revision built from exactly what this one builds from)."""
    env_from_stdin: bool = True
    """False: release with the env file the host kept for this revision (a revert, `rollback-to`, a repair)."""
    keep_revisions: tuple[str, ...] = ()
    secret_env_names: tuple[str, ...] = ()
    poll_min_s: float = 0.1
    """Health waits poll this fast at first, growing by half each time up to `poll_interval_s`."""

    @property
    def uid8(self) -> str:
        return self.uid[:8]


def env_payload(env: Mapping[str, str]) -> bytes:
    """The release's stdin: the env file (`NAME=value` lines, sorted), then a trailer line with its length and
    sha256 that the host checks before it starts anything. The trailer is in the payload, not in the script text:
    SSM keeps command parameters in its history, and a digest of a short value is a guessable fingerprint."""
    body = "".join(f"{k}={v}\n" for k, v in sorted(env.items())).encode()
    return body + f"#deploymind-env bytes={len(body)} sha256={hashlib.sha256(body).hexdigest()}\n".encode()


def release_script(params: ReleaseParams) -> str:
    """The script to run with the env file content on stdin; it prints one JSON line (results.ReleaseResult)."""
    job = _header(params) + shell.body("lib") + shell.body("release_job")
    writer = "# Writes the detached job's script to $1.\nwrite_job() {\n" + shell.heredoc('"$1"', job) + "}\n"
    return shell.bash(_header(params) + shell.body("lib") + writer + shell.body("release"))


def _header(params: ReleaseParams) -> str:
    uid8 = hostpaths.check_name("uid", params.uid8)
    revision = hostpaths.check_name("revision", params.revision)
    if not params.health_path.startswith("/"):
        raise ValueError(f"health path {params.health_path!r} must start with '/'")
    if not 1 <= params.port <= 65535:
        raise ValueError(f"port {params.port} is not a TCP port")
    rel_dir = hostpaths.release_dir("", uid8, revision)
    values: dict[str, str | int | float] = {
        "revision": revision,
        "attempt": params.attempt,
        "image": params.image,
        "reuse_image": params.reuse_image or "",
        "image_repo": docker.image_repository(uid8),
        "port": params.port,
        "health_path": params.health_path,
        "probe_timeout": params.probe_timeout_s,
        "startup_timeout": params.startup_timeout_s,
        "poll_interval_ms": round(params.poll_interval_s * 1000),
        "poll_min_ms": round(params.poll_min_s * 1000),
        "env_from_stdin": 1 if params.env_from_stdin else 0,
        "scrub_min_length": SCRUB_MIN_LENGTH,
        "min_free_mb": params.min_free_disk_mb,
        "lock_timeout": params.lock_timeout_s,
    }
    paths = {
        "lock_file": hostpaths.lock_file(""),
        "releases_dir": hostpaths.releases_dir("", uid8),
        "rel_dir": rel_dir,
        "env_file": f"{rel_dir}/env",
        "secret_names_file": f"{rel_dir}/secret-names",
        "verified_file": f"{hostpaths.object_dir('', uid8)}/switch-verified",
        "result_file": f"{rel_dir}/result.json",
    }
    names = {"stable": docker.stable_name(uid8), "candidate": docker.candidate_name(uid8, revision),
             "aside": docker.aside_name(uid8)}
    return (
        "# Parameters of this release (generated).\n"
        + shell.assignments(values)
        + hostpaths.header(params.host_dir, paths)
        + shell.assignments(names)
        + shell.array("keep_images", params.keep_images)
        + shell.array("keep_revisions", [hostpaths.check_name("revision", r) for r in params.keep_revisions])
        + shell.array("secret_env_names", params.secret_env_names)
        + preflight.header(preflight.RELEASE)
        + _functions(params, uid8, revision)
    )


def _functions(params: ReleaseParams, uid8: str, revision: str) -> str:
    """The docker commands of a release as shell functions; their arguments are host-side values."""
    spec = docker.RunSpec(
        image=params.image,
        labels=docker.Labels(uid=params.uid, namespace=params.namespace, name=params.name, revision=revision),
        log_max_size=params.log_max_size,
        memory=params.memory,
        cpus=params.cpus,
        init=params.init,
        stop_grace_s=params.stop_grace_s,
    )
    env_file, first, second = Var("env_file"), Var("1"), Var("2")
    run_candidate = docker.run(
        spec, name=docker.candidate_name(uid8, revision), port=Var("cport"), env_file=env_file,
        role=docker.ROLE_CANDIDATE,
    )  # fmt: skip
    run_stable = docker.run(
        spec, name=docker.stable_name(uid8), port=str(params.port), env_file=env_file, role=docker.ROLE_STABLE
    )
    functions = [
        shell.function("dm_state", [docker.state(first)], "$1 = container"),
        shell.function("dm_image_id", [docker.image_id(params.image)], "id of the image to release"),
        shell.function("dm_root_dir", [docker.root_dir()], "the engine's data directory"),
        shell.function("dm_run_candidate", [run_candidate], "uses $cport and $env_file"),
        shell.function("dm_run_stable", [run_stable], "uses $env_file"),
        shell.function("dm_stop", [docker.stop(first, params.stop_grace_s)], "$1 = container"),
        shell.function("dm_start", [docker.start(first)], "$1 = container"),
        shell.function("dm_rename", [docker.rename(first, second)], "$1 = container, $2 = new name"),
        shell.function("dm_remove", [docker.remove(first)], "$1 = container"),
        shell.function("dm_logs", [docker.logs(first, LOG_TAIL_LINES)], "$1 = container"),
        shell.function("dm_image_tags", [docker.image_tags(docker.image_repository(uid8))], "this app's images"),
        shell.function("dm_remove_image", [docker.remove_image(first)], "$1 = image"),
        shell.function("dm_tag_reused", [docker.tag(Var("reuse_image"), params.image)], "uses $reuse_image"),
    ]
    return "".join(functions)
