"""Alembic environment: runs on the connection `history.migrate` passes in (it holds the cross-replica lock)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from deploymind.history.migrate import VERSION_TABLE
from deploymind.history.models import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("history migrations run only through deploymind.history.migrate.upgrade(engine)")

context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
