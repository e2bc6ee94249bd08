"""`deploymind run` and `deploymind sandbox` take the same target and ssm settings (issue 9, item 7)."""

from __future__ import annotations

import subprocess
import sys

import pytest

AWS_FLAGS = ("--aws-region", "--target-policy", "--build-bucket", "--build-prefix", "--parameter-prefix",
             "--kms-key-id", "--ssm-poll-initial-seconds", "--ssm-poll-max-seconds")


@pytest.mark.parametrize("verb", ["run", "sandbox"])
def test_help_lists_every_aws_setting(verb: str) -> None:
    shown = subprocess.run([sys.executable, "-m", "deploymind", verb, "--help"], capture_output=True, text=True,
                           check=True).stdout
    assert [flag for flag in AWS_FLAGS if flag not in shown] == []
