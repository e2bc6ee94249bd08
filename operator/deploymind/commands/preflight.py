"""What a host must have installed, per script: each host script checks its own list first (lib.sh `preflight`)
and, when something is missing, prints one HostNotReady line naming it and starts nothing.

This is the one list of what the instance must have (docs/operations.md): docker, bash (which runs every script),
coreutils (`sha256sum`), `tar`, util-linux (`flock`) and `curl`. The ssm transport's wrapper
(transport/ssm_wrapper.sh) checks, before a script runs, only what delivering its payload takes: `curl` or `wget`
for a source tarball, the AWS CLI for an env file from Parameter Store, and `sha256sum`.
"""

from __future__ import annotations

from collections.abc import Sequence

from deploymind.commands import shell

# Build: the image (docker) from the tarball (tar) checked against its digest (sha256sum). flock is the release's,
# which follows every build: a host without it fails here, before minutes of building for nothing.
BUILD = ("docker", "tar", "sha256sum", "flock")
# Release: the host lock (flock), the env file's digest (sha256sum), health probes (curl), containers (docker).
RELEASE = ("docker", "flock", "curl", "sha256sum")
HEALTH = ("curl", "docker")
CLEANUP = ("docker", "flock")
RESTART = ("docker",)
IMAGE_PRESENT = ("docker",)


def header(tools: Sequence[str]) -> str:
    """The `needs` array the script's `preflight "${needs[@]}"` checks."""
    return shell.array("needs", tools)
