"""Attendance per class, and the school's roster (personal data, for its own admins)."""

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from pydantic import ValidationError
from sqlmodel import Session

from cloud import crud, policy, registry
from cloud.api.deps import RowId, SessionDep
from cloud.api.uploads import read_upload
from cloud.bounds import Day
from cloud.errors import InvalidInput
from cloud.models import RosterEntryIn, School, User
from cloud.web import i18n, views
from cloud.web.pages.common import Page, app_settings, chosen_classroom, done
from cloud.web.render import WebRoute, render
from cloud.web.session import Csrf, WebActor, WebUser, language

router = APIRouter(route_class=WebRoute, include_in_schema=False)


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
            classroom_id=chosen_classroom(classroom_id),
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
    table = read_upload(file, app_settings(request))
    report = crud.import_roster(session, actor=actor, school_code=school_code, table=table)
    message = i18n.translate(
        language(request), "import_done", created=report.created, updated=report.updated, errors=len(report.errors)
    )
    if report.errors:
        message += ": " + "; ".join(f"{p.row}: {p.message}" for p in report.errors[:5])
    return done(request, "/roster", message)
