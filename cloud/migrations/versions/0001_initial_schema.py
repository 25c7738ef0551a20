"""Initial schema: schools, gateways, devices, attendance events, the sync ledger, users and sessions.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "school",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_school")),
    )
    op.create_table(
        "device",
        sa.Column("id", sa.String(length=18), nullable=False),
        sa.Column("school_code", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=True),
        sa.Column("fw", sa.String(length=64), nullable=True),
        sa.Column("app", sa.String(length=64), nullable=True),
        sa.Column("presence", sa.String(length=16), nullable=False),
        sa.Column("presence_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_health", sa.JSON(), nullable=True),
        sa.Column("boot_id", sa.String(length=8), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["school_code"], ["school.code"], name=op.f("fk_device_school_code_school")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device")),
    )
    op.create_index("ix_device_school_code", "device", ["school_code"], unique=False)
    op.create_table(
        "gateway",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("school_code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_gateway_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["school_code"], ["school.code"], name=op.f("fk_gateway_school_code_school")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_gateway_token_hash")),
    )
    op.create_index("ix_gateway_school_code", "gateway", ["school_code"], unique=False)
    op.create_table(
        "user_account",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("school_code", sa.String(length=32), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("password_hash", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["school_code"], ["school.code"], name=op.f("fk_user_account_school_code_school")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_account")),
        sa.UniqueConstraint("username", name=op.f("uq_user_account_username")),
    )
    op.create_table(
        "attendance_event",
        sa.Column("device_id", sa.String(length=18), nullable=False),
        sa.Column("boot_id", sa.String(length=8), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("card_pseudonym", sa.String(length=128), nullable=False),
        sa.Column("historical", sa.Boolean(), nullable=False),
        sa.Column("school_code", sa.String(length=32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["device.id"], name=op.f("fk_attendance_event_device_id_device")),
        sa.ForeignKeyConstraint(["gateway_id"], ["gateway.id"], name=op.f("fk_attendance_event_gateway_id_gateway")),
        sa.ForeignKeyConstraint(["school_code"], ["school.code"], name=op.f("fk_attendance_event_school_code_school")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attendance_event")),
        sa.UniqueConstraint("device_id", "boot_id", "seq", name=op.f("uq_attendance_event_device_id_boot_id_seq")),
    )
    op.create_index("ix_attendance_event_school_code_ts", "attendance_event", ["school_code", "ts"], unique=False)
    op.create_table(
        "auth_token",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_auth_token_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_auth_token")),
    )
    op.create_index("ix_auth_token_user_id", "auth_token", ["user_id"], unique=False)
    op.create_table(
        "ingested_record",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("gateway_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.String(length=18), nullable=True),
        sa.Column("body", sa.JSON(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["gateway_id"], ["gateway.id"], name=op.f("fk_ingested_record_gateway_id_gateway")),
        sa.PrimaryKeyConstraint("gateway_id", "gateway_seq", name=op.f("pk_ingested_record")),
    )


def downgrade() -> None:
    op.drop_table("ingested_record")
    op.drop_index("ix_auth_token_user_id", table_name="auth_token")
    op.drop_table("auth_token")
    op.drop_index("ix_attendance_event_school_code_ts", table_name="attendance_event")
    op.drop_table("attendance_event")
    op.drop_table("user_account")
    op.drop_index("ix_gateway_school_code", table_name="gateway")
    op.drop_table("gateway")
    op.drop_index("ix_device_school_code", table_name="device")
    op.drop_table("device")
    op.drop_table("school")
