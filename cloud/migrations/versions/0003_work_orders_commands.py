"""Contractor teams, service calendars, work orders with their journal and photos, notifications and
webhook deliveries, commands and desired device configuration.

The one change to an existing table is a nullable column, device.config_version.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_TABLES = (
    "work_order_event",
    "work_order_attachment",
    "notification",
    "webhook_delivery",
    "work_order",
    "device_config",
    "command",
    "command_batch",
    "team_member",
    "team_coverage",
    "service_calendar",
    "contractor_team",
)


def upgrade() -> None:
    op.create_table(
        "command_batch",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exp_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_command_batch")),
    )
    op.create_index("ix_command_batch_created_at", "command_batch", ["created_at"], unique=False)
    op.create_table(
        "contractor_team",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contractor_team")),
        sa.UniqueConstraint("name", name=op.f("uq_contractor_team_name")),
    )
    op.create_table(
        "service_calendar",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("day_start", sa.String(length=5), nullable=False),
        sa.Column("day_end", sa.String(length=5), nullable=False),
        sa.Column("weekdays", sa.JSON(), nullable=False),
        sa.Column("holidays", sa.JSON(), nullable=False),
        sa.Column("school_days", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_service_calendar")),
    )
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_delivery")),
    )
    op.create_index("ix_webhook_delivery_next_at", "webhook_delivery", ["next_at"], unique=False)
    op.create_table(
        "team_coverage",
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("district_code", sa.String(length=32), nullable=False),
        sa.Column("device_role", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["district_code"], ["district.code"], name=op.f("fk_team_coverage_district_code_district")
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["contractor_team.id"],
            name=op.f("fk_team_coverage_team_id_contractor_team"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("team_id", "district_code", "device_role", name=op.f("pk_team_coverage")),
    )
    op.create_table(
        "team_member",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["contractor_team.id"], name=op.f("fk_team_member_team_id_contractor_team"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_team_member_user_id_user_account"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_team_member")),
    )
    op.create_index(op.f("ix_team_member_team_id"), "team_member", ["team_id"], unique=False)
    op.create_table(
        "command",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("cid", sa.String(length=32), nullable=False),
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=18), nullable=False),
        sa.Column("school_code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exp_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(length=16), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(["batch_id"], ["command_batch.id"], name=op.f("fk_command_batch_id_command_batch")),
        sa.ForeignKeyConstraint(["device_id"], ["device.id"], name=op.f("fk_command_device_id_device")),
        sa.ForeignKeyConstraint(["school_code"], ["school.code"], name=op.f("fk_command_school_code_school")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_command")),
        sa.UniqueConstraint("cid", name=op.f("uq_command_cid")),
    )
    op.create_index("ix_command_batch_id", "command", ["batch_id"], unique=False)
    op.create_index("ix_command_school_code_state", "command", ["school_code", "state"], unique=False)
    op.create_index("ix_command_state_exp_at", "command", ["state", "exp_at"], unique=False)
    op.create_table(
        "device_config",
        sa.Column("device_id", sa.String(length=18), nullable=False),
        sa.Column("school_code", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["device.id"], name=op.f("fk_device_config_device_id_device")),
        sa.ForeignKeyConstraint(["school_code"], ["school.code"], name=op.f("fk_device_config_school_code_school")),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_config")),
    )
    op.create_index(
        "ix_device_config_school_code_change_seq", "device_config", ["school_code", "change_seq"], unique=False
    )
    op.create_table(
        "work_order",
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("device_id", sa.String(length=18), nullable=True),
        sa.Column("gateway_id", sa.String(length=64), nullable=True),
        sa.Column("school_code", sa.String(length=32), nullable=False),
        sa.Column("fault_code", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=4000), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("impact", sa.String(length=8), nullable=False),
        sa.Column("urgency", sa.String(length=8), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("assignee_id", sa.Integer(), nullable=True),
        sa.Column("reporter_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sla_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("own_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolve_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("own_warn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolve_warn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("own_warned", sa.Boolean(), nullable=False),
        sa.Column("resolve_warned", sa.Boolean(), nullable=False),
        sa.Column("own_met", sa.Boolean(), nullable=True),
        sa.Column("resolve_met", sa.Boolean(), nullable=True),
        sa.Column("pending_reason", sa.String(length=500), nullable=True),
        sa.Column("pending_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pending_service_s", sa.Float(), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String(length=4000), nullable=True),
        sa.Column("reopen_count", sa.Integer(), nullable=False),
        sa.Column("alarm_active", sa.Boolean(), nullable=False),
        sa.Column("alarm_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clear_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_by_device_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("flap_count", sa.Integer(), nullable=False),
        sa.Column("flapping", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("open_key", sa.String(length=140), nullable=True),
        sa.Column("raise_times", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["assignee_id"], ["user_account.id"], name=op.f("fk_work_order_assignee_id_user_account")
        ),
        sa.ForeignKeyConstraint(["device_id"], ["device.id"], name=op.f("fk_work_order_device_id_device")),
        sa.ForeignKeyConstraint(["gateway_id"], ["gateway.id"], name=op.f("fk_work_order_gateway_id_gateway")),
        sa.ForeignKeyConstraint(
            ["reporter_id"], ["user_account.id"], name=op.f("fk_work_order_reporter_id_user_account")
        ),
        sa.ForeignKeyConstraint(["school_code"], ["school.code"], name=op.f("fk_work_order_school_code_school")),
        sa.ForeignKeyConstraint(
            ["team_id"], ["contractor_team.id"], name=op.f("fk_work_order_team_id_contractor_team")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_order")),
    )
    op.create_index(op.f("ix_work_order_assignee_id"), "work_order", ["assignee_id"], unique=False)
    op.create_index("ix_work_order_created_at", "work_order", ["created_at"], unique=False)
    op.create_index(op.f("ix_work_order_device_id"), "work_order", ["device_id"], unique=False)
    op.create_index("ix_work_order_open_key", "work_order", ["open_key"], unique=True)
    op.create_index("ix_work_order_resolved_at", "work_order", ["resolved_at"], unique=False)
    op.create_index("ix_work_order_school_code_status", "work_order", ["school_code", "status"], unique=False)
    op.create_index(op.f("ix_work_order_team_id"), "work_order", ["team_id"], unique=False)
    op.create_table(
        "notification",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("text", sa.String(length=500), nullable=False),
        sa.Column("dedupe_key", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["work_order.id"], name=op.f("fk_notification_order_id_work_order"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_notification_user_id_user_account"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
        sa.UniqueConstraint("user_id", "dedupe_key", name=op.f("uq_notification_user_id_dedupe_key")),
    )
    op.create_index("ix_notification_user_id_created_at", "notification", ["user_id", "created_at"], unique=False)
    op.create_table(
        "work_order_attachment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=300), nullable=False),
        sa.Column("uploaded_by", sa.String(length=64), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["work_order.id"],
            name=op.f("fk_work_order_attachment_order_id_work_order"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_order_attachment")),
    )
    op.create_index(op.f("ix_work_order_attachment_order_id"), "work_order_attachment", ["order_id"], unique=False)
    op.create_table(
        "work_order_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=True),
        sa.Column("text", sa.String(length=4000), nullable=True),
        sa.Column("part", sa.String(length=200), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=True),
        sa.Column("minutes", sa.Integer(), nullable=True),
        sa.Column("attachment_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["work_order.id"], name=op.f("fk_work_order_event_order_id_work_order"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_order_event")),
    )
    op.create_index("ix_work_order_event_order_id_at", "work_order_event", ["order_id", "at"], unique=False)
    op.add_column("device", sa.Column("config_version", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    for table in NEW_TABLES:
        op.drop_table(table)
    with op.batch_alter_table("device") as batch:
        batch.drop_column("config_version")
