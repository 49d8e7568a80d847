"""Alembic environment: migrations run on the connection handed over by shared.db.migrate."""

from __future__ import annotations

from alembic import context

from services.notifier.adapters.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through shared.db.migrate (the service does it at startup)")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    version_table="alembic_version_notifier",
)
with context.begin_transaction():
    context.run_migrations()
