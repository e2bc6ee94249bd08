"""Typed results of the host scripts, parsed from the one JSON line each prints last.

Pure: a parser takes the script's stdout text. Lines before the JSON line (a login banner, a stray warning)
are ignored; a missing or garbled line raises ScriptOutputError, whose message says where to look. Every script
checks the host first (commands.preflight): its HostNotReady line raises HostNotReady from any parser.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

SCRIPT_OUTPUT_INVALID = "ScriptOutputInvalid"
HOST_NOT_READY = "HostNotReady"

_E = TypeVar("_E", bound=StrEnum)


class ScriptOutputError(Exception):
    """A host script's stdout did not end with the JSON line it promises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.reason = SCRIPT_OUTPUT_INVALID
        self.message = message


class HostNotReady(Exception):
    """The host lacks a command the script needs (`missing`), or the login user cannot write the host directory
    (`missing` empty): the script started nothing. `host_dir` is the directory it would have used."""

    def __init__(self, missing: tuple[str, ...], host_dir: str, message: str) -> None:
        super().__init__(message)
        self.reason = HOST_NOT_READY
        self.missing = missing
        self.host_dir = host_dir
        self.message = message


class BuildOutcome(StrEnum):
    BUILT = "Built"
    PRESENT = "Present"
    DIGEST_MISMATCH = "DigestMismatch"
    BUILD_FAILED = "BuildFailed"
    DISK_FULL = "DiskFull"
    UNSAFE_SOURCE = "UnsafeSource"
    """A symlink in the tree, the build context or the Dockerfile leads outside the extracted tree."""
    FAILED = "Failed"


class ReleaseOutcome(StrEnum):
    RELEASED = "Released"
    UNCHANGED = "Unchanged"
    CANDIDATE_UNHEALTHY = "CandidateUnhealthy"
    SWITCH_FAILED = "SwitchFailed"
    DISK_FULL = "DiskFull"
    IMAGE_MISSING = "ImageMissing"
    ENV_MISSING = "EnvMissing"
    """The host no longer keeps the env file of a revision released as it ran before."""
    ENV_INCOMPLETE = "EnvIncomplete"
    """The env file on stdin was cut short or corrupted: nothing was started."""
    FAILED = "Failed"


class RestartOutcome(StrEnum):
    RESTARTED = "Restarted"
    MISSING = "Missing"
    FAILED = "Failed"


class CleanupOutcome(StrEnum):
    CLEANED = "Cleaned"
    FAILED = "Failed"


@dataclass(frozen=True)
class BuildResult:
    result: BuildOutcome
    revision: str
    image: str
    image_id: str
    build_s: float
    logs: tuple[str, ...]
    message: str

    @property
    def ok(self) -> bool:
        return self.result in (BuildOutcome.BUILT, BuildOutcome.PRESENT)


@dataclass(frozen=True)
class ImagePresence:
    image: str
    image_id: str

    @property
    def present(self) -> bool:
        return bool(self.image_id)


@dataclass(frozen=True)
class ReleaseTimings:
    """Seconds; None for a phase the release did not reach."""

    candidate_start_s: float | None
    healthy_after_s: float | None
    switch_s: float | None
    total_s: float | None


@dataclass(frozen=True)
class ReleaseResult:
    """`container_id` is the stable container serving afterwards (the old one when the release failed, empty
    when none); `image`/`image_id` are the revision's; `logs` only for a failed candidate or switch, scrubbed."""

    result: ReleaseOutcome
    revision: str
    attempt: str
    image: str
    image_id: str
    container_id: str
    port: int | None
    candidate_port: int | None
    timings: ReleaseTimings
    logs: tuple[str, ...]
    message: str
    host_dir: str = ""
    """The host directory the release used (the one the host chose, when the operator named none)."""

    @property
    def ok(self) -> bool:
        return self.result in (ReleaseOutcome.RELEASED, ReleaseOutcome.UNCHANGED)


@dataclass(frozen=True)
class Probe:
    """One HTTP probe: status 0 when no answer came (then `error` says why)."""

    status: int
    latency_ms: float
    error: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400


@dataclass(frozen=True)
class ContainerState:
    exists: bool
    running: bool = False
    id: str = ""
    image: str = ""
    image_id: str = ""
    status: str = ""
    restart_count: int = 0
    revision: str = ""


@dataclass(frozen=True)
class Stats:
    cpu_percent: float
    memory_bytes: int
    memory_limit_bytes: int


@dataclass(frozen=True)
class HealthResult:
    probe: Probe
    container: ContainerState
    expected_image: str
    expected_image_id: str
    stats: Stats | None

    @property
    def right_image(self) -> bool:
        """The container runs the expected image (by id when the host has it, else by name)."""
        if not self.container.exists:
            return False
        if self.expected_image_id:
            return self.container.image_id == self.expected_image_id
        return self.container.image == self.expected_image

    @property
    def healthy(self) -> bool:
        return self.probe.ok and self.container.running and self.right_image


@dataclass(frozen=True)
class RestartResult:
    result: RestartOutcome
    message: str


@dataclass(frozen=True)
class CleanupResult:
    result: CleanupOutcome
    containers: int
    images: int
    message: str


def parse_build(stdout: str) -> BuildResult:
    data = last_json_line(stdout, "build")
    return BuildResult(
        result=_enum(BuildOutcome, data, "build"),
        revision=_str(data, "revision"),
        image=_str(data, "image"),
        image_id=_str(data, "image_id"),
        build_s=_float(data, "build_s") or 0.0,
        logs=_lines(data),
        message=_str(data, "message"),
    )


def parse_image_presence(stdout: str) -> ImagePresence:
    data = last_json_line(stdout, "image check")
    return ImagePresence(image=_str(data, "image"), image_id=_str(data, "image_id"))


def parse_release(stdout: str) -> ReleaseResult:
    data = last_json_line(stdout, "release")
    timings = data.get("timings") or {}
    if not isinstance(timings, dict):
        raise ScriptOutputError(f"the release result's timings are not an object: {timings!r}")
    return ReleaseResult(
        result=_enum(ReleaseOutcome, data, "release"),
        revision=_str(data, "revision"),
        attempt=_str(data, "attempt"),
        image=_str(data, "image"),
        image_id=_str(data, "image_id"),
        container_id=_str(data, "container_id"),
        port=_int_or_none(data, "port"),
        candidate_port=_int_or_none(data, "candidate_port"),
        timings=ReleaseTimings(
            candidate_start_s=_float(timings, "candidate_start_s"),
            healthy_after_s=_float(timings, "healthy_after_s"),
            switch_s=_float(timings, "switch_s"),
            total_s=_float(timings, "total_s"),
        ),
        logs=_lines(data),
        message=_str(data, "message"),
        host_dir=_str(data, "host_dir"),
    )


def parse_health(stdout: str) -> HealthResult:
    data = last_json_line(stdout, "health")
    probe = data.get("probe")
    if not isinstance(probe, dict):
        raise ScriptOutputError("the health result has no probe object: the host's health script is not ours")
    container = data.get("container")
    stats = data.get("stats")
    return HealthResult(
        probe=Probe(
            status=_int_or_none(probe, "status") or 0,
            latency_ms=_float(probe, "latency_ms") or 0.0,
            error=_str(probe, "error"),
        ),
        container=_container(container),
        expected_image=_str(data, "expected_image"),
        expected_image_id=_str(data, "expected_image_id"),
        stats=_stats(stats) if isinstance(stats, dict) else None,
    )


def parse_restart(stdout: str) -> RestartResult:
    data = last_json_line(stdout, "restart")
    return RestartResult(result=_enum(RestartOutcome, data, "restart"), message=_str(data, "message"))


def parse_cleanup(stdout: str) -> CleanupResult:
    data = last_json_line(stdout, "cleanup")
    return CleanupResult(
        result=_enum(CleanupOutcome, data, "cleanup"),
        containers=_int_or_none(data, "containers") or 0,
        images=_int_or_none(data, "images") or 0,
        message=_str(data, "message"),
    )


def last_json_line(stdout: str, script: str) -> dict[str, Any]:
    """The last line of `stdout` that is a JSON object; HostNotReady when it is the host check's."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict):
            if data.get("result") == HOST_NOT_READY:
                raise HostNotReady(_lines(data, "missing"), _str(data, "host_dir"),
                                   _str(data, "message") or f"the host is not ready for the {script} script")
            return data
    tail = stdout.strip()[-300:] or "(nothing)"
    raise ScriptOutputError(
        f"the {script} script printed no JSON result line (its output ends with: {tail!r}): "
        "the script was cut off or the host's shell is not bash; look at the host's docker and disk"
    )


# docker stats prints human units: "12.5MiB / 1.944GiB", "0.07%".
_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
_SIZE = re.compile(r"^\s*([0-9.]+)\s*([A-Za-z]*)\s*$")


def size_bytes(text: str) -> int:
    """Bytes of a docker size such as `12.5MiB` or `1.2kB`; 0 when unreadable."""
    match = _SIZE.match(text)
    if not match:
        return 0
    factor = _UNITS.get(match.group(2).lower() or "b")
    try:
        return int(float(match.group(1)) * factor) if factor else 0
    except ValueError:
        return 0


def _stats(data: dict[str, Any]) -> Stats:
    usage, _, limit = str(data.get("MemUsage", "")).partition("/")
    try:
        cpu = float(str(data.get("CPUPerc", "0")).rstrip("%") or 0)
    except ValueError:
        cpu = 0.0
    return Stats(cpu_percent=cpu, memory_bytes=size_bytes(usage), memory_limit_bytes=size_bytes(limit))


def _container(data: object) -> ContainerState:
    if not isinstance(data, dict):
        return ContainerState(exists=False)
    return ContainerState(
        exists=True,
        running=data.get("running") is True,
        id=_str(data, "id"),
        image=_str(data, "image"),
        image_id=_str(data, "image_id"),
        status=_str(data, "status"),
        restart_count=_int_or_none(data, "restart_count") or 0,
        revision=_str(data, "revision"),
    )


def _enum(kind: type[_E], data: dict[str, Any], script: str) -> _E:
    value = data.get("result")
    try:
        return kind(str(value))
    except ValueError:
        raise ScriptOutputError(
            f"the {script} script reported an unknown result {value!r}: the host runs another version of it"
        ) from None


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _int_or_none(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _lines(data: dict[str, Any], key: str = "logs") -> tuple[str, ...]:
    logs = data.get(key)
    return tuple(line for line in logs if isinstance(line, str)) if isinstance(logs, list) else ()
