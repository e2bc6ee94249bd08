"""The release script (DESIGN §3.4): one round trip that puts a built revision into service on a host.

The env file (`NAME=value` lines) is the script's stdin, so no value is ever in the script text or on a
command line. A foreground part starts a detached job and prints the job's one JSON result line; the job
does the work under the host lock (scripts/release_job.sh says how). `parse_release` (commands.results)
reads the line.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploymind.commands import docker, hostpaths, shell
from deploymind.commands.shell import Var

# How many of the candidate's last log lines a failed release returns.
LOG_TAIL_LINES = 50
# Releases on one host queue behind each other; past this a release gives up and reports Failed.
LOCK_TIMEOUT_S = 600


@dataclass(frozen=True)
class ReleaseParams:
    """Everything the release script needs, none of it secret (env values travel on stdin).

    `attempt` names one rollout attempt of `revision` (the controller's id for it): calling again with the same
    attempt (after a dropped connection) waits for or reads that attempt's job; a new attempt (a retry, a drift
    repair) runs afresh, and is a fast no-op (Unchanged) when the revision already serves.

    `keep_images` are the images pruning must leave (the last revisionHistoryLimit revisions and lastGood); the
    released image and the one serving are always kept.
    """

    uid: str
    namespace: str
    name: str
    revision: str
    image: str
    port: int
    host_dir: str
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

    @property
    def uid8(self) -> str:
        return self.uid[:8]


def release_script(params: ReleaseParams) -> str:
    """The script to run with the env file content on stdin; it prints one JSON line (results.ReleaseResult)."""
    job = _header(params) + shell.body("lib") + shell.body("release_job")
    writer = "# Writes the detached job's script to $1.\nwrite_job() {\n" + shell.heredoc('"$1"', job) + "}\n"
    return shell.bash(_header(params) + shell.body("lib") + writer + shell.body("release"))


def _header(params: ReleaseParams) -> str:
    uid8 = hostpaths.check_name("uid", params.uid8)
    revision = hostpaths.check_name("revision", params.revision)
    host_dir = hostpaths.check_host_dir(params.host_dir)
    if not params.health_path.startswith("/"):
        raise ValueError(f"health path {params.health_path!r} must start with '/'")
    if not 1 <= params.port <= 65535:
        raise ValueError(f"port {params.port} is not a TCP port")
    rel_dir = hostpaths.release_dir(host_dir, uid8, revision)
    values: dict[str, str | int | float] = {
        "revision": revision,
        "attempt": params.attempt,
        "image": params.image,
        "image_repo": docker.image_repository(uid8),
        "port": params.port,
        "health_path": params.health_path,
        "probe_timeout": params.probe_timeout_s,
        "startup_timeout": params.startup_timeout_s,
        "poll_interval": params.poll_interval_s,
        "min_free_mb": params.min_free_disk_mb,
        "lock_timeout": params.lock_timeout_s,
        "host_dir": host_dir,
        "lock_file": hostpaths.lock_file(host_dir),
        "releases_dir": hostpaths.releases_dir(host_dir, uid8),
        "rel_dir": rel_dir,
        "env_file": f"{rel_dir}/env",
        "result_file": f"{rel_dir}/result.json",
        "stable": docker.stable_name(uid8),
        "candidate": docker.candidate_name(uid8, revision),
        "aside": docker.aside_name(uid8),
    }
    return (
        "# Parameters of this release (generated).\n"
        + shell.assignments(values)
        + shell.array("keep_images", params.keep_images)
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
        shell.function("dm_stop", [docker.stop(first)], "$1 = container"),
        shell.function("dm_start", [docker.start(first)], "$1 = container"),
        shell.function("dm_rename", [docker.rename(first, second)], "$1 = container, $2 = new name"),
        shell.function("dm_remove", [docker.remove(first)], "$1 = container"),
        shell.function("dm_logs", [docker.logs(first, LOG_TAIL_LINES)], "$1 = container"),
        shell.function("dm_image_tags", [docker.image_tags(docker.image_repository(uid8))], "this app's images"),
        shell.function("dm_remove_image", [docker.remove_image(first)], "$1 = image"),
    ]
    return "".join(functions)
