"""Alembic environment: runs on the connection ``db.upgrade`` passes in (online only)."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table="faxfleet_calls_version")
with context.begin_transaction():
    context.run_migrations()
