"""What writing orders reads and journals: Reads keeps the schools, calendars, device roles, covering teams
and technicians' loads read once for a whole sync batch, and Journal writes (or defers) order events."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from cloud import calendars, policy
from cloud.models import Device, School, TeamCoverage, TeamMember, User, WorkOrder, WorkOrderEvent
from cloud.servicetime import Calendar
from cloud.workorders.signals import FaultSignal, alarm_key, latest_order_of

WORKING_STATUSES = ("assigned", "accepted", "in_progress", "pending")


def open_key_of(order: WorkOrder) -> str:
    """The key that keeps one order open per device (or gateway) and fault."""
    subject = f"d:{order.device_id}" if order.kind == "device" else f"g:{order.gateway_id}"
    return f"{subject}:{order.fault_code}"


def write_event(session: Session, order: WorkOrder, *, actor: str, kind: str, at: datetime, **fields: Any) -> None:
    """Add an entry to the order's journal."""
    assert order.id is not None
    session.add(WorkOrderEvent(order_id=order.id, actor=actor[:64], kind=kind, at=at, **fields))


def _loads(session: Session, user_ids: Sequence[int]) -> dict[int, int]:
    rows = session.exec(
        select(WorkOrder.assignee_id, func.count())
        .where(col(WorkOrder.assignee_id).in_(list(user_ids)), col(WorkOrder.status).in_(WORKING_STATUSES))
        .group_by(col(WorkOrder.assignee_id))
    ).all()
    return {user_id: count for user_id, count in rows if user_id is not None}


class Reads:
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
            calendar = self._calendars[school_code] = calendars.school_calendar(self.session, school)
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
            rows = (
                []
                if not covering
                else self.session.exec(
                    select(User.id, TeamMember.team_id, User.username)
                    .join(TeamMember, col(TeamMember.user_id) == col(User.id))
                    .where(
                        col(TeamMember.team_id).in_(covering),
                        col(User.role).in_(sorted(policy.TAKE_ORDERS)),
                        col(User.is_active).is_(True),
                    )
                ).all()
            )
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

    def latest_order(self, signal: FaultSignal) -> WorkOrder | None:
        if self.orders is None:
            return latest_order_of(self.session, signal)
        found = self.orders.get(alarm_key(signal))
        # Orders opened by this batch have no id until flushed, and are the newest.
        return max(found, key=lambda order: (order.id is None, order.id or 0)) if found else None

    def open_order(self, order: WorkOrder) -> int | None:
        """The id of the order open for the same device (or gateway) and fault as `order`, if any."""
        key = open_key_of(order)
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


class Journal:
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
            write_event(self.session, order, actor=actor, kind=kind, at=at, **fields)

    def write(self) -> None:
        """Flush the orders, then add the entries kept, in the order they came."""
        if not self.entries:
            return
        self.session.flush()
        for order, fields in self.entries:
            write_event(self.session, order, **fields)
        self.entries.clear()
