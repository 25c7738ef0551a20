"""The append-only audit log: one entry per write, added in the same transaction as the write."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, select

from cloud.crud.access import require_audit_reader
from cloud.crud.common import Actor, as_utc, jsonable
from cloud.models import AuditEntry, School, User, utcnow

MAX_SUMMARY_ITEMS = 50


def record(
    session: Session,
    *,
    actor: Actor,
    action: str,
    entity: str,
    entity_id: Any = None,
    school_code: str | None = None,
    district_code: str | None = None,
    summary: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Add an audit entry to the session; it commits (or rolls back) with the write it describes."""
    if district_code is None and school_code is not None:
        school = session.get(School, school_code)
        district_code = school.district_code if school is not None else None
    if summary is not None and len(summary) > MAX_SUMMARY_ITEMS:
        summary = {"fields": len(summary), "first": dict(list(summary.items())[:MAX_SUMMARY_ITEMS])}
    entry = AuditEntry(
        at=at or utcnow(),
        actor_kind=actor.kind,
        actor=actor.name,
        action=action,
        entity=entity,
        entity_id=None if entity_id is None else str(entity_id)[:64],
        school_code=school_code,
        district_code=district_code,
        client_ip=actor.client_ip,
        summary=jsonable(summary) if summary is not None else None,
    )
    session.add(entry)
    return entry


def list_entries(
    session: Session,
    *,
    user: User,
    entity: str | None = None,
    entity_id: str | None = None,
    actor: str | None = None,
    school_code: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[Sequence[AuditEntry], int]:
    """A page of the audit entries `user` may read, newest first, and how many match in all."""
    require_audit_reader(user)
    conditions: list[ColumnElement[bool]] = []
    if user.district_code is not None:
        conditions.append(col(AuditEntry.district_code) == user.district_code)
    if entity is not None:
        conditions.append(col(AuditEntry.entity) == entity)
    if entity_id is not None:
        conditions.append(col(AuditEntry.entity_id) == entity_id)
    if actor is not None:
        conditions.append(col(AuditEntry.actor) == actor)
    if school_code is not None:
        conditions.append(col(AuditEntry.school_code) == school_code)
    if since is not None:
        conditions.append(col(AuditEntry.at) >= as_utc(since))
    total = session.exec(select(func.count()).select_from(AuditEntry).where(*conditions)).one()
    items = session.exec(
        select(AuditEntry)
        .where(*conditions)
        .order_by(col(AuditEntry.at).desc(), col(AuditEntry.id).desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return items, total
