"""Each school's counts for a report, taken for all its schools at once."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import case, func
from sqlalchemy import select as sql_select
from sqlmodel import Session

from cloud.calendars import school_calendars
from cloud.figures.common import Tally, device_filter, per_school
from cloud.figures.online import online_counts
from cloud.figures.orders import classroom_coverage, order_counts
from cloud.figures.scope import Reach
from cloud.figures.summaries import summary_state
from cloud.figures.usage import usage_counts
from cloud.models import Device
from cloud.servicetime import Calendar

# Every count is taken for all the report's schools at once, grouped by school in SQL: a county has
# hundreds of schools, and a few queries per school and day would make a dashboard take seconds.
# Schools that share a calendar (district and time zone) and counted device roles share each query.


def _service_hours(calendar: Calendar, start: datetime, end: datetime) -> list[datetime]:
    """UTC starts of the whole hours inside the calendar's service hours, within [start, end)."""
    hours = []
    day, last = calendar.local_date(start), calendar.local_date(end)
    while day <= last:
        span = calendar.window(day)
        if span is not None:
            hour = span[0].replace(minute=0, second=0, microsecond=0)
            if hour < span[0]:
                hour += timedelta(hours=1)
            while hour + timedelta(hours=1) <= span[1]:
                if start <= hour < end:
                    hours.append(hour)
                hour += timedelta(hours=1)
        day += timedelta(days=1)
    return hours


@dataclass(frozen=True)
class _Group:
    """Schools counted alike: the same calendar and the same device roles (None: every role)."""

    calendar: Calendar
    roles: frozenset[str] | None
    codes: tuple[str, ...]


def _groups(session: Session, reach: Reach) -> list[_Group]:
    calendars = school_calendars(session, [(school.district_code, school.timezone) for school in reach.schools])
    members: dict[tuple[tuple[str | None, str], frozenset[str] | None], list[str]] = {}
    for school in reach.schools:
        key = (school.district_code, school.timezone)
        members.setdefault((key, reach.device_roles(school)), []).append(school.code)
    return [_Group(calendars[key], roles, tuple(codes)) for (key, roles), codes in members.items()]


def school_tallies(
    session: Session,
    reach: Reach,
    first: date,
    last: date,
    start: datetime,
    end: datetime,
    use_summaries: bool = True,
) -> dict[str, Tally]:
    """Each school's counts, by school code; from the raw history alone when not `use_summaries`."""
    tallies = {school.code: Tally() for school in reach.schools}
    if not tallies:
        return tallies
    state = summary_state(session) if use_summaries else None
    device = Device.__table__
    period_h = (end - start).total_seconds() / 3600
    # Groups whose service hours (or days) come out the same share one scan of the health (or usage) rows.
    by_roles: dict[frozenset[str] | None, list[str]] = {}
    by_hours: dict[tuple[tuple[datetime, ...], frozenset[str] | None], list[str]] = {}
    by_days: dict[tuple[str, tuple[date, ...]], list[str]] = {}
    boarded: list[str] = []
    hours_of: dict[str, int] = {}
    days_of: dict[str, int] = {}
    # Districts often share their service hours: each calendar's are worked out once.
    calendar_hours: dict[Calendar, tuple[datetime, ...]] = {}
    calendar_days: dict[Calendar, tuple[date, ...]] = {}
    for group in _groups(session, reach):
        if group.calendar not in calendar_hours:
            calendar_hours[group.calendar] = tuple(_service_hours(group.calendar, start, end))
            calendar_days[group.calendar] = tuple(group.calendar.service_days(first, last))
        hours = calendar_hours[group.calendar]
        counts_boards = group.roles is None or "blackboard" in group.roles
        days = calendar_days[group.calendar] if counts_boards else ()
        by_roles.setdefault(group.roles, []).extend(group.codes)
        by_hours.setdefault((hours, group.roles), []).extend(group.codes)
        if counts_boards:
            by_days.setdefault((group.calendar.timezone, days), []).extend(group.codes)
            boarded.extend(group.codes)
        hours_of.update(dict.fromkeys(group.codes, len(hours)))
        days_of.update(dict.fromkeys(group.codes, len(days)))

    def every(codes: Sequence[str]) -> bool:
        """Whether these (distinct) codes are all the report's schools, and those are every school there is."""
        return reach.every_school and len(codes) == len(tallies)

    for roles, codes in by_roles.items():
        counts = per_school(
            session,
            sql_select(device.c.school_code, func.count(), func.sum(case((device.c.role == "blackboard", 1), else_=0)))
            .where(*device_filter(session, codes, roles, device, every(codes)))
            .group_by(device.c.school_code),
        )
        for code in codes:
            tally = tallies[code]
            count, boards = counts.get(code, (0, 0))
            tally.devices = int(count)
            tally.device_service_hours = tally.devices * hours_of[code]
            tally.blackboard_days = int(boards or 0) * days_of[code]
            tally.operating_hours = tally.devices * period_h
    for (hours, roles), codes in by_hours.items():
        for code, count in online_counts(session, state, codes, roles, hours, every(codes)).items():
            if code in tallies:
                tallies[code].online_device_hours = count
    for (timezone, days), codes in by_days.items():
        for code, (used_hours, used_days) in usage_counts(session, state, codes, timezone, days, every(codes)).items():
            if code in tallies:
                tallies[code].blackboard_hours, tallies[code].used_blackboard_days = used_hours, used_days
    order_counts(session, reach, start, end, tallies)
    if boarded:
        classroom_coverage(session, boarded, start, end, tallies, every(boarded))
    return tallies
