"""Daily summaries of the device history that the county figures read for closed days: devices with a
health report per school, role, UTC day and hour (online_day), and blackboard usage per school and local day
(usage_day). The maintenance run keeps them: it summarises each day once it has ended, again when late
health reports reach a summarised day, and the last few local days of usage in every run. docs/figures.md
explains how the figures combine them with the raw history of the current day."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, any_, bindparam, case, delete, func, literal, or_, true
from sqlalchemy import select as sql_select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, select

from cloud.crud.common import chunks
from cloud.models import (
    DAY_HOURS,
    Device,
    HealthHourly,
    MaintenanceMark,
    OnlineDay,
    School,
    SummaryDevice,
    TelemetrySample,
    UsageDay,
)

SUMMARY_MARK = "figure_summary"
# The online summary also holds the current UTC day's whole hours that were rolled up, up to this mark.
ONLINE_MARK = "figure_online"
# The cumulative on-hours counter the blackboard controller reports in its telemetry.
USAGE_READING = "usage_h"
# A blackboard counts as used on a school day when it was on at least this long.
USAGE_MIN_H = 0.5
# Telemetry carries no roll-up to tell of late arrivals: the usage of this many of the latest closed local
# days is summarised again in every run. Later arrivals are caught when health reports arrive with them.
USAGE_RECHECK_DAYS = 3
# Days summarised per scan of the history, so that a first build over a year stays in bounded memory.
BUILD_DAYS = 7
INSERT_ROWS = 2000


def one_of(session: Session, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN values`; on PostgreSQL `column = ANY(:array)`, a single parameter: with hundreds of bound
    values the generic plan of a prepared statement misses the indexes (a scan of the table instead of a
    0.1 ms probe), while an array parameter keeps them."""
    listed = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, listed, type_=ARRAY(column.type)))
    return column.in_(listed)


def utc_midnight(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def local_day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC start and end of a local day."""
    return (
        datetime.combine(day, time(0), zone).astimezone(UTC),
        datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC),
    )


def summarised_through(session: Session) -> datetime | None:
    """UTC midnight before which the summaries cover every closed day; None before the first build."""
    mark = session.get(MaintenanceMark, SUMMARY_MARK)
    return None if mark is None else mark.hour_mark


@dataclass(frozen=True)
class SummaryState:
    """What a figures request may read from the summaries: days before `through`, of the schools not stale."""

    through: datetime | None
    stale: frozenset[str]
    # online_day covers the hours before this one (the current day's too), at or after `through`.
    online_through: datetime | None = None

    def fresh(self, codes: Iterable[str]) -> list[str]:
        return [code for code in codes if code not in self.stale] if self.through is not None else []


def _changed_devices(session: Session) -> list[tuple[str | None, str | None]]:
    """(school now, school summarised) of devices whose school, role or school time zone changed since the
    summaries were built, that were added, or that were deleted."""
    device, school, snapshot = Device.__table__, School.__table__, SummaryDevice.__table__
    role = func.coalesce(device.c.role, "")
    differs = [
        snapshot.c.device_id.is_(None),
        snapshot.c.school_code != device.c.school_code,
        snapshot.c.role != role,
        snapshot.c.timezone != school.c.timezone,
    ]
    if session.get_bind().dialect.name == "postgresql":
        # Both sides in one pass: a full join of the devices and the snapshot (a device missing on either side
        # has nulls on the other), instead of a join for the changed and added devices and another for the
        # deleted ones. Every request for figures runs this.
        current = device.join(school, school.c.code == device.c.school_code)
        zones = session.execute(sql_select(school.c.timezone).distinct().limit(2)).scalars().all()
        if len(zones) == 1:
            # Every school in the same time zone (the usual county): the snapshot's zone is compared with that
            # one, and the devices need no join with their schools.
            differs[-1] = snapshot.c.timezone != zones[0]
            current = device
        both = current.outerjoin(snapshot, snapshot.c.device_id == device.c.id, full=True)
        statement = sql_select(device.c.school_code, snapshot.c.school_code).select_from(both)
        return [tuple(row) for row in session.execute(statement.where(or_(device.c.id.is_(None), *differs))).all()]
    moved = (
        sql_select(device.c.school_code, snapshot.c.school_code)
        .select_from(
            device.join(school, school.c.code == device.c.school_code).outerjoin(
                snapshot, snapshot.c.device_id == device.c.id
            )
        )
        .where(or_(*differs))
    )
    gone = sql_select(snapshot.c.school_code).where(
        ~sql_select(device.c.id).where(device.c.id == snapshot.c.device_id).exists()
    )
    rows: list[tuple[str | None, str | None]] = [(now, then) for now, then in session.execute(moved).all()]
    rows += [(None, then) for (then,) in session.execute(gone).all()]
    return rows


def summary_state(session: Session) -> SummaryState:
    marks = {
        mark.name: mark
        for mark in session.exec(
            select(MaintenanceMark).where(col(MaintenanceMark.name).in_([SUMMARY_MARK, ONLINE_MARK]))
        )
    }
    summary = marks.get(SUMMARY_MARK)
    through = None if summary is None else summary.hour_mark
    if through is None:
        return SummaryState(None, frozenset())
    stale = {code for pair in _changed_devices(session) for code in pair if code is not None}
    online = marks.get(ONLINE_MARK)
    online_through = through if online is None or online.hour_mark is None else max(through, online.hour_mark)
    return SummaryState(through, frozenset(stale), online_through)


# ---- the raw counts they are built from ---------------------------------------------------------


def usage_per_day(
    session: Session, codes: Sequence[str], timezone: str, days: Sequence[date], *, every: bool = False
) -> dict[tuple[str, date], tuple[float, int]]:
    """Per school and local day, the blackboards' hours on and the boards used, from the usage counters;
    `every`: the codes are every school there is, and the boards need no condition on their school.

    A board's hours on a day are the largest minus the smallest usage counter it reported that local day,
    clamped to 0-24 h: a counter reset (flash wiped) inside the day would otherwise count its whole history.
    """
    if not days or not codes:
        return {}
    zone = ZoneInfo(timezone)
    device, telemetry = Device.__table__, TelemetrySample.__table__
    bounds = [local_day_bounds(day, zone) for day in days]
    # The local day a reading belongs to (null outside them), as the index of that day.
    day_of = case(
        *((and_(telemetry.c.ts >= low, telemetry.c.ts < high), index) for index, (low, high) in enumerate(bounds)),
        else_=None,
    )
    reading = telemetry.c.readings[USAGE_READING].as_float()
    spread = (func.max(reading) - func.min(reading)).label("spread")
    # Read per blackboard through the (device_id, ts) index: telemetry has no index on ts alone (one more
    # would cost every sync write), and a range on ts over the whole table reads all of it.
    in_days = [telemetry.c.device_id == device.c.id, telemetry.c.ts >= min(low for low, _ in bounds)]
    in_days.append(telemetry.c.ts < max(high for _, high in bounds))
    boards = [device.c.role == "blackboard"]
    if not every:
        boards.append(one_of(session, device.c.school_code, codes))
    if session.get_bind().dialect.name == "postgresql":
        # A LATERAL subquery per board makes the plan an index probe per board whatever the estimates. The
        # reading is taken out of each row's JSON once: OFFSET 0 keeps the inner query from being merged into
        # the aggregate, which would parse the JSON once for max and again for min.
        # A single day (today's, in a report) needs no grouping by day: one aggregate per board.
        one_day = len(bounds) == 1
        columns = [reading.label("reading")] if one_day else [day_of.label("day"), reading.label("reading")]
        values = sql_select(*columns).where(*in_days).correlate(device).offset(0).subquery()
        day: ColumnElement[Any] = literal(0) if one_day else values.c.day
        aggregate = sql_select(
            day.label("day"), (func.max(values.c.reading) - func.min(values.c.reading)).label("spread")
        )
        per_day = (aggregate if one_day else aggregate.group_by(values.c.day)).lateral()
        per_board = (
            sql_select(device.c.school_code.label("school_code"), per_day.c.day, per_day.c.spread)
            .select_from(device.join(per_day, true()))
            .where(*boards)
            .subquery()
        )
    else:
        per_board = (
            sql_select(device.c.school_code.label("school_code"), day_of.label("day"), spread)
            .select_from(device.join(telemetry, and_(*in_days)))
            .where(*boards)
            .group_by(device.c.school_code, telemetry.c.device_id, day_of)
            .subquery()
        )
    hours = case((per_board.c.spread > 24.0, 24.0), (per_board.c.spread < 0.0, 0.0), else_=per_board.c.spread)
    statement = (
        sql_select(
            per_board.c.school_code,
            per_board.c.day,
            func.sum(hours),
            func.sum(case((hours >= USAGE_MIN_H, 1), else_=0)),
        )
        .where(per_board.c.day.is_not(None), per_board.c.spread.is_not(None))
        .group_by(per_board.c.school_code, per_board.c.day)
    )
    return {
        (code, days[int(index)]): (float(total or 0.0), int(used or 0))
        for code, index, total, used in session.execute(statement).all()
    }


def _online_per_hour(
    session: Session, start: datetime, end: datetime, schools: Sequence[str] | None
) -> dict[tuple[str, str, date], list[int]]:
    """Per (school, role, UTC day), the devices with an hourly roll-up in each UTC hour of [start, end)."""
    device, hourly = Device.__table__, HealthHourly.__table__
    conditions = [hourly.c.hour >= start, hourly.c.hour < end]
    if schools is not None:
        conditions.append(device.c.school_code.in_(list(schools)))
    role = func.coalesce(device.c.role, "")
    statement = (
        sql_select(device.c.school_code, role, hourly.c.hour, func.count())
        .select_from(hourly.join(device, device.c.id == hourly.c.device_id))
        .where(*conditions)
        .group_by(device.c.school_code, role, hourly.c.hour)
    )
    rows: dict[tuple[str, str, date], list[int]] = {}
    for code, device_role, hour, count in session.execute(statement).all():
        counts = rows.setdefault((code, device_role, hour.date()), [0] * 24)
        counts[hour.hour] = int(count)
    return rows


# ---- building ------------------------------------------------------------------------------------


def _insert(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    for chunk in chunks(rows, INSERT_ROWS):
        session.execute(table.__table__.insert(), list(chunk))


def _build_online(
    session: Session, start: date, end: date, schools: Sequence[str] | None, until: datetime | None = None
) -> int:
    """Summarise the UTC days [start, end) again, of these schools (None: all), from the roll-ups of hours
    before `until` (None: all); returns the days."""
    built = 0
    day = start
    while day < end:
        stop = min(end, day + timedelta(days=BUILD_DAYS))
        conditions = [col(OnlineDay.day) >= day, col(OnlineDay.day) < stop]
        if schools is not None:
            conditions.append(col(OnlineDay.school_code).in_(list(schools)))
        session.execute(delete(OnlineDay).where(*conditions))
        low = datetime.combine(day, time(0), UTC)
        high = datetime.combine(stop, time(0), UTC)
        if until is not None:
            high = min(high, until)
        counts = _online_per_hour(session, low, high, schools)
        _insert(
            session,
            OnlineDay,
            [
                {"school_code": code, "role": role, "day": when, **dict(zip(DAY_HOURS, hours, strict=True))}
                for (code, role, when), hours in counts.items()
            ],
        )
        built += (stop - day).days
        day = stop
    return built


def _build_usage(session: Session, timezone: str, codes: Sequence[str], days: Sequence[date]) -> int:
    """Summarise these local days of these schools (all in `timezone`) again; returns the days."""
    if not codes or not days:
        return 0
    for part in chunks(sorted(set(days)), BUILD_DAYS * 4):
        session.execute(
            delete(UsageDay).where(col(UsageDay.school_code).in_(list(codes)), col(UsageDay.day).in_(list(part)))
        )
        usage = usage_per_day(session, codes, timezone, part)
        _insert(
            session,
            UsageDay,
            [
                {"school_code": code, "day": day, "hours": hours, "used": used}
                for (code, day), (hours, used) in usage.items()
            ],
        )
    return len(set(days))


def _days(first: date, end: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((end - first).days)]


def _first_history(session: Session) -> datetime | None:
    first_hour = session.exec(select(func.min(HealthHourly.hour))).one()
    first_ts = session.exec(select(func.min(TelemetrySample.ts))).one()
    moments = [moment for moment in (first_hour, first_ts) if moment is not None]
    if not moments:
        return None
    return min(moment if moment.tzinfo else moment.replace(tzinfo=UTC) for moment in moments)


def _snapshot(session: Session, schools: Sequence[str] | None) -> None:
    """Record the devices' current school, role and time zone, for these schools (None: all)."""
    device, school = Device.__table__, School.__table__
    condition = [] if schools is None else [SummaryDevice.__table__.c.school_code.in_(list(schools))]
    session.execute(delete(SummaryDevice).where(*condition))
    statement = sql_select(device.c.id, device.c.school_code, func.coalesce(device.c.role, ""), school.c.timezone).join(
        school, school.c.code == device.c.school_code
    )
    if schools is not None:
        statement = statement.where(device.c.school_code.in_(list(schools)))
        # A device that moved in from a school not rebuilt still has its old row.
        session.execute(
            delete(SummaryDevice).where(
                SummaryDevice.__table__.c.device_id.in_(
                    sql_select(device.c.id).where(device.c.school_code.in_(list(schools)))
                )
            )
        )
    rows = [
        {"device_id": device_id, "school_code": code, "role": role, "timezone": zone}
        for device_id, code, role, zone in session.execute(statement).all()
    ]
    _insert(session, SummaryDevice, rows)


def _zones(session: Session, schools: Sequence[str] | None = None) -> dict[str, list[str]]:
    statement = select(School.code, School.timezone)
    if schools is not None:
        statement = statement.where(col(School.code).in_(list(schools)))
    zones: dict[str, list[str]] = {}
    for code, zone in session.exec(statement).all():
        zones.setdefault(zone, []).append(code)
    return zones


def _closed_local_days(zone: ZoneInfo, since: datetime, through: datetime) -> list[date]:
    """Local days that end after `since` and no later than `through`."""
    day = since.astimezone(zone).date()
    days = []
    while True:
        low, high = local_day_bounds(day, zone)
        if high > through:
            return days
        if high > since:
            days.append(day)
        day += timedelta(days=1)


def refresh_summaries(
    session: Session,
    *,
    now: datetime,
    late_hours: Iterable[datetime] = (),
    hourly_cutoff: datetime | None = None,
    telemetry_cutoff: datetime | None = None,
) -> int:
    """Bring the daily summaries up to the start of today (UTC): days that ended since the last run, UTC
    days whose roll-ups changed (`late_hours`), the last few local days of usage, days the pruning cut
    into (the cut-offs, when rows were pruned), and every day of schools whose devices changed.
    Returns the days summarised. The caller commits."""
    through = utc_midnight(now)
    mark = session.get(MaintenanceMark, SUMMARY_MARK)
    built = 0
    if mark is None or mark.hour_mark is None:
        first = _first_history(session)
        session.execute(delete(OnlineDay))
        session.execute(delete(UsageDay))
        if first is not None and first < through:
            built += _build_online(session, first.date(), through.date(), None)
            for timezone, codes in _zones(session).items():
                built += _build_usage(session, timezone, codes, _closed_local_days(ZoneInfo(timezone), first, through))
        _snapshot(session, None)
        mark = mark or MaintenanceMark(name=SUMMARY_MARK)
    else:
        previous = min(mark.hour_mark, through)
        # Schools whose devices changed are summarised again from the start of their history.
        stale = sorted({code for pair in _changed_devices(session) for code in pair if code is not None})
        first = _first_history(session) if stale else None
        if stale and first is not None and first < through:
            built += _build_online(session, first.date(), through.date(), stale)
            for timezone, codes in _zones(session, stale).items():
                built += _build_usage(session, timezone, codes, _closed_local_days(ZoneInfo(timezone), first, through))
        if stale:
            _snapshot(session, stale)
        online_days = set(_days(previous.date(), through.date()))
        online_days |= {hour.date() for hour in late_hours if hour < through}
        if hourly_cutoff is not None and hourly_cutoff < through:
            session.execute(delete(OnlineDay).where(col(OnlineDay.day) < hourly_cutoff.date()))
            online_days.add(hourly_cutoff.date())
        for day in sorted(online_days):
            built += _build_online(session, day, day + timedelta(days=1), None)
        for timezone, codes in _zones(session).items():
            zone = ZoneInfo(timezone)
            days = set(_closed_local_days(zone, min(previous, through - timedelta(days=USAGE_RECHECK_DAYS)), through))
            for hour in late_hours:
                days.update(day for day in (hour.astimezone(zone).date(),) if local_day_bounds(day, zone)[1] <= through)
            if telemetry_cutoff is not None:
                cut = telemetry_cutoff.astimezone(zone).date()
                session.execute(delete(UsageDay).where(col(UsageDay.school_code).in_(codes), col(UsageDay.day) < cut))
                if local_day_bounds(cut, zone)[1] <= through:
                    days.add(cut)
            built += _build_usage(session, timezone, codes, sorted(days))
    # The current UTC day so far: its whole hours are rolled up, and a report then counts only the current
    # hour from the raw history.
    current_hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    _build_online(session, through.date(), through.date() + timedelta(days=1), None, until=current_hour)
    online = session.get(MaintenanceMark, ONLINE_MARK) or MaintenanceMark(name=ONLINE_MARK)
    online.hour_mark = current_hour
    online.ran_at = now
    mark.hour_mark = through
    mark.ran_at = now
    session.add_all([mark, online])
    return built
