"""Operating figures per county, school or contractor: online rate, fault rate, MTTR, MTBF, SLA compliance,
smart-blackboard coverage and usage. docs/figures.md gives every formula."""

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import and_, case, distinct, exists, func, or_
from sqlalchemy import select as sql_select
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, select

from cloud.crud.access import COUNTY_ROLES, district_schools, read_scope, team_of
from cloud.crud.teams import school_calendar
from cloud.errors import AccessDenied, InvalidInput, NotFound
from cloud.models import (
    Classroom,
    ContractorTeam,
    Device,
    HealthHourly,
    HealthSample,
    School,
    TeamCoverage,
    TelemetrySample,
    User,
    WorkOrder,
)
from cloud.servicetime import Calendar

# A blackboard counts as used on a school day when it was on at least this long.
USAGE_MIN_H = 0.5
# The cumulative on-hours counter the blackboard controller reports in its telemetry.
USAGE_READING = "usage_h"
COVERAGE_TARGET = 1.0
MAX_DAYS = 366
DEFAULT_DAYS = 30
DEFAULT_TIMEZONE = "Asia/Shanghai"


@dataclass
class Tally:
    """Numerators and denominators of one school's figures; a scope's are the sums of its schools'."""

    devices: int = 0
    device_service_hours: int = 0
    online_device_hours: int = 0
    faulty_devices: int = 0
    failures: int = 0
    operating_hours: float = 0.0
    resolved: int = 0
    repair_hours: float = 0.0
    sla_met: int = 0
    classrooms: int = 0
    covered_classrooms: int = 0
    blackboard_days: int = 0
    used_blackboard_days: int = 0
    blackboard_hours: float = 0.0

    def add(self, other: "Tally") -> None:
        """Add another school's counts to these."""
        for spec in fields(self):
            setattr(self, spec.name, getattr(self, spec.name) + getattr(other, spec.name))


class Figures(BaseModel):
    """The figures of a scope (null where the denominator is zero) and the counts they come from."""

    online_rate: float | None
    fault_rate: float | None
    mttr_h: float | None
    mtbf_h: float | None
    sla_compliance: float | None
    coverage: float | None
    coverage_target: float = COVERAGE_TARGET
    blackboard_usage_rate: float | None
    blackboard_hours_per_day: float | None
    devices: int
    failures: int
    resolved: int
    classrooms: int
    covered_classrooms: int


class SchoolFigures(Figures):
    school_code: str
    school_name: str


class FiguresReport(BaseModel):
    scope: str
    id: str | None
    date_from: date
    date_to: date
    timezone: str
    figures: Figures
    schools: list[SchoolFigures]


def _ratio(numerator: float, denominator: float, digits: int = 4) -> float | None:
    return round(numerator / denominator, digits) if denominator else None


def _figures(tally: Tally) -> dict[str, Any]:
    return {
        "online_rate": _ratio(tally.online_device_hours, tally.device_service_hours),
        "fault_rate": _ratio(tally.faulty_devices, tally.devices),
        "mttr_h": _ratio(tally.repair_hours, tally.resolved, 2),
        "mtbf_h": _ratio(tally.operating_hours, tally.failures, 2),
        "sla_compliance": _ratio(tally.sla_met, tally.resolved),
        "coverage": _ratio(tally.covered_classrooms, tally.classrooms),
        "blackboard_usage_rate": _ratio(tally.used_blackboard_days, tally.blackboard_days),
        "blackboard_hours_per_day": _ratio(tally.blackboard_hours, tally.blackboard_days, 2),
        "devices": tally.devices,
        "failures": tally.failures,
        "resolved": tally.resolved,
        "classrooms": tally.classrooms,
        "covered_classrooms": tally.covered_classrooms,
    }


# ---- scope ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reach:
    """The schools a report covers, and for a contractor the team and the roles it covers per district."""

    schools: list[School]
    team_id: int | None = None
    roles: dict[str | None, frozenset[str]] | None = None

    def device_roles(self, school: School) -> frozenset[str] | None:
        """Device roles counted at `school`; None for every role."""
        if self.roles is None:
            return None
        return self.roles.get(school.district_code, frozenset())


def _reach(session: Session, user: User, scope: str, scope_id: str | None) -> Reach:
    if not user.is_active:
        raise AccessDenied("the account is disabled")
    if scope == "contractor":
        if scope_id is None or not scope_id.isdigit():
            raise InvalidInput("a contractor report needs id, the team's number")
        team = session.get(ContractorTeam, int(scope_id))
        if team is None:
            raise NotFound(f"team {scope_id} not found")
        if user.role == "contractor_manager":
            if team_of(session, user) != team.id:
                raise AccessDenied("a contractor manager sees the figures of their own team")
        elif user.role not in COUNTY_ROLES:
            raise AccessDenied(f"the role {user.role} does not see contractor figures")
        coverage = session.exec(select(TeamCoverage).where(TeamCoverage.team_id == team.id)).all()
        roles: dict[str | None, set[str]] = {}
        for row in coverage:
            roles.setdefault(row.district_code, set()).add(row.device_role)
        if user.role in COUNTY_ROLES and user.district_code is not None:
            roles = {d: r for d, r in roles.items() if d == user.district_code}
        schools = session.exec(
            select(School).where(col(School.district_code).in_(sorted(d for d in roles if d))).order_by(School.code)
        ).all()
        return Reach(list(schools), team.id, {d: frozenset(r) for d, r in roles.items()})
    if user.role not in (*COUNTY_ROLES, "school_admin"):
        raise AccessDenied(f"the role {user.role} sees contractor figures only (scope=contractor)")
    allowed = read_scope(session, user)
    if scope == "school":
        if scope_id is None:
            raise InvalidInput("a school report needs id, the school's code")
        school = session.get(School, scope_id)
        if school is None or not allowed.allows_school(scope_id):
            raise NotFound(f"school {scope_id} not found")
        return Reach([school])
    if scope != "county":
        raise InvalidInput("scope must be county, school or contractor")
    if user.role == "school_admin":
        raise AccessDenied("a school admin sees the figures of their school (scope=school)")
    statement = select(School).order_by(School.code)
    if scope_id is not None:
        if user.district_code not in (None, scope_id):
            raise NotFound(f"district {scope_id} not found")
        statement = statement.where(col(School.code).in_(sorted(district_schools(session, scope_id))))
    elif user.district_code is not None:
        statement = statement.where(col(School.code).in_(sorted(district_schools(session, user.district_code))))
    return Reach(list(session.exec(statement).all()))


# ---- the counts ----------------------------------------------------------------------------------
#
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
    calendars: dict[tuple[str | None, str], Calendar] = {}
    members: dict[tuple[tuple[str | None, str], frozenset[str] | None], list[str]] = {}
    for school in reach.schools:
        key = (school.district_code, school.timezone)
        if key not in calendars:
            calendars[key] = school_calendar(session, school)
        members.setdefault((key, reach.device_roles(school)), []).append(school.code)
    return [_Group(calendars[key], roles, tuple(codes)) for (key, roles), codes in members.items()]


def _device_filter(codes: Sequence[str], roles: frozenset[str] | None, device: Any) -> list[ColumnElement[bool]]:
    """Devices of these schools, of these roles (None: every role)."""
    conditions = [device.c.school_code.in_(list(codes))]
    if roles is not None:
        conditions.append(device.c.role.in_(sorted(roles)))
    return conditions


def _per_school(session: Session, statement: Any) -> dict[str, tuple[Any, ...]]:
    return {row[0]: tuple(row[1:]) for row in session.execute(statement).all()}


def _online_hours(
    session: Session, codes: Sequence[str], roles: frozenset[str] | None, hours: Sequence[datetime]
) -> dict[str, int]:
    """Per school, the (device, service hour) pairs with a health report: an hourly roll-up, or samples
    not rolled up yet. A roll-up is unique per device and hour, so only samples without one are added."""
    if not hours:
        return {}
    device = Device.__table__
    hourly, sample = HealthHourly.__table__, HealthSample.__table__
    rolled_up = sql_select(device.c.school_code, func.count()).select_from(
        hourly.join(device, device.c.id == hourly.c.device_id)
    ).where(hourly.c.hour.in_(list(hours)), *_device_filter(codes, roles, device)).group_by(device.c.school_code)
    counts = {code: int(row[0]) for code, row in _per_school(session, rolled_up).items()}
    pending = (
        sql_select(sample.c.device_id, sample.c.hour)
        .where(
            sample.c.hour.in_(list(hours)),
            ~exists().where(hourly.c.device_id == sample.c.device_id, hourly.c.hour == sample.c.hour),
        )
        .distinct()
        .subquery()
    )
    samples = (
        sql_select(device.c.school_code, func.count())
        .select_from(pending.join(device, device.c.id == pending.c.device_id))
        .where(*_device_filter(codes, roles, device))
        .group_by(device.c.school_code)
    )
    for code, row in _per_school(session, samples).items():
        counts[code] = counts.get(code, 0) + int(row[0])
    return counts


def _usage(session: Session, codes: Sequence[str], timezone: str, days: Sequence[date]) -> dict[str, tuple[float, int]]:
    """Per school, the blackboards' hours on summed over the service days, and the (board, day) pairs used.

    A board's hours on a day are the largest minus the smallest usage counter it reported that local day,
    clamped to 0-24 h: a counter reset (flash wiped) inside the day would otherwise count its whole history.
    """
    if not days:
        return {}
    zone = ZoneInfo(timezone)
    device, telemetry = Device.__table__, TelemetrySample.__table__
    starts = [datetime.combine(day, time(0), zone).astimezone(UTC) for day in days]
    bounds = [(low, low + timedelta(days=1)) for low in starts]
    # The local service day a reading belongs to (null outside them), as the index of that day.
    day_of = case(
        *((and_(telemetry.c.ts >= low, telemetry.c.ts < high), index) for index, (low, high) in enumerate(bounds)),
        else_=None,
    )
    reading = telemetry.c.readings[USAGE_READING].as_float()
    per_day = (
        sql_select(
            device.c.school_code.label("school_code"),
            day_of.label("day"),
            (func.max(reading) - func.min(reading)).label("spread"),
        )
        .select_from(telemetry.join(device, device.c.id == telemetry.c.device_id))
        .where(
            device.c.school_code.in_(list(codes)),
            device.c.role == "blackboard",
            telemetry.c.ts >= bounds[0][0],
            telemetry.c.ts < bounds[-1][1],
        )
        .group_by(device.c.school_code, telemetry.c.device_id, day_of)
        .subquery()
    )
    hours = case((per_day.c.spread > 24.0, 24.0), (per_day.c.spread < 0.0, 0.0), else_=per_day.c.spread)
    statement = (
        sql_select(
            per_day.c.school_code,
            func.sum(hours),
            func.sum(case((hours >= USAGE_MIN_H, 1), else_=0)),
        )
        .where(per_day.c.day.is_not(None), per_day.c.spread.is_not(None))
        .group_by(per_day.c.school_code)
    )
    rows = _per_school(session, statement)
    return {code: (float(total or 0.0), int(used or 0)) for code, (total, used) in rows.items()}


def _order_counts(session: Session, reach: Reach, start: datetime, end: datetime, tallies: dict[str, Tally]) -> None:
    """Failures, faulty devices, resolved orders, repair hours and SLA met, per school."""
    order = WorkOrder.__table__
    codes = [school.code for school in reach.schools]
    team = [order.c.team_id == reach.team_id] if reach.team_id is not None else []
    created = (
        sql_select(order.c.school_code, func.count(), func.count(distinct(order.c.device_id)))
        .where(
            order.c.school_code.in_(codes),
            *team,
            order.c.kind == "device",
            order.c.created_at >= start,
            order.c.created_at < end,
        )
        .group_by(order.c.school_code)
    )
    for code, (failures, faulty) in _per_school(session, created).items():
        tallies[code].failures = int(failures)
        tallies[code].faulty_devices = int(faulty)
    if session.get_bind().dialect.name == "postgresql":
        repair_s = func.extract("epoch", order.c.resolved_at - order.c.sla_started_at)
    else:
        repair_s = (func.julianday(order.c.resolved_at) - func.julianday(order.c.sla_started_at)) * 86400.0
    met = and_(order.c.resolve_met.is_(True), or_(order.c.own_met.is_(None), order.c.own_met.is_(True)))
    resolved = (
        sql_select(order.c.school_code, func.count(), func.sum(repair_s), func.sum(case((met, 1), else_=0)))
        .where(order.c.school_code.in_(codes), *team, order.c.resolved_at >= start, order.c.resolved_at < end)
        .group_by(order.c.school_code)
    )
    for code, (count, seconds, sla_met) in _per_school(session, resolved).items():
        tallies[code].resolved = int(count)
        tallies[code].repair_hours = float(seconds or 0.0) / 3600
        tallies[code].sla_met = int(sla_met or 0)


def _coverage(
    session: Session, codes: Sequence[str], start: datetime, end: datetime, tallies: dict[str, Tally]
) -> None:
    """Classrooms, and those with a working blackboard: bound, heard from in the period, no order open at
    its end."""
    classroom, device, order = Classroom.__table__, Device.__table__, WorkOrder.__table__
    rooms = sql_select(classroom.c.school_code, func.count()).where(classroom.c.school_code.in_(codes))
    for code, (count,) in _per_school(session, rooms.group_by(classroom.c.school_code)).items():
        tallies[code].classrooms = int(count)
    broken = exists().where(
        order.c.device_id == device.c.id,
        order.c.school_code == device.c.school_code,
        order.c.kind == "device",
        order.c.status != "cancelled",
        order.c.created_at < end,
        or_(order.c.resolved_at.is_(None), order.c.resolved_at >= end),
    )
    covered = (
        sql_select(device.c.school_code, func.count(distinct(device.c.classroom_id)))
        .where(
            device.c.school_code.in_(codes),
            device.c.role == "blackboard",
            device.c.classroom_id.is_not(None),
            device.c.last_seen_at >= start,
            ~broken,
        )
        .group_by(device.c.school_code)
    )
    for code, (count,) in _per_school(session, covered).items():
        tallies[code].covered_classrooms = int(count)


def _tallies(
    session: Session, reach: Reach, first: date, last: date, start: datetime, end: datetime
) -> dict[str, Tally]:
    """Each school's counts, by school code."""
    tallies = {school.code: Tally() for school in reach.schools}
    if not tallies:
        return tallies
    device = Device.__table__
    period_h = (end - start).total_seconds() / 3600
    # Groups whose service hours (or days) come out the same share one scan of the health (or usage) rows.
    by_roles: dict[frozenset[str] | None, list[str]] = {}
    by_hours: dict[tuple[tuple[datetime, ...], frozenset[str] | None], list[str]] = {}
    by_days: dict[tuple[str, tuple[date, ...]], list[str]] = {}
    boarded: list[str] = []
    hours_of: dict[str, int] = {}
    days_of: dict[str, int] = {}
    for group in _groups(session, reach):
        hours = tuple(_service_hours(group.calendar, start, end))
        counts_boards = group.roles is None or "blackboard" in group.roles
        days = tuple(group.calendar.service_days(first, last)) if counts_boards else ()
        by_roles.setdefault(group.roles, []).extend(group.codes)
        by_hours.setdefault((hours, group.roles), []).extend(group.codes)
        if counts_boards:
            by_days.setdefault((group.calendar.timezone, days), []).extend(group.codes)
            boarded.extend(group.codes)
        hours_of.update(dict.fromkeys(group.codes, len(hours)))
        days_of.update(dict.fromkeys(group.codes, len(days)))
    for roles, codes in by_roles.items():
        counts = _per_school(
            session,
            sql_select(device.c.school_code, func.count(), func.sum(case((device.c.role == "blackboard", 1), else_=0)))
            .where(*_device_filter(codes, roles, device))
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
        for code, count in _online_hours(session, codes, roles, hours).items():
            tallies[code].online_device_hours = count
    for (timezone, days), codes in by_days.items():
        for code, (used_hours, used_days) in _usage(session, codes, timezone, days).items():
            tallies[code].blackboard_hours, tallies[code].used_blackboard_days = used_hours, used_days
    _order_counts(session, reach, start, end, tallies)
    if boarded:
        _coverage(session, boarded, start, end, tallies)
    return tallies


def figures(
    session: Session,
    *,
    user: User,
    scope: str,
    scope_id: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    today: date | None = None,
) -> FiguresReport:
    """The figures of a county (a district; all of the user's without id), a school or a contractor team,
    over the days from `date_from` to `date_to`, both included, and each school's."""
    reach = _reach(session, user, scope, scope_id)
    zone_name = reach.schools[0].timezone if reach.schools else DEFAULT_TIMEZONE
    zone = ZoneInfo(zone_name)
    today = today or datetime.now(zone).date()
    last = date_to or today
    first = date_from or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise InvalidInput("from must not be after to")
    if (last - first).days >= MAX_DAYS:
        raise InvalidInput(f"a report spans at most {MAX_DAYS} days")
    start = datetime.combine(first, time(0), zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), zone).astimezone(UTC)
    total = Tally()
    per_school = []
    tallies = _tallies(session, reach, first, last, start, end)
    for school in reach.schools:
        tally = tallies[school.code]
        total.add(tally)
        per_school.append(SchoolFigures(school_code=school.code, school_name=school.name, **_figures(tally)))
    return FiguresReport(
        scope=scope,
        id=scope_id,
        date_from=first,
        date_to=last,
        timezone=zone_name,
        figures=Figures(**_figures(total)),
        schools=per_school,
    )


EXPORT_COLUMNS = (
    "school_code",
    "school_name",
    "online_rate",
    "fault_rate",
    "mttr_h",
    "mtbf_h",
    "sla_compliance",
    "coverage",
    "coverage_target",
    "blackboard_usage_rate",
    "blackboard_hours_per_day",
    "devices",
    "failures",
    "resolved",
    "classrooms",
    "covered_classrooms",
)


def export_rows(report: FiguresReport) -> list[list[object]]:
    """The report as a table: a header, a row per school, and the scope's total last."""
    rows: list[list[object]] = [["scope", "id", "from", "to", *EXPORT_COLUMNS]]
    head = [report.scope, report.id or "", report.date_from.isoformat(), report.date_to.isoformat()]
    for school in report.schools:
        values = school.model_dump()
        rows.append([*head, *(values[name] for name in EXPORT_COLUMNS)])
    total = report.figures.model_dump() | {"school_code": "TOTAL", "school_name": ""}
    rows.append([*head, *(total[name] for name in EXPORT_COLUMNS)])
    return rows
