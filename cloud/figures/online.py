"""Online device-hours per school: (device, service hour) pairs with a health report, from the raw history or,
for closed days, from the daily summaries."""

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import case, exists, func
from sqlalchemy import select as sql_select
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session

from cloud.crud.history import ROLLUP_MARK
from cloud.figures.common import device_filter, in_schools, merge, per_school
from cloud.figures.summaries import SummaryState, one_of
from cloud.models import Device, HealthHourly, HealthSample, MaintenanceMark, OnlineDay


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
    hourly = HealthHourly.__table__
    rolled_up = (
        sql_select(device.c.school_code, func.count())
        .select_from(hourly.join(device, device.c.id == hourly.c.device_id))
        .where(
            one_of(session, hourly.c.hour, hours),
            *_hours_between(hourly.c.hour, hours),
            *device_filter(session, codes, roles, device, every),
        )
        .group_by(device.c.school_code)
    )
    counts = {code: int(row[0]) for code, row in per_school(session, rolled_up).items()}
    samples = _unrolled_per_school(session, codes, roles, hours, every, [])
    for code, row in per_school(session, samples).items():
        counts[code] = counts.get(code, 0) + int(row[0])
    return counts


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
    conditions = [*in_schools(table.c.school_code, codes, every), table.c.day.in_(sorted(masks))]
    if roles is not None:
        conditions.append(table.c.role.in_(sorted(roles)))
    statement = sql_select(table.c.school_code, func.sum(online)).where(*conditions).group_by(table.c.school_code)
    return {code: int(row[0] or 0) for code, row in per_school(session, statement).items()}


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
    sample = HealthSample.__table__
    received = [] if mark is None or mark.received_mark is None else [sample.c.received_at >= mark.received_mark]
    statement = _unrolled_per_school(session, codes, roles, hours, every, received)
    return {code: int(row[0]) for code, row in per_school(session, statement).items()}


def _unrolled_per_school(
    session: Session,
    codes: Sequence[str],
    roles: frozenset[str] | None,
    hours: Sequence[datetime],
    every: bool,
    received: list[Any],
) -> Any:
    """Per school, a count of the (device, service hour) pairs with samples but no hourly roll-up yet;
    `received` narrows the samples (e.g. to those after the last roll-up run)."""
    device, hourly, sample = Device.__table__, HealthHourly.__table__, HealthSample.__table__
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
    return (
        sql_select(device.c.school_code, func.count())
        .select_from(pending.join(device, device.c.id == pending.c.device_id))
        .where(*device_filter(session, codes, roles, device, every))
        .group_by(device.c.school_code)
    )


def online_counts(
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
    return merge(
        _online_hours(session, stale, roles, hours) if stale else {},
        _online_summary(session, fresh, roles, closed, every_fresh),
        _online_pending(session, fresh, roles, closed, every_fresh),
        _online_hours(session, fresh, roles, live, every_fresh),
    )
