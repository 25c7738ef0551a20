"""Asset registry, device events and samples, health roll-ups, rosters and the append-only audit log.

Every new column of an existing table is nullable, so rows written under 0001 stay valid.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY_MESSAGE = "audit_log is append-only: its rows are never updated or deleted"


def _device_record_columns() -> list[sa.Column]:
    return [
        sa.Column("device_id", sa.String(length=18), nullable=False),
        sa.Column("boot_id", sa.String(length=8), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("school_code", sa.String(length=32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _device_record_keys(table: str) -> list[sa.Constraint]:
    return [
        sa.ForeignKeyConstraint(["device_id"], ["device.id"], name=op.f(f"fk_{table}_device_id_device")),
        sa.ForeignKeyConstraint(["school_code"], ["school.code"], name=op.f(f"fk_{table}_school_code_school")),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        sa.UniqueConstraint("device_id", "boot_id", "seq", name=op.f(f"uq_{table}_device_id_boot_id_seq")),
    ]


def _add_reference(table: str, name: str, type_: sa.types.TypeEngine, referent: str, remote: str) -> None:
    """Add a nullable column that references another table, in place on both databases."""
    constraint = op.f(f"fk_{table}_{name}_{referent}")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot ALTER a constraint into a table but accepts REFERENCES on an added column; rebuilding
        # the table instead would trip the foreign keys that point at it.
        column_type = type_.compile(dialect=op.get_bind().dialect)
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN {name} {column_type} "
            f"CONSTRAINT {constraint} REFERENCES {referent} ({remote})"
        )
        return
    op.add_column(table, sa.Column(name, type_, nullable=True))
    op.create_foreign_key(constraint, table, referent, [name], [remote])


def _create_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )


def _drop_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_refuse_change()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")


def upgrade() -> None:
    op.create_table(
        "city",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_city")),
    )
    op.create_table(
        "district",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("city_code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["city_code"], ["city.code"], name=op.f("fk_district_city_code_city")),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_district")),
    )
    op.create_index("ix_district_city_code", "district", ["city_code"], unique=False)

    _add_reference("school", "district_code", sa.String(length=32), "district", "code")
    op.create_index("ix_school_district_code", "school", ["district_code"], unique=False)
    _add_reference("user_account", "district_code", sa.String(length=32), "district", "code")

    op.create_table(
        "building",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["school_code"], ["school.code"], name=op.f("fk_building_school_code_school")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_building")),
        sa.UniqueConstraint("school_code", "name", name=op.f("uq_building_school_code_name")),
    )
    op.create_index("ix_building_school_code", "building", ["school_code"], unique=False)
    op.create_table(
        "classroom",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_code", sa.String(length=32), nullable=False),
        sa.Column("building_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("grade", sa.Integer(), nullable=True),
        sa.Column("class_label", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["building_id"], ["building.id"], name=op.f("fk_classroom_building_id_building")),
        sa.ForeignKeyConstraint(["school_code"], ["school.code"], name=op.f("fk_classroom_school_code_school")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_classroom")),
        sa.UniqueConstraint("building_id", "name", name=op.f("uq_classroom_building_id_name")),
    )
    op.create_index("ix_classroom_building_id", "classroom", ["building_id"], unique=False)
    op.create_index("ix_classroom_school_code", "classroom", ["school_code"], unique=False)

    for name, length in (("model", 128), ("vendor", 128), ("serial", 128), ("asset_tag", 64)):
        op.add_column("device", sa.Column(name, sa.String(length=length), nullable=True))
    op.add_column("device", sa.Column("purchase_date", sa.Date(), nullable=True))
    op.add_column("device", sa.Column("warranty_end", sa.Date(), nullable=True))
    _add_reference("device", "classroom_id", sa.Integer(), "classroom", "id")
    op.create_index("ix_device_classroom_id", "device", ["classroom_id"], unique=False)
    op.create_index("ix_device_asset_tag", "device", ["asset_tag"], unique=True)

    op.create_table(
        "roster_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_code", sa.String(length=32), nullable=False),
        sa.Column("card_pseudonym", sa.String(length=128), nullable=False),
        sa.Column("person_name", sa.String(length=200), nullable=False),
        sa.Column("person_no", sa.String(length=64), nullable=True),
        sa.Column("class_label", sa.String(length=64), nullable=True),
        sa.Column("classroom_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["classroom_id"], ["classroom.id"], name=op.f("fk_roster_entry_classroom_id_classroom")
        ),
        sa.ForeignKeyConstraint(["school_code"], ["school.code"], name=op.f("fk_roster_entry_school_code_school")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roster_entry")),
        sa.UniqueConstraint("school_code", "card_pseudonym", name=op.f("uq_roster_entry_school_code_card_pseudonym")),
    )
    op.create_index("ix_roster_entry_classroom_id", "roster_entry", ["classroom_id"], unique=False)
    op.create_index("ix_roster_entry_school_code", "roster_entry", ["school_code"], unique=False)

    op.create_table(
        "alarm",
        *_device_record_columns(),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("historical", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("id", BigId, nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["gateway_id"], ["gateway.id"], name=op.f("fk_alarm_gateway_id_gateway")),
        *_device_record_keys("alarm"),
    )
    op.create_index("ix_alarm_device_id_ts", "alarm", ["device_id", "ts"], unique=False)
    op.create_index("ix_alarm_school_code_ts", "alarm", ["school_code", "ts"], unique=False)

    op.create_table(
        "command_ack",
        *_device_record_columns(),
        sa.Column("id", BigId, nullable=False),
        sa.Column("cid", sa.String(length=64), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("historical", sa.Boolean(), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["gateway_id"], ["gateway.id"], name=op.f("fk_command_ack_gateway_id_gateway")),
        *_device_record_keys("command_ack"),
    )
    op.create_index("ix_command_ack_cid", "command_ack", ["cid"], unique=False)

    op.create_table(
        "health_sample",
        *_device_record_columns(),
        sa.Column("uptime_s", sa.BigInteger(), nullable=True),
        sa.Column("heap_free", sa.Integer(), nullable=True),
        sa.Column("heap_max_block", sa.Integer(), nullable=True),
        sa.Column("rssi", sa.Integer(), nullable=True),
        sa.Column("buffered", sa.Integer(), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("id", BigId, nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        *_device_record_keys("health_sample"),
    )
    op.create_index("ix_health_sample_device_id_ts", "health_sample", ["device_id", "ts"], unique=False)
    op.create_index("ix_health_sample_hour", "health_sample", ["hour"], unique=False)
    op.create_index("ix_health_sample_received_at", "health_sample", ["received_at"], unique=False)

    op.create_table(
        "telemetry_sample",
        *_device_record_columns(),
        sa.Column("id", BigId, nullable=False),
        sa.Column("readings", sa.JSON(), nullable=False),
        sa.Column("faults", sa.JSON(), nullable=True),
        *_device_record_keys("telemetry_sample"),
    )
    op.create_index("ix_telemetry_sample_device_id_ts", "telemetry_sample", ["device_id", "ts"], unique=False)

    op.create_table(
        "health_hourly",
        sa.Column("device_id", sa.String(length=18), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("school_code", sa.String(length=32), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("boots", sa.Integer(), nullable=False),
        sa.Column("heap_free_min", sa.Integer(), nullable=True),
        sa.Column("heap_free_avg", sa.Float(), nullable=True),
        sa.Column("heap_max_block_min", sa.Integer(), nullable=True),
        sa.Column("rssi_min", sa.Integer(), nullable=True),
        sa.Column("rssi_avg", sa.Float(), nullable=True),
        sa.Column("uptime_max", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["device.id"], name=op.f("fk_health_hourly_device_id_device")),
        sa.ForeignKeyConstraint(["school_code"], ["school.code"], name=op.f("fk_health_hourly_school_code_school")),
        sa.PrimaryKeyConstraint("device_id", "hour", name=op.f("pk_health_hourly")),
    )
    op.create_index("ix_health_hourly_hour", "health_hourly", ["hour"], unique=False)

    op.create_table(
        "maintenance_mark",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("hour_mark", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_mark", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_maintenance_mark")),
    )

    op.create_table(
        "audit_log",
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=True),
        sa.Column("school_code", sa.String(length=32), nullable=True),
        sa.Column("district_code", sa.String(length=32), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("id", BigId, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"], unique=False)
    op.create_index("ix_audit_log_district_code_at", "audit_log", ["district_code", "at"], unique=False)
    op.create_index("ix_audit_log_entity_entity_id", "audit_log", ["entity", "entity_id"], unique=False)
    _create_append_only_triggers()


def downgrade() -> None:
    _drop_append_only_triggers()
    op.drop_table("audit_log")
    op.drop_table("maintenance_mark")
    op.drop_table("health_hourly")
    op.drop_table("telemetry_sample")
    op.drop_table("health_sample")
    op.drop_table("command_ack")
    op.drop_table("alarm")
    op.drop_table("roster_entry")
    with op.batch_alter_table("device") as batch:
        batch.drop_index("ix_device_asset_tag")
        batch.drop_index("ix_device_classroom_id")
        if op.get_bind().dialect.name != "sqlite":
            batch.drop_constraint("fk_device_classroom_id_classroom", type_="foreignkey")
        for name in (
            "classroom_id",
            "warranty_end",
            "purchase_date",
            "asset_tag",
            "serial",
            "vendor",
            "model",
        ):
            batch.drop_column(name)
    op.drop_table("classroom")
    op.drop_table("building")
    with op.batch_alter_table("user_account") as batch:
        if op.get_bind().dialect.name != "sqlite":
            batch.drop_constraint("fk_user_account_district_code_district", type_="foreignkey")
        batch.drop_column("district_code")
    with op.batch_alter_table("school") as batch:
        batch.drop_index("ix_school_district_code")
        if op.get_bind().dialect.name != "sqlite":
            batch.drop_constraint("fk_school_district_code_district", type_="foreignkey")
        batch.drop_column("district_code")
    op.drop_index("ix_district_city_code", table_name="district")
    op.drop_table("district")
    op.drop_table("city")
