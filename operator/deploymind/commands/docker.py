"""Docker CLI commands as argv lists, and the names and labels DeployMind gives what it creates on a host.

Each builder returns one command; the host scripts wrap them into shell functions (commands.shell). Values only
the host knows (a free port, a container id) are `Var`s, expanded there. The docker CLI reads DOCKER_HOST from
its environment, so nothing here names an engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from deploymind.commands.shell import Var, Word

LABEL_UID = "deploymind.io/uid"
LABEL_NAMESPACE = "deploymind.io/namespace"
LABEL_NAME = "deploymind.io/name"
LABEL_REVISION = "deploymind.io/revision"
LABEL_ROLE = "deploymind.io/role"
LABEL_TREE_DIGEST = "deploymind.io/tree-digest"

ROLE_STABLE = "stable"
ROLE_CANDIDATE = "candidate"

IMAGE_REPOSITORY = "deploymind/{uid8}"

# A stopped app gets this long to exit before docker kills it (docker's own default; the spec's
# container.stopGracePeriodSeconds). With an init as PID 1 an app that ignores SIGTERM still exits at once.
STOP_TIMEOUT_S = 10
# Taken from every app container: raw sockets (ping, packet crafting and ARP/ICMP spoofing on the host's
# network, which host networking shares). No app serving HTTP needs them.
DROPPED_CAPABILITIES = ("NET_RAW",)
# Bounded container logs: docker keeps at most this many files of `log_max_size` each.
LOG_MAX_FILES = 2

# What health and release read about a container, as one JSON object. Env is deliberately absent: it holds
# secret values, and whatever the operator reads may end up in its logs.
INSPECT_FORMAT = (
    '{"id":{{json .Id}},"image_id":{{json .Image}},"image":{{json .Config.Image}},'
    '"running":{{json .State.Running}},"status":{{json .State.Status}},"restart_count":{{json .RestartCount}},'
    '"started_at":{{json .State.StartedAt}},'
    '"revision":{{json (index .Config.Labels "' + LABEL_REVISION + '")}}}'
)

# What a release needs to know about a container, space-separated for `read` in the scripts; the revision
# label comes last because a missing label prints as "<no value>".
STATE_FORMAT = '{{.Id}} {{.Image}} {{.State.Running}} {{.Config.Image}} {{index .Config.Labels "' + LABEL_REVISION + '"}}'


def stable_name(uid8: str) -> str:
    """The container that serves the app: `dm-<uid[:8]>`."""
    return f"dm-{uid8}"


def candidate_name(uid8: str, revision: str) -> str:
    """The container a release starts first, on a free port, to prove a revision healthy: `dm-<uid8>-<revision>`."""
    return f"dm-{uid8}-{revision}"


def aside_name(uid8: str) -> str:
    """The old stable container while a switch runs: renamed, stopped, kept until the new one is healthy."""
    return f"dm-{uid8}-previous"


def image_repository(uid8: str) -> str:
    return IMAGE_REPOSITORY.format(uid8=uid8)


def image_tag(uid8: str, revision: str) -> str:
    """The image a build produces on the host: `deploymind/<uid8>:<revision>`."""
    return f"{image_repository(uid8)}:{revision}"


@dataclass(frozen=True)
class Labels:
    """The labels every container of one Deployment carries."""

    uid: str
    namespace: str
    name: str
    revision: str

    def as_dict(self) -> dict[str, str]:
        return {
            LABEL_UID: self.uid,
            LABEL_NAMESPACE: self.namespace,
            LABEL_NAME: self.name,
            LABEL_REVISION: self.revision,
        }


@dataclass(frozen=True)
class RunSpec:
    """Everything about an app container that is fixed before the host is reached."""

    image: str
    labels: Labels
    log_max_size: str = "10m"
    memory: str | None = None
    cpus: str | None = None
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    init: bool = True
    stop_grace_s: int = STOP_TIMEOUT_S


def run(spec: RunSpec, *, name: Word, port: Word, env_file: Word, role: str) -> list[Word]:
    """`docker run` of an app container: host networking, PORT last (it wins over the env file), restarts
    unless stopped, bounded json-file logs, no raw sockets, no privilege gain through setuid binaries, and an
    init as PID 1 unless the spec turns it off. The stop timeout is the container's own, so docker's restarts
    and an engine shutdown give the app the same grace as DeployMind's stops."""
    argv: list[Word] = [
        "docker", "run", "--detach",
        "--name", name,
        "--network", "host",
        "--restart", "unless-stopped",
        "--stop-timeout", str(spec.stop_grace_s),
        "--log-driver", "json-file",
        "--log-opt", f"max-size={spec.log_max_size}",
        "--log-opt", f"max-file={LOG_MAX_FILES}",
        "--security-opt", "no-new-privileges",
    ]  # fmt: skip
    for capability in DROPPED_CAPABILITIES:
        argv += ["--cap-drop", capability]
    # Said either way: a host whose daemon.json sets `"init": true` would otherwise add one the spec turned off.
    argv.append("--init" if spec.init else "--init=false")
    labels = {**spec.labels.as_dict(), LABEL_ROLE: role, **spec.extra_labels}
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    if spec.memory:
        argv += ["--memory", spec.memory]
    if spec.cpus:
        argv += ["--cpus", spec.cpus]
    argv += ["--env-file", env_file, "--env", _prefixed("PORT=", port), spec.image]
    return argv


def build(*, tag: str, dockerfile: Word, context: Word, labels: Mapping[str, str]) -> list[Word]:
    """`docker build` of an extracted context, on the host network (a build may fetch packages)."""
    argv: list[Word] = ["docker", "build", "--network", "host", "--tag", tag, "--file", dockerfile]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    argv.append(context)
    return argv


def image_id(image: Word) -> list[Word]:
    """Prints the image's id (`sha256:…`); fails when the host does not have it."""
    return ["docker", "image", "inspect", "--format", "{{.Id}}", image]


def inspect(container: Word) -> list[Word]:
    """One JSON object (INSPECT_FORMAT) about a container; fails when it does not exist."""
    return ["docker", "container", "inspect", "--format", INSPECT_FORMAT, container]


def state(container: Word) -> list[Word]:
    """id, image id, running, image name and revision label of a container (STATE_FORMAT); fails when absent."""
    return ["docker", "container", "inspect", "--format", STATE_FORMAT, container]


def root_dir() -> list[Word]:
    """The engine's data directory, where images and container layers take disk space."""
    return ["docker", "info", "--format", "{{.DockerRootDir}}"]


def stop(container: Word, grace_s: int) -> list[Word]:
    """SIGTERM, then SIGKILL after `grace_s` seconds."""
    return ["docker", "stop", "--time", str(grace_s), container]


def start(container: Word) -> list[Word]:
    return ["docker", "start", container]


def restart(container: Word, grace_s: int) -> list[Word]:
    """Stop as `stop` does, then start again."""
    return ["docker", "restart", "--time", str(grace_s), container]


def rename(container: Word, new_name: Word) -> list[Word]:
    return ["docker", "rename", container, new_name]


def remove(container: Word) -> list[Word]:
    """Remove a container, running or not."""
    return ["docker", "rm", "--force", container]


def logs(container: Word, tail: int) -> list[Word]:
    """The last `tail` lines a container wrote (both streams)."""
    return ["docker", "logs", "--tail", str(tail), container]


def stats(container: Word) -> list[Word]:
    """One sample of a container's CPU and memory as JSON (docker prints human units; the parser converts)."""
    return ["docker", "stats", "--no-stream", "--format", "{{json .}}", container]


def containers_labelled(key: str, value: Word) -> list[Word]:
    """Ids of every container, running or not, carrying the label key=value."""
    return ["docker", "ps", "--all", "--quiet", "--no-trunc", "--filter", _prefixed(f"label={key}=", value)]


def image_tags(repository: Word) -> list[Word]:
    """`repository:tag` of each image of a repository, one per line."""
    return ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository]


def tag(image: Word, new: Word) -> list[Word]:
    """Give an image on the host another name (a revision reusing another's image)."""
    return ["docker", "image", "tag", image, new]


def remove_image(image: Word) -> list[Word]:
    """Remove an image by name; docker refuses (and we let it) an image a container still uses."""
    return ["docker", "image", "rm", image]


def _prefixed(prefix: str, value: Word) -> Word:
    if isinstance(value, Var):
        return Var(value.name, prefix + value.prefix)
    return prefix + value
