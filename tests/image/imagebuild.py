"""Building the operator image on the test world's private Docker engine, from a base made without a registry.

No registry is reachable here, so the base image is made the way Debian's own images are: `debootstrap
--variant=minbase bookworm` from Debian's package mirror, trimmed like `debian:bookworm-slim` (no package
caches or lists, no docs, man pages or locales, and dpkg told to keep it so), then `docker import`ed and passed
to the build as its BASE. The base trusts the CAs this machine trusts, as an organisation's own base image
carries its TLS proxy's CA, so the build's pip reaches PyPI the way this machine's pip does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from deploymind.sandbox.docker_engine import DockerEngine

REPO = Path(__file__).resolve().parents[2]
BASE_TAG = "deploymind-test-base:bookworm"
IMAGE_TAG = "deploymind:image-test"
MIRROR = "http://deb.debian.org/debian"
# Debian docker.io's own CLI: its BuildKit client is built in, where a newer CLI needs the buildx plugin, which
# Debian 12 does not package (measured: the build takes 110 s with BuildKit, 150 s with the legacy builder).
DOCKER_CLI = "/usr/bin/docker"
# Measured: debootstrap 40-120 s, the build 110-150 s; allow for a machine that the rest of the suite also loads.
DEBOOTSTRAP_TIMEOUT_S = 300
BUILD_TIMEOUT_S = 480
# The non-root user and the state dir the Dockerfile declares.
IMAGE_UID = 65532
STATE_DIR = "/var/lib/deploymind"

# debian:bookworm-slim's dpkg and apt settings (debuerreotype's): unsynced unpacking, no docs, man pages or
# locales, no package caches or translations kept.
SLIM_CONFIG = {
    "etc/dpkg/dpkg.cfg.d/docker-apt-speedup": "force-unsafe-io\n",
    "etc/apt/apt.conf.d/docker-clean": (
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb '
        '/var/cache/apt/*.bin || true"; };\n'
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb '
        '/var/cache/apt/*.bin || true"; };\n'
        'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
    ),
    "etc/apt/apt.conf.d/docker-gzip-indexes": 'Acquire::GzipIndexes "true";\n',
    "etc/apt/apt.conf.d/docker-no-languages": 'Acquire::Languages "none";\n',
}
SLIM_DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
"""
# debian:bookworm-slim's package sources: the release, its updates and its security fixes.
SLIM_SOURCES = f"""\
Types: deb
URIs: {MIRROR}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

DockerCli = Callable[..., subprocess.CompletedProcess[str]]
"""`docker_cli(*args, timeout=120)`."""
DockerRun = Callable[..., subprocess.CompletedProcess[str]]
"""`docker_run(*args, entrypoint=None, mounts=(), state=None, name=None, timeout=120)`."""


def docker(engine: DockerEngine, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The docker CLI against the private engine, with BuildKit (it builds the two stages side by side)."""
    return subprocess.run([DOCKER_CLI, *args], env={**os.environ, **engine.env, "DOCKER_BUILDKIT": "1"},
                          capture_output=True, text=True, errors="replace", check=False, timeout=timeout)


def make_base_tarball(workdir: Path, tarball: Path) -> None:
    """debootstrap a bookworm-slim-like root filesystem in `workdir` and pack it into `tarball`."""
    rootfs = workdir / "rootfs"
    done = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), MIRROR],
                          capture_output=True, text=True, check=False, timeout=DEBOOTSTRAP_TIMEOUT_S)
    assert done.returncode == 0, (
        f"debootstrap failed (scripts/install-deps --test installs it):\n{done.stdout[-3000:]}{done.stderr}")
    _make_slim(rootfs)
    _trust_host_cas(rootfs)
    with tarball.open("wb") as out:
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=out, check=True)
    shutil.rmtree(rootfs)


def _make_slim(rootfs: Path) -> None:
    for path, text in SLIM_CONFIG.items():
        (rootfs / path).write_text(text)
    (rootfs / "etc/dpkg/dpkg.cfg.d/docker").write_text(SLIM_DPKG_EXCLUDES)
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(SLIM_SOURCES)
    for directory in ("var/cache/apt", "var/lib/apt/lists", "usr/share/man", "usr/share/info"):
        for entry in (rootfs / directory).iterdir():
            _remove(entry)
    for entry in (rootfs / "usr/share/locale").iterdir():
        if entry.name != "locale.alias":
            _remove(entry)
    for package in (rootfs / "usr/share/doc").iterdir():
        for entry in package.iterdir() if package.is_dir() and not package.is_symlink() else ():
            if entry.name != "copyright":
                _remove(entry)


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()


def _trust_host_cas(rootfs: Path) -> None:
    # The bundle serves pip before the image installs ca-certificates; the copies in /usr/local/share stay in the
    # bundle that ca-certificates then regenerates.
    (rootfs / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
    shutil.copy2("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/ca-certificates.crt")
    target = rootfs / "usr/local/share/ca-certificates"
    target.mkdir(parents=True, exist_ok=True)
    for cert in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy2(cert, target / cert.name)
