"""The operator's own settings: command-line flags and DEPLOYMIND_* environment variables, with safe defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from deploymind.api.spec import Target, Transport
from deploymind.api.targetpolicy import TargetPolicy, load_target_policy

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
"""In a pod: the namespace the operator runs in."""


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value) if value else default


def _identity() -> str:
    return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME", "deploymind") + f"-{os.getpid()}"


def _operator_namespace() -> str:
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def _env_target_policy() -> TargetPolicy | None:
    value = os.environ.get("DEPLOYMIND_TARGET_POLICY")
    return load_target_policy(Path(value)) if value else None


@dataclass(frozen=True)
class Settings:
    """Everything the controller needs to know about where it runs. One instance per operator process."""

    state_dir: Path = field(default_factory=lambda: _env_path("DEPLOYMIND_STATE_DIR", Path.home() / ".deploymind"))
    """Operator-side files: source tarball cache, the SQLite history (a persistent volume in a cluster)."""
    host_dir: str | None = field(default_factory=lambda: os.environ.get("DEPLOYMIND_HOST_DIR") or None)
    """Absolute directory on each host for release files (a target's `hostDir` overrides it); the login user must be
    able to write it. None: each host decides when a script runs, /var/lib/deploymind for root (and SSM, which runs
    as root), ~/.deploymind for any other login user, so a fresh host needs no preparation."""
    local_host_dir: str | None = None
    """The host directory of `transport: local` targets, when it differs (the sandbox keeps it in its state dir)."""
    allow_local_transport: bool = False
    """`transport: local` runs containers on the operator's own host: only for the sandbox and tests."""
    allow_file_repos: bool = False
    """`source.repo` as file:// or a path reads the operator's own filesystem: only for the sandbox and tests."""
    history_auth: Literal["kubernetes", "none"] = "kubernetes"
    """Who may read /history: "kubernetes", a caller whose bearer token names a user allowed to `get` that
    Deployment (history/authz.py); "none", anyone who reaches the port (the sandbox)."""
    metrics_auth: Literal["kubernetes", "none"] = "none"
    """Who may read /metrics: "kubernetes", a caller allowed `get` on the non-resource URL /metrics; "none", anyone."""
    local_docker_host: str | None = field(default_factory=lambda: os.environ.get("DOCKER_HOST"))
    """DOCKER_HOST for the local transport."""
    identity: str = field(default_factory=_identity)
    """This operator process, as the holder of the leader Lease and of every per-host Lease: $POD_NAME (the chart
    sets it from the downward API), else $HOSTNAME-<pid>."""
    operator_namespace: str = field(default_factory=_operator_namespace)
    """The namespace the operator runs in (the leader Lease's): $POD_NAMESPACE, else the service account's
    namespace file in a pod, else `default`."""
    lease_namespace: str = field(default_factory=lambda: os.environ.get("DEPLOYMIND_LEASE_NAMESPACE", ""))
    """Namespace of the per-host Leases that keep two releases off one host at once, and of the revision key
    Secret; empty: the operator namespace."""
    leader_election: bool = False
    """Run the Kopf handlers only while this replica holds the leader Lease (`deploymind run --leader-election`)."""
    leader_lease_seconds: int = 15
    """Duration of the leader Lease: a standby takes over at most this long after the leader's last renewal."""
    host_lease_seconds: int = 60
    host_lease_wait_seconds: float = 600.0
    cleanup_timeout_seconds: float = field(
        default_factory=lambda: float(os.environ.get("DEPLOYMIND_CLEANUP_TIMEOUT_SECONDS", "60")))
    """How long delete keeps trying to remove the app from an unreachable host before it gives up (Warning Event)."""
    max_concurrent_rollouts: int = field(
        default_factory=lambda: int(os.environ.get("DEPLOYMIND_MAX_CONCURRENT_ROLLOUTS", "4")))
    """Rollouts (source, build, release) running at once across all Deployments; health ticks are not counted.
    After a restart every Deployment reconciles at once: this keeps them from all fetching and building together."""
    transport_timeout_seconds: float = 900.0
    min_free_disk_mb: int = 512
    backoff_initial_seconds: float = 2.0
    backoff_max_seconds: float = 300.0
    git_timeout_seconds: float = 120.0
    source_cache_max_mb: int = field(
        default_factory=lambda: int(os.environ.get("DEPLOYMIND_SOURCE_CACHE_MAX_MB", "2048")))
    """The source tarball cache is pruned (least recently used first) back to this size after each new fetch."""
    aws_region: str | None = field(
        default_factory=lambda: os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    """Region of instances whose `target.region` is empty."""
    target_policy: TargetPolicy | None = field(default_factory=_env_target_policy)
    """Who may deploy where (docs/tenancy.md), read at startup from --target-policy FILE (DEPLOYMIND_TARGET_POLICY;
    a bad file raises TargetPolicyError). None: any SSH host for every namespace; instances still need their tag."""
    build_bucket: str | None = field(default_factory=lambda: os.environ.get("DEPLOYMIND_BUILD_BUCKET") or None)
    """S3 bucket through which ssm builds hand the source tarball to the instance; without one they are refused
    (BuildBucketMissing). Prebuilt images need none."""
    build_prefix: str = "deploymind/"
    """Key prefix in the build bucket: tarballs go to `<prefix><namespace>/<name>/<uid>/<revision>/…`, for one call only."""
    parameter_prefix: str = "/deploymind"
    """Parameter Store path under which ssm releases hand the env file to the instance, for one call only."""
    kms_key_id: str | None = None
    """KMS key (id, ARN or alias) for those SecureString parameters; None: the account's `aws/ssm` key."""
    ssm_poll_initial_seconds: float = 0.5
    """First wait before asking SSM whether a command finished; then every second for ten seconds, then doubling up
    to the maximum (transport/ssm.py poll_waits)."""
    ssm_poll_max_seconds: float = 3.0
    """Longest wait between two such questions."""
    ssm_presign_expiry_seconds: int = field(
        default_factory=lambda: int(os.environ.get("DEPLOYMIND_SSM_PRESIGN_EXPIRY_SECONDS", "300")))
    """How long the presigned URL of an ssm build's source tarball opens that one object (the URL is in SSM's
    command history); the host fetches it as its command starts, seconds after sending, unless its agent is slow."""

    def __post_init__(self) -> None:
        if not self.lease_namespace:
            object.__setattr__(self, "lease_namespace", self.operator_namespace)

    def host_dir_of(self, target: Target) -> str | None:
        """Where a Deployment with this target keeps its files on the host; None: the host decides."""
        if target.host_dir:
            return target.host_dir
        if target.transport == Transport.LOCAL and self.local_host_dir:
            return self.local_host_dir
        return self.host_dir

    @property
    def source_cache(self) -> Path:
        return self.state_dir / "sources"

    @property
    def git_known_hosts(self) -> Path:
        """Host keys of SSH repository hosts (known_hosts format), kept by the operator's administrator."""
        return self.state_dir / "git_known_hosts"
