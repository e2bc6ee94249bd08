"""The `deploymind` command (also `kubectl deploymind`): a thin front door; each verb lives in its own module."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deploymind.settings import Settings


def _crd(args: argparse.Namespace) -> int:
    from deploymind.api.crd import render_crd_yaml

    sys.stdout.write(render_crd_yaml())
    return 0


def _validate(args: argparse.Namespace) -> int:
    from deploymind.api.validate import validate_files

    report = validate_files(args.filename)
    for line in report.notes:
        print(line, file=sys.stderr)
    for line in report.problems:
        print(line)
    if not report.problems:
        print(f"{report.checked} Deployment(s) valid", file=sys.stderr)
    return 1 if report.problems else 0


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from deploymind.api.targetpolicy import TargetPolicyError, load_target_policy
    from deploymind.controller.leader import LeaderElectionError, LeadershipLost
    from deploymind.controller.operator import Endpoints, run_operator
    from deploymind.controller.revisionkey import RevisionKeyError
    from deploymind.settings import Settings

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides: dict[str, object] = {"allow_local_transport": args.allow_local_transport,
                                    "allow_file_repos": args.allow_file_repos,
                                    "history_auth": args.history_auth, "metrics_auth": args.metrics_auth}
    if args.state_dir:
        overrides["state_dir"] = Path(args.state_dir)
    if args.host_dir:
        overrides["host_dir"] = args.host_dir
    if args.lease_namespace:
        overrides["lease_namespace"] = args.lease_namespace
    overrides["leader_election"] = args.leader_election
    if args.leader_lease_seconds is not None:
        overrides["leader_lease_seconds"] = args.leader_lease_seconds
    if args.max_concurrent_rollouts is not None:
        overrides["max_concurrent_rollouts"] = args.max_concurrent_rollouts
    if args.aws_region:
        overrides["aws_region"] = args.aws_region
    overrides.update(_ssm_overrides(args))
    try:
        if args.target_policy:
            overrides["target_policy"] = load_target_policy(Path(args.target_policy))
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except TargetPolicyError as e:
        print(f"deploymind run: {e}", file=sys.stderr)
        return 2
    _log_target_policy(settings)
    if not 0 < settings.ssm_poll_initial_seconds <= settings.ssm_poll_max_seconds:
        print("deploymind run: --ssm-poll-initial-seconds must be above 0 and at most --ssm-poll-max-seconds",
              file=sys.stderr)
        return 2
    if settings.max_concurrent_rollouts < 1:
        print("deploymind run: --max-concurrent-rollouts (DEPLOYMIND_MAX_CONCURRENT_ROLLOUTS) must be at least 1",
              file=sys.stderr)
        return 2
    if settings.leader_lease_seconds < 3:
        print("deploymind run: --leader-lease-seconds must be at least 3", file=sys.stderr)
        return 2
    endpoints = Endpoints(host=args.http_host, port=args.http_port) if args.http_port else None
    try:
        asyncio.run(run_operator(settings, kubeconfig=args.kubeconfig, namespaces=args.namespace or (),
                                 endpoints=endpoints))
    except (RevisionKeyError, LeaderElectionError, LeadershipLost) as e:
        print(f"deploymind run: {e}", file=sys.stderr)
        return 1
    return 0


def _log_target_policy(settings: Settings) -> None:
    import logging

    from deploymind.controller.tenancy import NO_POLICY_WARNING

    policy = settings.target_policy
    log = logging.getLogger("deploymind.tenancy")
    if policy is None:
        log.warning("%s", NO_POLICY_WARNING)
    else:
        log.info("target policy %s: %d rule(s)", policy.source, len(policy.rules))


def _sandbox(args: argparse.Namespace) -> int:
    from deploymind.api.targetpolicy import TargetPolicyError, load_target_policy
    from deploymind.sandbox.runner import SandboxOptions, main

    try:
        policy = load_target_policy(Path(args.target_policy)) if args.target_policy else None
    except TargetPolicyError as e:
        print(f"deploymind sandbox: {e}", file=sys.stderr)
        return 2

    apps = Path(args.apps) if args.apps else None
    if apps is None and args.apply:
        # examples/sandbox/deployment.yaml → its apps/ folder comes along
        candidates = [Path(p) if Path(p).is_dir() else Path(p).parent for p in args.apply]
        apps = next((c / "apps" for c in candidates if (c / "apps").is_dir()), None)
    return main(SandboxOptions(state_dir=Path(args.state_dir), port=args.port, http_port=args.http_port,
                               apply=[Path(p) for p in args.apply or ()], apps=apps, docker_host=args.docker_host,
                               aws_region=args.aws_region, target_policy=policy, ssm_settings=_ssm_overrides(args)))


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--aws-region", help="region of EC2 instances whose target.region is empty "
                                             "(default $AWS_REGION, else $AWS_DEFAULT_REGION)")
    parser.add_argument("--target-policy", metavar="FILE",
                        help="YAML file saying which SSH hosts and EC2 instances each namespace may deploy to "
                             "(docs/tenancy.md; default $DEPLOYMIND_TARGET_POLICY; without one, any SSH host)")


def _add_ssm_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--build-bucket", help="S3 bucket that hands ssm builds their source tarball, one call at a "
                                               "time (default $DEPLOYMIND_BUILD_BUCKET; without one, ssm builds are "
                                               "refused and prebuilt images still deploy)")
    parser.add_argument("--build-prefix", help="key prefix in the build bucket (default deploymind/)")
    parser.add_argument("--parameter-prefix", help="Parameter Store path that hands ssm releases their env file, one "
                                                   "call at a time (default /deploymind)")
    parser.add_argument("--kms-key-id", help="KMS key for those SecureString parameters (default: aws/ssm)")
    parser.add_argument("--ssm-poll-initial-seconds", type=float, metavar="S",
                        help="first wait before asking SSM whether a command finished (default 0.5)")
    parser.add_argument("--ssm-poll-max-seconds", type=float, metavar="S",
                        help="longest wait between two such questions (default 3)")


def _ssm_overrides(args: argparse.Namespace) -> dict[str, object]:
    names = ("build_bucket", "build_prefix", "parameter_prefix", "kms_key_id", "ssm_poll_initial_seconds",
             "ssm_poll_max_seconds")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deploymind", description="Deploy applications from Git onto hosts, from Kubernetes.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    crd = verbs.add_parser("crd", help="print the CustomResourceDefinition rendered from the API model")
    crd.set_defaults(func=_crd)

    validate = verbs.add_parser("validate", help="check Deployment manifests offline, as the API server would")
    validate.add_argument("-f", "--filename", action="append", required=True, metavar="FILE",
                          help="a YAML file with one or more documents; '-' reads stdin; repeatable")
    validate.set_defaults(func=_validate)

    run = verbs.add_parser("run", help="run the operator against the cluster of the current kubeconfig")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then KUBECONFIG, ~/.kube/config)")
    run.add_argument("-n", "--namespace", action="append", help="watch only this namespace (repeatable; default all)")
    run.add_argument("--allow-local-transport", action="store_true",
                     help="accept transport: local (containers on this operator's own host; sandbox and tests only)")
    run.add_argument("--allow-file-repos", action="store_true",
                     help="accept source.repo as file:// or a path (this operator's own files; sandbox and tests only)")
    run.add_argument("--state-dir", help="operator files: source cache, SQLite history (default /var/lib/deploymind)")
    run.add_argument("--host-dir", help="directory on each host for release files (default $DEPLOYMIND_HOST_DIR, "
                                        "else decided on the host: /var/lib/deploymind for root, ~/.deploymind for "
                                        "other login users)")
    run.add_argument("--lease-namespace", help="namespace of the per-host Leases and the revision key Secret "
                                               "(default $DEPLOYMIND_LEASE_NAMESPACE, else the operator's own: "
                                               "$POD_NAMESPACE, else the service account's, else default)")
    run.add_argument("--leader-election", action="store_true",
                     default=os.environ.get("DEPLOYMIND_LEADER_ELECTION", "").lower() == "true",
                     help="run the controller only while this replica holds the Lease deploymind-leader in the "
                          "operator's namespace; the others stand by (default $DEPLOYMIND_LEADER_ELECTION, else off)")
    run.add_argument("--leader-lease-seconds", type=int, metavar="S",
                     help="duration of the leader Lease: a standby takes over at most this long after the leader "
                          "stopped renewing it (default 15)")
    run.add_argument("--max-concurrent-rollouts", type=int, metavar="N",
                     help="rollouts running at once across all Deployments; health ticks are not counted "
                          "(default $DEPLOYMIND_MAX_CONCURRENT_ROLLOUTS, else 4)")
    run.add_argument("--http-host", default="0.0.0.0",
                     help="address of /healthz, /metrics and /history (default 0.0.0.0)")
    run.add_argument("--http-port", type=int, default=8080,
                     help="port of /healthz, /metrics and /history; 0 turns them off (default 8080)")
    run.add_argument("--history-auth", choices=("kubernetes", "none"), default="kubernetes",
                     help="who may read /history: kubernetes, a bearer token whose user may get that Deployment "
                          "(TokenReview, SubjectAccessReview); none, anyone who reaches the port (default kubernetes)")
    run.add_argument("--metrics-auth", choices=("kubernetes", "none"), default="none",
                     help="who may read /metrics: kubernetes, a bearer token whose user may get the non-resource "
                          "URL /metrics; none, anyone who reaches the port (default none)")
    run.add_argument("-v", "--verbose", action="store_true")
    _add_target_options(run)
    _add_ssm_options(run)
    run.set_defaults(func=_run)

    sandbox = verbs.add_parser("sandbox", help="the API emulator, a private Docker engine and the operator, in one "
                                              "process: try DeployMind with no cluster and no cloud account")
    sandbox.add_argument("--state-dir", default=".deploymind-sandbox", help="where everything is kept")
    sandbox.add_argument("--port", type=int, default=0, help="API server port (default: a free one)")
    sandbox.add_argument("--http-port", type=int, default=8080, help="operator HTTP port (default 8080)")
    sandbox.add_argument("--apply", action="append", metavar="FILE", help="manifest file or folder to apply")
    sandbox.add_argument("--apps", help="folder of app sources to commit into file://SANDBOX/repos/<name>.git")
    sandbox.add_argument("--docker-host", help="use this Docker engine instead of starting a private one")
    _add_target_options(sandbox)
    _add_ssm_options(sandbox)
    sandbox.set_defaults(func=_sandbox)

    from deploymind.cli_history import add_parser as add_history

    add_history(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
