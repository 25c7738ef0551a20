"""Service calendars: the hours, weekdays, holidays and make-up school days the SLA clocks run on, a
default one and one per district that wants its own."""

from collections.abc import Iterable, Sequence
from datetime import date, time

from sqlmodel import Session, col, select

from cloud import policy
from cloud.core.db import begin_write
from cloud.crud import audit
from cloud.crud.common import Actor
from cloud.errors import AccessDenied, InvalidInput, NotFound
from cloud.models import District, School, ServiceCalendar, ServiceCalendarPublic, User, utcnow
from cloud.servicetime import Calendar

DEFAULT_CALENDAR_SCOPE = "*"


def _parse_clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _scope_key(scope: str) -> str:
    return DEFAULT_CALENDAR_SCOPE if scope == "default" else scope


def _calendar_view(row: ServiceCalendar, scope: str, inherited: bool) -> ServiceCalendarPublic:
    return ServiceCalendarPublic(
        scope=scope,
        day_start=row.day_start,
        day_end=row.day_end,
        weekdays=sorted(row.weekdays),
        holidays=sorted(date.fromisoformat(day) for day in row.holidays),
        school_days=sorted(date.fromisoformat(day) for day in row.school_days),
        inherited=inherited,
    )


def _calendar_row(session: Session, district_code: str | None) -> tuple[ServiceCalendar, bool]:
    # The district's own row and the default one in one statement: opening an order reads this.
    scopes = [DEFAULT_CALENDAR_SCOPE] if district_code is None else [district_code, DEFAULT_CALENDAR_SCOPE]
    statement = select(ServiceCalendar).where(col(ServiceCalendar.scope).in_(scopes))
    rows = {row.scope: row for row in session.exec(statement)}
    if district_code is not None and district_code in rows:
        return rows[district_code], False
    default = rows.get(DEFAULT_CALENDAR_SCOPE)
    return (default if default is not None else ServiceCalendar(scope=DEFAULT_CALENDAR_SCOPE)), True


def read_calendar(session: Session, *, user: User, scope: str) -> ServiceCalendarPublic:
    """A district's calendar (or the default one, scope "default"); a district without one inherits."""
    if not user.is_active:
        raise AccessDenied("the account is disabled")
    key = _scope_key(scope)
    if key != DEFAULT_CALENDAR_SCOPE and session.get(District, key) is None:
        raise NotFound(f"district {scope} not found")
    if key == DEFAULT_CALENDAR_SCOPE:
        row, _ = _calendar_row(session, None)
        return _calendar_view(row, "default", False)
    row, inherited = _calendar_row(session, key)
    return _calendar_view(row, scope, inherited)


def set_calendar(
    session: Session,
    *,
    actor: Actor,
    scope: str,
    day_start: str,
    day_end: str,
    weekdays: Sequence[int],
    holidays: Sequence[date],
    school_days: Sequence[date],
) -> ServiceCalendarPublic:
    """Set the service hours, holidays and make-up days of a district (or the default calendar).

    Orders already open keep the deadlines they were given; new deadlines follow the new calendar.
    """
    begin_write(session)
    key = _scope_key(scope)
    if actor.kind != "cli":
        user = actor.user
        if user is None or not user.is_active or not policy.can_set_calendars(user):
            raise AccessDenied("only county admins set service calendars")
        if user.district_code is not None and user.district_code != key:
            raise AccessDenied(f"a county admin of {user.district_code} may set only that district's calendar")
    if key != DEFAULT_CALENDAR_SCOPE and session.get(District, key) is None:
        raise NotFound(f"district {scope} not found")
    if _parse_clock(day_end) <= _parse_clock(day_start):
        raise InvalidInput("day_end must be after day_start")
    if not weekdays and not school_days:
        raise InvalidInput("a calendar needs at least one weekday or make-up school day")
    row = session.get(ServiceCalendar, key) or ServiceCalendar(scope=key)
    row.day_start, row.day_end = day_start, day_end
    row.weekdays = sorted(set(weekdays))
    row.holidays = sorted({day.isoformat() for day in holidays})
    row.school_days = sorted({day.isoformat() for day in school_days})
    row.updated_at = utcnow()
    session.add(row)
    audit.record(
        session,
        actor=actor,
        action="set_calendar",
        entity="calendar",
        entity_id=scope,
        district_code=None if key == DEFAULT_CALENDAR_SCOPE else key,
        summary={"hours": [day_start, day_end], "holidays": len(row.holidays), "school_days": len(row.school_days)},
    )
    session.commit()
    return _calendar_view(row, scope, False)


def _calendar(row: ServiceCalendar, timezone: str) -> Calendar:
    return Calendar(
        timezone=timezone,
        day_start=_parse_clock(row.day_start),
        day_end=_parse_clock(row.day_end),
        weekdays=frozenset(row.weekdays),
        holidays=frozenset(date.fromisoformat(day) for day in row.holidays),
        school_days=frozenset(date.fromisoformat(day) for day in row.school_days),
    )


def school_calendar(session: Session, school: School) -> Calendar:
    """The calendar SLA clocks of a school's orders run on, in the school's time zone."""
    row, _ = _calendar_row(session, school.district_code)
    return _calendar(row, school.timezone)


def school_calendars(
    session: Session, places: Iterable[tuple[str | None, str]]
) -> dict[tuple[str | None, str], Calendar]:
    """school_calendar of schools by their (district, time zone), for each of these pairs, from one statement."""
    keys = set(places)
    districts = sorted({district for district, _ in keys if district is not None})
    statement = select(ServiceCalendar).where(col(ServiceCalendar.scope).in_([*districts, DEFAULT_CALENDAR_SCOPE]))
    rows = {row.scope: row for row in session.exec(statement)}
    default = rows.get(DEFAULT_CALENDAR_SCOPE)
    if default is None:
        default = ServiceCalendar(scope=DEFAULT_CALENDAR_SCOPE)
    calendars: dict[tuple[str | None, str], Calendar] = {}
    for district, timezone in keys:
        own = None if district is None else rows.get(district)
        calendars[(district, timezone)] = _calendar(default if own is None else own, timezone)
    return calendars
