"""The tables the gateway sync writes a row per record into lose their foreign keys.

attendance_event, ingested_record, alarm, command_ack, health_sample and telemetry_sample referred to
device, school and gateway. The database checked each reference for every row it stored, which cost more
than a third of its work per synced record; the sync now checks a batch's references once (the gateway is
the one whose token came with the batch, the school is the gateway's, and every device is registered, to
that school, before the batch's rows are written), and a device with history is kept from deletion by the
cloud rather than by the keys. No data changes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, referred table, referred column)
FOREIGN_KEYS = (
    ("attendance_event", "device_id", "device", "id"),
    ("attendance_event", "gateway_id", "gateway", "id"),
    ("attendance_event", "school_code", "school", "code"),
    ("ingested_record", "gateway_id", "gateway", "id"),
    ("alarm", "device_id", "device", "id"),
    ("alarm", "gateway_id", "gateway", "id"),
    ("alarm", "school_code", "school", "code"),
    ("command_ack", "device_id", "device", "id"),
    ("command_ack", "gateway_id", "gateway", "id"),
    ("command_ack", "school_code", "school", "code"),
    ("health_sample", "device_id", "device", "id"),
    ("health_sample", "school_code", "school", "code"),
    ("telemetry_sample", "device_id", "device", "id"),
    ("telemetry_sample", "school_code", "school", "code"),
)


def _tables() -> list[str]:
    return list(dict.fromkeys(table for table, *_ in FOREIGN_KEYS))


def upgrade() -> None:
    for table in _tables():
        # On SQLite a batch rebuilds the table without the constraints; on PostgreSQL it drops them.
        with op.batch_alter_table(table) as batch:
            for name, column, referred, _ in FOREIGN_KEYS:
                if name == table:
                    batch.drop_constraint(op.f(f"fk_{table}_{column}_{referred}"), type_="foreignkey")


def downgrade() -> None:
    for table in _tables():
        with op.batch_alter_table(table) as batch:
            for name, column, referred, referred_column in FOREIGN_KEYS:
                if name == table:
                    batch.create_foreign_key(
                        op.f(f"fk_{table}_{column}_{referred}"), referred, [column], [referred_column]
                    )
