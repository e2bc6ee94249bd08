"""The fixed value sets of history columns and metric labels: one spelling each, for the controller, the history
store, the metrics and the docs.

Phases, severities and transports come from the API's own enums; the sets the API model does not carry (triggers,
rollout and reconcile results, step names and statuses, probe results) are defined here. `api` imports nothing
of ours, so every layer can take them from this one module.
"""

from __future__ import annotations

from typing import Final, Literal

from deploymind.api.spec import Severity, Transport
from deploymind.api.status import Phase

# What started a rollout attempt. `trigger_detail` says more: the delivery id for Webhook,
# `<annotation>=<value>` for Manual (annotation: rollback-to, requested-at or retry).
TRIGGER_SPEC_CHANGE: Final = "SpecChange"
TRIGGER_WEBHOOK: Final = "Webhook"
TRIGGER_DRIFT: Final = "Drift"
TRIGGER_MANUAL: Final = "Manual"
TRIGGER_RESUME: Final = "Resume"
TRIGGER_SECRET_ROTATION: Final = "SecretRotation"
TRIGGER_POLL: Final = "Poll"  # the source poll found a new commit
TRIGGERS: Final = (
    TRIGGER_SPEC_CHANGE,
    TRIGGER_WEBHOOK,
    TRIGGER_DRIFT,
    TRIGGER_MANUAL,
    TRIGGER_RESUME,
    TRIGGER_SECRET_ROTATION,
    TRIGGER_POLL,
)

# How a rollout attempt ended (also the `result` label of deploymind_rollouts_total).
# The Literal lets mypy check the words a producer passes (hook events); each constant is checked against it.
AttemptResult = Literal["Succeeded", "Failed", "RolledBack", "Cancelled", "Superseded"]
RESULT_SUCCEEDED: Final[AttemptResult] = "Succeeded"
RESULT_FAILED: Final[AttemptResult] = "Failed"
RESULT_ROLLED_BACK: Final[AttemptResult] = "RolledBack"
RESULT_CANCELLED: Final[AttemptResult] = "Cancelled"
RESULT_SUPERSEDED: Final[AttemptResult] = "Superseded"
RESULTS: Final[tuple[AttemptResult, ...]] = (
    RESULT_SUCCEEDED, RESULT_FAILED, RESULT_ROLLED_BACK, RESULT_CANCELLED, RESULT_SUPERSEDED
)

# How one reconcile ended (the `result` label of deploymind_reconcile_total): done, retry later (Waiting), needs the
# user (Stalled), or an unexpected exception (Error).
RECONCILE_SUCCEEDED: Final = "Succeeded"
RECONCILE_WAITING: Final = "Waiting"
RECONCILE_STALLED: Final = "Stalled"
RECONCILE_ERROR: Final = "Error"
RECONCILE_RESULTS: Final = (RECONCILE_SUCCEEDED, RECONCILE_WAITING, RECONCILE_STALLED, RECONCILE_ERROR)

# The ordered steps of a reconcile, and what a step transition says about one of them.
STEP_SOURCE: Final = "source"
STEP_SCAN: Final = "scan"
STEP_BUILD: Final = "build"
STEP_RELEASE: Final = "release"
STEP_HEALTH: Final = "health"
STEPS: Final = (STEP_SOURCE, STEP_SCAN, STEP_BUILD, STEP_RELEASE, STEP_HEALTH)

StepStatus = Literal["Running", "Succeeded", "Failed", "Skipped"]
STEP_RUNNING: Final[StepStatus] = "Running"
STEP_SUCCEEDED: Final[StepStatus] = "Succeeded"
STEP_FAILED: Final[StepStatus] = "Failed"
STEP_SKIPPED: Final[StepStatus] = "Skipped"
STEP_STATUSES: Final[tuple[StepStatus, ...]] = (STEP_RUNNING, STEP_SUCCEEDED, STEP_FAILED, STEP_SKIPPED)

# status.phase, one spelling everywhere (also the `phase` label of deploymind_phase).
PHASES: Final = tuple(phase.value for phase in Phase)

# Trivy severities, highest first (the `severity` label of deploymind_scan_findings).
SEVERITIES: Final = tuple(severity.value for severity in reversed(Severity))

# spec.target.transport (the `transport` label of deploymind_transport_calls_total).
TRANSPORTS: Final = tuple(transport.value for transport in Transport)

# The outcome of one health probe (the `result` label of deploymind_health_checks_total). Unreachable is a
# transport failure: it is counted, but it is never a failed probe.
PROBE_PASSED: Final = "Passed"
PROBE_FAILED: Final = "Failed"
PROBE_UNREACHABLE: Final = "Unreachable"
PROBE_RESULTS: Final = (PROBE_PASSED, PROBE_FAILED, PROBE_UNREACHABLE)
