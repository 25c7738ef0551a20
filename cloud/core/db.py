"""Database engines for SQLite (embedded default) and PostgreSQL (production), and schema migration."""

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from cloud.errors import UnsupportedDatabase

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_POOL_SIZE = 10
PG_POOL_OVERFLOW = 40
# Execution option marking a connection whose transaction will write.
WRITE_INTENT = "classops_write_intent"


def normalize_url(database_url: str) -> URL:
    """The URL with its driver made explicit: psycopg 3 for PostgreSQL."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "postgresql":
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
    elif backend != "sqlite":
        raise UnsupportedDatabase(f"database {backend!r} is not supported; use sqlite or postgresql")
    return url


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _on_sqlite_connect(dbapi_connection, _record) -> None:
    # Autocommit at the driver level so that the "begin" hook below decides how transactions start.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _on_sqlite_begin(connection) -> None:
    # A deferred transaction that reads and then writes fails at once with SQLITE_BUSY if another writer
    # committed in between; a writer that takes the lock up front waits for busy_timeout instead.
    if connection.get_execution_options().get(WRITE_INTENT):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")


def release_connection(session: Session) -> None:
    """End the session's read transaction and give its connection back to the pool, keeping what it
    loaded. An authentication dependency calls this: between it and the endpoint, which run as separate
    thread-pool calls, a request must not hold a pooled connection, or requests that hold connections and
    wait for a thread, and threads that wait for a connection, can block each other for good."""
    if session.in_transaction():
        expire = session.expire_on_commit
        session.expire_on_commit = False
        try:
            session.commit()
        finally:
            session.expire_on_commit = expire


def begin_write(session: Session) -> None:
    """Start the session's transaction as one that will write; ends a read-only one still open."""
    if session.in_transaction():
        session.commit()
    session.connection(execution_options={WRITE_INTENT: True})


def create_db_engine(database_url: str, *, echo: bool = False) -> Engine:
    """An engine for `database_url`, with the pragmas ClassOps relies on when it is SQLite."""
    url = normalize_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = _sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # A file's connections are cheap to open: no pool, so no request ever waits for a pooled
        # connection (a memory database must keep its one connection).
        pool = {"poolclass": NullPool} if path is not None else {}
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False}, **pool)
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
        return engine
    # More connections than the API's worker threads (40): a request holds its session's connection
    # while its response is validated in a worker thread, so with fewer connections than threads every
    # thread can end up waiting for a connection held by a request that waits for a thread.
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=PG_POOL_SIZE, max_overflow=PG_POOL_OVERFLOW)


def alembic_config() -> Config:
    """Alembic's configuration for the migrations shipped inside the package."""
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_database(engine: Engine) -> None:
    """Bring the schema to the newest migration; a no-op when it is there already."""
    config = alembic_config()
    with engine.connect() as connection:
        connection.execution_options(**{WRITE_INTENT: True})
        with connection.begin():
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    logger.info("database schema is at head", extra={"database": engine.url.render_as_string()})
