"""A school's devices, one device, its QR label, fault reports and the alarms list."""

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import RedirectResponse

from cloud import crud, policy, registry, workorders
from cloud.api.deps import SessionDep
from cloud.api.uploads import read_photo
from cloud.errors import InvalidInput, NotFound
from cloud.models import ACTIVE_STATUSES, utcnow
from cloud.web import charts, i18n, views
from cloud.web.pages.common import CONSOLE_COMMANDS, Page, app_settings, done
from cloud.web.render import WebRoute, render
from cloud.web.session import Csrf, WebActor, WebUser, get_web_user, language
from protocol import topics

router = APIRouter(route_class=WebRoute, include_in_schema=False)

# Where the API is mounted (cloud.main); the QR label sends non-browser clients there.
API_PREFIX = "/api/v1"

Level = Literal["high", "medium", "low"]


@router.get("/schools/{code}")
def school_page(
    request: Request,
    code: str,
    user: WebUser,
    session: SessionDep,
    presence: Annotated[str, Query(max_length=16)] = "",
    role: Annotated[str, Query(max_length=16)] = "",
    page: Page = 1,
) -> Response:
    """A school's classrooms with their devices' live status, its open orders and recent alarms."""
    school = registry.read_school(session, user=user, code=code)
    devices, _ = registry.list_devices(session, user=user, school_code=code)
    shown = views.device_views(session, devices, app_settings(request).gateway_stale_s)
    counts = {state: sum(1 for d in shown if d.presence == state) for state in ("online", "offline", "unknown")}
    if presence:
        shown = [d for d in shown if d.presence == presence]
    if role:
        shown = [d for d in shown if d.role == role]
    rooms = {room.id: room for room in registry.list_classrooms(session, user=user, school_code=code)}
    buildings = {b.id: b for b in registry.list_buildings(session, user=user, school_code=code)}
    by_room: dict[int | None, list] = {}
    for device in shown:
        by_room.setdefault(device.classroom_id if device.classroom_id in rooms else None, []).append(device)
    room_ids: list[int | None] = [rid for rid in rooms if rid in by_room or not (presence or role)]
    if None in by_room:
        room_ids.append(None)
    paging = views.Paging.of(page, len(room_ids))
    groups = [
        (rooms.get(rid) if rid else None, buildings.get(rooms[rid].building_id) if rid else None, by_room.get(rid, []))
        for rid in room_ids[paging.offset : paging.offset + views.PAGE_SIZE]
    ]
    open_orders, open_total = workorders.list_orders(
        session, user=user, status=ACTIVE_STATUSES, school_code=code, limit=views.PAGE_SIZE
    )
    open_orders.sort(key=views.urgency_key)
    alarms, _ = crud.list_alarms(session, user=user, school_code=code, limit=10)
    open_by_device = {o.device_id: o for o in open_orders if o.device_id}
    return render(
        request,
        "school.html",
        user,
        school=school,
        counts=counts,
        groups=groups,
        paging=paging,
        presence=presence,
        role=role,
        open_orders=open_orders,
        open_total=open_total,
        open_by_device=open_by_device,
        alarms=alarms,
        can_command=policy.can_command_reach(user),
        commands=CONSOLE_COMMANDS,
    )


@router.get("/devices/{device_id}")
def device_page(request: Request, device_id: str, user: WebUser, session: SessionDep, report: int = 0) -> Response:
    """A device: where it is, its live status, latest health and history; the fault report form."""
    found = registry.get_device(session, user=user, device_id=device_id)
    device = views.device_views(session, [found], app_settings(request).gateway_stale_s)[0]
    school = registry.get_school(session, code=device.school_code)
    building, classroom = views.location(session, user, device)
    orders, _ = workorders.list_orders(session, user=user, device_id=device_id, limit=10)
    alarms, _ = crud.list_alarms(session, user=user, device_id=device_id, limit=10)
    since = utcnow() - timedelta(hours=24)
    samples = crud.list_health_samples(session, user=user, device_id=device_id, since=since, limit=500)
    chart = None
    if samples:
        tz = i18n.zone(school.timezone if school else None)
        labels = [s.ts.astimezone(tz).strftime("%H:%M") for s in samples]
        lang = language(request)
        chart = charts.line_chart(
            labels,
            [charts.Series(i18n.translate(lang, "rssi") + " (-dBm)", [-s.rssi if s.rssi else None for s in samples])],
            title=i18n.translate(lang, "rssi"),
        )
    return render(
        request,
        "device.html",
        user,
        device=device,
        school=school,
        tz=school.timezone if school else None,
        building=building,
        classroom=classroom,
        orders=orders,
        alarms=alarms,
        chart=chart,
        report=bool(report),
        can_report=policy.can_report_faults(user),
    )


@router.get("/d/{device_id}")
def device_label(request: Request, device_id: str, session: SessionDep) -> Response:
    """Where a device's QR label leads: for a browser, the device's page opened at the short fault-report
    form (after sign-in); for other clients, the device in the API, as before the console existed."""
    if not topics.is_device_id(device_id):
        raise NotFound(f"{device_id!r} is not a device id")
    if "text/html" not in request.headers.get("accept", ""):
        return RedirectResponse(f"{API_PREFIX}/devices/{device_id}", status_code=307)
    user = get_web_user(request, session)
    registry.get_device(session, user=user, device_id=device_id)
    return RedirectResponse(f"/devices/{device_id}?report=1#report", status_code=303)


@router.post("/devices/{device_id}/report")
def report_fault(
    request: Request,
    device_id: str,
    actor: WebActor,
    session: SessionDep,
    _csrf: Csrf,
    description: Annotated[str, Form(min_length=1, max_length=4000)],
    impact: Annotated[Level, Form()] = "medium",
    urgency: Annotated[Level, Form()] = "medium",
    photo: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Report a fault on the device: opens a work order (with the photo, if one was taken)."""
    settings = app_settings(request)
    data = read_photo(photo, settings) if photo is not None and photo.filename else None
    order = workorders.report_fault(
        session, actor=actor, device_id=device_id, description=description.strip(), impact=impact, urgency=urgency
    )
    assert order.id is not None
    if data is not None and photo is not None:
        workorders.add_attachment(
            session,
            actor=actor,
            order_id=order.id,
            filename=photo.filename or "photo",
            data=data,
            media_dir=settings.media_dir,
            max_bytes=settings.max_attachment_bytes,
        )
    return done(request, f"/orders/{order.id}", i18n.translate(language(request), "reported", id=order.id))


@router.get("/alarms")
def alarms_page(
    request: Request,
    user: WebUser,
    session: SessionDep,
    state: Annotated[str, Query(max_length=8)] = "",
    school: Annotated[str, Query(max_length=32)] = "",
    page: Page = 1,
) -> Response:
    """Alarms of the devices the user may see, newest first."""
    if state not in ("", "raise", "clear"):
        raise InvalidInput("state is raise or clear")
    _, total = crud.list_alarms(session, user=user, school_code=school or None, state=state or None, limit=1)
    paging = views.Paging.of(page, total)
    alarms, _ = crud.list_alarms(
        session, user=user, school_code=school or None, state=state or None, limit=views.PAGE_SIZE, offset=paging.offset
    )
    schools = views.school_zones(session, [a.school_code for a in alarms])
    choices = registry.list_schools(session, user=user) if policy.sees_whole_county(user) else []
    return render(
        request,
        "alarms.html",
        user,
        alarms=alarms,
        schools=schools,
        paging=paging,
        state=state,
        school=school,
        choices=choices,
    )
