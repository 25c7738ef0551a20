"""Photos of an order: checked, stored on disk, noted in the journal and read back by those who may."""

from datetime import datetime

from sqlmodel import Session

from cloud import media
from cloud.core.db import begin_write
from cloud.crud import audit
from cloud.crud.common import Actor
from cloud.errors import NotFound
from cloud.models import User, WorkOrderAttachment, utcnow
from cloud.workorders.batch import write_event
from cloud.workorders.lifecycle import writable_order
from cloud.workorders.views import visible_order


def add_attachment(
    session: Session,
    *,
    actor: Actor,
    order_id: int,
    filename: str,
    data: bytes,
    media_dir: str,
    max_bytes: int,
    now: datetime | None = None,
) -> WorkOrderAttachment:
    """Attach a photo to an order: checked, stored on disk, and noted in the journal."""
    begin_write(session)
    now = now or utcnow()
    order = writable_order(session, actor=actor, order_id=order_id)
    assert order.id is not None
    relative, content_type, digest = media.store_photo(media_dir, order.id, data, max_bytes=max_bytes)
    try:
        attachment = WorkOrderAttachment(
            order_id=order.id,
            filename=(filename or "photo").replace("/", "_").replace("\\", "_")[:200],
            content_type=content_type,
            size=len(data),
            sha256=digest,
            path=relative,
            uploaded_by=actor.name,
            uploaded_at=now,
        )
        session.add(attachment)
        session.flush()
        write_event(
            session,
            order,
            actor=actor.name,
            kind="attachment",
            at=now,
            text=attachment.filename,
            attachment_id=attachment.id,
        )
        audit.record(
            session,
            actor=actor,
            action="attach",
            entity="work_order",
            entity_id=order.id,
            school_code=order.school_code,
            summary={"file": attachment.filename, "size": len(data), "sha256": digest},
            at=now,
        )
        session.commit()
    except Exception:
        session.rollback()
        media.remove(media_dir, relative)
        raise
    session.refresh(attachment)
    return attachment


def read_attachment(session: Session, *, user: User, order_id: int, attachment_id: int) -> WorkOrderAttachment:
    """A photo of an order `user` may read."""
    visible_order(session, user, order_id)
    attachment = session.get(WorkOrderAttachment, attachment_id)
    if attachment is None or attachment.order_id != order_id:
        raise NotFound(f"attachment {attachment_id} of work order {order_id} not found")
    return attachment
