"""Notifications: a user's in-app inbox and the webhook deliveries of escalations."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from cloud.models.base import BigId, UTCDateTime, utcnow


class Notification(SQLModel, table=True):
    """A message in a user's in-app inbox, e.g. an SLA deadline drawing near."""

    __tablename__ = "notification"
    __table_args__ = (
        UniqueConstraint("user_id", "dedupe_key"),
        Index("ix_notification_user_id_created_at", "user_id", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    user_id: int = Field(foreign_key="user_account.id", ondelete="CASCADE")
    order_id: int | None = Field(default=None, foreign_key="work_order.id", ondelete="CASCADE")
    kind: str = Field(max_length=32)
    text: str = Field(max_length=500)
    dedupe_key: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    read_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class NotificationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    order_id: int | None
    kind: str
    text: str
    created_at: datetime
    read_at: datetime | None


class WebhookDelivery(SQLModel, table=True):
    """An escalation to POST to the configured webhook; kept until delivered or out of attempts."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (Index("ix_webhook_delivery_next_at", "next_at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    url: str = Field(max_length=500)
    payload: dict[str, Any] = Field(sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    attempts: int = 0
    # Null once delivered or given up.
    next_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=500)
