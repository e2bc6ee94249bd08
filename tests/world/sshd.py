"""A private sshd on 127.0.0.1: its own host key, a client key, a known_hosts line and a non-root login user.

The login user has shell /bin/sh (no rc files: ~2 ms per command) and is in the `docker` group; sshd's
`SetEnv` gives every session DOCKER_HOST of the private engine, so `docker` over SSH reaches that engine.
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from world.ports import free_port, port_open
from world.procs import WorldError, log_tail, start, stop_pid, wait_until

SSHD = "/usr/sbin/sshd"
LOGIN_USER = "dm-tester"
# sshd answers on both addresses moto gives EC2 instances (public 127.0.0.1, private 127.0.0.2).
LISTEN_ADDRESSES = ("127.0.0.1", "127.0.0.2")
# A stable home: concurrent test sessions share the user, so its home must not move between sessions.
LOGIN_HOME = Path("/home") / LOGIN_USER
START_TIMEOUT_S = 15.0


@dataclass
class Sshd:
    """A running private sshd and what a client needs to log in to it."""

    dir: Path
    port: int
    user: str
    pid: int
    host: str = "127.0.0.1"
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def key_path(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def private_key(self) -> str:
        return self.key_path.read_text()

    @property
    def known_hosts_path(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def known_hosts(self) -> str:
        """One known_hosts line pinning this server's host key (for 127.0.0.1 and 127.0.0.2 at `port`)."""
        return self.known_hosts_path.read_text().strip()

    def ssh_argv(self, *command: str, user: str | None = None, host: str | None = None) -> list[str]:
        """An `ssh` command line that logs in as the test user (strict host-key checking) and runs `command`."""
        return [
            "ssh", "-p", str(self.port), "-i", str(self.key_path),
            "-o", f"UserKnownHostsFile={self.known_hosts_path}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
            f"{user or self.user}@{host or self.host}", *command,
        ]

    def run(self, script: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a shell script on the host as the login user (the script goes through stdin to `sh -s`)."""
        return subprocess.run(
            self.ssh_argv("sh", "-s"), input=script, capture_output=True, text=True, timeout=timeout, check=False
        )

    @classmethod
    def start(cls, directory: Path, docker_host: str | None = None, port: int | None = None) -> Sshd:
        """Start sshd with everything under `directory`; sessions get DOCKER_HOST=`docker_host` when given."""
        if not Path(SSHD).exists():
            raise WorldError("SshdNotInstalled", "install it with `apt-get install -y openssh-server`")
        directory.mkdir(parents=True, exist_ok=True)
        # The login user reads authorized_keys with its own rights: the directory must be traversable.
        directory.chmod(0o711)
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        ensure_login_user()
        for name, comment in (("host_ed25519", "host"), ("id_ed25519", "deploymind-test-client")):
            if not (directory / name).exists():
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(directory / name)],
                    check=True,
                )
        authorized = directory / "authorized_keys"
        authorized.write_text((directory / "id_ed25519.pub").read_text())
        authorized.chmod(0o644)
        port = port or free_port()
        host_key = (directory / "host_ed25519.pub").read_text().split()
        patterns = ",".join(f"[{address}]:{port}" for address in LISTEN_ADDRESSES)
        (directory / "known_hosts").write_text(f"{patterns} {host_key[0]} {host_key[1]}\n")
        config = directory / "sshd_config"
        config.write_text(_config(directory, port, docker_host))
        check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise WorldError("SshdConfigInvalid", f"sshd -t rejected {config}: {check.stderr.strip()}")
        log = directory / "sshd.log"
        # -D keeps sshd in the foreground: it is our child, and its PID is the one we stop.
        process = start([SSHD, "-D", "-f", str(config), "-E", str(log)], directory / "sshd.stdout")
        server = cls(dir=directory, port=port, user=LOGIN_USER, pid=process.pid, _process=process)
        try:
            wait_until(lambda: process.poll() is not None or port_open(port), START_TIMEOUT_S, f"sshd on {port}")
            if process.poll() is not None:
                raise WorldError("SshdExited", f"sshd exited with {process.returncode}:\n{log_tail(log)}")
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        stop_pid(self.pid, process=self._process)


def _config(directory: Path, port: int, docker_host: str | None) -> str:
    lines = [
        *(f"ListenAddress {address}" for address in LISTEN_ADDRESSES),
        f"Port {port}",
        f"HostKey {directory / 'host_ed25519'}",
        f"PidFile {directory / 'sshd.pid'}",
        f"AuthorizedKeysFile {directory / 'authorized_keys'}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        # Without PAM sshd refuses a locked account ("!" password); the login user's password is "*" instead.
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "MaxStartups 100:30:200",
        "MaxSessions 50",
        "Subsystem sftp /usr/lib/openssh/sftp-server",
        "LogLevel INFO",
    ]
    if docker_host:
        lines.append(f"SetEnv DOCKER_HOST={docker_host}")
    return "\n".join(lines) + "\n"


def ensure_login_user(name: str = LOGIN_USER, home: Path = LOGIN_HOME) -> None:
    """Create (or repair) the non-root login user: shell /bin/sh, in the `docker` group, a traversable home."""
    if os.geteuid() != 0:
        raise WorldError("NeedsRoot", "creating the sshd login user needs root: run the tests as root")
    # Test sessions running side by side (pytest-xdist workers) share the user: usermod and useradd lock
    # /etc/passwd and fail when another holds it, so one session at a time.
    with Path("/run/deploymind-test-login-user.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _ensure_login_user(name, home)


def _ensure_login_user(name: str, home: Path) -> None:
    try:
        grp.getgrnam("docker")
    except KeyError:
        subprocess.run(["groupadd", "--system", "docker"], capture_output=True, check=False)
    if not _user_exists(name):
        created = subprocess.run(
            ["useradd", "-M", "-d", str(home), "-s", "/bin/sh", "-G", "docker", name],
            capture_output=True, text=True, check=False,
        )
        # Another test session may have created the user a moment ago; only a still-missing user is an error.
        if created.returncode != 0 and not _user_exists(name):
            raise WorldError("LoginUserNotCreated", f"useradd {name} failed: {created.stderr.strip()}")
    entry = pwd.getpwnam(name)
    if "docker" not in [g.gr_name for g in grp.getgrall() if name in g.gr_mem]:
        subprocess.run(["usermod", "-aG", "docker", name], check=True)
    if entry.pw_shell != "/bin/sh" or entry.pw_dir != str(home):
        subprocess.run(["usermod", "-s", "/bin/sh", "-d", str(home), name], check=True)
    # "*" = no password but not locked: sshd (UsePAM no) refuses locked "!" accounts even with a key.
    subprocess.run(["usermod", "-p", "*", name], check=True)
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    home.chmod(0o755)
    # Fixture repositories belong to root; git refuses other users' repositories unless told they are safe.
    gitconfig = home / ".gitconfig"
    gitconfig.write_text("[safe]\n\tdirectory = *\n")
    os.chown(gitconfig, entry.pw_uid, entry.pw_gid)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
