"""Daily summaries the county figures read instead of the raw history: devices online per school, role,
UTC day and hour; blackboard usage per school and local day; and the device assignments they were built
with.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOURS = tuple(f"h{hour:02d}" for hour in range(24))


def upgrade() -> None:
    op.create_table(
        "online_day",
        sa.Column("school_code", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in HOURS),
        sa.PrimaryKeyConstraint("school_code", "role", "day", name=op.f("pk_online_day")),
    )
    op.create_index("ix_online_day_day", "online_day", ["day"], unique=False)
    op.create_table(
        "usage_day",
        sa.Column("school_code", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("school_code", "day", name=op.f("pk_usage_day")),
    )
    op.create_index("ix_usage_day_day", "usage_day", ["day"], unique=False)
    op.create_table(
        "summary_device",
        sa.Column("device_id", sqlmodel.sql.sqltypes.AutoString(length=18), nullable=False),
        sa.Column("school_code", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_summary_device")),
    )


def downgrade() -> None:
    op.drop_table("summary_device")
    op.drop_index("ix_usage_day_day", table_name="usage_day")
    op.drop_table("usage_day")
    op.drop_index("ix_online_day_day", table_name="online_day")
    op.drop_table("online_day")
