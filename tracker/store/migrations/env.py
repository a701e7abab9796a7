"""Alembic environment: runs on the connection the store hands over.

The store calls Alembic programmatically (``tracker db upgrade`` and on first use),
passing its own connection in ``config.attributes["connection"]`` so migrations run
inside the same engine settings (WAL, busy timeout) and never need an alembic.ini.
"""

from __future__ import annotations

from alembic import context

from tracker.store.schema import comparison_options, metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when someone runs the alembic CLI by hand
    from sqlalchemy import create_engine

    url = context.config.get_main_option("sqlalchemy.url")
    connection = create_engine(url).connect()

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    **comparison_options(connection.dialect.name),
)
with context.begin_transaction():
    context.run_migrations()
