"""The in-app inbox: notifications added for users, listed and marked read by their owners."""

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from cloud.core.db import begin_write
from cloud.crud import audit
from cloud.crud.common import Actor, dialect_insert
from cloud.errors import AccessDenied, NotFound
from cloud.models import Notification, User, utcnow


def notify_users(
    session: Session,
    *,
    user_ids: Sequence[int],
    order_id: int,
    kind: str,
    text: str,
    dedupe_key: str,
    now: datetime,
) -> None:
    """Add a notification for each user, once per user and `dedupe_key` (in the caller's transaction)."""
    rows = [
        {
            "user_id": user_id,
            "order_id": order_id,
            "kind": kind,
            "text": text[:500],
            "dedupe_key": dedupe_key,
            "created_at": now,
        }
        for user_id in user_ids
    ]
    if rows:
        session.exec(
            dialect_insert(session, Notification)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["user_id", "dedupe_key"])
        )


def list_notifications(
    session: Session, *, user: User, unread_only: bool = False, limit: int = 100, offset: int = 0
) -> Sequence[Notification]:
    """The user's own notifications, newest first."""
    if not user.is_active:
        raise AccessDenied("the account is disabled")
    statement = select(Notification).where(Notification.user_id == user.id)
    if unread_only:
        statement = statement.where(col(Notification.read_at).is_(None))
    return session.exec(
        statement.order_by(col(Notification.created_at).desc(), col(Notification.id).desc()).offset(offset).limit(limit)
    ).all()


def mark_read(session: Session, *, actor: Actor, notification_id: int, now: datetime | None = None) -> Notification:
    """Mark one of the user's notifications read."""
    begin_write(session)
    row = session.get(Notification, notification_id)
    if actor.user is None or row is None or row.user_id != actor.user.id:
        raise NotFound(f"notification {notification_id} not found")
    if row.read_at is None:
        row.read_at = now or utcnow()
        session.add(row)
        audit.record(session, actor=actor, action="read", entity="notification", entity_id=notification_id)
    session.commit()
    session.refresh(row)
    return row
