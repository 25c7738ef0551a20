"""Alembic environment: runs on the connection handed over by cloud.core.db, or on the configured URL."""

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

from cloud import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from cloud.core.config import Settings
from cloud.core.db import create_db_engine

# Any constant will do; it only has to be the same for every process that migrates this database.
MIGRATION_LOCK_KEY = 0x436C6173734F7073  # "ClassOps"

config = context.config
target_metadata = SQLModel.metadata


def _database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or Settings().database_url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Several API workers start at once; one migrates, the others wait and then find it done.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit the SQL instead of running it (alembic upgrade --sql)."""
    url = _database_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate over a live connection."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_db_engine(_database_url())
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
