"""Where DeployMind keeps its files on a host, and the checks that keep names safe in paths and docker names.

Layout under `host_dir` (one directory per host, shared by every Deployment on it):

    deploymind.lock                      the host lock: releases and cleanups on one host never interleave
    <uid8>/releases/<revision>/          one release: attempt, env (0600, only while its job runs), job.sh,
                                         job.log, result.json
    <uid8>/builds/<revision>.<random>/   one build's context tarball and its extraction, removed afterwards
"""

from __future__ import annotations

import posixpath
import re

LOCK_FILE = "deploymind.lock"

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
