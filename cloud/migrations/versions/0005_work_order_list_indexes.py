"""Indexes for listing work orders: by status (the open ones, newest first) and by assignee (a technician's
own, newest first). The second replaces the index on the assignee alone, which it covers.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_work_order_status_id", "work_order", ["status", "id"], unique=False)
    op.create_index("ix_work_order_assignee_id_id", "work_order", ["assignee_id", "id"], unique=False)
    op.drop_index("ix_work_order_assignee_id", table_name="work_order")


def downgrade() -> None:
    op.create_index("ix_work_order_assignee_id", "work_order", ["assignee_id"], unique=False)
    op.drop_index("ix_work_order_assignee_id_id", table_name="work_order")
    op.drop_index("ix_work_order_status_id", table_name="work_order")
