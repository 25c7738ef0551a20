"""The audit log: who wrote what, when and from where."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, Index
from sqlmodel import Field, SQLModel

from cloud.models.base import BigId, UTCDateTime, utcnow

# "anonymous": someone who has not signed in, e.g. a failed sign-in.
ACTOR_KINDS = ("user", "gateway", "cli", "system", "anonymous")


class AuditEntryBase(SQLModel):
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor_kind: str = Field(max_length=16)
    actor: str = Field(max_length=64)
    action: str = Field(max_length=32)
    entity: str = Field(max_length=32)
    entity_id: str | None = Field(default=None, max_length=64)
    school_code: str | None = Field(default=None, max_length=32)
    district_code: str | None = Field(default=None, max_length=32)
    client_ip: str | None = Field(default=None, max_length=64)
    summary: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class AuditEntry(AuditEntryBase, table=True):
    """One write: who, what, when and from where. Rows are never updated or deleted (triggers refuse)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_district_code_at", "district_code", "at"),
        Index("ix_audit_log_entity_entity_id", "entity", "entity_id"),
    )

    # No foreign keys: an entry outlives the user, gateway or school it names.
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)


class AuditEntryPublic(AuditEntryBase):
    id: int


class AuditPage(BaseModel):
    """A page of audit entries, newest first, and the number matching the query."""

    items: list[AuditEntryPublic]
    total: int
