"""Operating figures per county, school or contractor: online rate, fault rate, MTTR, MTBF, SLA compliance,
smart-blackboard coverage and usage. docs/figures.md gives every formula."""

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import func, union
from sqlalchemy import select as sql_select
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


def _online_hours(session: Session, device_ids: Sequence[str], start: datetime, end: datetime) -> dict[datetime, int]:
    """Per UTC hour, how many of the devices sent at least one health report."""
    if not device_ids:
        return {}
    heard = union(
        sql_select(col(HealthHourly.device_id), col(HealthHourly.hour)).where(
            col(HealthHourly.device_id).in_(list(device_ids)),
            col(HealthHourly.hour) >= start,
            col(HealthHourly.hour) < end,
        ),
        sql_select(col(HealthSample.device_id), col(HealthSample.hour)).where(
            col(HealthSample.device_id).in_(list(device_ids)),
            col(HealthSample.hour) >= start,
            col(HealthSample.hour) < end,
        ),
    ).subquery()
    rows = session.execute(sql_select(heard.c.hour, func.count(heard.c.device_id)).group_by(heard.c.hour)).all()
    counts: dict[datetime, int] = {}
    for hour, count in rows:
        moment = hour if isinstance(hour, datetime) else datetime.fromisoformat(str(hour))
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        counts[moment] = counts.get(moment, 0) + count
    return counts


def _daily_usage(session: Session, device_ids: Sequence[str], start: datetime, end: datetime) -> dict[str, float]:
    """Hours each blackboard was on between two instants, from its cumulative usage counter."""
    if not device_ids:
        return {}
    reading = col(TelemetrySample.readings)[USAGE_READING].as_float()
    rows = session.execute(
        sql_select(col(TelemetrySample.device_id), func.max(reading), func.min(reading))
        .where(
            col(TelemetrySample.device_id).in_(list(device_ids)),
            col(TelemetrySample.ts) >= start,
            col(TelemetrySample.ts) < end,
        )
        .group_by(col(TelemetrySample.device_id))
    ).all()
    # A counter reset (flash wiped) inside the day would make max - min meaningless beyond a day's length.
    return {
        device_id: min(24.0, max(0.0, float(high) - float(low)))
        for device_id, high, low in rows
        if high is not None and low is not None
    }


def _school_tally(
    session: Session, school: School, reach: Reach, first: date, last: date, start: datetime, end: datetime
) -> Tally:
    tally = Tally()
    calendar = school_calendar(session, school)
    roles = reach.device_roles(school)
    statement = select(Device).where(Device.school_code == school.code)
    if roles is not None:
        statement = statement.where(col(Device.role).in_(sorted(roles)))
    devices = session.exec(statement).all()
    device_ids = [device.id for device in devices]
    tally.devices = len(devices)
    service_hours = _service_hours(calendar, start, end)
    tally.device_service_hours = len(devices) * len(service_hours)
    online = _online_hours(session, device_ids, start, end)
    tally.online_device_hours = sum(online.get(hour, 0) for hour in service_hours)
    tally.operating_hours = len(devices) * (end - start).total_seconds() / 3600

    orders = select(WorkOrder).where(WorkOrder.school_code == school.code)
    if reach.team_id is not None:
        orders = orders.where(WorkOrder.team_id == reach.team_id)
    created = session.exec(
        orders.where(WorkOrder.kind == "device", WorkOrder.created_at >= start, WorkOrder.created_at < end)
    ).all()
    tally.failures = len(created)
    tally.faulty_devices = len({order.device_id for order in created})
    resolved = session.exec(orders.where(col(WorkOrder.resolved_at) >= start, col(WorkOrder.resolved_at) < end)).all()
    tally.resolved = len(resolved)
    tally.repair_hours = sum(
        (order.resolved_at - order.sla_started_at).total_seconds() / 3600 for order in resolved if order.resolved_at
    )
    tally.sla_met = sum(1 for order in resolved if order.resolve_met and order.own_met is not False)

    if roles is None or "blackboard" in roles:
        boards = [device for device in devices if device.role == "blackboard"]
        tally.classrooms = session.exec(
            select(func.count()).select_from(Classroom).where(Classroom.school_code == school.code)
        ).one()
        broken = set(
            session.exec(
                select(WorkOrder.device_id).where(
                    WorkOrder.school_code == school.code,
                    WorkOrder.kind == "device",
                    WorkOrder.status != "cancelled",
                    WorkOrder.created_at < end,
                    (col(WorkOrder.resolved_at).is_(None)) | (col(WorkOrder.resolved_at) >= end),
                )
            ).all()
        )
        tally.covered_classrooms = len(
            {
                board.classroom_id
                for board in boards
                if board.classroom_id is not None
                and board.id not in broken
                and board.last_seen_at is not None
                and start <= board.last_seen_at
            }
        )
        board_ids = [board.id for board in boards]
        for day in calendar.service_days(first, last):
            zone = ZoneInfo(calendar.timezone)
            day_start = datetime.combine(day, time(0), zone).astimezone(UTC)
            usage = _daily_usage(session, board_ids, day_start, day_start + timedelta(days=1))
            tally.blackboard_days += len(board_ids)
            tally.used_blackboard_days += sum(1 for hours in usage.values() if hours >= USAGE_MIN_H)
            tally.blackboard_hours += sum(usage.values())
    return tally


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
    for school in reach.schools:
        tally = _school_tally(session, school, reach, first, last, start, end)
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
