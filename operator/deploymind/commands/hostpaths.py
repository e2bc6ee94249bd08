"""Where DeployMind keeps its files on a host, and the checks that keep names safe in paths and docker names.

`host_dir` is the operator's `--host-dir` or the target's `hostDir`; with neither, the host decides at run time
(RESOLVE_HOST_DIR): /var/lib/deploymind for root (SSM runs as root), ~/.deploymind for any other login user, which
it can always create (the way Kamal keeps `.kamal` in the home). A fresh instance needs no preparation.

Layout under `host_dir` (one directory per login user and host, shared by every Deployment there):

    deploymind.lock                      the host lock: releases and cleanups on one host never interleave
    <uid8>/releases/<revision>/          one release: attempt, env (0600, only while its job runs), job.sh,
                                         job.log, result.json
    <uid8>/builds/<revision>.<random>/   one build's context tarball and its extraction, removed afterwards
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Mapping

from deploymind.commands.shell import Var, assignments

LOCK_FILE = "deploymind.lock"
ROOT_HOST_DIR = "/var/lib/deploymind"
USER_HOST_DIR = "~/.deploymind"
# Bash: `~` is the login user's home, from the password database when $HOME is unset.
RESOLVE_HOST_DIR = (
    "# No host directory was configured: root keeps its files in /var/lib/deploymind, any other login user in\n"
    "# ~/.deploymind, the one place it can always create.\n"
    f'if [ "$(id -u)" = 0 ]; then host_dir={ROOT_HOST_DIR}; else host_dir={USER_HOST_DIR}; fi\n'
)

# Docker accepts these in container names and image tags; a revision id (`<commit[:12]>-<config[:8]>`) fits.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_name(kind: str, value: str) -> str:
    """`value` if it is safe as a path segment, container name part and image tag; else ValueError."""
    if not _SAFE_NAME.match(value):
        raise ValueError(
            f"{kind} {value!r} must be 1-100 letters, digits, '_', '.' or '-' (starting with a letter or digit)"
        )
    return value


def check_host_dir(host_dir: str) -> str:
    """An absolute, normalized host directory; else ValueError."""
    if not host_dir.startswith("/") or "\n" in host_dir:
        raise ValueError(f"host directory {host_dir!r} must be an absolute path")
    return posixpath.normpath(host_dir)


def header(host_dir: str | None, paths: Mapping[str, str]) -> str:
    """Shell lines setting `host_dir` and each of `paths` (variable name → path relative to the host directory):
    literal paths when the directory is given, else resolved on the host (RESOLVE_HOST_DIR) and derived from it.
    The path functions below give those relative paths when called with host_dir "" (`lock_file("")`)."""
    for name in paths:
        Var(name)  # a ValueError for anything that is not a shell variable name
    if host_dir is not None:
        root = check_host_dir(host_dir)
        return assignments({"host_dir": root, **{name: posixpath.join(root, rel) for name, rel in paths.items()}})
    return RESOLVE_HOST_DIR + "".join(f'{name}="$host_dir"/{shlex.quote(rel)}\n' for name, rel in paths.items())


def lock_file(host_dir: str) -> str:
    return posixpath.join(host_dir, LOCK_FILE)


def object_dir(host_dir: str, uid8: str) -> str:
    """Everything one Deployment keeps on the host; removed by cleanup."""
    return posixpath.join(host_dir, uid8)


def releases_dir(host_dir: str, uid8: str) -> str:
    return posixpath.join(object_dir(host_dir, uid8), "releases")


def release_dir(host_dir: str, uid8: str, revision: str) -> str:
    return posixpath.join(releases_dir(host_dir, uid8), revision)


def builds_dir(host_dir: str, uid8: str) -> str:
    return posixpath.join(object_dir(host_dir, uid8), "builds")
