"""Every condition reason, as one named constant. One spelling everywhere: conditions, Events, history, metrics."""

from __future__ import annotations

from typing import Final

# Progress and success
RECONCILING: Final = "Reconciling"
RESOLVED: Final = "Resolved"
FETCHED: Final = "Fetched"
SCAN_PASSED: Final = "ScanPassed"
SCAN_SKIPPED: Final = "ScanSkipped"
BUILT: Final = "Built"
BUILD_SKIPPED: Final = "ImagePresent"
RELEASED: Final = "Released"
RELEASING: Final = "Releasing"
UNCHANGED: Final = "Unchanged"
HEALTHY: Final = "Healthy"
BAKING: Final = "Baking"
DEPLOYED: Final = "Deployed"
SUSPENDED: Final = "Suspended"
PENDING: Final = "Pending"
PROGRESSING: Final = "Progressing"
DRIFT_REPAIRED: Final = "DriftRepaired"
RESTARTED: Final = "Restarted"
ROLLBACK_PINNED: Final = "RollbackPinned"
PROGRESSING_WITH_RETRY: Final = "ProgressingWithRetry"
REVERTING: Final = "Reverting"

# Needs the user (Stalled)
INVALID_SPEC: Final = "InvalidSpec"
SECRET_NOT_FOUND: Final = "SecretNotFound"
SECRET_NOT_TEXT: Final = "SecretNotText"
TARGET_NOT_ALLOWED: Final = "TargetNotAllowed"
REVISION_QUARANTINED: Final = "RevisionQuarantined"
ROLLBACK_TARGET_GONE: Final = "RollbackTargetGone"
PORT_CONFLICT: Final = "PortConflict"
REF_NOT_FOUND: Final = "RefNotFound"
AUTHENTICATION_FAILED: Final = "AuthenticationFailed"
REPOSITORY_NOT_ALLOWED: Final = "RepositoryNotAllowed"
UNSAFE_SOURCE: Final = "UnsafeSource"
HOST_KEY_REJECTED: Final = "HostKeyRejected"
SCAN_BLOCKED: Final = "ScanBlocked"
BUILD_FAILED: Final = "BuildFailed"
DISK_FULL: Final = "DiskFull"

# Retry later (Waiting)
REPOSITORY_UNREACHABLE: Final = "RepositoryUnreachable"
TARGET_UNREACHABLE: Final = "TargetUnreachable"
TRANSPORT_TIMEOUT: Final = "TransportTimeout"
HOST_BUSY: Final = "HostBusy"

# Health outcomes
CANDIDATE_UNHEALTHY: Final = "CandidateUnhealthy"
SWITCH_FAILED: Final = "SwitchFailed"
UNHEALTHY: Final = "Unhealthy"
ROLLED_BACK: Final = "RolledBack"
CONTAINER_MISSING: Final = "ContainerMissing"
RELEASE_FAILED: Final = "ReleaseFailed"
IMAGE_MISSING: Final = "ImageMissing"
REVERT_FAILED: Final = "RevertFailed"
REVISION_ENV_MISSING: Final = "RevisionEnvMissing"
ENV_INCOMPLETE: Final = "EnvIncomplete"
STATUS_UNREADABLE: Final = "StatusUnreadable"

# Deletion
CLEANUP_FAILED: Final = "CleanupFailed"
CLEANUP_WAITING: Final = "CleanupWaiting"
CLEANED_UP: Final = "CleanedUp"
ORPHANED: Final = "Orphaned"
