"""Priorities and SLA clocks: impact x urgency gives the priority, the priority the service hours to own and
to resolve an order, counted on the school's service calendar with pending time left out."""

from datetime import datetime

from sqlmodel import Session

from cloud import calendars
from cloud.errors import InvalidInput
from cloud.models import School, WorkOrder
from cloud.servicetime import Calendar
from cloud.workorders.batch import Reads

LEVELS = ("high", "medium", "low")
# Priority (1 = most urgent) from impact x urgency, after ITIL's matrix.
PRIORITY_MATRIX: dict[tuple[str, str], int] = {
    ("high", "high"): 1,
    ("high", "medium"): 2,
    ("high", "low"): 3,
    ("medium", "high"): 2,
    ("medium", "medium"): 3,
    ("medium", "low"): 4,
    ("low", "high"): 3,
    ("low", "medium"): 4,
    ("low", "low"): 4,
}
# Service hours allowed per priority: (time to own, i.e. until accepted; time to resolve).
SLA_HOURS: dict[int, tuple[float, float]] = {1: (1.0, 4.0), 2: (2.0, 8.0), 3: (4.0, 24.0), 4: (8.0, 40.0)}
# Escalation fires when this share of a deadline's service time has gone by.
WARN_FRACTION = 0.8


def priority_of(impact: str, urgency: str) -> int:
    """The priority (1 highest, 4 lowest) of an impact and an urgency, each high, medium or low."""
    try:
        return PRIORITY_MATRIX[(impact, urgency)]
    except KeyError as exc:
        raise InvalidInput(f"impact and urgency must each be one of {', '.join(LEVELS)}") from exc


def order_calendar(session: Session, order: WorkOrder) -> Calendar:
    """The service calendar the order's SLA clocks run on."""
    school = session.get(School, order.school_code)
    assert school is not None
    return calendars.school_calendar(session, school)


def start_clocks(session: Session, order: WorkOrder, now: datetime, reads: Reads | None = None) -> None:
    """Start both SLA clocks at `now` (creation or reopening)."""
    calendar = reads.calendar(order.school_code) if reads is not None else order_calendar(session, order)
    own_h, resolve_h = SLA_HOURS[order.priority]
    order.sla_started_at = now
    order.pending_service_s = 0.0
    order.own_due_at = calendar.add_service(now, own_h * 3600)
    order.own_warn_at = calendar.add_service(now, own_h * 3600 * WARN_FRACTION)
    order.own_warned = False
    order.own_met = None
    order.resolve_warned = False
    order.resolve_met = None
    schedule_resolve(order, calendar)


def schedule_resolve(order: WorkOrder, calendar: Calendar) -> None:
    """Place the resolve deadline: its service hours, plus the service time spent pending, after the start."""
    _, resolve_h = SLA_HOURS[order.priority]
    start, paused = order.sla_started_at, order.pending_service_s
    order.resolve_due_at = calendar.add_service(start, resolve_h * 3600 + paused)
    order.resolve_warn_at = calendar.add_service(start, resolve_h * 3600 * WARN_FRACTION + paused)


def reschedule_own(order: WorkOrder, calendar: Calendar) -> None:
    """Place the own deadline again, after a change of priority."""
    own_h, _ = SLA_HOURS[order.priority]
    order.own_due_at = calendar.add_service(order.sla_started_at, own_h * 3600)
    order.own_warn_at = calendar.add_service(order.sla_started_at, own_h * 3600 * WARN_FRACTION)


def end_pending(session: Session, order: WorkOrder, now: datetime) -> None:
    """End a pending spell: its service time is added to the pause and the resolve deadline moves on."""
    if order.pending_since is None:
        return
    calendar = order_calendar(session, order)
    order.pending_service_s += calendar.service_seconds(order.pending_since, now)
    order.pending_since = None
    order.pending_reason = None
    schedule_resolve(order, calendar)


def sla_elapsed(session: Session, order: WorkOrder, now: datetime) -> tuple[float, float]:
    """Service seconds on the (own, resolve) clocks at `now`; the resolve clock excludes pending time."""
    calendar = order_calendar(session, order)
    own_end = order.accepted_at or now
    own = calendar.service_seconds(order.sla_started_at, own_end)
    resolve_end = order.resolved_at or now
    paused = order.pending_service_s
    if order.pending_since is not None:
        paused += calendar.service_seconds(order.pending_since, resolve_end)
    return own, calendar.service_seconds(order.sla_started_at, resolve_end) - paused
