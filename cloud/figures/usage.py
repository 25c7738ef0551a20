"""Blackboard usage per school: hours on and (board, day) pairs used over the service days, from the raw usage
counters or, for closed days, from the daily summaries (online.py tells how the two are combined)."""

from collections.abc import Iterable, Sequence
from datetime import date
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlalchemy import select as sql_select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlmodel import Session

from cloud.figures.common import in_schools, merge
from cloud.figures.summaries import SummaryState, local_day_bounds, usage_per_day
from cloud.models import UsageDay


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


def _usage_summary(
    session: Session, codes: Sequence[str], days: Sequence[date], every: bool = False
) -> dict[str, tuple[float, int]]:
    """Per school, the blackboards' hours on and the boards used over these closed days, from the summaries."""
    if not codes or not days:
        return {}
    table = UsageDay.__table__
    conditions = [*in_schools(table.c.school_code, codes, every), table.c.day.in_(list(days))]
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


def usage_counts(
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
    return merge(_usage(session, stale, timezone, days) if stale else {}, summary, current)
