"""A private Docker engine: its own dockerd, data-root, exec-root and socket, started and stopped by PID.

The sandbox and the test world both run app containers on a Docker engine that belongs to them alone, so
nothing they do touches (or depends on) a Docker engine the machine may already run. The engine has no
bridge and no iptables rules: every container runs with `--network host`. Its socket is owned by the
`docker` group, so a non-root login user in that group (the test sshd user) can use it.
"""

from __future__ import annotations

import contextlib
import grp
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

# How long dockerd may take to answer `docker version` (measured: 0.2 s warm, ~1 s on a cold disk).
START_TIMEOUT_S = 60.0
# Containers get this long to stop when the engine shuts down; app containers are disposable.
SHUTDOWN_TIMEOUT_S = 2
# The longest unix socket the engine creates under its root; a socket path may have at most 107 bytes.
LONGEST_SOCKET = "/exec/containerd/containerd-debug.sock"
MAX_SOCKET_PATH = 107


class DockerEngineError(Exception):
    """The private engine could not be started or stopped; `reason` is a CamelCase constant."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass
class DockerEngine:
    """A running private dockerd whose files all live under `root`."""

    root: Path
    pid: int
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        return self.host_of(self.root)

    @staticmethod
    def host_of(root: Path) -> str:
        """The DOCKER_HOST of the engine that runs (or will run) under `root`."""
        return f"unix://{root.resolve() / 'docker.sock'}"

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point a docker CLI at this engine."""
        return {"DOCKER_HOST": self.host}

    @property
    def log_path(self) -> Path:
        return self.root / "dockerd.log"

    @classmethod
    def start(cls, root: Path, timeout: float = START_TIMEOUT_S,
              spawned: Callable[[int], None] | None = None) -> DockerEngine:
        """Start dockerd under `root` (created if missing) and return once `docker version` answers.

        `spawned(pid)` is called as soon as dockerd runs, before it is ready, for a watchdog that must stop it.
        """
        dockerd, docker = _require_binaries()
        if os.geteuid() != 0:
            raise DockerEngineError(
                "DockerdNeedsRoot",
                "a private Docker engine needs root: run this command as root (e.g. with sudo)",
            )
        root = root.resolve()
        if len(str(root)) + len(LONGEST_SOCKET) > MAX_SOCKET_PATH:
            raise DockerEngineError(
                "EngineDirectoryTooLong",
                f"{root} is too long for the engine's unix sockets: choose a directory of at most "
                f"{MAX_SOCKET_PATH - len(LONGEST_SOCKET)} characters (e.g. under /tmp)",
            )
        _refuse_running_engine(root)
        # A crashed earlier engine may have left its network namespace mounted; dockerd would trip over it.
        _unmount_under(root)
        (root / "docker").mkdir(parents=True, exist_ok=True)
        (root / "exec").mkdir(parents=True, exist_ok=True)
        # The docker-group user must reach the socket, so the directory is searchable (not listable) by all.
        root.chmod(0o711)
        argv = [
            dockerd,
            "--data-root", str(root / "docker"),
            "--exec-root", str(root / "exec"),
            "--host", f"unix://{root / 'docker.sock'}",
            "--pidfile", str(root / "docker.pid"),
            "--iptables=false",
            "--bridge=none",
            "--shutdown-timeout", str(SHUTDOWN_TIMEOUT_S),
        ]
        # Debian's docker.io creates the group; a machine without it gets one, or only root could use the socket.
        if not _group_exists("docker"):
            subprocess.run(["groupadd", "--system", "docker"], capture_output=True, check=False)
        if _group_exists("docker"):
            argv += ["--group", "docker"]
        with (root / "dockerd.log").open("ab") as log:
            # A new session: Ctrl-C in the caller's terminal must not kill the engine before it is stopped cleanly.
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        engine = cls(root=root, pid=process.pid, _process=process)
        if spawned is not None:
            spawned(process.pid)
        try:
            engine._wait_ready(docker, timeout)
        except BaseException:
            engine.stop()
            raise
        return engine

    @classmethod
    def attach(cls, root: Path) -> DockerEngine:
        """The engine a previous process started under `root` (to stop it from another process)."""
        root = root.resolve()
        try:
            pid = int((root / "docker.pid").read_text().strip())
        except (OSError, ValueError) as exc:
            raise DockerEngineError(
                "DockerEngineNotFound", f"no running private engine under {root} (no readable docker.pid): {exc}"
            ) from exc
        return cls(root=root, pid=pid)

    def _wait_ready(self, docker: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        env = {**os.environ, **self.env}
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise DockerEngineError(
                    "DockerdExited",
                    f"dockerd exited with code {self._process.returncode}; see {self.log_path}:\n{self._log_tail()}",
                )
            probe = subprocess.run(
                [docker, "version", "--format", "{{.Server.Version}}"],
                env=env, capture_output=True, text=True, check=False, timeout=30,
            )
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise DockerEngineError(
                    "DockerdNotReady",
                    f"dockerd did not answer within {timeout:.0f} s; see {self.log_path}:\n{self._log_tail()}",
                )
            time.sleep(0.05)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> None:
        """Stop dockerd by PID (SIGTERM, then SIGKILL at the deadline) and unmount what it left mounted.

        Running containers are killed first: dockerd would give each one its stop timeout (10 s by default)
        and the apps on a private engine are disposable.
        """
        self._kill_containers()
        _signal(self.pid, signal.SIGTERM)
        if not self._wait_exit(timeout):
            _signal(self.pid, signal.SIGKILL)
            self._wait_exit(10.0)
        _unmount_under(self.root)

    def _kill_containers(self) -> None:
        docker = shutil.which("docker")
        if docker is None or not self.socket.exists() or not _alive(self.pid):
            return
        env = {**os.environ, **self.env}
        try:
            running = subprocess.run(
                [docker, "ps", "-q"], env=env, capture_output=True, text=True, check=False, timeout=10
            ).stdout.split()
            if running:
                subprocess.run([docker, "kill", *running], env=env, capture_output=True, check=False, timeout=20)
        except subprocess.TimeoutExpired:
            pass  # SIGTERM to dockerd still stops everything, only more slowly

    def _wait_exit(self, timeout: float) -> bool:
        if self._process is not None:
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while _alive(self.pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def __enter__(self) -> DockerEngine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _require_binaries() -> tuple[str, str]:
    dockerd = shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/usr/bin")
    docker = shutil.which("docker")
    if dockerd is None or docker is None:
        missing = "dockerd" if dockerd is None else "docker"
        raise DockerEngineError(
            "DockerNotInstalled",
            f"`{missing}` is not installed: install Docker Engine (Debian: `apt-get install -y docker.io`) and retry",
        )
    return dockerd, docker


def _refuse_running_engine(root: Path) -> None:
    try:
        pid = int((root / "docker.pid").read_text().strip())
    except (OSError, ValueError):
        return
    if _alive(pid):
        raise DockerEngineError(
            "DockerEngineAlreadyRunning",
            f"a private engine (pid {pid}) already runs under {root}: stop it first or use another directory",
        )


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers signal 0; it is gone for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _unmount_under(root: Path) -> None:
    """Unmount every mount point below `root`, deepest first (dockerd leaves `exec/netns/default` mounted)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = str(root) + "/"
    # /proc/self/mounts escapes spaces as \040; our paths have none, so a plain split is enough.
    points = [line.split()[1] for line in mounts if len(line.split()) > 1 and line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
