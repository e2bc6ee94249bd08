"""The `Deployment.deploymind.io` spec: what a user declares. The CRD, the operator and `deploymind validate` all read it."""

from __future__ import annotations

import datetime
import re
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from deploymind.api.base import ApiModel, Rule, SecretKey, SecretName

INSTANCE_ID = r"^i-[0-9a-f]{8,17}$"
REGION = r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$"
# owner/name on GitHub, or a git URL (https, ssh, scp-like git@host:path, file).
REPO = r"^([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+|https://[^\s]+|ssh://[^\s]+|git@[^\s:]+:[^\s]+|file://[^\s]+)$"
# A branch, tag or commit; the forbidden characters are git's own (git check-ref-format).
GIT_REF = r"^[^\s~^:?*\[\\]+$"
IMAGE = (
    r"^([a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?(:[0-9]+)?/)?"
    r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
DURATION = r"^([0-9]+(s|m|h))+$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
HOST = r"^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$"
POSIX_USER = r"^[a-z_][a-z0-9_-]*[$]?$"
RELATIVE_PATH = r"^[^/\s][^\s]*$"
ABSOLUTE_DIR = r"^/[A-Za-z0-9._/+@-]*$"
MEMORY = r"^[0-9]+(\.[0-9]+)?[bkmg]?$"
VULN_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
SSM_MIN_PERIOD_SECONDS = 30
SSM_DEFAULT_PERIOD_SECONDS = 60
DEFAULT_PERIOD_SECONDS = 10
RESERVED_ENV = "PORT"
# Docker's own default stop timeout.
DEFAULT_STOP_GRACE_SECONDS = 10

Port = Annotated[int, Field(ge=1, le=65535)]


def duration_seconds(text: str) -> int:
    """`1h30m` → 5400. The pattern DURATION has already checked the form."""
    return sum(int(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in re.findall(r"([0-9]+)([smh])", text))


class Transport(StrEnum):
    """How the operator reaches the host."""

    SSM = "ssm"
    SSH = "ssh"
    LOCAL = "local"


class AddressType(StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"


class StrategyType(StrEnum):
    RECREATE = "Recreate"


class Severity(StrEnum):
    UNKNOWN = "UNKNOWN"
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class Scanner(StrEnum):
    VULN = "vuln"
    SECRET = "secret"
    MISCONFIG = "misconfig"


class DeletionPolicy(StrEnum):
    DELETE = "Delete"
    ORPHAN = "Orphan"


class SecretKeyRef(ApiModel):
    """A key of a Secret in the Deployment's own namespace."""

    name: SecretName
    """Name of the Secret."""
    key: SecretKey
    """Key inside the Secret's data."""


class LocalObjectRef(ApiModel):
    name: SecretName
    """Name of the object in the Deployment's namespace."""


class Source(ApiModel):
    """Where the application's code lives: a Git repository at a ref."""

    repo: str = Field(pattern=REPO, max_length=512)
    """`owner/name` (GitHub) or a git URL: https://, ssh://, git@host:path or file://."""
    ref: str = Field(default="main", pattern=GIT_REF, min_length=1, max_length=255)
    """Branch, tag or full commit SHA to deploy; resolved with `git ls-remote` on every reconcile."""
    credentials_secret_ref: SecretKeyRef | None = None
    """Secret key holding a token for a private repository (passed to git through GIT_ASKPASS, never on a command line)."""
    poll_interval: str = Field(default="5m", pattern=DURATION, max_length=16)
    """How often to resolve `ref` again when no webhook says it moved (30s to 24h, e.g. `5m`, `1h`)."""

    rules = (
        Rule(
            cel="duration(self.pollInterval) >= duration('30s') && duration(self.pollInterval) <= duration('24h')",
            message="pollInterval must be between 30s and 24h",
            check=lambda s: 30 <= duration_seconds(s.poll_interval) <= 86400,
            field_path=".pollInterval",
        ),
    )


class Build(ApiModel):
    """How the image is built from the source tree."""

    dockerfile: str = Field(default="Dockerfile", pattern=RELATIVE_PATH, max_length=255)
    """Path of the Dockerfile, relative to `context` (as in Docker Compose)."""
    context: str = Field(default=".", pattern=RELATIVE_PATH, max_length=255)
    """Build context directory, relative to the repository root."""

    rules = (
        Rule(
            cel="!self.dockerfile.split('/').exists(p, p == '..') && !self.context.split('/').exists(p, p == '..')",
            message="dockerfile and context must stay inside the repository (no '..')",
            check=lambda b: ".." not in b.dockerfile.split("/") and ".." not in b.context.split("/"),
        ),
    )


class SSHTarget(ApiModel):
    """SSH connection details; the host key is pinned, an unknown host key is refused."""

    host: str | None = Field(default=None, pattern=HOST, max_length=253)
    """Host name or IP address; when empty, the address of `instanceId` is looked up in EC2."""
    port: Port = 22
    """SSH port."""
    user: str = Field(default="ec2-user", pattern=POSIX_USER, max_length=32)
    """Login user; it must be allowed to run `docker`."""
    key_secret_ref: SecretKeyRef
    """Secret key holding the private key (OpenSSH or PEM)."""
    known_hosts_secret_ref: SecretKeyRef
    """Secret key holding the host's known_hosts line(s)."""
    address_type: AddressType = AddressType.PRIVATE
    """Which EC2 address of `instanceId` to dial when `host` is empty: `private` (inside the VPC) or `public`."""


class Target(ApiModel):
    """The one host this Deployment runs on."""

    transport: Transport = Transport.SSM
    """`ssm` (AWS Systems Manager), `ssh`, or `local` (the operator's own host; only when the operator allows it)."""
    instance_id: str | None = Field(default=None, pattern=INSTANCE_ID)
    """EC2 instance id (`i-` and 8 to 17 hex digits); required for ssm."""
    region: str | None = Field(default=None, pattern=REGION)
    """AWS region of the instance; defaults to the operator's region."""
    ssh: SSHTarget | None = None
    """SSH settings; required for ssh."""
    host_dir: str | None = Field(default=None, pattern=ABSOLUTE_DIR, max_length=255)
    """Absolute directory on the host for this Deployment's release files and the host lock; the login user must be
    able to write it (it is created). Default: the operator's `--host-dir`, else /var/lib/deploymind for root (ssm
    runs as root) and `~/.deploymind` for any other login user. Deployments on one host that share a directory also
    share its host lock."""

    rules = (
        Rule(
            cel="self.transport != 'ssm' || has(self.instanceId)",
            message="instanceId is required when transport is ssm",
            check=lambda t: t.transport != Transport.SSM or t.instance_id is not None,
            field_path=".instanceId",
        ),
        Rule(
            cel="self.transport != 'ssh' || (has(self.ssh) && (has(self.ssh.host) || has(self.instanceId)))",
            message="transport ssh needs ssh settings with ssh.host, or an instanceId to look the address up",
            check=lambda t: t.transport != Transport.SSH or (t.ssh is not None and bool(t.ssh.host or t.instance_id)),
            field_path=".ssh",
        ),
        Rule(
            cel="self.transport == 'ssh' || !has(self.ssh)",
            message="ssh settings are only allowed with transport ssh",
            check=lambda t: t.transport == Transport.SSH or t.ssh is None,
            field_path=".ssh",
        ),
        Rule(
            cel="self.transport != 'local' || (!has(self.instanceId) && !has(self.region))",
            message="transport local takes no instanceId or region",
            check=lambda t: t.transport != Transport.LOCAL or (t.instance_id is None and t.region is None),
            field_path=".transport",
        ),
    )


class EnvVarSource(ApiModel):
    secret_key_ref: SecretKeyRef
    """Take the value from a key of a Secret; rotating the Secret redeploys."""


class EnvVar(ApiModel):
    """One environment variable of the application: a plain value or a Secret reference, not both."""

    name: str = Field(pattern=ENV_NAME, max_length=256)
    """Variable name: a letter or `_`, then letters, digits or `_`. `PORT` is set by DeployMind."""
    value: str | None = Field(default=None, max_length=32768)
    """Plain value (use valueFrom for anything secret)."""
    value_from: EnvVarSource | None = None
    """Value from a Secret."""

    rules = (
        Rule(
            cel="has(self.value) != has(self.valueFrom)",
            message="exactly one of value or valueFrom must be set",
            check=lambda e: (e.value is None) != (e.value_from is None),
        ),
        Rule(
            cel="self.name != 'PORT'",
            message="PORT is set by DeployMind (the app must listen on $PORT); choose another name",
            check=lambda e: e.name != RESERVED_ENV,
            field_path=".name",
        ),
    )


class Resources(ApiModel):
    """Limits for the application's container."""

    memory: str | None = Field(default=None, pattern=MEMORY, max_length=16)
    """Memory limit as Docker takes it: a number with b, k, m or g (e.g. `256m`)."""
    cpus: float | None = Field(default=None, gt=0, le=256)
    """CPU limit in cores (e.g. 0.5)."""


def _duplicate(env: list[EnvVar]) -> str:
    seen: set[str] = set()
    for var in env:
        if var.name in seen:
            return var.name
        seen.add(var.name)
    return ""


class Container(ApiModel):
    """How the application's container runs (host networking; the app listens on $PORT)."""

    port: Port = 8080
    """Port the stable container listens on (given to it as $PORT)."""
    env: list[EnvVar] = Field(default_factory=list, max_length=256, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]})
    """Environment variables; names are unique."""
    resources: Resources | None = None
    """Memory and CPU limits."""
    init: bool = True
    """Run Docker's init (tini, `docker run --init`) as PID 1 in front of the app. It forwards signals and reaps
    zombie processes, so an app that ignores SIGTERM as PID 1 (busybox httpd, most shell entrypoints) still stops at
    once. Set false when the image brings its own init."""
    stop_grace_period_seconds: int = Field(default=DEFAULT_STOP_GRACE_SECONDS, ge=0, le=3600)
    """Seconds the app gets to exit after SIGTERM before it is killed: when a switch stops the old container, at a
    restart, and when Docker itself stops it (engine shutdown). A delete removes the app at once."""

    rules = (
        Rule(
            cel="!has(self.env) || self.env.all(e, self.env.exists_one(f, f.name == e.name))",
            message="env names must be unique",
            message_expression="'env name ' + self.env.filter(e, self.env.filter(f, f.name == e.name).size() > 1)"
                               "[0].name + ' is set more than once; names must be unique'",
            describe=lambda c: f"env name {_duplicate(c.env)} is set more than once; names must be unique",
            check=lambda c: len({e.name for e in c.env}) == len(c.env),
            field_path=".env",
        ),
    )


class HealthCheck(ApiModel):
    """How health is probed on the host: HTTP GET of `path` on the container's port; any 2xx/3xx is healthy."""

    path: str = Field(default="/health", pattern=r"^/[^\s]*$", max_length=1024)
    """Path of the health endpoint; starts with `/`."""
    timeout_seconds: int = Field(default=5, ge=1, le=60)
    """Timeout of one probe."""
    period_seconds: int | None = Field(default=None, ge=1, le=3600)
    """Seconds between probes; default 10, through SSM default 60 and at least 30 (each probe is a paid API call)."""
    failure_threshold: int = Field(default=3, ge=1, le=100)
    """Consecutive failed probes that make the app unhealthy."""
    startup_timeout_seconds: int = Field(default=120, ge=1, le=3600)
    """How long a new revision may take to become healthy before it is refused."""

    def period(self, transport: Transport) -> int:
        """The probe period in force: the user's, or the transport's default."""
        if self.period_seconds is not None:
            return self.period_seconds
        return SSM_DEFAULT_PERIOD_SECONDS if transport == Transport.SSM else DEFAULT_PERIOD_SECONDS


class Strategy(ApiModel):
    """How a new revision replaces the running one."""

    type: StrategyType = StrategyType.RECREATE
    """`Recreate`: verify the candidate on a spare port, then stop the old container and start the new one."""


class IgnoreRule(ApiModel):
    """A finding accepted on purpose, with a reason, until an expiry date."""

    id: str = Field(pattern=VULN_ID, max_length=128)
    """Finding id (CVE id, Trivy check id or secret rule id)."""
    reason: str = Field(min_length=1, max_length=1024)
    """Why it is accepted."""
    expires: datetime.date | None = None
    """Last day the rule applies (YYYY-MM-DD); after it the finding blocks again."""


class Security(ApiModel):
    """The scan gate before a build."""

    severity_threshold: Severity = Severity.HIGH
    """Block a revision with a vulnerability at or above this severity."""
    scanners: list[Scanner] = Field(
        default_factory=lambda: [Scanner.VULN, Scanner.SECRET, Scanner.MISCONFIG],
        min_length=1, max_length=3, json_schema_extra={"x-kubernetes-list-type": "set"})
    """Trivy scanners to run; secrets always block."""
    ignore: list[IgnoreRule] = Field(default_factory=list, max_length=500)
    """Accepted findings."""

    rules = (
        Rule(
            cel="!has(self.scanners) || self.scanners.all(x, self.scanners.exists_one(y, y == x))",
            message="scanners must not repeat",
            check=lambda s: len(set(s.scanners)) == len(s.scanners),
            field_path=".scanners",
        ),
    )


class Rollback(ApiModel):
    """What happens when a new revision fails its health checks."""

    auto: bool = True
    """Revert to the last good revision when the new one fails during the bake window."""
    bake_seconds: int = Field(default=300, ge=0, le=86400)
    """How long a new revision must stay healthy before it becomes the last good one."""


class DeploymentSpec(ApiModel):
    """The desired state of one application on one host."""

    source: Source | None = None
    """Git repository and ref to build from. Exactly one of source or image."""
    image: str | None = Field(default=None, pattern=IMAGE, max_length=512)
    """Prebuilt image to deploy (registry/name:tag or @sha256:digest). Exactly one of source or image."""
    image_pull_secret_ref: LocalObjectRef | None = None
    """A kubernetes.io/dockerconfigjson Secret used to pull images."""
    build: Build | None = None
    """Build settings (only with source)."""
    target: Target
    """The host."""
    container: Container = Field(default_factory=Container)
    """Port, environment, limits, init and stop grace of the container."""
    health_check: HealthCheck = Field(default_factory=HealthCheck)
    """The health probe."""
    strategy: Strategy = Field(default_factory=Strategy)
    """The rollout strategy."""
    security: Security = Field(default_factory=Security)
    """The scan gate."""
    rollback: Rollback = Field(default_factory=Rollback)
    """Automatic revert."""
    revision_history_limit: int = Field(default=10, ge=1, le=100)
    """How many revisions to keep on the host and in status (the last good one is always kept)."""
    deletion_policy: DeletionPolicy = DeletionPolicy.DELETE
    """On delete: `Delete` removes the app from the host, `Orphan` leaves it running."""
    suspend: bool = False
    """Stop reconciling (the app keeps running; health is still reported)."""

    rules = (
        Rule(
            cel="has(self.source) != has(self.image)",
            message="exactly one of spec.source or spec.image must be set",
            check=lambda s: (s.source is None) != (s.image is None),
        ),
        Rule(
            cel="!has(self.build) || has(self.source)",
            message="build settings need spec.source (a prebuilt image is not built)",
            check=lambda s: s.build is None or s.source is not None,
            field_path=".build",
        ),
        Rule(
            cel="self.target.transport != 'ssm' || !has(self.healthCheck) || !has(self.healthCheck.periodSeconds)"
                f" || self.healthCheck.periodSeconds >= {SSM_MIN_PERIOD_SECONDS}",
            message=f"healthCheck.periodSeconds must be at least {SSM_MIN_PERIOD_SECONDS} with transport ssm"
                    " (each probe is an SSM API call)",
            check=lambda s: s.target.transport != Transport.SSM or s.health_check.period_seconds is None
            or s.health_check.period_seconds >= SSM_MIN_PERIOD_SECONDS,
            field_path=".healthCheck.periodSeconds",
        ),
        Rule(
            cel="!has(self.healthCheck) || !has(self.healthCheck.periodSeconds)"
                " || !has(self.healthCheck.timeoutSeconds) || self.healthCheck.timeoutSeconds <= self.healthCheck.periodSeconds",
            message="healthCheck.timeoutSeconds must not exceed healthCheck.periodSeconds",
            check=lambda s: s.health_check.period_seconds is None
            or s.health_check.timeout_seconds <= s.health_check.period_seconds,
            field_path=".healthCheck.timeoutSeconds",
        ),
    )

    @property
    def probe_period(self) -> int:
        return self.health_check.period(self.target.transport)

    def secret_refs(self) -> list[SecretKeyRef]:
        """Every Secret key this spec reads; a change to any of them is a change of the spec."""
        refs = [e.value_from.secret_key_ref for e in self.container.env if e.value_from]
        if self.source and self.source.credentials_secret_ref:
            refs.append(self.source.credentials_secret_ref)
        if self.target.ssh:
            refs += [self.target.ssh.key_secret_ref, self.target.ssh.known_hosts_secret_ref]
        return refs
