"""The console's pages and form actions.

Every page reads through the same data functions as the API, passing the signed-in user, so tenancy is the
data layer's to enforce: a school admin asking for another school's page gets the same 404 the API gives.
"""

import math
from datetime import date, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from pydantic import ValidationError
from sqlmodel import Session

from cloud import crud, media, policy, registry, workorders
from cloud.api.deps import RowId, SessionDep, client_ip
from cloud.api.params import From, To
from cloud.api.routes import figures as figures_api
from cloud.api.routes.imports import read_upload
from cloud.api.routes.work_orders import read_photo
from cloud.bounds import Day, whole_number
from cloud.core.config import Settings
from cloud.crud import Actor
from cloud.crud import commands as commands_crud
from cloud.errors import AccessDenied, InvalidInput, NotFound
from cloud.figures import report as figures_report
from cloud.models import ACTIVE_STATUSES, MAX_ROW_ID, WORK_ORDER_STATUSES, Role, RosterEntryIn, School, User, utcnow
from cloud.web import charts, i18n, views
from cloud.web.render import STATIC, STATIC_TYPES, WebRoute, render
from cloud.web.session import (
    LANG_COOKIE,
    YEAR_S,
    Csrf,
    WebActor,
    WebUser,
    cookies_secure,
    end_session,
    get_web_user,
    language,
    safe_next,
    session_user,
    start_session,
    wants_json,
)
from protocol import topics

router = APIRouter(route_class=WebRoute, include_in_schema=False)

# Where the API is mounted (cloud.main); the QR label sends non-browser clients there.
API_PREFIX = "/api/v1"

Page = Annotated[int, Query(ge=1, le=100_000)]
Level = Literal["high", "medium", "low"]
HOME_OF_ROLE: dict[str, str] = {
    Role.TECHNICIAN: "/orders",
    Role.CONTRACTOR_MANAGER: "/orders",
    Role.COUNTY_ADMIN: "/county",
    Role.AUDITOR: "/county",
}
# Commands offered on the console; the API takes every command the firmware knows.
CONSOLE_COMMANDS = ("power_off", "power_on", "reboot")


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _home(user: User) -> str:
    if policy.admins_one_school(user) and user.school_code:
        return f"/schools/{user.school_code}"
    return HOME_OF_ROLE.get(user.role, "/orders")


def done(request: Request, location: str, message: str = "") -> Response:
    """After a successful action: JSON for the script (which then follows `location`), else a redirect."""
    if wants_json(request):
        return JSONResponse({"ok": True, "location": location, "message": message})
    return RedirectResponse(location, status_code=303)


def _require_county(user: User) -> None:
    if not policy.sees_whole_county(user):
        raise AccessDenied(f"the county dashboard is for county staff, not the role {user.role}")


# ---- static files, sign-in, language -------------------------------------------------------------


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    """The console's CSS and script, cached by the browser for a year (their URLs carry a version)."""
    path = STATIC / name
    if "/" in name or path.suffix not in STATIC_TYPES or not path.is_file():
        raise NotFound(f"no static file {name}")
    return FileResponse(
        path, media_type=STATIC_TYPES[path.suffix], headers={"Cache-Control": "public, max-age=31536000, immutable"}
    )


@router.get("/")
def home(request: Request, session: SessionDep) -> Response:
    """Each role's start page."""
    user = session_user(request, session)
    if user is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(_home(user), status_code=303)


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    """The sign-in form."""
    return render(request, "login.html", None, next=safe_next(next), failed=False)


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    _csrf: Csrf,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the credentials (throttled, as the API's) and start a session."""
    result = None
    if username and password:
        ip = client_ip(request, _settings(request))
        result = crud.sign_in(session, username=username, password=password, client_ip=ip)
    if result is not None and result.retry_after_s:
        response = render(
            request,
            "login.html",
            None,
            status_code=429,
            next=safe_next(next),
            failed=False,
            throttled_minutes=math.ceil(result.retry_after_s / 60),
            username=username,
        )
        response.headers["Retry-After"] = str(result.retry_after_s)
        return response
    user = result.user if result is not None else None
    if user is None:
        return render(
            request, "login.html", None, status_code=401, next=safe_next(next), failed=True, username=username
        )
    target = safe_next(next)
    response = RedirectResponse(_home(user) if target == "/" else target, status_code=303)
    start_session(request, response, session, user)
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, _csrf: Csrf) -> Response:
    """End the session."""
    response = RedirectResponse("/login", status_code=303)
    end_session(request, response, session)
    return response


@router.get("/lang/{lang}")
def switch_language(request: Request, lang: str, next: str = "/") -> Response:
    """Switch between Chinese and English; remembered in a cookie."""
    response = RedirectResponse(safe_next(next), status_code=303)
    secure = cookies_secure(request.app.state.settings)
    response.set_cookie(LANG_COOKIE, i18n.normalise(lang), max_age=YEAR_S, samesite="lax", secure=secure, path="/")
    return response


@router.get("/live")
def live(
    request: Request,
    user: WebUser,
    session: SessionDep,
    keys: Annotated[str, Query(max_length=8000)] = "",
) -> dict:
    """Current status of what a page shows (devices, orders, commands), polled by the console's script."""
    wanted = [key for key in keys.split(",") if key][: views.LIVE_KEYS]
    return views.live_status(session, user, wanted, language(request), _settings(request).gateway_stale_s)


# ---- work orders ---------------------------------------------------------------------------------


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
    school = session.get(School, order.school_code)
    device = None
    if order.device_id is not None:
        try:
            found = registry.get_device(session, user=user, device_id=order.device_id)
        except NotFound:
            found = None
        if found is not None:
            device = views.device_views(session, [found], _settings(request).gateway_stale_s)[0]
    building, classroom = views.location(session, device)
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
    settings = _settings(request)
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
    path = media.media_path(_settings(request).media_dir, attachment.path)
    if not path.is_file():
        raise NotFound("the photo's file is missing from storage")
    return FileResponse(path, media_type=attachment.content_type, headers={"Cache-Control": "private, max-age=86400"})


# ---- schools, classrooms and devices -------------------------------------------------------------


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
    shown = views.device_views(session, devices, _settings(request).gateway_stale_s)
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
    device = views.device_views(session, [found], _settings(request).gateway_stale_s)[0]
    school = session.get(School, device.school_code)
    building, classroom = views.location(session, device)
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
    settings = _settings(request)
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


# ---- alarms, attendance, roster ------------------------------------------------------------------


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


def _classroom_id(text: str) -> int | None:
    """A classroom chosen in a form: none when left empty; InvalidInput when not a classroom's number."""
    if not text.strip():
        return None
    room = whole_number(text, high=MAX_ROW_ID)
    if room is None:
        raise InvalidInput(f"{text!r} is not a classroom's number")
    return room


def _own_or_chosen_school(session: Session, user: User, school: str) -> School | None:
    if policy.admins_one_school(user):
        return registry.read_school(session, user=user, code=user.school_code or "")
    if school:
        return registry.read_school(session, user=user, code=school)
    return None


@router.get("/attendance")
def attendance_page(
    request: Request,
    user: WebUser,
    session: SessionDep,
    school: Annotated[str, Query(max_length=32)] = "",
    day: Annotated[Day | None, Query()] = None,
) -> Response:
    """Attendance per class on one day of the school's calendar (counts only: no personal data)."""
    chosen = _own_or_chosen_school(session, user, school)
    report = None
    if chosen is not None:
        report = crud.daily_attendance(session, user=user, school_code=chosen.code, day=day)
    choices = registry.list_schools(session, user=user) if policy.sees_whole_county(user) else []
    return render(request, "attendance.html", user, school=chosen, report=report, choices=choices)


@router.get("/roster")
def roster_page(
    request: Request,
    user: WebUser,
    session: SessionDep,
    q: Annotated[str, Query(max_length=64)] = "",
    page: Page = 1,
) -> Response:
    """The school's roster: personal data, for the school's own admins only."""
    school_code = crud.personal_data_school(user, None)
    entries = list(crud.list_roster(session, user=user, school_code=school_code))
    if q:
        needle = q.strip().lower()
        entries = [
            e
            for e in entries
            if needle in e.person_name.lower()
            or needle in (e.class_label or "").lower()
            or needle in (e.person_no or "").lower()
        ]
    paging = views.Paging.of(page, len(entries))
    rooms = registry.list_classrooms(session, user=user, school_code=school_code)
    return render(
        request,
        "roster.html",
        user,
        entries=entries[paging.offset : paging.offset + views.PAGE_SIZE],
        paging=paging,
        q=q,
        rooms=rooms,
        report=None,
    )


@router.post("/roster/add")
def roster_add(
    request: Request,
    actor: WebActor,
    session: SessionDep,
    _csrf: Csrf,
    card_pseudonym: Annotated[str, Form(max_length=128)] = "",
    person_name: Annotated[str, Form(max_length=200)] = "",
    person_no: Annotated[str, Form(max_length=64)] = "",
    class_label: Annotated[str, Form(max_length=64)] = "",
    classroom_id: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    """Add a person's card to the roster."""
    assert actor.user is not None
    school_code = crud.personal_data_school(actor.user, None)
    try:
        entry = RosterEntryIn(
            card_pseudonym=card_pseudonym,
            person_name=person_name,
            person_no=person_no or None,
            class_label=class_label or None,
            classroom_id=_classroom_id(classroom_id),
        )
    except ValidationError as exc:
        raise InvalidInput("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())) from exc
    crud.create_roster_entry(session, actor=actor, school_code=school_code, fields=entry.model_dump())
    return done(request, "/roster", i18n.translate(language(request), "saved"))


@router.post("/roster/{entry_id}/delete")
def roster_delete(request: Request, entry_id: RowId, actor: WebActor, session: SessionDep, _csrf: Csrf) -> Response:
    """Remove a person from the roster."""
    assert actor.user is not None
    school_code = crud.personal_data_school(actor.user, None)
    crud.delete_roster_entry(session, actor=actor, school_code=school_code, entry_id=entry_id)
    return done(request, "/roster", i18n.translate(language(request), "saved"))


@router.post("/roster/import")
def roster_import(
    request: Request,
    actor: WebActor,
    session: SessionDep,
    _csrf: Csrf,
    file: Annotated[UploadFile, File()],
) -> Response:
    """Add or update roster entries from a CSV or XLSX file."""
    assert actor.user is not None
    school_code = crud.personal_data_school(actor.user, None)
    table = read_upload(file, _settings(request))
    report = crud.import_roster(session, actor=actor, school_code=school_code, table=table)
    message = i18n.translate(
        language(request), "import_done", created=report.created, updated=report.updated, errors=len(report.errors)
    )
    if report.errors:
        message += ": " + "; ".join(f"{p.row}: {p.message}" for p in report.errors[:5])
    return done(request, "/roster", message)


# ---- the county ----------------------------------------------------------------------------------


def _period(date_from: date | None, date_to: date | None, session: Session, user: User) -> tuple[date, date]:
    schools = registry.list_schools(session, user=user)
    today = utcnow().astimezone(i18n.zone(schools[0].timezone if schools else None)).date()
    last = date_to or today
    return date_from or last - timedelta(days=figures_report.DEFAULT_DAYS - 1), last


@router.get("/county")
def county_page(
    request: Request,
    user: WebUser,
    session: SessionDep,
    date_from: From = None,
    date_to: To = None,
    page: Page = 1,
) -> Response:
    """The county's figures, their trends, a table per school and the contractors' scorecards."""
    _require_county(user)
    first, last = _period(date_from, date_to, session, user)
    report = figures_report.figures(session, user=user, scope="county", date_from=first, date_to=last)
    lang = language(request)
    paging = views.Paging.of(page, len(report.schools))
    return render(
        request,
        "county.html",
        user,
        report=report,
        charts=views.trend(session, user, last, lang),
        schools=report.schools[paging.offset : paging.offset + views.PAGE_SIZE],
        paging=paging,
        cards=views.scorecards(session, user, first, last),
        first=first,
        last=last,
        trend_days=views.TREND_DAYS,
    )


@router.get("/county/export.{extension}")
def county_export(
    extension: str,
    user: WebUser,
    session: SessionDep,
    date_from: From = None,
    date_to: To = None,
) -> Response:
    """The county's figures as the API exports them, for the dashboard's buttons."""
    _require_county(user)
    if extension == "csv":
        return figures_api.export_csv(user, session, "county", None, date_from, date_to)
    if extension == "xlsx":
        return figures_api.export_xlsx(user, session, "county", None, date_from, date_to)
    raise NotFound(f"no export as .{extension}")


# ---- commands ------------------------------------------------------------------------------------


@router.get("/commands")
def commands_page(request: Request, user: WebUser, session: SessionDep, school: str = "") -> Response:
    """Send a command to a school's or a classroom's devices, and follow the recent ones."""
    if not policy.can_command_reach(user):
        raise AccessDenied(f"the role {user.role} sends commands to single devices of its orders only")
    schools = registry.list_schools(session, user=user)
    chosen = school or (user.school_code or "")
    rooms = registry.list_classrooms(session, user=user, school_code=chosen) if chosen else []
    buildings = {b.id: b for b in registry.list_buildings(session, user=user, school_code=chosen)} if chosen else {}
    batches = commands_crud.list_batches(session, user=user, limit=views.PAGE_SIZE)
    return render(
        request,
        "commands.html",
        user,
        schools=schools,
        school=chosen,
        rooms=rooms,
        buildings=buildings,
        batches=batches,
        commands=CONSOLE_COMMANDS,
    )


@router.post("/commands")
def send_command(
    request: Request,
    actor: WebActor,
    session: SessionDep,
    _csrf: Csrf,
    name: Annotated[str, Form(max_length=32)],
    school: Annotated[str, Form(max_length=32)] = "",
    classroom: Annotated[str, Form(max_length=12)] = "",
    role: Annotated[str, Form(max_length=16)] = "",
    back: Annotated[str, Form(max_length=200)] = "/commands",
) -> Response:
    """Queue a command for every device of a school or classroom (of one role, if chosen)."""
    if name not in CONSOLE_COMMANDS:
        raise InvalidInput(f"the console sends {', '.join(CONSOLE_COMMANDS)}")
    if role not in ("", "sensor", "attendance", "blackboard"):
        raise InvalidInput("role is sensor, attendance or blackboard")
    room = _classroom_id(classroom)
    target: dict = {"classroom": room} if room is not None else {"school": school}
    if room is None and not school:
        raise InvalidInput("choose a school or a classroom")
    if role:
        target["role"] = role
    batch = commands_crud.send_command(session, actor=actor, target=target, name=name, args={})
    return done(request, safe_next(back), i18n.translate(language(request), "command_sent", n=batch.devices))
