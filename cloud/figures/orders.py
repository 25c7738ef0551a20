"""Work-order figures per school: failures, faulty devices, resolved orders, repair hours and SLA met, and the
classrooms with a working blackboard."""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, case, distinct, exists, func, or_
from sqlalchemy import select as sql_select
from sqlmodel import Session

from cloud.figures.common import Tally, in_schools, per_school
from cloud.figures.scope import Reach
from cloud.models import Classroom, Device, WorkOrder


def order_counts(session: Session, reach: Reach, start: datetime, end: datetime, tallies: dict[str, Tally]) -> None:
    """Failures, faulty devices, resolved orders, repair hours and SLA met, per school."""
    order = WorkOrder.__table__
    codes = [school.code for school in reach.schools]
    schools = in_schools(order.c.school_code, codes, reach.every_school)
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
    for code, (failures, faulty) in per_school(session, created).items():
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
    for code, (count, seconds, sla_met) in per_school(session, resolved).items():
        if code in tallies:
            tallies[code].resolved = int(count)
            tallies[code].repair_hours = float(seconds or 0.0) / 3600
            tallies[code].sla_met = int(sla_met or 0)


def classroom_coverage(
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
    rooms = sql_select(classroom.c.school_code, func.count()).where(*in_schools(classroom.c.school_code, codes, every))
    for code, (count,) in per_school(session, rooms.group_by(classroom.c.school_code)).items():
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
            *in_schools(device.c.school_code, codes, every),
            device.c.role == "blackboard",
            device.c.classroom_id.is_not(None),
            device.c.last_seen_at >= start,
            ~broken,
        )
        .group_by(device.c.school_code)
    )
    for code, (count,) in per_school(session, covered).items():
        if code in tallies:
            tallies[code].covered_classrooms = int(count)
