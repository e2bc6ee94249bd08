"""Alembic environment and revisions of the history schema; run by `deploymind.history.migrate.upgrade`."""
