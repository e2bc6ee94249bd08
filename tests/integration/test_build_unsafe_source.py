"""The build script refuses, on the host, a tarball whose symlinks, build context or Dockerfile lead out of the
extracted tree, whoever sent it: nothing of the host's files reaches docker, the image or the script's output.

The host's "secret" is a file the login user can read, outside the build directory, like its ~/.docker/config.json.
Each tarball here would put it into the image (a symlinked context) or into docker's error output (a symlinked
Dockerfile) if the script built it.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploymind.commands import docker, results
from deploymind.commands.build import BuildParams, build_script
from deploymind.commands.cleanup import CleanupParams, cleanup_script
from deploymind.sandbox.docker_engine import DockerEngine
from world.dirs import private_dir
from world.sshd import LOGIN_HOME, LOGIN_USER, ensure_login_user

SCRIPT_TIMEOUT_S = 120.0


@dataclass
class HostileSetup:
    engine: DockerEngine
    host_dir: Path
    secret_dir: Path
    secret: str
    uid: str

    def build(self, members: list[tuple[str, str | None, str]], context: str = ".") -> tuple[results.BuildResult, str]:
        """Run the build script as the login user on a tarball of `members`: (path, symlink target or None, content);
        a path ending in `/` is a directory whose content is its octal mode (default 755)."""
        tarball = _tarball(members)
        params = BuildParams(uid=self.uid, revision="r1", image=docker.image_tag(self.uid[:8], "r1"),
                             tree_digest=hashlib.sha256(tarball).hexdigest(), host_dir=str(self.host_dir),
                             context=context, min_free_disk_mb=10)
        env = [f"DOCKER_HOST={self.engine.host}", f"HOME={LOGIN_HOME}", "PATH=/usr/local/bin:/usr/bin:/bin"]
        done = subprocess.run(["runuser", "-u", LOGIN_USER, "--", "env", "-i", *env, "sh", "-c", build_script(params)],
                              input=tarball, capture_output=True, timeout=SCRIPT_TIMEOUT_S, check=False)
        assert done.returncode == 0, done.stderr.decode()
        assert list((self.host_dir / self.uid[:8] / "builds").iterdir()) == [], "the build directory is left behind"
        output = done.stdout.decode() + done.stderr.decode()
        return results.parse_build(done.stdout.decode()), output

    def images(self) -> str:
        done = subprocess.run(["docker", "image", "ls", "-q", docker.image_repository(self.uid[:8])],
                              capture_output=True, text=True, check=True, env={**os.environ, **self.engine.env})
        return done.stdout.strip()


def _tarball(members: list[tuple[str, str | None, str]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, target, content in members:
            info = tarfile.TarInfo(name)
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, int(content or "755", 8)
                tar.addfile(info)
            elif target is not None:
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
            else:
                data = content.encode()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def setup(docker_engine: DockerEngine, world_root: Path) -> Iterator[HostileSetup]:
    ensure_login_user()
    base = private_dir(world_root, f"unsafe-{uuid.uuid4().hex[:8]}")
    host_dir, secret_dir = base / "host", base / "home"
    host_dir.mkdir()
    subprocess.run(["chown", f"{LOGIN_USER}:", str(host_dir)], check=True)
    secret_dir.mkdir(mode=0o755)
    secret = f"HOST-SECRET-{uuid.uuid4().hex}"
    # A Dockerfile next to the secret: a context symlinked here would build and copy the secret into the image.
    (secret_dir / "Dockerfile").write_text("FROM scratch\nCOPY . /leak\n")
    (secret_dir / "config.json").write_text(f'{{"auths": {{"x": "{secret}"}}}}\n')
    for path in secret_dir.iterdir():
        path.chmod(0o644)
    setup = HostileSetup(engine=docker_engine, host_dir=host_dir, secret_dir=secret_dir, secret=secret,
                         uid=str(uuid.uuid4()))
    yield setup
    env = [f"DOCKER_HOST={docker_engine.host}", "PATH=/usr/local/bin:/usr/bin:/bin"]
    subprocess.run(["runuser", "-u", LOGIN_USER, "--", "env", "-i", *env, "sh", "-c",
                    cleanup_script(CleanupParams(uid=setup.uid, host_dir=str(host_dir)))], capture_output=True, check=False)


def test_a_symlinked_build_context_is_refused_and_nothing_is_built(setup: HostileSetup) -> None:
    result, output = setup.build([("app", str(setup.secret_dir), "")], context="app")

    assert result.result is results.BuildOutcome.UNSAFE_SOURCE
    assert f"the symlink app -> {setup.secret_dir} leads outside the repository" in result.message
    assert setup.secret not in output
    assert setup.images() == ""


def test_a_symlinked_dockerfile_is_refused_before_docker_reads_it(setup: HostileSetup) -> None:
    result, output = setup.build([("Dockerfile", str(setup.secret_dir / "config.json"), "")])

    assert result.result is results.BuildOutcome.UNSAFE_SOURCE
    assert f"Dockerfile -> {setup.secret_dir / 'config.json'}" in result.message
    assert setup.secret not in output
    assert setup.images() == ""


def test_a_relative_symlink_climbing_out_of_the_tree_is_refused(setup: HostileSetup) -> None:
    result, _ = setup.build([("Dockerfile", None, "FROM scratch\nCOPY . /app\n"), ("www/", None, ""),
                                  ("www/up", "../../../../..", "")])

    assert result.result is results.BuildOutcome.UNSAFE_SOURCE
    assert "the symlink www/up -> ../../../../.. leads outside the repository" in result.message
    assert setup.images() == ""


def test_a_directory_the_login_user_cannot_read_is_refused_as_it_could_hide_a_symlink(setup: HostileSetup) -> None:
    result, _ = setup.build([("Dockerfile", None, "FROM scratch\nCOPY . /app\n"), ("hidden/", None, "0"),
                             ("hidden/keys", str(setup.secret_dir), "")])

    assert result.result is results.BuildOutcome.UNSAFE_SOURCE
    assert "cannot read" in result.message
    assert setup.images() == ""


def test_symlinks_that_stay_inside_the_tree_build(setup: HostileSetup) -> None:
    result, _ = setup.build([("app/", None, ""), ("app/Dockerfile", None, "FROM scratch\nCOPY . /app\n"),
                             ("current", "app", ""), ("app/self", "../app/Dockerfile", "")], context="current")

    assert result.result is results.BuildOutcome.BUILT, result.logs
    assert setup.images() != ""
