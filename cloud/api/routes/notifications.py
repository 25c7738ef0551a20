"""The signed-in user's in-app notifications (SLA escalations)."""

from typing import Annotated

from fastapi import APIRouter, Query

from cloud import notify
from cloud.api.deps import CurrentActor, CurrentUser, Offset, SessionDep
from cloud.api.params import BigRowId
from cloud.models import NotificationPublic

router = APIRouter(prefix="/notifications", tags=["work orders"])


@router.get("")
def list_notifications(
    user: CurrentUser,
    session: SessionDep,
    unread: Annotated[bool, Query(description="only those not read yet")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
) -> list[NotificationPublic]:
    """The user's notifications, newest first."""
    rows = notify.list_notifications(session, user=user, unread_only=unread, limit=limit, offset=offset)
    return [NotificationPublic.model_validate(row) for row in rows]


@router.post("/{notification_id}/read")
def mark_read(notification_id: BigRowId, actor: CurrentActor, session: SessionDep) -> NotificationPublic:
    """Mark a notification read."""
    return NotificationPublic.model_validate(
        notify.mark_read(session, actor=actor, notification_id=notification_id)
    )
