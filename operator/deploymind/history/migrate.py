"""Bring the history schema to the newest revision (`alembic upgrade head`), once, even with replicas racing.

Two operator replicas may start together against one database: PostgreSQL serializes them with a transaction-scoped
advisory lock, SQLite with an exclusive lock on a file beside the database. The second runner then finds the
schema at head and does nothing, so calling `upgrade` at every start is safe.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

VERSION_TABLE: Final = "deploymind_history_version"
# Any constant unique to this application works: advisory locks are keyed by one bigint per database.
_PG_LOCK_KEY: Final = 0x64_6D_68_69_73_74  # "dmhist"
_SCRIPTS: Final = Path(__file__).parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


@contextlib.contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        yield  # private in-memory databases cannot be shared by two processes
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file is closed, also if the process dies
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def upgrade(engine: Engine) -> None:
    """Run every pending migration; blocking (call it from a thread)."""
    config = _config()
    lock = _sqlite_file_lock(engine) if engine.dialect.name == "sqlite" else contextlib.nullcontext()
    with lock, engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None before the first migration)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def head_revision() -> str | None:
    """The newest revision this build of the operator knows."""
    return ScriptDirectory.from_config(_config()).get_current_head()
