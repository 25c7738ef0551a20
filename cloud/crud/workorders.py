"""Work orders: the lifecycle and who may move it, priorities and SLA clocks, auto-assignment, and the
alarms that open, verify and reopen orders. docs/work-orders.md describes the rules for people."""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from cloud import media, policy
from cloud.core.db import begin_write
from cloud.crud import audit
from cloud.crud.access import read_scope, team_of, work_order_condition
from cloud.crud.common import Actor
from cloud.crud.teams import school_calendar
from cloud.errors import AccessDenied, AlreadyExists, InvalidInput, NotFound
from cloud.models import (
    ACTIVE_STATUSES,
    ContractorTeam,
    Device,
    Gateway,
    School,
    TeamCoverage,
    TeamMember,
    User,
    WorkOrder,
    WorkOrderAttachment,
    WorkOrderAttachmentPublic,
    WorkOrderDetail,
    WorkOrderEvent,
    WorkOrderEventPublic,
    WorkOrderPublic,
    utcnow,
)
from cloud.servicetime import Calendar

logger = logging.getLogger(__name__)

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
# Impact and urgency of the faults that open orders by themselves; the part before ":" is looked up.
FAULT_LEVELS: dict[str, tuple[str, str]] = {
    "gateway_offline": ("high", "high"),
    # The gateway can store nothing: its school's taps and alarms wait on the devices until it can.
    "store_unwritable": ("high", "high"),
    "store_quota": ("medium", "high"),
    "display_power_fault": ("medium", "high"),
    "display_no_answer": ("medium", "high"),
    "display_power_mismatch": ("medium", "medium"),
    "reader_fault": ("medium", "high"),
    "device_offline": ("medium", "medium"),
    # A device flooding its topics (the gateway drops its excess): broken firmware or a stolen credential,
    # an equipment fault to look at; the gateway keeps the rest of the school working meanwhile.
    "device_flood": ("medium", "medium"),
    "safe_mode": ("medium", "medium"),
    "config_invalid": ("low", "medium"),
    "config_rejected": ("low", "medium"),
    "sensor_fault": ("low", "medium"),
}
DEFAULT_LEVELS = ("medium", "medium")
GATEWAY_OFFLINE = "gateway_offline"
# Alarms that say a device cannot be heard: during a gateway outage the gateway, not the device, is why.
OFFLINE_CODES = ("device_offline",)
WORKING_STATUSES = ("assigned", "accepted", "in_progress", "pending")
REOPENABLE_STATUSES = ("resolved", "closed")

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


@dataclass(frozen=True)
class FaultPolicy:
    """How alarms become orders: hold before a clear verifies, reopen window, flapping, staleness."""

    verify_hold: timedelta = timedelta(seconds=600)
    reopen_window: timedelta = timedelta(hours=24)
    flap_window: timedelta = timedelta(minutes=30)
    flap_threshold: int = 3
    gateway_stale: timedelta = timedelta(seconds=120)


DEFAULT_POLICY = FaultPolicy()


def priority_of(impact: str, urgency: str) -> int:
    """The priority (1 highest, 4 lowest) of an impact and an urgency, each high, medium or low."""
    try:
        return PRIORITY_MATRIX[(impact, urgency)]
    except KeyError as exc:
        raise InvalidInput(f"impact and urgency must each be one of {', '.join(LEVELS)}") from exc


def fault_levels(code: str) -> tuple[str, str]:
    """Impact and urgency an alarm's fault code is given."""
    return FAULT_LEVELS.get(code.split(":", 1)[0], DEFAULT_LEVELS)


def _open_key(order: WorkOrder) -> str:
    subject = f"d:{order.device_id}" if order.kind == "device" else f"g:{order.gateway_id}"
    return f"{subject}:{order.fault_code}"


def _journal(session: Session, order: WorkOrder, *, actor: str, kind: str, at: datetime, **fields: Any) -> None:
    assert order.id is not None
    session.add(WorkOrderEvent(order_id=order.id, actor=actor[:64], kind=kind, at=at, **fields))


def _calendar(session: Session, order: WorkOrder) -> Calendar:
    school = session.get(School, order.school_code)
    assert school is not None
    return school_calendar(session, school)


class _Reads:
    """What opening, reopening and assigning orders read: schools, calendars, device roles, the teams
    covering a district, their technicians and those technicians' loads.

    Each is read once and kept, so that a sync batch's alarms cost a few statements in all rather than
    several each. A technician's load is counted when first needed and then kept up to date by `assigned`:
    orders this object assigns may not be flushed yet. `orders` (by alarm_key), when given, are all the
    orders not cancelled of the alarms being applied, read at once, and stand in for the per-alarm
    queries; orders opened while applying them are added to it.
    """

    def __init__(self, session: Session, orders: dict[tuple[str, str | None, str], list[WorkOrder]] | None = None):
        self.session = session
        self.orders = orders
        self._schools: dict[str, School | None] = {}
        self._calendars: dict[str, Calendar] = {}
        self._roles: dict[str, str | None] = {}
        self._coverage: dict[str, list[tuple[int, str]]] = {}
        self._technicians: dict[str, list[tuple[int, int, str]]] = {}
        self._loads: dict[int, int] = {}

    def school(self, school_code: str) -> School | None:
        if school_code not in self._schools:
            self._schools[school_code] = self.session.get(School, school_code)
        return self._schools[school_code]

    def calendar(self, school_code: str) -> Calendar:
        calendar = self._calendars.get(school_code)
        if calendar is None:
            school = self.school(school_code)
            assert school is not None
            calendar = self._calendars[school_code] = school_calendar(self.session, school)
        return calendar

    def know_roles(self, roles: Mapping[str, str | None]) -> None:
        """Device roles the caller has read already (in the same transaction)."""
        self._roles.update(roles)

    def prefetch_roles(self, device_ids: Sequence[str]) -> None:
        wanted = sorted({device_id for device_id in device_ids if device_id not in self._roles})
        if not wanted:
            return
        self._roles.update(dict.fromkeys(wanted))
        rows = self.session.exec(select(Device.id, Device.role).where(col(Device.id).in_(wanted))).all()
        self._roles.update({device_id: role for device_id, role in rows})

    def device_role(self, order: WorkOrder) -> str | None:
        if order.kind == "gateway":
            return "gateway"
        if order.device_id is None:
            return None
        self.prefetch_roles([order.device_id])
        return self._roles[order.device_id]

    def covering_teams(self, district_code: str | None, device_role: str | None) -> list[int]:
        """As teams.covering_teams: the teams covering the district for the role (any role for None)."""
        if district_code is None:
            return []
        coverage = self._coverage.get(district_code)
        if coverage is None:
            coverage = self._coverage[district_code] = list(
                self.session.exec(
                    select(TeamCoverage.team_id, TeamCoverage.device_role).where(
                        TeamCoverage.district_code == district_code
                    )
                ).all()
            )
        return sorted({team for team, role in coverage if device_role is None or role == device_role})

    def technicians(self, district_code: str, teams: Sequence[int]) -> list[tuple[int, int, str]]:
        """(user id, team id, username) of the active technicians of `teams`, all teams of a district read
        at once; their loads are read with them."""
        if district_code not in self._technicians:
            covering = self.covering_teams(district_code, None)
            rows = [] if not covering else self.session.exec(
                select(User.id, TeamMember.team_id, User.username)
                .join(TeamMember, col(TeamMember.user_id) == col(User.id))
                .where(
                    col(TeamMember.team_id).in_(covering),
                    col(User.role).in_(sorted(policy.TAKE_ORDERS)),
                    col(User.is_active).is_(True),
                )
            ).all()
            found = [(user_id, team_id, username) for user_id, team_id, username in rows if user_id is not None]
            self._technicians[district_code] = found
            unknown = sorted({user_id for user_id, _, _ in found if user_id not in self._loads})
            if unknown:
                # The count must include what was assigned before it is read and is not flushed yet.
                self.session.flush()
                self._loads.update(dict.fromkeys(unknown, 0))
                self._loads.update(_loads(self.session, unknown))
        wanted = set(teams)
        return [row for row in self._technicians[district_code] if row[1] in wanted]

    def load(self, user_id: int) -> int:
        return self._loads.get(user_id, 0)

    def assigned(self, user_id: int) -> None:
        """An order went to `user_id` and is now one of their working orders."""
        if user_id in self._loads:
            self._loads[user_id] += 1

    def latest_order(self, signal: "FaultSignal") -> WorkOrder | None:
        if self.orders is None:
            return _latest_order(self.session, signal)
        found = self.orders.get(alarm_key(signal))
        # Orders opened by this batch have no id until flushed, and are the newest.
        return max(found, key=lambda order: (order.id is None, order.id or 0)) if found else None

    def open_order(self, order: WorkOrder) -> int | None:
        """The id of the order open for the same device (or gateway) and fault as `order`, if any."""
        key = _open_key(order)
        if self.orders is None:
            return self.session.exec(select(WorkOrder.id).where(WorkOrder.open_key == key)).first()
        subject = order.device_id if order.kind == "device" else order.gateway_id
        for other in self.orders.get((order.kind, subject, order.fault_code), ()):
            if other.open_key == key:
                return other.id
        return None

    def opened(self, order: WorkOrder) -> None:
        if self.orders is not None:
            subject = order.device_id if order.kind == "device" else order.gateway_id
            self.orders.setdefault((order.kind, subject, order.fault_code), []).append(order)


class _Journal:
    """Journal entries written as they come, or (`deferred`) kept until the orders they are about have
    their ids, which new orders get when flushed: a batch's orders are then flushed once, not each."""

    def __init__(self, session: Session, *, deferred: bool = False) -> None:
        self.session = session
        self.deferred = deferred
        self.entries: list[tuple[WorkOrder, dict[str, Any]]] = []

    def __call__(self, order: WorkOrder, *, actor: str, kind: str, at: datetime, **fields: Any) -> None:
        if self.deferred:
            self.entries.append((order, {"actor": actor, "kind": kind, "at": at, **fields}))
        else:
            _journal(self.session, order, actor=actor, kind=kind, at=at, **fields)

    def write(self) -> None:
        """Flush the orders, then add the entries kept, in the order they came."""
        if not self.entries:
            return
        self.session.flush()
        for order, fields in self.entries:
            _journal(self.session, order, **fields)
        self.entries.clear()


# ---- SLA clocks ----------------------------------------------------------------------------------


def start_clocks(session: Session, order: WorkOrder, now: datetime, reads: _Reads | None = None) -> None:
    """Start both SLA clocks at `now` (creation or reopening)."""
    calendar = reads.calendar(order.school_code) if reads is not None else _calendar(session, order)
    own_h, resolve_h = SLA_HOURS[order.priority]
    order.sla_started_at = now
    order.pending_service_s = 0.0
    order.own_due_at = calendar.add_service(now, own_h * 3600)
    order.own_warn_at = calendar.add_service(now, own_h * 3600 * WARN_FRACTION)
    order.own_warned = False
    order.own_met = None
    order.resolve_warned = False
    order.resolve_met = None
    _schedule_resolve(order, calendar)


def _schedule_resolve(order: WorkOrder, calendar: Calendar) -> None:
    """Place the resolve deadline: its service hours, plus the service time spent pending, after the start."""
    _, resolve_h = SLA_HOURS[order.priority]
    start, paused = order.sla_started_at, order.pending_service_s
    order.resolve_due_at = calendar.add_service(start, resolve_h * 3600 + paused)
    order.resolve_warn_at = calendar.add_service(start, resolve_h * 3600 * WARN_FRACTION + paused)


def _reschedule_own(order: WorkOrder, calendar: Calendar) -> None:
    own_h, _ = SLA_HOURS[order.priority]
    order.own_due_at = calendar.add_service(order.sla_started_at, own_h * 3600)
    order.own_warn_at = calendar.add_service(order.sla_started_at, own_h * 3600 * WARN_FRACTION)


def _end_pending(session: Session, order: WorkOrder, now: datetime) -> None:
    if order.pending_since is None:
        return
    calendar = _calendar(session, order)
    order.pending_service_s += calendar.service_seconds(order.pending_since, now)
    order.pending_since = None
    order.pending_reason = None
    _schedule_resolve(order, calendar)


def sla_elapsed(session: Session, order: WorkOrder, now: datetime) -> tuple[float, float]:
    """Service seconds on the (own, resolve) clocks at `now`; the resolve clock excludes pending time."""
    calendar = _calendar(session, order)
    own_end = order.accepted_at or now
    own = calendar.service_seconds(order.sla_started_at, own_end)
    resolve_end = order.resolved_at or now
    paused = order.pending_service_s
    if order.pending_since is not None:
        paused += calendar.service_seconds(order.pending_since, resolve_end)
    return own, calendar.service_seconds(order.sla_started_at, resolve_end) - paused


# ---- assignment ----------------------------------------------------------------------------------


def _loads(session: Session, user_ids: Sequence[int]) -> dict[int, int]:
    rows = session.exec(
        select(WorkOrder.assignee_id, func.count())
        .where(col(WorkOrder.assignee_id).in_(list(user_ids)), col(WorkOrder.status).in_(WORKING_STATUSES))
        .group_by(col(WorkOrder.assignee_id))
    ).all()
    return {user_id: count for user_id, count in rows if user_id is not None}


def auto_assign(
    session: Session, order: WorkOrder, now: datetime, reads: _Reads | None = None, journal: _Journal | None = None
) -> None:
    """Give the order to the least loaded active technician of a team covering its school and device role."""
    reads = reads or _Reads(session)
    journal = journal or _Journal(session)
    school = reads.school(order.school_code)
    district_code = school.district_code if school else None
    teams = reads.covering_teams(district_code, reads.device_role(order))
    if not teams:
        return
    assert district_code is not None
    technicians = reads.technicians(district_code, teams)
    order.team_id = teams[0]
    if not technicians:
        return
    user_id, team_id, username = min(technicians, key=lambda row: (reads.load(row[0]), row[0]))
    previous = order.status
    order.team_id = team_id
    order.assignee_id = user_id
    order.assigned_at = now
    order.status = "assigned"
    reads.assigned(user_id)
    journal(
        order,
        actor="system",
        kind="status",
        at=now,
        from_status=previous,
        to_status="assigned",
        text=f"auto-assigned to {username}",
    )


# ---- reading -------------------------------------------------------------------------------------


def _names(session: Session, orders: Sequence[WorkOrder]) -> tuple[dict[int, str], dict[int, str]]:
    user_ids = sorted({o.assignee_id for o in orders if o.assignee_id is not None})
    team_ids = sorted({o.team_id for o in orders if o.team_id is not None})
    users = (
        dict(session.exec(select(User.id, User.username).where(col(User.id).in_(user_ids))).all()) if user_ids else {}
    )
    teams = (
        dict(
            session.exec(
                select(ContractorTeam.id, ContractorTeam.name).where(col(ContractorTeam.id).in_(team_ids))
            ).all()
        )
        if team_ids
        else {}
    )
    return users, teams  # type: ignore[return-value]


def order_views(session: Session, orders: Sequence[WorkOrder]) -> list[WorkOrderPublic]:
    """Orders as people see them, with the assignee's and team's names."""
    users, teams = _names(session, orders)
    views = []
    for order in orders:
        view = WorkOrderPublic.model_validate(order, from_attributes=True)
        view.assignee = users.get(order.assignee_id) if order.assignee_id is not None else None
        view.team = teams.get(order.team_id) if order.team_id is not None else None
        views.append(view)
    return views


def visible_order(session: Session, user: User, order_id: int) -> WorkOrder:
    """An order `user` may read; NotFound otherwise."""
    condition = work_order_condition(session, user)
    statement = select(WorkOrder).where(WorkOrder.id == order_id)
    if condition is not None:
        statement = statement.where(condition)
    order = session.exec(statement).first()
    if order is None:
        raise NotFound(f"work order {order_id} not found")
    return order


def list_orders(
    session: Session,
    *,
    user: User,
    status: Sequence[str] = (),
    school_code: str | None = None,
    device_id: str | None = None,
    assignee: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[WorkOrderPublic], int]:
    """A page of the orders `user` may read, newest first, and how many match in all."""
    conditions = []
    condition = work_order_condition(session, user)
    if condition is not None:
        conditions.append(condition)
    if status:
        conditions.append(col(WorkOrder.status).in_(list(status)))
    if school_code is not None:
        conditions.append(col(WorkOrder.school_code) == school_code)
    if device_id is not None:
        conditions.append(col(WorkOrder.device_id) == device_id)
    if assignee is not None:
        user_id = session.exec(select(User.id).where(User.username == assignee)).first()
        conditions.append(col(WorkOrder.assignee_id) == (user_id or -1))
    total = session.exec(select(func.count()).select_from(WorkOrder).where(*conditions)).one()
    orders = session.exec(
        select(WorkOrder).where(*conditions).order_by(col(WorkOrder.id).desc()).offset(offset).limit(limit)
    ).all()
    return order_views(session, orders), total


def read_order(session: Session, *, user: User, order_id: int) -> WorkOrderDetail:
    """One order with its journal, photos, time spent and parts used."""
    order = visible_order(session, user, order_id)
    return order_detail(session, order)


def order_detail(session: Session, order: WorkOrder) -> WorkOrderDetail:
    """An order with its journal and attachments."""
    events = session.exec(
        select(WorkOrderEvent).where(WorkOrderEvent.order_id == order.id).order_by(col(WorkOrderEvent.id))
    ).all()
    attachments = session.exec(
        select(WorkOrderAttachment)
        .where(WorkOrderAttachment.order_id == order.id)
        .order_by(col(WorkOrderAttachment.id))
    ).all()
    parts: dict[str, int] = {}
    for event in events:
        if event.kind == "part" and event.part is not None:
            parts[event.part] = parts.get(event.part, 0) + (event.quantity or 0)
    view = order_views(session, [order])[0]
    return WorkOrderDetail(
        **view.model_dump(),
        events=[WorkOrderEventPublic.model_validate(event) for event in events],
        attachments=[WorkOrderAttachmentPublic.model_validate(a) for a in attachments],
        time_spent_min=sum(event.minutes or 0 for event in events if event.kind == "time"),
        parts=parts,
    )


# ---- transitions ---------------------------------------------------------------------------------


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


def _technician(session: Session, actor: Actor, order: WorkOrder, username: str | None) -> User:
    if not username:
        raise InvalidInput("assign needs assignee, the technician's username")
    tech = session.exec(select(User).where(User.username == username)).first()
    if tech is None or not policy.works_own_orders(tech):
        raise InvalidInput(f"{username} is not a technician")
    if not tech.is_active:
        raise InvalidInput(f"{username}'s account is disabled")
    user = actor.user
    if user is not None and policy.manages_team(user):
        team = team_of(session, user)
        if team is None or team_of(session, tech) != team:
            raise AccessDenied(f"{username} is not in your team; a contractor manager assigns within the team")
    return tech


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
        tech = _technician(session, actor, order, assignee)
        if order.status == "pending":
            _end_pending(session, order, now)
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
        _end_pending(session, order, now)
    elif action == "resolve":
        if not notes:
            raise InvalidInput("resolve needs notes: what was found and done")
        _end_pending(session, order, now)
        order.resolved_at = now
        order.resolution = notes
        order.resolve_met = order.resolve_due_at is None or now <= order.resolve_due_at
        order.open_key = None
    elif action == "close":
        order.closed_at = now
    elif action == "reopen":
        _reopen(session, order, now)
        target = order.status
    elif action == "cancel":
        _end_pending(session, order, now)
        order.open_key = None
    if action != "reopen":
        order.status = target
    order.updated_at = now
    _journal(
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


def _reopen(
    session: Session, order: WorkOrder, now: datetime, reads: _Reads | None = None, journal: _Journal | None = None
) -> None:
    """Back to work: the same assignee if still active (else auto-assignment), SLA clocks from now."""
    reads = reads or _Reads(session)
    other = reads.open_order(order)
    if other is not None:
        raise AlreadyExists(f"order {other} for the same device and fault is open; work on that one")
    order.open_key = _open_key(order)
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
    calendar = _calendar(session, order)
    if order.accepted_at is None:
        _reschedule_own(order, calendar)
        order.own_warned = False
    _schedule_resolve(order, calendar)
    order.resolve_warned = False
    order.updated_at = now
    _journal(session, order, actor=actor.name, kind="priority", at=now, text=f"priority {before} -> {order.priority}")
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


# ---- creating orders -----------------------------------------------------------------------------


def _new_order(
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
    reads: _Reads | None = None,
    journal: _Journal | None = None,
) -> WorkOrder:
    reads = reads or _Reads(session)
    journal = journal or _Journal(session)
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
    order.open_key = _open_key(order)
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
    order = _new_order(
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


# ---- journal entries -----------------------------------------------------------------------------


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
    _journal(
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


# ---- alarms --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultSignal:
    """An alarm raised or cleared on a device or a gateway."""

    kind: str
    school_code: str
    code: str
    raised: bool
    ts: datetime
    device_id: str | None = None
    gateway_id: str | None = None
    detail: str | None = None


def alarm_key(signal: FaultSignal) -> tuple[str, str | None, str]:
    """(kind, device or gateway, fault code): the orders of one alarm."""
    return signal.kind, signal.device_id if signal.kind == "device" else signal.gateway_id, signal.code


def _orders_of(session: Session, signals: Sequence[FaultSignal]) -> dict[tuple[str, str | None, str], list[WorkOrder]]:
    """The orders, cancelled ones aside, of each alarm key of `signals`, read in one statement."""
    found: dict[tuple[str, str | None, str], list[WorkOrder]] = {alarm_key(signal): [] for signal in signals}
    devices = sorted({subject for kind, subject, _ in found if kind == "device" and subject is not None})
    gateways = sorted({subject for kind, subject, _ in found if kind == "gateway" and subject is not None})
    codes = sorted({code for _, _, code in found})
    subjects = []
    if devices:
        subjects.append(and_(col(WorkOrder.kind) == "device", col(WorkOrder.device_id).in_(devices)))
    if gateways:
        subjects.append(and_(col(WorkOrder.kind) == "gateway", col(WorkOrder.gateway_id).in_(gateways)))
    if not subjects:
        return found
    orders = session.exec(
        select(WorkOrder).where(col(WorkOrder.fault_code).in_(codes), WorkOrder.status != "cancelled", or_(*subjects))
    ).all()
    for order in orders:
        subject = order.device_id if order.kind == "device" else order.gateway_id
        key = (order.kind, subject, order.fault_code)
        if key in found:
            found[key].append(order)
    return found


def _latest_order(session: Session, signal: FaultSignal) -> WorkOrder | None:
    statement = select(WorkOrder).where(
        WorkOrder.fault_code == signal.code, WorkOrder.kind == signal.kind, WorkOrder.status != "cancelled"
    )
    if signal.kind == "device":
        statement = statement.where(WorkOrder.device_id == signal.device_id)
    else:
        statement = statement.where(WorkOrder.gateway_id == signal.gateway_id)
    return session.exec(statement.order_by(col(WorkOrder.id).desc()).limit(1)).first()


def _count_raise(order: WorkOrder, signal: FaultSignal, policy: FaultPolicy) -> None:
    """A repeat raise: count it, and call it flapping past the threshold within the window."""
    moment = signal.ts.timestamp()
    horizon = moment - policy.flap_window.total_seconds()
    order.raise_times = [t for t in order.raise_times if t >= horizon] + [moment]
    order.flap_count += 1
    if len(order.raise_times) > policy.flap_threshold:
        order.flapping = True


def apply_signal(
    session: Session,
    signal: FaultSignal,
    *,
    now: datetime,
    policy: FaultPolicy = DEFAULT_POLICY,
    reads: _Reads | None = None,
    journal: _Journal | None = None,
) -> str:
    """Open, update, reopen or mark cleared the order of one alarm; say which (for logs and tests)."""
    reads = reads or _Reads(session)
    journal = journal or _Journal(session)
    order = reads.latest_order(signal)
    actor = signal.gateway_id or signal.device_id or "system"
    detail = signal.detail or signal.code
    if order is not None and order.alarm_at is not None and signal.ts < order.alarm_at:
        # A replay older than what the order already knows changes nothing.
        return "stale"
    if not signal.raised:
        if order is None or order.status in ("closed",) or not order.alarm_active:
            return "ignored"
        order.alarm_active = False
        order.alarm_at = signal.ts
        order.clear_since = signal.ts
        if not order.flapping:
            journal(order, actor=actor, kind="alarm", at=now, text=f"cleared: {detail}")
        session.add(order)
        return "cleared"
    if order is not None and order.status in ACTIVE_STATUSES:
        was_active = order.alarm_active
        order.alarm_active = True
        order.alarm_at = signal.ts
        order.clear_since = None
        if was_active:
            return "still_raised"
        _count_raise(order, signal, policy)
        if not order.flapping:
            journal(order, actor=actor, kind="alarm", at=now, text=f"raised again: {detail}")
        session.add(order)
        return "flapping" if order.flapping else "raised_again"
    if (
        order is not None
        and order.status in REOPENABLE_STATUSES
        and order.resolved_at is not None
        and signal.ts - order.resolved_at <= policy.reopen_window
        and reads.open_order(order) is None
    ):
        previous = order.status
        _reopen(session, order, now, reads, journal)
        order.alarm_active, order.alarm_at, order.clear_since = True, signal.ts, None
        _count_raise(order, signal, policy)
        order.updated_at = now
        journal(
            order,
            actor=actor,
            kind="status",
            at=now,
            from_status=previous,
            to_status=order.status,
            text=f"reopened: the fault returned within {policy.reopen_window}: {detail}",
        )
        session.add(order)
        return "reopened"
    impact, urgency = fault_levels(signal.code)
    subject = signal.device_id if signal.kind == "device" else f"gateway {signal.gateway_id}"
    created = _new_order(
        session,
        kind=signal.kind,
        school_code=signal.school_code,
        device_id=signal.device_id,
        gateway_id=signal.gateway_id,
        fault_code=signal.code,
        source="alarm" if signal.kind == "device" else "gateway",
        title=f"{signal.code} on {subject}",
        description=signal.detail,
        impact=impact,
        urgency=urgency,
        now=now,
        actor=actor,
        reads=reads,
        journal=journal,
    )
    created.alarm_active, created.alarm_at = True, signal.ts
    created.raise_times = [signal.ts.timestamp()]
    reads.opened(created)
    return "opened"


def offline_during_outage(
    signal: FaultSignal,
    *,
    previous_sync: datetime | None,
    now: datetime,
    policy: FaultPolicy,
    gateway_down_since: datetime | None,
) -> bool:
    """True for a device-offline alarm that the school's gateway outage, not the device, explains."""
    if signal.kind != "device" or signal.code.split(":", 1)[0] not in OFFLINE_CODES:
        return False
    if gateway_down_since is not None and signal.ts >= gateway_down_since - policy.gateway_stale:
        return True
    return previous_sync is not None and now - previous_sync > policy.gateway_stale and signal.ts >= previous_sync


def gateway_down_since(session: Session, school_code: str) -> datetime | None:
    """When the school's open gateway_offline order's alarm was raised, if one is open and raised."""
    return session.exec(
        select(WorkOrder.alarm_at).where(
            WorkOrder.school_code == school_code,
            WorkOrder.fault_code == GATEWAY_OFFLINE,
            col(WorkOrder.status).in_(ACTIVE_STATUSES),
            col(WorkOrder.alarm_active).is_(True),
        )
    ).first()


def apply_sync_alarms(
    session: Session,
    *,
    gateway: Gateway,
    signals: Sequence[FaultSignal],
    previous_sync: datetime | None,
    now: datetime,
    policy: FaultPolicy = DEFAULT_POLICY,
    device_roles: Mapping[str, str | None] | None = None,
) -> dict[str, int]:
    """Turn the alarms of one sync batch into order changes; count the outcomes. `device_roles` are the
    roles of the batch's devices as they are now, if the caller has them.

    What the alarms need is read up front, a few statements for the whole batch (_Reads), and the orders
    they open or change are flushed once at the end, with their journal entries."""
    outcomes: dict[str, int] = {}
    if not signals:
        return outcomes
    down_since = (
        gateway_down_since(session, gateway.school_code)
        if any(signal.raised and signal.code.split(":", 1)[0] in OFFLINE_CODES for signal in signals)
        else None
    )
    reads = _Reads(session, _orders_of(session, signals))
    if device_roles:
        reads.know_roles(device_roles)
    journal = _Journal(session, deferred=True)
    with session.no_autoflush:
        for signal in signals:
            if signal.raised and offline_during_outage(
                signal, previous_sync=previous_sync, now=now, policy=policy, gateway_down_since=down_since
            ):
                outcome = "suppressed"
            else:
                outcome = apply_signal(session, signal, now=now, policy=policy, reads=reads, journal=journal)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    journal.write()
    session.flush()
    return outcomes


# ---- periodic checks -----------------------------------------------------------------------------


def check_gateways(session: Session, *, now: datetime, policy: FaultPolicy) -> dict[str, int]:
    """Raise gateway_offline for gateways silent past the stale limit; clear it for those heard again."""
    counts = {"offline": 0, "back": 0}
    cutoff = now - policy.gateway_stale
    stale = session.exec(
        select(Gateway).where(col(Gateway.last_sync_at).is_not(None), col(Gateway.last_sync_at) < cutoff)
    ).all()
    for gateway in stale:
        assert gateway.last_sync_at is not None
        signal = FaultSignal(
            kind="gateway",
            school_code=gateway.school_code,
            gateway_id=gateway.id,
            code=GATEWAY_OFFLINE,
            raised=True,
            ts=gateway.last_sync_at + policy.gateway_stale,
            detail=f"no sync since {gateway.last_sync_at.isoformat()}",
        )
        if apply_signal(session, signal, now=now, policy=policy) in ("opened", "reopened", "raised_again", "flapping"):
            counts["offline"] += 1
        session.flush()
    raised = session.exec(
        select(WorkOrder, Gateway)
        .join(Gateway, col(Gateway.id) == col(WorkOrder.gateway_id))
        .where(
            WorkOrder.fault_code == GATEWAY_OFFLINE,
            col(WorkOrder.alarm_active).is_(True),
            col(Gateway.last_sync_at) >= cutoff,
        )
    ).all()
    for order, gateway in raised:
        assert gateway.last_sync_at is not None
        signal = FaultSignal(
            kind="gateway",
            school_code=gateway.school_code,
            gateway_id=gateway.id,
            code=GATEWAY_OFFLINE,
            raised=False,
            ts=max(gateway.last_sync_at, order.alarm_at or gateway.last_sync_at),
            detail="syncing again",
        )
        if apply_signal(session, signal, now=now, policy=policy) == "cleared":
            counts["back"] += 1
    return counts


def verify_cleared(session: Session, *, now: datetime, policy: FaultPolicy) -> int:
    """Orders whose alarm cleared and stayed clear for the hold: verified by the device, resolved if still open."""
    orders = session.exec(
        select(WorkOrder).where(
            col(WorkOrder.alarm_active).is_(False),
            col(WorkOrder.clear_since).is_not(None),
            col(WorkOrder.clear_since) <= now - policy.verify_hold,
            col(WorkOrder.verified_by_device_at).is_(None),
            col(WorkOrder.status).in_((*ACTIVE_STATUSES, "resolved")),
        )
    ).all()
    for order in orders:
        held = policy.verify_hold.total_seconds()
        order.verified_by_device_at = now
        order.flapping = False
        order.raise_times = []
        text = f"verified by the device: the alarm has stayed clear for {held:.0f} s"
        if order.status in ACTIVE_STATUSES:
            previous = order.status
            _end_pending(session, order, now)
            order.status = "resolved"
            order.resolved_at = now
            order.resolution = text
            order.resolve_met = order.resolve_due_at is None or now <= order.resolve_due_at
            order.open_key = None
            _journal(
                session,
                order,
                actor="system",
                kind="status",
                at=now,
                from_status=previous,
                to_status="resolved",
                text=text,
            )
        else:
            _journal(session, order, actor="system", kind="verified", at=now, text=text)
        order.updated_at = now
        session.add(order)
    return len(orders)


# ---- photos --------------------------------------------------------------------------------------


def add_attachment(
    session: Session,
    *,
    actor: Actor,
    order_id: int,
    filename: str,
    data: bytes,
    media_dir: str,
    max_bytes: int,
    now: datetime | None = None,
) -> WorkOrderAttachment:
    """Attach a photo to an order: checked, stored on disk, and noted in the journal."""
    begin_write(session)
    now = now or utcnow()
    order = _writable_order(session, actor, order_id)
    assert order.id is not None
    relative, content_type, digest = media.store_photo(media_dir, order.id, data, max_bytes=max_bytes)
    try:
        attachment = WorkOrderAttachment(
            order_id=order.id,
            filename=(filename or "photo").replace("/", "_").replace("\\", "_")[:200],
            content_type=content_type,
            size=len(data),
            sha256=digest,
            path=relative,
            uploaded_by=actor.name,
            uploaded_at=now,
        )
        session.add(attachment)
        session.flush()
        _journal(
            session,
            order,
            actor=actor.name,
            kind="attachment",
            at=now,
            text=attachment.filename,
            attachment_id=attachment.id,
        )
        audit.record(
            session,
            actor=actor,
            action="attach",
            entity="work_order",
            entity_id=order.id,
            school_code=order.school_code,
            summary={"file": attachment.filename, "size": len(data), "sha256": digest},
            at=now,
        )
        session.commit()
    except Exception:
        session.rollback()
        media.remove(media_dir, relative)
        raise
    session.refresh(attachment)
    return attachment


def read_attachment(session: Session, *, user: User, order_id: int, attachment_id: int) -> WorkOrderAttachment:
    """A photo of an order `user` may read."""
    visible_order(session, user, order_id)
    attachment = session.get(WorkOrderAttachment, attachment_id)
    if attachment is None or attachment.order_id != order_id:
        raise NotFound(f"attachment {attachment_id} of work order {order_id} not found")
    return attachment
