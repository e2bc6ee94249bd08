"""A private PostgreSQL (Debian's packaged server) on 127.0.0.1 with one database for the tests.

The cluster lives in its own directory, owned by the `postgres` user (PostgreSQL refuses to run as root);
that directory must be traversable by `postgres`, so it is never under /root. fsync is off: test data is
disposable and startup and writes get several times faster.
"""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from world.ports import free_port
from world.procs import WorldError, alive, log_tail, stop_pid

PG_ROOT = Path("/usr/lib/postgresql")
PREFERRED_MAJOR = "15"
DATABASE = "deploymind"
ROLE = "deploymind"


def pg_bin() -> Path:
    """The bin directory of the installed PostgreSQL server (15 preferred, else the newest)."""
    majors = sorted((p.name for p in PG_ROOT.glob("*") if (p / "bin" / "initdb").exists()), key=int)
    if not majors:
        raise WorldError("PostgresNotInstalled", "install it with `apt-get install -y postgresql`")
    major = PREFERRED_MAJOR if PREFERRED_MAJOR in majors else majors[-1]
    return PG_ROOT / major / "bin"


@dataclass
class Postgres:
    """A running PostgreSQL cluster; `.url` is a SQLAlchemy URL (psycopg 3) for its test database."""

    dir: Path
    port: int
    password: str
    database: str = DATABASE
    user: str = ROLE

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @classmethod
    def start(cls, directory: Path, port: int | None = None) -> Postgres:
        bindir = pg_bin()
        directory.mkdir(parents=True, exist_ok=True)
        _give_to_postgres(directory)
        port = port or free_port()
        server = cls(dir=directory, port=port, password=secrets.token_hex(12))
        if not (server.data_dir / "PG_VERSION").exists():
            _as_postgres([
                str(bindir / "initdb"), "-D", str(server.data_dir), "-U", "postgres", "--no-sync",
                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
            ], "initdb")
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {directory} -c fsync=off -c full_page_writes=off"
        _as_postgres([
            str(bindir / "pg_ctl"), "-D", str(server.data_dir), "-l", str(directory / "postgres.log"),
            "-w", "-t", "60", "-o", options, "start",
        ], "pg_ctl start", log=directory / "postgres.log")
        try:
            server._create_database()
        except BaseException:
            server.stop()
            raise
        return server

    def _create_database(self) -> None:
        # Local socket, trusted: only the superuser sets up the role that the tests log in as over TCP.
        with psycopg.connect(host=str(self.dir), port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as connection:
            connection.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{self.password}'")
            connection.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")

    def stop(self) -> None:
        """pg_ctl stop (fast); kill the postmaster by PID if it is still there."""
        pidfile = self.data_dir / "postmaster.pid"
        pid = int(pidfile.read_text().split()[0]) if pidfile.exists() else None
        subprocess.run(
            _runas([str(pg_bin() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop"]),
            capture_output=True, check=False,
        )
        if pid is not None and alive(pid):
            stop_pid(pid)


def _runas(argv: Sequence[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)


def _as_postgres(argv: Sequence[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(_runas(argv), capture_output=True, text=True, check=False, cwd="/")
    if done.returncode != 0:
        details = done.stderr.strip() + ("\n" + log_tail(log) if log else "")
        raise WorldError("PostgresNotStarted", f"{what} failed ({done.returncode}): {details}")


def _give_to_postgres(directory: Path) -> None:
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise WorldError("PostgresNotInstalled", "no `postgres` user: `apt-get install -y postgresql`") from exc
    os.chown(directory, entry.pw_uid, entry.pw_gid)
    directory.chmod(0o700)
