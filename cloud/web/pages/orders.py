"""Work order pages: the list, one order, and the actions, comments and photos on it."""

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse
from sqlmodel import Session

from cloud import crud, media, policy, registry, workorders
from cloud.api.deps import RowId, SessionDep
from cloud.api.uploads import read_photo
from cloud.bounds import whole_number
from cloud.crud import Actor
from cloud.errors import InvalidInput, NotFound
from cloud.models import WORK_ORDER_STATUSES
from cloud.web import i18n, views
from cloud.web.pages.common import Page, app_settings, done
from cloud.web.render import WebRoute, render
from cloud.web.session import Csrf, WebActor, WebUser, language

router = APIRouter(route_class=WebRoute, include_in_schema=False)


@router.get("/orders")
def orders_page(
    request: Request,
    user: WebUser,
    session: SessionDep,
    status: Annotated[str, Query(max_length=16)] = "open",
    school: Annotated[str | None, Query(max_length=32)] = None,
    page: Page = 1,
) -> Response:
    """Orders the user may see; open ones sorted by SLA urgency."""
    if status not in ("open", "all", *WORK_ORDER_STATUSES):
        raise InvalidInput(f"unknown status {status}")
    school = school or None
    orders, paging = views.order_page(session, user, status=status, school=school, page=page)
    schools = views.school_zones(session, [o.school_code for o in orders])
    lang = language(request)
    rows = [(order, schools.get(order.school_code), views.due_text(order, lang)) for order in orders]
    many_schools = policy.sees_whole_county(user) or policy.manages_team(user)
    choices = registry.list_schools(session, user=user) if many_schools else []
    return render(
        request,
        "orders.html",
        user,
        rows=rows,
        paging=paging,
        status=status,
        school=school or "",
        statuses=("open", "all", *WORK_ORDER_STATUSES),
        schools=choices,
    )


@router.get("/orders/{order_id}")
def order_page(request: Request, order_id: RowId, user: WebUser, session: SessionDep) -> Response:
    """One order: the device's place, health and history, the journal, and what the user may do next."""
    order = workorders.read_order(session, user=user, order_id=order_id)
    school = registry.get_school(session, code=order.school_code)
    device = None
    if order.device_id is not None:
        try:
            found = registry.get_device(session, user=user, device_id=order.device_id)
        except NotFound:
            found = None
        if found is not None:
            device = views.device_views(session, [found], app_settings(request).gateway_stale_s)[0]
    building, classroom = views.location(session, user, device)
    history, alarms = [], []
    if device is not None:
        history, _ = workorders.list_orders(session, user=user, device_id=device.id, limit=10)
        history = [o for o in history if o.id != order.id]
        alarms, _ = crud.list_alarms(session, user=user, device_id=device.id, limit=10)
    lang = language(request)
    return render(
        request,
        "order.html",
        user,
        order=order,
        school=school,
        tz=school.timezone if school else None,
        device=device,
        building=building,
        classroom=classroom,
        history=history,
        alarms=alarms,
        due=views.due_text(order, lang),
        actions=views.order_actions(user, order),
        technicians=views.assignable_technicians(session, user),
    )


@router.post("/orders/{order_id}/action")
def order_action(
    request: Request,
    order_id: RowId,
    actor: WebActor,
    session: SessionDep,
    _csrf: Csrf,
    action: Annotated[str, Form(max_length=16)],
    reason: Annotated[str, Form(max_length=500)] = "",
    notes: Annotated[str, Form(max_length=4000)] = "",
    assignee: Annotated[str, Form(max_length=64)] = "",
    part: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies defaults per request
    quantity: Annotated[list[str], Form()] = [],  # noqa: B006
    minutes: Annotated[str, Form(max_length=8)] = "",
    photo: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Move an order on; resolving also records the parts used, the time spent and a photo."""
    if action not in workorders.TRANSITIONS:
        raise InvalidInput(f"unknown action {action}")
    if action == "resolve":
        _resolve_extras(request, session, actor, order_id, notes, part, quantity, minutes, photo)
    workorders.transition(
        session,
        actor=actor,
        order_id=order_id,
        action=action,
        assignee=assignee.strip() or None,
        reason=reason.strip() or None,
        notes=notes.strip() or None,
    )
    return done(request, f"/orders/{order_id}", i18n.translate(language(request), "done"))


def _resolve_extras(
    request: Request,
    session: Session,
    actor: Actor,
    order_id: int,
    notes: str,
    parts: list[str],
    quantities: list[str],
    minutes: str,
    photo: UploadFile | None,
) -> None:
    """Parts, time and photo of a resolution, checked in full before any is stored."""
    order = workorders.writable_order(session, actor=actor, order_id=order_id)
    if order.status not in workorders.TRANSITIONS["resolve"][0]:
        raise InvalidInput(f"work order {order_id} is {order.status}; it cannot be resolved now")
    if not notes.strip():
        raise InvalidInput("resolve needs notes: what was found and done")
    used: list[tuple[str, int]] = []
    for index, name in enumerate(parts):
        name = name.strip()
        if not name:
            continue
        raw = quantities[index].strip() if index < len(quantities) else ""
        count = whole_number(raw, high=10_000) if raw else 1
        if count is None or len(name) > 200:
            raise InvalidInput(f"part {name!r}: the quantity must be 1 to 10000 and the name at most 200 characters")
        used.append((name, count))
    spent = None
    if minutes.strip():
        spent = whole_number(minutes, high=24 * 60)
        if spent is None:
            raise InvalidInput("time spent is a number of minutes, 1 to 1440")
    settings = app_settings(request)
    data = read_photo(photo, settings) if photo is not None and photo.filename else None
    for name, count in used:
        workorders.add_entry(session, actor=actor, order_id=order_id, kind="part", part=name, quantity=count)
    if spent is not None:
        workorders.add_entry(session, actor=actor, order_id=order_id, kind="time", minutes=spent)
    if data is not None and photo is not None:
        workorders.add_attachment(
            session,
            actor=actor,
            order_id=order_id,
            filename=photo.filename or "photo",
            data=data,
            media_dir=settings.media_dir,
            max_bytes=settings.max_attachment_bytes,
        )


@router.post("/orders/{order_id}/comment")
def order_comment(
    request: Request,
    order_id: RowId,
    actor: WebActor,
    session: SessionDep,
    _csrf: Csrf,
    text: Annotated[str, Form(min_length=1, max_length=4000)],
) -> Response:
    """Add a comment to the journal."""
    workorders.add_entry(session, actor=actor, order_id=order_id, kind="comment", text=text.strip())
    return done(request, f"/orders/{order_id}", i18n.translate(language(request), "saved"))


@router.get("/orders/{order_id}/photos/{attachment_id}")
def order_photo(
    request: Request, order_id: RowId, attachment_id: RowId, user: WebUser, session: SessionDep
) -> Response:
    """A photo of an order the user may see."""
    attachment = workorders.read_attachment(session, user=user, order_id=order_id, attachment_id=attachment_id)
    path = media.media_path(app_settings(request).media_dir, attachment.path)
    if not path.is_file():
        raise NotFound("the photo's file is missing from storage")
    return FileResponse(path, media_type=attachment.content_type, headers={"Cache-Control": "private, max-age=86400"})
