"""Fixture Git repositories of a tiny web app, and helpers to commit revisions of it and build its image.

The app is `FROM scratch` plus Debian's static busybox: `busybox httpd` serves /www on 127.0.0.1:$PORT as a
non-root user, and /health answers 200 while the file /www/health exists. A revision's behaviour is baked into
its commit (as DeployMind deploys commits): healthy, unhealthy from the start, or degrading: healthy until it is
told to fail (`GET /cgi-bin/fail`, as a test does at the moment it chooses) or, when given a delay, until that
many seconds after it started. The health file stays deleted across a container restart. `GET /cgi-bin/env`
answers `MODE=<its $MODE>`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from world.procs import WorldError

BUSYBOX = Path("/bin/busybox")
APP_UID = 10001  # the non-root USER the app runs as
DEFAULT_PORT = 8080

DOCKERFILE = f"""\
FROM scratch
COPY busybox /bin/busybox
COPY start.sh /app/start.sh
COPY --chown={APP_UID}:{APP_UID} www /www
USER {APP_UID}:{APP_UID}
ENV PORT={DEFAULT_PORT}
CMD ["/bin/busybox", "sh", "/app/start.sh"]
"""

# Every applet is called through /bin/busybox: a scratch image has no applet symlinks. The shell stays PID 1
# and traps TERM, so `docker stop` ends the app at once (a PID 1 httpd would ignore SIGTERM for 10 s).
START_SCRIPT = """\
# Serve /www on 127.0.0.1:$PORT (host networking: loopback only). {comment}
{degrade}/bin/busybox httpd -f -p "127.0.0.1:${{PORT:-{port}}}" -h /www &
httpd=$!
trap '/bin/busybox kill $httpd; exit 0' TERM INT
wait $httpd
"""
DEGRADE = '( /bin/busybox sleep {after}; /bin/busybox rm -f /www/health ) &\n'
# A CGI script of busybox httpd: the app's own way to start failing its health checks, on request.
FAIL_CGI = """\
#!/bin/busybox sh
/bin/busybox rm -f /www/health
/bin/busybox printf 'Content-Type: text/plain\\r\\n\\r\\nfailing from now on\\n'
"""

# Every revision answers GET /cgi-bin/env with the MODE it was started with: a test tells env values apart.
ENV_CGI = """\
#!/bin/busybox sh
/bin/busybox printf 'Content-Type: text/plain\\r\\n\\r\\nMODE=%s\\n' "$MODE"
"""

_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "DeployMind Tests",
    "GIT_AUTHOR_EMAIL": "tests@deploymind.invalid",
    "GIT_COMMITTER_NAME": "DeployMind Tests",
    "GIT_COMMITTER_EMAIL": "tests@deploymind.invalid",
}


class Health(Enum):
    """How a revision's /health behaves once it runs."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"  # /health is 404 from the start
    DEGRADING = "degrading"  # /health is 200 until GET /cgi-bin/fail (or `fail_after` seconds), then 404


@dataclass(frozen=True)
class AppRepo:
    """A Git repository (branch `main`) of the fixture app on the local filesystem."""

    path: Path

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.path), *args],
            capture_output=True, text=True, check=False, env={**os.environ, **_GIT_IDENTITY},
        )
        if done.returncode != 0:
            raise WorldError("GitFailed", f"git {' '.join(args)} in {self.path}: {done.stderr.strip()}")
        return done.stdout.strip()

    def head(self) -> str:
        """The commit SHA of `main`."""
        return self.git("rev-parse", "HEAD")

    def commit_revision(self, health: Health = Health.HEALTHY, fail_after: int | None = None,
                        body: str | None = None, log_line: str | None = None) -> str:
        """Commit a revision of the app that behaves as `health` says; return its commit SHA.

        `body` is served at / (defaults to a text naming the revision number) so tests can tell revisions apart.
        A DEGRADING revision fails once `fail_health` asks it to, or by itself `fail_after` seconds after it started.
        `log_line` is printed to the container's log when it starts.
        """
        number = int(self.git("rev-list", "--count", "--all")) + 1
        www = self.path / "www"
        www.mkdir(exist_ok=True)
        (www / "index.html").write_text(body if body is not None else f"revision {number}\n")
        health_file = www / "health"
        if health is Health.UNHEALTHY:
            health_file.unlink(missing_ok=True)
        else:
            health_file.write_text("ok\n")
        cgi = www / "cgi-bin" / "fail"
        cgi.parent.mkdir(exist_ok=True)
        (cgi.parent / "env").write_text(ENV_CGI)
        (cgi.parent / "env").chmod(0o755)
        if health is Health.DEGRADING:
            cgi.write_text(FAIL_CGI)
            cgi.chmod(0o755)
        else:
            cgi.unlink(missing_ok=True)
        degrade = DEGRADE.format(after=fail_after) if health is Health.DEGRADING and fail_after is not None else ""
        if log_line is not None:
            degrade = f"/bin/busybox echo {shlex.quote(log_line)}\n{degrade}"
        (self.path / "start.sh").write_text(
            START_SCRIPT.format(comment=f"Revision {number}: {health.value}.", degrade=degrade, port=DEFAULT_PORT)
        )
        return self.commit_all(f"revision {number}: {health.value}")

    def write_file(self, relative: str, content: str) -> Path:
        """Write a file into the work tree (not committed yet)."""
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        return target

    def commit_all(self, message: str) -> str:
        """Commit every change in the work tree; return the new commit SHA."""
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()


def fail_health(port: int, timeout: float = 5.0) -> None:
    """Tell the DEGRADING revision serving on `port` to fail its health checks from now on."""
    url = f"http://127.0.0.1:{port}/cgi-bin/fail"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            if answer.status == 200:
                return
            raise WorldError("FailHealthRefused", f"GET {url} answered {answer.status}")
    except OSError as e:
        raise WorldError("FailHealthRefused", f"GET {url}: {e} (is a DEGRADING revision serving there?)") from e


def create_app_repo(path: Path, health: Health = Health.HEALTHY) -> AppRepo:
    """A new Git repository of the fixture app at `path`, with one committed revision."""
    if not BUSYBOX.exists():
        raise WorldError("BusyboxNotInstalled", "install it with `apt-get install -y busybox-static`")
    path.mkdir(parents=True, exist_ok=True)
    repo = AppRepo(path)
    repo.git("init", "-q", "-b", "main")
    shutil.copy2(BUSYBOX, path / "busybox")
    (path / "Dockerfile").write_text(DOCKERFILE)
    # Keeps the build context small: the image never needs the repository's history.
    (path / ".dockerignore").write_text(".git\n")
    repo.commit_revision(health)
    return repo


def build_image(context: Path, tag: str, docker_env: dict[str, str], timeout: float = 120.0) -> None:
    """`docker build` the app at `context` (a work tree or an extracted tarball) into `tag`."""
    done = subprocess.run(
        ["docker", "build", "-q", "-t", tag, str(context)],
        capture_output=True, text=True, check=False, timeout=timeout, env={**os.environ, **docker_env},
    )
    if done.returncode != 0:
        raise WorldError("ImageBuildFailed", f"docker build of {context} as {tag}: {done.stderr.strip()}")


def env_mode(port: int, timeout: float = 2.0) -> str | None:
    """What `GET /cgi-bin/env` of the app on `port` says its MODE is (None when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/cgi-bin/env", timeout=timeout) as answer:
            text: str = answer.read().decode().strip()
    except OSError:
        return None
    return text.removeprefix("MODE=")
