"""Work orders: listing, the lifecycle's actions, journal entries, photos, and faults reported by staff."""

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile, status
from fastapi.responses import FileResponse

from cloud import media, workorders
from cloud.api.deps import CurrentActor, CurrentUser, Offset, RowId, SessionDep, SettingsDep
from cloud.api.uploads import read_photo
from cloud.models import (
    CommentIn,
    PartIn,
    TimeSpentIn,
    WorkOrderActionIn,
    WorkOrderAttachmentPublic,
    WorkOrderDetail,
    WorkOrderPage,
    WorkOrderStatus,
    WorkOrderUpdate,
)

router = APIRouter(tags=["work orders"])

MAX_PAGE = 1000


@router.get("/work-orders")
def list_work_orders(
    user: CurrentUser,
    session: SessionDep,
    status_: Annotated[list[WorkOrderStatus] | None, Query(alias="status", description="one or more statuses")] = None,
    school: Annotated[str | None, Query(max_length=32)] = None,
    device: Annotated[str | None, Query(max_length=18)] = None,
    assignee: Annotated[str | None, Query(max_length=64, description="the technician's username")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Offset = 0,
) -> WorkOrderPage:
    """Orders the user may see, newest first: a district's for county staff, a school's for its admins,
    their own for technicians, their team's for contractor managers."""
    items, total = workorders.list_orders(
        session,
        user=user,
        status=status_ or (),
        school_code=school,
        device_id=device,
        assignee=assignee,
        limit=limit,
        offset=offset,
    )
    return WorkOrderPage(items=items, total=total)


@router.get("/work-orders/{order_id}")
def get_work_order(order_id: RowId, user: CurrentUser, session: SessionDep) -> WorkOrderDetail:
    """One order with its journal, photos, parts used and time spent."""
    return workorders.read_order(session, user=user, order_id=order_id)


@router.post("/work-orders/{order_id}/actions")
def act_on_work_order(
    order_id: RowId, body: WorkOrderActionIn, actor: CurrentActor, session: SessionDep
) -> WorkOrderDetail:
    """Move the order: assign, accept, start, pending (with a reason), resume, resolve (with notes), close,
    reopen or cancel; each role may take only some of these (docs/work-orders.md)."""
    order = workorders.transition(
        session,
        actor=actor,
        order_id=order_id,
        action=body.action,
        assignee=body.assignee,
        reason=body.reason,
        notes=body.notes,
    )
    return workorders.order_detail(session, order)


@router.patch("/work-orders/{order_id}")
def reprioritise_work_order(
    order_id: RowId, body: WorkOrderUpdate, actor: CurrentActor, session: SessionDep
) -> WorkOrderDetail:
    """Change impact or urgency; the priority and its SLA deadlines follow."""
    order = workorders.update_levels(session, actor=actor, order_id=order_id, impact=body.impact, urgency=body.urgency)
    return workorders.order_detail(session, order)


@router.post("/work-orders/{order_id}/comments", status_code=status.HTTP_201_CREATED)
def comment(order_id: RowId, body: CommentIn, actor: CurrentActor, session: SessionDep) -> WorkOrderDetail:
    """Add a comment."""
    order = workorders.add_entry(session, actor=actor, order_id=order_id, kind="comment", text=body.text)
    return workorders.order_detail(session, order)


@router.post("/work-orders/{order_id}/parts", status_code=status.HTTP_201_CREATED)
def log_part(order_id: RowId, body: PartIn, actor: CurrentActor, session: SessionDep) -> WorkOrderDetail:
    """Record a part used."""
    order = workorders.add_entry(
        session, actor=actor, order_id=order_id, kind="part", part=body.part, quantity=body.quantity
    )
    return workorders.order_detail(session, order)


@router.post("/work-orders/{order_id}/time", status_code=status.HTTP_201_CREATED)
def log_time(order_id: RowId, body: TimeSpentIn, actor: CurrentActor, session: SessionDep) -> WorkOrderDetail:
    """Record time spent, in minutes."""
    order = workorders.add_entry(
        session, actor=actor, order_id=order_id, kind="time", minutes=body.minutes, text=body.note
    )
    return workorders.order_detail(session, order)


@router.post("/work-orders/{order_id}/attachments", status_code=status.HTTP_201_CREATED)
def attach_photo(
    order_id: RowId,
    file: Annotated[UploadFile, File(description="a JPEG, PNG or WebP photo")],
    actor: CurrentActor,
    session: SessionDep,
    settings: SettingsDep,
) -> WorkOrderAttachmentPublic:
    """Attach a photo."""
    workorders.writable_order(session, actor=actor, order_id=order_id)
    data = read_photo(file, settings)
    attachment = workorders.add_attachment(
        session,
        actor=actor,
        order_id=order_id,
        filename=file.filename or "photo",
        data=data,
        media_dir=settings.media_dir,
        max_bytes=settings.max_attachment_bytes,
    )
    return WorkOrderAttachmentPublic.model_validate(attachment)


@router.get(
    "/work-orders/{order_id}/attachments/{attachment_id}",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}},
)
def get_photo(
    order_id: RowId, attachment_id: RowId, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    """A photo of an order the user may see."""
    attachment = workorders.read_attachment(session, user=user, order_id=order_id, attachment_id=attachment_id)
    path = media.media_path(settings.media_dir, attachment.path)
    if not path.is_file():
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="the photo's file is missing from storage")
    return FileResponse(path, media_type=attachment.content_type, filename=attachment.filename)


@router.post("/fault-reports", status_code=status.HTTP_201_CREATED)
def report_fault(
    device_id: Annotated[str, Form(min_length=1, max_length=18, description="the device, e.g. from its QR label")],
    description: Annotated[str, Form(min_length=1, max_length=4000, description="what is wrong")],
    actor: CurrentActor,
    session: SessionDep,
    settings: SettingsDep,
    fault_code: Annotated[str, Form(pattern=r"^[a-z0-9_:-]{1,64}$")] = "manual",
    impact: Annotated[Literal["high", "medium", "low"], Form()] = "medium",
    urgency: Annotated[Literal["high", "medium", "low"], Form()] = "medium",
    photo: Annotated[UploadFile | None, File(description="optional JPEG, PNG or WebP photo")] = None,
) -> WorkOrderDetail:
    """Report a fault by hand (school staff; the QR label's form posts here): opens a work order."""
    data = read_photo(photo, settings) if photo is not None and photo.filename else None
    order = workorders.report_fault(
        session,
        actor=actor,
        device_id=device_id,
        description=description.strip() or description,
        fault_code=fault_code,
        impact=impact,
        urgency=urgency,
    )
    assert order.id is not None
    if data is not None:
        workorders.add_attachment(
            session,
            actor=actor,
            order_id=order.id,
            filename=photo.filename if photo is not None and photo.filename else "photo",
            data=data,
            media_dir=settings.media_dir,
            max_bytes=settings.max_attachment_bytes,
        )
    return workorders.order_detail(session, order)
