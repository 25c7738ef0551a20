"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, SQLModel, select

from cloud.core.db import alembic_config, create_db_engine, upgrade_database
from cloud.models import AuditEntry, Device, School


@pytest.fixture(params=["sqlite_empty", pytest.param("postgres_empty", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def test_migrated_schema_matches_the_models(database_url):
    engine = create_db_engine(database_url)
    try:
        upgrade_database(engine)
        upgrade_database(engine)  # a second run finds nothing to do
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, SQLModel.metadata)
            assert context.get_current_revision() is not None
    finally:
        engine.dispose()
    assert differences == []


def test_downgrade_to_base_removes_every_table(database_url):
    engine = create_db_engine(database_url)
    try:
        upgrade_database(engine)
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()


def test_sqlite_runs_with_wal_foreign_keys_and_busy_timeout(sqlite_empty_url):
    engine = create_db_engine(sqlite_empty_url)
    try:
        with engine.connect() as connection:
            pragma = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    finally:
        engine.dispose()
    assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30_000}


def test_upgrade_from_0001_keeps_the_data(database_url):
    engine = create_db_engine(database_url)
    config = alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
            connection.execute(
                text(
                    "INSERT INTO school (code, name, timezone, created_at) "
                    "VALUES ('s1', 'School 1', 'Asia/Shanghai', '2026-01-01 00:00:00')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO device (id, school_code, presence, first_seen_at, fw) "
                    "VALUES ('esp32-aabbccddee01', 's1', 'online', '2026-01-01 00:00:00', '1.2.0')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO user_account"
                    " (username, role, school_code, is_active, password_hash, created_at) "
                    "VALUES ('head1', 'school_admin', 's1', true, 'x', '2026-01-01 00:00:00')"
                )
            )
        upgrade_database(engine)
        with Session(engine) as session:
            device = session.get(Device, "esp32-aabbccddee01")
            school = session.get(School, "s1")
            assert (device.fw, device.presence, device.classroom_id, device.asset_tag) == (
                "1.2.0",
                "online",
                None,
                None,
            )
            assert school.district_code is None
            session.add(AuditEntry(actor_kind="cli", actor="t", action="create", entity="school"))
            session.commit()
    finally:
        engine.dispose()


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"])
def test_audit_log_refuses_updates_and_deletes(database_url, statement):
    engine = create_db_engine(database_url)
    try:
        upgrade_database(engine)
        with Session(engine) as session:
            session.add(AuditEntry(actor_kind="cli", actor="t", action="create", entity="school"))
            session.commit()
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))
        with Session(engine) as session:
            assert session.exec(select(AuditEntry.actor)).all() == ["t"]
    finally:
        engine.dispose()
