"""Operating figures per county, school or contractor: online rate, fault rate, MTTR, MTBF, SLA compliance,
smart-blackboard coverage and usage. docs/figures.md gives every formula."""

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import and_, case, distinct, exists, func, or_, text
from sqlalchemy import select as sql_select
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, select

from cloud.crud.access import COUNTY_ROLES, district_schools, read_scope, team_of
from cloud.crud.history import ROLLUP_MARK
from cloud.crud.summaries import SummaryState, local_day_bounds, one_of, summary_state, usage_per_day
from cloud.crud.teams import school_calendar
from cloud.errors import AccessDenied, InvalidInput, NotFound
from cloud.models import (
    Classroom,
    ContractorTeam,
    Device,
    HealthHourly,
    HealthSample,
    MaintenanceMark,
    OnlineDay,
    School,
    TeamCoverage,
    UsageDay,
    User,
    WorkOrder,
)
from cloud.servicetime import Calendar

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


def _device_filter(
    session: Session, codes: Sequence[str], roles: frozenset[str] | None, device: Any
) -> list[ColumnElement[bool]]:
    """Devices of these schools, of these roles (None: every role)."""
    conditions = [one_of(session, device.c.school_code, codes)]
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
    rolled_up = (
        sql_select(device.c.school_code, func.count())
        .select_from(hourly.join(device, device.c.id == hourly.c.device_id))
        .where(one_of(session, hourly.c.hour, hours), *_device_filter(session, codes, roles, device))
        .group_by(device.c.school_code)
    )
    counts = {code: int(row[0]) for code, row in _per_school(session, rolled_up).items()}
    pending = (
        sql_select(sample.c.device_id, sample.c.hour)
        .where(
            one_of(session, sample.c.hour, hours),
            ~exists().where(hourly.c.device_id == sample.c.device_id, hourly.c.hour == sample.c.hour),
        )
        .distinct()
        .subquery()
    )
    samples = (
        sql_select(device.c.school_code, func.count())
        .select_from(pending.join(device, device.c.id == pending.c.device_id))
        .where(*_device_filter(session, codes, roles, device))
        .group_by(device.c.school_code)
    )
    for code, row in _per_school(session, samples).items():
        counts[code] = counts.get(code, 0) + int(row[0])
    return counts


def _usage(session: Session, codes: Sequence[str], timezone: str, days: Sequence[date]) -> dict[str, tuple[float, int]]:
    """Per school, the blackboards' hours on summed over the service days, and the (board, day) pairs used,
    from the raw usage counters (summaries.usage_per_day has the rule)."""
    totals: dict[str, tuple[float, int]] = {}
    for (code, _day), (hours, used) in sorted(usage_per_day(session, codes, timezone, days).items()):
        total, count = totals.get(code, (0.0, 0))
        totals[code] = (total + hours, count + used)
    return totals


# ---- the counts from the daily summaries -----------------------------------------------------------
#
# For closed days the online hours and the usage come from online_day and usage_day (a few rows per school
# and day instead of a row per device and hour); the current day, and the schools whose devices changed
# since the summaries were built, come from the raw history as above. Both give the same numbers.


def _online_summary(
    session: Session, codes: Sequence[str], roles: frozenset[str] | None, hours: Sequence[datetime]
) -> dict[str, int]:
    """Per school, the (device, service hour) pairs with a roll-up, from the daily summaries."""
    if not hours or not codes:
        return {}
    table = OnlineDay.__table__
    masks: dict[date, list[int]] = {}
    for hour in hours:
        moment = hour.astimezone(UTC)
        masks.setdefault(moment.date(), []).append(moment.hour)
    days_of_mask: dict[tuple[int, ...], list[date]] = {}
    for day, indexes in masks.items():
        days_of_mask.setdefault(tuple(sorted(set(indexes))), []).append(day)
    online = case(
        *(
            (table.c.day.in_(days), sum((table.c[f"h{index:02d}"] for index in mask[1:]), table.c[f"h{mask[0]:02d}"]))
            for mask, days in days_of_mask.items()
        ),
        else_=0,
    )
    conditions = [table.c.school_code.in_(list(codes)), table.c.day.in_(sorted(masks))]
    if roles is not None:
        conditions.append(table.c.role.in_(sorted(roles)))
    statement = sql_select(table.c.school_code, func.sum(online)).where(*conditions).group_by(table.c.school_code)
    return {code: int(row[0] or 0) for code, row in _per_school(session, statement).items()}


def _online_pending(
    session: Session, codes: Sequence[str], roles: frozenset[str] | None, hours: Sequence[datetime]
) -> dict[str, int]:
    """Per school, the (device, service hour) pairs of summarised days with samples but no roll-up yet: a
    roll-up run leaves unrolled only samples received after its mark, so these are few."""
    if not hours or not codes:
        return {}
    mark = session.get(MaintenanceMark, ROLLUP_MARK)
    device, hourly, sample = Device.__table__, HealthHourly.__table__, HealthSample.__table__
    received = [] if mark is None or mark.received_mark is None else [sample.c.received_at >= mark.received_mark]
    pending = (
        sql_select(sample.c.device_id, sample.c.hour)
        .where(
            *received,
            sample.c.hour.in_(list(hours)),
            ~exists().where(hourly.c.device_id == sample.c.device_id, hourly.c.hour == sample.c.hour),
        )
        .distinct()
        .subquery()
    )
    statement = (
        sql_select(device.c.school_code, func.count())
        .select_from(pending.join(device, device.c.id == pending.c.device_id))
        .where(*_device_filter(session, codes, roles, device))
        .group_by(device.c.school_code)
    )
    return {code: int(row[0]) for code, row in _per_school(session, statement).items()}


def _usage_summary(session: Session, codes: Sequence[str], days: Sequence[date]) -> dict[str, tuple[float, int]]:
    """Per school, the blackboards' hours on and the boards used over these closed days, from the summaries."""
    if not codes or not days:
        return {}
    table = UsageDay.__table__
    rows = session.execute(
        sql_select(table.c.school_code, table.c.day, table.c.hours, table.c.used).where(
            table.c.school_code.in_(list(codes)), table.c.day.in_(list(days))
        )
    ).all()
    totals: dict[str, tuple[float, int]] = {}
    # Summed in day order in Python, as _usage does, so that both give the same float.
    for code, _day, hours, used in sorted(rows, key=lambda row: (row[0], row[1])):
        total, count = totals.get(code, (0.0, 0))
        totals[code] = (total + float(hours), count + int(used))
    return totals


def _merge(*parts: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        for code, value in part.items():
            if code not in merged:
                merged[code] = value
            elif isinstance(value, tuple):
                merged[code] = tuple(a + b for a, b in zip(merged[code], value, strict=True))
            else:
                merged[code] = merged[code] + value
    return merged


def _online_counts(
    session: Session,
    state: SummaryState | None,
    codes: Sequence[str],
    roles: frozenset[str] | None,
    hours: Sequence[datetime],
) -> dict[str, int]:
    fresh = state.fresh(codes) if state is not None else []
    if not fresh or state is None or state.through is None:
        return _online_hours(session, codes, roles, hours)
    through = state.online_through or state.through
    stale = [code for code in codes if code not in set(fresh)]
    closed = [hour for hour in hours if hour < through]
    live = [hour for hour in hours if hour >= through]
    return _merge(
        _online_hours(session, stale, roles, hours) if stale else {},
        _online_summary(session, fresh, roles, closed),
        _online_pending(session, fresh, roles, closed),
        _online_hours(session, fresh, roles, live),
    )


def _usage_counts(
    session: Session, state: SummaryState | None, codes: Sequence[str], timezone: str, days: Sequence[date]
) -> dict[str, tuple[float, int]]:
    fresh = state.fresh(codes) if state is not None else []
    if not fresh or state is None or state.through is None:
        return _usage(session, codes, timezone, days)
    through = state.through
    zone = ZoneInfo(timezone)
    stale = [code for code in codes if code not in set(fresh)]
    closed = [day for day in days if local_day_bounds(day, zone)[1] <= through]
    live = [day for day in days if local_day_bounds(day, zone)[1] > through]
    summary = _usage_summary(session, fresh, closed)
    current = _usage(session, fresh, timezone, live)
    # Closed days before the current ones, so that the sum runs in day order as in _usage.
    return _merge(_usage(session, stale, timezone, days) if stale else {}, summary, current)


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
            .where(*_device_filter(session, codes, roles, device))
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
        for code, count in _online_counts(session, state, codes, roles, hours).items():
            tallies[code].online_device_hours = count
    for (timezone, days), codes in by_days.items():
        for code, (used_hours, used_days) in _usage_counts(session, state, codes, timezone, days).items():
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
    use_summaries: bool = True,
) -> FiguresReport:
    """The figures of a county (a district; all of the user's without id), a school or a contractor team,
    over the days from `date_from` to `date_to`, both included, and each school's. Closed days are read
    from the daily summaries; `use_summaries=False` counts everything from the raw history instead."""
    if session.get_bind().dialect.name == "postgresql":
        # The counts are index probes of a few ms each, but the estimates of some (unknown rows of the current
        # hour, a probe per blackboard) pass the JIT threshold, and compiling costs 100-250 ms per query.
        session.execute(text("SET LOCAL jit = off"))
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
    tallies = _tallies(session, reach, first, last, start, end, use_summaries)
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
