"""The state machine of an order: who may move it through which action, reopening, re-prioritising,
opening orders (by hand or for an alarm) and the journal of comments, parts and time."""

import logging
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from cloud import policy
from cloud.core.db import begin_write
from cloud.crud import audit
from cloud.crud.access import read_scope, team_of
from cloud.crud.common import Actor
from cloud.errors import AccessDenied, AlreadyExists, InvalidInput, NotFound
from cloud.models import ACTIVE_STATUSES, Device, User, WorkOrder, utcnow
from cloud.workorders.assignment import auto_assign, checked_technician
from cloud.workorders.batch import Journal, Reads, open_key_of, write_event
from cloud.workorders.sla import (
    end_pending,
    order_calendar,
    priority_of,
    reschedule_own,
    schedule_resolve,
    start_clocks,
)
from cloud.workorders.views import visible_order

logger = logging.getLogger(__name__)


# Which status each action leaves from, and which it leads to ("reopen" leads to assigned or new).
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "assign": (("new", "assigned", "accepted", "in_progress", "pending"), "assigned"),
    "accept": (("assigned",), "accepted"),
    "start": (("accepted",), "in_progress"),
    "pending": (("accepted", "in_progress"), "pending"),
    "resume": (("pending",), "in_progress"),
    "resolve": (("accepted", "in_progress", "pending"), "resolved"),
    "close": (("resolved",), "closed"),
    "reopen": (("resolved",), "assigned"),
    "cancel": (ACTIVE_STATUSES, "cancelled"),
}


def _acting_user(actor: Actor) -> User | None:
    if actor.kind in ("cli", "system"):
        return None
    if actor.user is None or not actor.user.is_active:
        raise AccessDenied("the account is disabled")
    return actor.user


def _writable_order(session: Session, actor: Actor, order_id: int) -> WorkOrder:
    user = _acting_user(actor)
    if user is None:
        order = session.get(WorkOrder, order_id)
        if order is None:
            raise NotFound(f"work order {order_id} not found")
        return order
    order = visible_order(session, user, order_id)
    if policy.is_read_only(user):
        raise AccessDenied(f"the role {user.role} is read-only")
    return order


def _check_role(session: Session, actor: Actor, order: WorkOrder, action: str) -> None:
    user = actor.user
    if user is None:
        return
    if action not in policy.order_actions(user):
        raise AccessDenied(f"the role {user.role} may not {action} a work order")
    if policy.works_own_orders(user) and order.assignee_id != user.id:
        raise AccessDenied(f"work order {order.id} is not assigned to you")
    if policy.admins_one_school(user):
        if order.school_code != user.school_code:
            raise AccessDenied(f"work order {order.id} is not of your school")
        if action == "cancel" and order.reporter_id != user.id:
            raise AccessDenied("a school admin cancels only the faults they reported")


def transition(
    session: Session,
    *,
    actor: Actor,
    order_id: int,
    action: str,
    assignee: str | None = None,
    reason: str | None = None,
    notes: str | None = None,
    now: datetime | None = None,
) -> WorkOrder:
    """Move an order through its lifecycle; AccessDenied if the role may not, InvalidInput if the status may not."""
    begin_write(session)
    now = now or utcnow()
    if action not in TRANSITIONS:
        raise InvalidInput(f"action must be one of {', '.join(TRANSITIONS)}")
    order = _writable_order(session, actor, order_id)
    _check_role(session, actor, order, action)
    sources, target = TRANSITIONS[action]
    if order.status not in sources:
        raise InvalidInput(
            f"work order {order.id} is {order.status}; {action} applies to {', '.join(sources)} orders only"
        )
    previous = order.status
    text = notes
    if action == "assign":
        tech = checked_technician(session, actor, order, assignee)
        if order.status == "pending":
            end_pending(session, order, now)
        order.assignee_id = tech.id
        order.team_id = team_of(session, tech) or order.team_id
        order.assigned_at = now
        text = f"assigned to {tech.username}" + (f": {notes}" if notes else "")
    elif action == "accept":
        if order.assignee_id is None:
            raise InvalidInput(f"work order {order.id} has no assignee to accept it")
        order.accepted_at = now
        if order.own_met is None:
            # A reassigned order keeps the time-to-own its first acceptance achieved.
            order.own_met = order.own_due_at is None or now <= order.own_due_at
    elif action == "pending":
        if not reason:
            raise InvalidInput("pending needs a reason, e.g. waiting for a spare part")
        order.pending_reason = reason
        order.pending_since = now
        text = reason
    elif action == "resume":
        end_pending(session, order, now)
    elif action == "resolve":
        if not notes:
            raise InvalidInput("resolve needs notes: what was found and done")
        end_pending(session, order, now)
        order.resolved_at = now
        order.resolution = notes
        order.resolve_met = order.resolve_due_at is None or now <= order.resolve_due_at
        order.open_key = None
    elif action == "close":
        order.closed_at = now
    elif action == "reopen":
        reopen(session, order, now)
        target = order.status
    elif action == "cancel":
        end_pending(session, order, now)
        order.open_key = None
    if action != "reopen":
        order.status = target
    order.updated_at = now
    write_event(
        session, order, actor=actor.name, kind="status", at=now, from_status=previous, to_status=order.status, text=text
    )
    _flush_open_key(session, order)
    audit.record(
        session,
        actor=actor,
        action=action,
        entity="work_order",
        entity_id=order.id,
        school_code=order.school_code,
        summary={"from": previous, "to": order.status, **({"assignee": assignee} if assignee else {})},
        at=now,
    )
    session.commit()
    session.refresh(order)
    logger.info("work order %s: %s -> %s", order.id, previous, order.status, extra={"order_id": order.id})
    return order


def _flush_open_key(session: Session, order: WorkOrder) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise AlreadyExists(
            f"another order for {order.device_id or order.gateway_id} and fault {order.fault_code} is open"
        ) from exc


def reopen(
    session: Session, order: WorkOrder, now: datetime, reads: Reads | None = None, journal: Journal | None = None
) -> None:
    """Back to work: the same assignee if still active (else auto-assignment), SLA clocks from now."""
    reads = reads or Reads(session)
    other = reads.open_order(order)
    if other is not None:
        raise AlreadyExists(f"order {other} for the same device and fault is open; work on that one")
    order.open_key = open_key_of(order)
    order.reopen_count += 1
    order.resolved_at = None
    order.closed_at = None
    order.resolution = None
    order.verified_by_device_at = None
    order.accepted_at = None
    start_clocks(session, order, now, reads)
    assignee = session.get(User, order.assignee_id) if order.assignee_id is not None else None
    if assignee is not None and assignee.is_active:
        order.status = "assigned"
        order.assigned_at = now
        reads.assigned(assignee.id or 0)
    else:
        order.status = "new"
        order.assignee_id = None
        auto_assign(session, order, now, reads, journal)


def update_levels(
    session: Session,
    *,
    actor: Actor,
    order_id: int,
    impact: str | None,
    urgency: str | None,
    now: datetime | None = None,
) -> WorkOrder:
    """Change an order's impact or urgency; its priority and the deadlines still running follow."""
    begin_write(session)
    now = now or utcnow()
    order = _writable_order(session, actor, order_id)
    if actor.user is not None and not policy.can_manage_work_orders(actor.user):
        raise AccessDenied(f"the role {actor.user.role} may not change an order's priority")
    if order.status not in ACTIVE_STATUSES:
        raise InvalidInput(f"work order {order.id} is {order.status}; only open orders are re-prioritised")
    before = order.priority
    order.impact = impact or order.impact
    order.urgency = urgency or order.urgency
    order.priority = priority_of(order.impact, order.urgency)
    calendar = order_calendar(session, order)
    if order.accepted_at is None:
        reschedule_own(order, calendar)
        order.own_warned = False
    schedule_resolve(order, calendar)
    order.resolve_warned = False
    order.updated_at = now
    write_event(
        session, order, actor=actor.name, kind="priority", at=now, text=f"priority {before} -> {order.priority}"
    )
    audit.record(
        session,
        actor=actor,
        action="prioritise",
        entity="work_order",
        entity_id=order.id,
        school_code=order.school_code,
        summary={"impact": order.impact, "urgency": order.urgency, "priority": [before, order.priority]},
        at=now,
    )
    session.commit()
    session.refresh(order)
    return order


def new_order(
    session: Session,
    *,
    kind: str,
    school_code: str,
    fault_code: str,
    source: str,
    title: str,
    now: datetime,
    device_id: str | None = None,
    gateway_id: str | None = None,
    description: str | None = None,
    impact: str,
    urgency: str,
    reporter_id: int | None = None,
    actor: str,
    reads: Reads | None = None,
    journal: Journal | None = None,
) -> WorkOrder:
    """A new order with its SLA clocks started, auto-assigned if a covering team has a technician."""
    reads = reads or Reads(session)
    journal = journal or Journal(session)
    order = WorkOrder(
        kind=kind,
        device_id=device_id,
        gateway_id=gateway_id,
        school_code=school_code,
        fault_code=fault_code,
        source=source,
        title=title[:200],
        description=description,
        impact=impact,
        urgency=urgency,
        priority=priority_of(impact, urgency),
        reporter_id=reporter_id,
        created_at=now,
        updated_at=now,
        sla_started_at=now,
    )
    order.open_key = open_key_of(order)
    session.add(order)
    if not journal.deferred:
        session.flush()
    start_clocks(session, order, now, reads)
    journal(order, actor=actor, kind="status", at=now, to_status="new", text=description or title)
    auto_assign(session, order, now, reads, journal)
    return order


def report_fault(
    session: Session,
    *,
    actor: Actor,
    device_id: str,
    description: str,
    fault_code: str = "manual",
    impact: str = "medium",
    urgency: str = "medium",
    now: datetime | None = None,
) -> WorkOrder:
    """A person reports a fault on a device (from the console or the QR label's form)."""
    begin_write(session)
    now = now or utcnow()
    user = _acting_user(actor)
    device = session.get(Device, device_id)
    if device is None or (user is not None and not read_scope(session, user).allows_device(device)):
        raise NotFound(f"device {device_id} not found")
    if user is not None and not policy.can_report_faults(user):
        raise AccessDenied(f"the role {user.role} may not report faults; school staff and county admins do")
    existing = session.exec(select(WorkOrder.id).where(WorkOrder.open_key == f"d:{device_id}:{fault_code}")).first()
    if existing is not None:
        raise AlreadyExists(f"work order {existing} for {device_id} and fault {fault_code} is open; comment there")
    order = new_order(
        session,
        kind="device",
        school_code=device.school_code,
        device_id=device_id,
        fault_code=fault_code,
        source="manual",
        title=f"{fault_code} on {device_id}: {description}",
        description=description,
        impact=impact,
        urgency=urgency,
        reporter_id=user.id if user is not None else None,
        now=now,
        actor=actor.name,
    )
    _flush_open_key(session, order)
    audit.record(
        session,
        actor=actor,
        action="report_fault",
        entity="work_order",
        entity_id=order.id,
        school_code=order.school_code,
        summary={"device": device_id, "fault": fault_code, "priority": order.priority},
        at=now,
    )
    session.commit()
    session.refresh(order)
    return order


def add_entry(
    session: Session,
    *,
    actor: Actor,
    order_id: int,
    kind: str,
    text: str | None = None,
    part: str | None = None,
    quantity: int | None = None,
    minutes: int | None = None,
    attachment_id: int | None = None,
    now: datetime | None = None,
) -> WorkOrder:
    """Add a comment, a part used or time spent to an order's journal."""
    begin_write(session)
    now = now or utcnow()
    order = _writable_order(session, actor, order_id)
    user = actor.user
    if kind in ("part", "time") and user is not None and not policy.can_log_work(user):
        raise AccessDenied("parts and time are logged by technicians, their managers and county admins")
    write_event(
        session,
        order,
        actor=actor.name,
        kind=kind,
        at=now,
        text=text,
        part=part,
        quantity=quantity,
        minutes=minutes,
        attachment_id=attachment_id,
    )
    order.updated_at = now
    session.add(order)
    audit.record(
        session,
        actor=actor,
        action=f"add_{kind}",
        entity="work_order",
        entity_id=order.id,
        school_code=order.school_code,
        summary={key: value for key, value in (("part", part), ("quantity", quantity), ("minutes", minutes)) if value},
        at=now,
    )
    session.commit()
    session.refresh(order)
    return order


def writable_order(session: Session, *, actor: Actor, order_id: int) -> WorkOrder:
    """An order the actor may add to (not read-only, within reach)."""
    return _writable_order(session, actor, order_id)
