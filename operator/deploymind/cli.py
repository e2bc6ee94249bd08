"""The `deploymind` command (also `kubectl deploymind`): a thin front door; each verb lives in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deploymind", description="Deploy applications from Git onto hosts, from Kubernetes.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    crd = verbs.add_parser("crd", help="print the CustomResourceDefinition rendered from the API model")
    crd.set_defaults(func=_crd)

    validate = verbs.add_parser("validate", help="check Deployment manifests offline, as the API server would")
    validate.add_argument("-f", "--filename", action="append", required=True, metavar="FILE",
                          help="a YAML file with one or more documents; '-' reads stdin; repeatable")
    validate.set_defaults(func=_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
