"""Operating figures per county, school or contractor: online rate, fault rate, MTTR, MTBF, SLA compliance,
smart-blackboard coverage and usage. docs/figures.md gives every formula."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from operator import itemgetter
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import and_, case, distinct, exists, func, or_, text
from sqlalchemy import select as sql_select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, select

from cloud import policy
from cloud.bounds import whole_number
from cloud.calendars import school_calendars
from cloud.crud.access import district_schools, read_scope, team_of
from cloud.crud.history import ROLLUP_MARK
from cloud.crud.summaries import SummaryState, local_day_bounds, one_of, summary_state, usage_per_day
from cloud.errors import AccessDenied, InvalidInput, NotFound
from cloud.models import (
    MAX_ROW_ID,
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

    @classmethod
    def total(cls, tallies: Sequence["Tally"]) -> "Tally":
        """The sums of these schools' counts, each added up in the schools' order."""
        total = cls()
        for name in _TALLY_FIELDS:
            value = getattr(total, name)
            for tally in tallies:
                value += getattr(tally, name)
            setattr(total, name, value)
        return total


_TALLY_FIELDS = tuple(spec.name for spec in fields(Tally))


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


class _School(NamedTuple):
    """What a report needs of a school."""

    code: str
    name: str
    timezone: str
    district_code: str | None


_SCHOOL_COLUMNS = (col(School.code), col(School.name), col(School.timezone), col(School.district_code))


def _schools(session: Session, statement: Any) -> list[_School]:
    return [_School(*row) for row in session.execute(statement).all()]


@dataclass(frozen=True)
class Reach:
    """The schools a report covers, and for a contractor the team and the roles it covers per district."""

    schools: list[_School]
    team_id: int | None = None
    roles: dict[str | None, frozenset[str]] | None = None
    # The schools are every school there is: counts over all of them need no condition on the school.
    every_school: bool = False

    def device_roles(self, school: _School) -> frozenset[str] | None:
        """Device roles counted at `school`; None for every role."""
        if self.roles is None:
            return None
        return self.roles.get(school.district_code, frozenset())


def _reach(session: Session, user: User, scope: str, scope_id: str | None) -> Reach:
    if not user.is_active:
        raise AccessDenied("the account is disabled")
    if scope == "contractor":
        team_id = whole_number(scope_id or "", high=MAX_ROW_ID)
        if team_id is None:
            raise InvalidInput("a contractor report needs id, the team's number")
        team = session.get(ContractorTeam, team_id)
        if team is None:
            raise NotFound(f"team {scope_id} not found")
        if not policy.can_read_contractor_figures(user):
            raise AccessDenied(f"the role {user.role} does not see contractor figures")
        if policy.manages_team(user) and team_of(session, user) != team.id:
            raise AccessDenied("a contractor manager sees the figures of their own team")
        coverage = session.exec(select(TeamCoverage).where(TeamCoverage.team_id == team.id)).all()
        roles: dict[str | None, set[str]] = {}
        for row in coverage:
            roles.setdefault(row.district_code, set()).add(row.device_role)
        if policy.sees_whole_county(user) and user.district_code is not None:
            roles = {d: r for d, r in roles.items() if d == user.district_code}
        schools = _schools(
            session,
            sql_select(*_SCHOOL_COLUMNS)
            .where(col(School.district_code).in_(sorted(d for d in roles if d)))
            .order_by(School.code),
        )
        return Reach(schools, team.id, {d: frozenset(r) for d, r in roles.items()})
    if not policy.can_read_site_figures(user):
        raise AccessDenied(f"the role {user.role} sees contractor figures only (scope=contractor)")
    allowed = read_scope(session, user)
    if scope == "school":
        if scope_id is None:
            raise InvalidInput("a school report needs id, the school's code")
        school = session.get(School, scope_id)
        if school is None or not allowed.allows_school(scope_id):
            raise NotFound(f"school {scope_id} not found")
        return Reach([_School(school.code, school.name, school.timezone, school.district_code)])
    if scope != "county":
        raise InvalidInput("scope must be county, school or contractor")
    if not policy.can_read_county_figures(user):
        raise AccessDenied("a school admin sees the figures of their school (scope=school)")
    statement = sql_select(*_SCHOOL_COLUMNS).order_by(School.code)
    if scope_id is not None:
        if user.district_code not in (None, scope_id):
            raise NotFound(f"district {scope_id} not found")
        statement = statement.where(col(School.code).in_(sorted(district_schools(session, scope_id))))
    elif user.district_code is not None:
        statement = statement.where(col(School.code).in_(sorted(district_schools(session, user.district_code))))
    else:
        return Reach(_schools(session, statement), every_school=True)
    return Reach(_schools(session, statement))


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
    calendars = school_calendars(session, [(school.district_code, school.timezone) for school in reach.schools])
    members: dict[tuple[tuple[str | None, str], frozenset[str] | None], list[str]] = {}
    for school in reach.schools:
        key = (school.district_code, school.timezone)
        members.setdefault((key, reach.device_roles(school)), []).append(school.code)
    return [_Group(calendars[key], roles, tuple(codes)) for (key, roles), codes in members.items()]


def _in_schools(column: Any, codes: Sequence[str], every: bool) -> list[ColumnElement[bool]]:
    """`column IN codes`; no condition at all when the codes are every school there is (`every`)."""
    return [] if every else [column.in_(list(codes))]


def _device_filter(
    session: Session, codes: Sequence[str], roles: frozenset[str] | None, device: Any, every: bool = False
) -> list[ColumnElement[bool]]:
    """Devices of these schools (`every`: of all schools), of these roles (None: every role)."""
    conditions = [] if every else [one_of(session, device.c.school_code, codes)]
    if roles is not None:
        conditions.append(device.c.role.in_(sorted(roles)))
    return conditions


def _per_school(session: Session, statement: Any) -> dict[str, tuple[Any, ...]]:
    return {row[0]: tuple(row[1:]) for row in session.execute(statement).all()}


def _hours_between(column: Any, hours: Sequence[datetime]) -> list[ColumnElement[bool]]:
    """`column` between the first and the last of `hours`: implied by `column` being one of them, but a range
    lets the planner look up the indexed column's actual bounds, so that hours past the newest row (today's,
    not rolled up yet) are estimated as the few rows they are and not as a whole hour of every device."""
    return [column >= min(hours), column <= max(hours)]


def _online_hours(
    session: Session,
    codes: Sequence[str],
    roles: frozenset[str] | None,
    hours: Sequence[datetime],
    every: bool = False,
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
        .where(
            one_of(session, hourly.c.hour, hours),
            *_hours_between(hourly.c.hour, hours),
            *_device_filter(session, codes, roles, device, every),
        )
        .group_by(device.c.school_code)
    )
    counts = {code: int(row[0]) for code, row in _per_school(session, rolled_up).items()}
    pending = (
        sql_select(sample.c.device_id, sample.c.hour)
        .where(
            one_of(session, sample.c.hour, hours),
            *_hours_between(sample.c.hour, hours),
            ~exists().where(hourly.c.device_id == sample.c.device_id, hourly.c.hour == sample.c.hour),
        )
        .distinct()
        .subquery()
    )
    samples = (
        sql_select(device.c.school_code, func.count())
        .select_from(pending.join(device, device.c.id == pending.c.device_id))
        .where(*_device_filter(session, codes, roles, device, every))
        .group_by(device.c.school_code)
    )
    for code, row in _per_school(session, samples).items():
        counts[code] = counts.get(code, 0) + int(row[0])
    return counts


def _sum_per_school(rows: Iterable[Sequence[Any]]) -> dict[str, tuple[float, int]]:
    """Per school, the sums of (school, day, hours, used) rows given in day order: each school's hours are
    added day by day from 0.0, so that the summaries and the raw history give the same float."""
    hours_of: dict[str, float] = {}
    used_of: dict[str, int] = {}
    for code, _day, hours, used in rows:
        hours_of[code] = hours_of.get(code, 0.0) + float(hours)
        used_of[code] = used_of.get(code, 0) + int(used)
    return {code: (hours, used_of[code]) for code, hours in hours_of.items()}


def _usage(
    session: Session, codes: Sequence[str], timezone: str, days: Sequence[date], every: bool = False
) -> dict[str, tuple[float, int]]:
    """Per school, the blackboards' hours on summed over the service days, and the (board, day) pairs used,
    from the raw usage counters (summaries.usage_per_day has the rule)."""
    usage = usage_per_day(session, codes, timezone, days, every=every)
    return _sum_per_school(
        sorted(((code, day, hours, used) for (code, day), (hours, used) in usage.items()), key=itemgetter(1))
    )


# ---- the counts from the daily summaries -----------------------------------------------------------
#
# For closed days the online hours and the usage come from online_day and usage_day (a few rows per school
# and day instead of a row per device and hour); the current day, and the schools whose devices changed
# since the summaries were built, come from the raw history as above. Both give the same numbers.


def _online_summary(
    session: Session,
    codes: Sequence[str],
    roles: frozenset[str] | None,
    hours: Sequence[datetime],
    every: bool = False,
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
    conditions = [*_in_schools(table.c.school_code, codes, every), table.c.day.in_(sorted(masks))]
    if roles is not None:
        conditions.append(table.c.role.in_(sorted(roles)))
    statement = sql_select(table.c.school_code, func.sum(online)).where(*conditions).group_by(table.c.school_code)
    return {code: int(row[0] or 0) for code, row in _per_school(session, statement).items()}


def _online_pending(
    session: Session,
    codes: Sequence[str],
    roles: frozenset[str] | None,
    hours: Sequence[datetime],
    every: bool = False,
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
            one_of(session, sample.c.hour, hours),
            *_hours_between(sample.c.hour, hours),
            ~exists().where(hourly.c.device_id == sample.c.device_id, hourly.c.hour == sample.c.hour),
        )
        .distinct()
        .subquery()
    )
    statement = (
        sql_select(device.c.school_code, func.count())
        .select_from(pending.join(device, device.c.id == pending.c.device_id))
        .where(*_device_filter(session, codes, roles, device, every))
        .group_by(device.c.school_code)
    )
    return {code: int(row[0]) for code, row in _per_school(session, statement).items()}


def _usage_summary(
    session: Session, codes: Sequence[str], days: Sequence[date], every: bool = False
) -> dict[str, tuple[float, int]]:
    """Per school, the blackboards' hours on and the boards used over these closed days, from the summaries."""
    if not codes or not days:
        return {}
    table = UsageDay.__table__
    conditions = [*_in_schools(table.c.school_code, codes, every), table.c.day.in_(list(days))]
    if session.get_bind().dialect.name == "postgresql":
        # The float8 sum adds its inputs one after the other, here in day order: h1 + h2 + ... + hn, the same
        # float as _usage's 0.0 + h1 + ... + hn once 0.0 is added to it (which only turns a -0.0 into 0.0).
        statement = (
            sql_select(
                table.c.school_code, func.sum(aggregate_order_by(table.c.hours, table.c.day)), func.sum(table.c.used)
            )
            .where(*conditions)
            .group_by(table.c.school_code)
        )
        return {code: (0.0 + float(hours), int(used)) for code, hours, used in session.execute(statement).all()}
    rows = session.execute(
        sql_select(table.c.school_code, table.c.day, table.c.hours, table.c.used)
        .where(*conditions)
        .order_by(table.c.day)
    ).all()
    # Summed in day order in Python, as _usage does, so that both give the same float.
    return _sum_per_school(rows)


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
    every: bool = False,
) -> dict[str, int]:
    fresh = state.fresh(codes) if state is not None else []
    if not fresh or state is None or state.through is None:
        return _online_hours(session, codes, roles, hours, every)
    through = state.online_through or state.through
    fresh_set = set(fresh)
    stale = [code for code in codes if code not in fresh_set]
    every_fresh = every and not stale
    closed = [hour for hour in hours if hour < through]
    live = [hour for hour in hours if hour >= through]
    return _merge(
        _online_hours(session, stale, roles, hours) if stale else {},
        _online_summary(session, fresh, roles, closed, every_fresh),
        _online_pending(session, fresh, roles, closed, every_fresh),
        _online_hours(session, fresh, roles, live, every_fresh),
    )


def _usage_counts(
    session: Session,
    state: SummaryState | None,
    codes: Sequence[str],
    timezone: str,
    days: Sequence[date],
    every: bool = False,
) -> dict[str, tuple[float, int]]:
    fresh = state.fresh(codes) if state is not None else []
    if not fresh or state is None or state.through is None:
        return _usage(session, codes, timezone, days, every)
    through = state.through
    zone = ZoneInfo(timezone)
    fresh_set = set(fresh)
    stale = [code for code in codes if code not in fresh_set]
    every_fresh = every and not stale
    closed = [day for day in days if local_day_bounds(day, zone)[1] <= through]
    live = [day for day in days if local_day_bounds(day, zone)[1] > through]
    summary = _usage_summary(session, fresh, closed, every_fresh)
    current = _usage(session, fresh, timezone, live, every_fresh)
    # Closed days before the current ones, so that the sum runs in day order as in _usage.
    return _merge(_usage(session, stale, timezone, days) if stale else {}, summary, current)


def _order_counts(session: Session, reach: Reach, start: datetime, end: datetime, tallies: dict[str, Tally]) -> None:
    """Failures, faulty devices, resolved orders, repair hours and SLA met, per school."""
    order = WorkOrder.__table__
    codes = [school.code for school in reach.schools]
    schools = _in_schools(order.c.school_code, codes, reach.every_school)
    team = [order.c.team_id == reach.team_id] if reach.team_id is not None else []
    # Orders per (school, device) first, then per school: the devices with orders are counted by hashing,
    # not by sorting each school's orders for a count(DISTINCT).
    per_device = (
        sql_select(order.c.school_code, order.c.device_id, func.count().label("orders"))
        .where(
            *schools,
            *team,
            order.c.kind == "device",
            order.c.created_at >= start,
            order.c.created_at < end,
        )
        .group_by(order.c.school_code, order.c.device_id)
        .subquery()
    )
    created = sql_select(
        per_device.c.school_code, func.sum(per_device.c.orders), func.count(per_device.c.device_id)
    ).group_by(per_device.c.school_code)
    for code, (failures, faulty) in _per_school(session, created).items():
        if code in tallies:
            tallies[code].failures = int(failures)
            tallies[code].faulty_devices = int(faulty)
    if session.get_bind().dialect.name == "postgresql":
        repair_s = func.extract("epoch", order.c.resolved_at - order.c.sla_started_at)
    else:
        repair_s = (func.julianday(order.c.resolved_at) - func.julianday(order.c.sla_started_at)) * 86400.0
    met = and_(order.c.resolve_met.is_(True), or_(order.c.own_met.is_(None), order.c.own_met.is_(True)))
    resolved = (
        sql_select(order.c.school_code, func.count(), func.sum(repair_s), func.sum(case((met, 1), else_=0)))
        .where(*schools, *team, order.c.resolved_at >= start, order.c.resolved_at < end)
        .group_by(order.c.school_code)
    )
    for code, (count, seconds, sla_met) in _per_school(session, resolved).items():
        if code in tallies:
            tallies[code].resolved = int(count)
            tallies[code].repair_hours = float(seconds or 0.0) / 3600
            tallies[code].sla_met = int(sla_met or 0)


def _coverage(
    session: Session,
    codes: Sequence[str],
    start: datetime,
    end: datetime,
    tallies: dict[str, Tally],
    every: bool = False,
) -> None:
    """Classrooms, and those with a working blackboard: bound, heard from in the period, no order open at
    its end."""
    classroom, device, order = Classroom.__table__, Device.__table__, WorkOrder.__table__
    rooms = sql_select(classroom.c.school_code, func.count()).where(*_in_schools(classroom.c.school_code, codes, every))
    for code, (count,) in _per_school(session, rooms.group_by(classroom.c.school_code)).items():
        if code in tallies:
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
            *_in_schools(device.c.school_code, codes, every),
            device.c.role == "blackboard",
            device.c.classroom_id.is_not(None),
            device.c.last_seen_at >= start,
            ~broken,
        )
        .group_by(device.c.school_code)
    )
    for code, (count,) in _per_school(session, covered).items():
        if code in tallies:
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
        counts = _per_school(
            session,
            sql_select(device.c.school_code, func.count(), func.sum(case((device.c.role == "blackboard", 1), else_=0)))
            .where(*_device_filter(session, codes, roles, device, every(codes)))
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
        for code, count in _online_counts(session, state, codes, roles, hours, every(codes)).items():
            if code in tallies:
                tallies[code].online_device_hours = count
    for (timezone, days), codes in by_days.items():
        for code, (used_hours, used_days) in _usage_counts(session, state, codes, timezone, days, every(codes)).items():
            if code in tallies:
                tallies[code].blackboard_hours, tallies[code].used_blackboard_days = used_hours, used_days
    _order_counts(session, reach, start, end, tallies)
    if boarded:
        _coverage(session, boarded, start, end, tallies, every(boarded))
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
    tallies = _tallies(session, reach, first, last, start, end, use_summaries)
    ordered = [tallies[school.code] for school in reach.schools]
    # Validated in one call: pydantic builds the schools' models from plain dicts faster than one call each.
    return FiguresReport.model_validate(
        {
            "scope": scope,
            "id": scope_id,
            "date_from": first,
            "date_to": last,
            "timezone": zone_name,
            "figures": _figures(Tally.total(ordered)),
            "schools": [
                {"school_code": school.code, "school_name": school.name, **_figures(tally)}
                for school, tally in zip(reach.schools, ordered, strict=True)
            ],
        }
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
