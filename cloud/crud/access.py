"""Roles and tenancy: which schools, devices and records a user may read or change.

County admins and auditors reach the schools of their district (every school when they have none);
school admins their own school; technicians and contractor managers only the devices of their work
orders. Raw attendance and rosters are personal data: only the school's own admins reach them.
"""

from dataclasses import dataclass

from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, select

from cloud import policy
from cloud.crud.common import Actor
from cloud.errors import AccessDenied
from cloud.models import Device, School, TeamMember, User, WorkOrder

# Orders whose devices a technician or manager still reaches: every one not closed or cancelled.
REACHABLE_ORDER_STATUSES = ("new", "assigned", "accepted", "in_progress", "pending", "resolved")


@dataclass(frozen=True)
class Scope:
    """What a user may read: None means no limit on that level."""

    schools: frozenset[str] | None
    devices: frozenset[str] | None = None

    def allows_school(self, school_code: str) -> bool:
        """True if the school lies in the scope."""
        return self.schools is None or school_code in self.schools

    def allows_device(self, device: Device) -> bool:
        """True if the device lies in the scope."""
        return self.allows_school(device.school_code) and (self.devices is None or device.id in self.devices)

    def school_condition(self, column) -> ColumnElement[bool] | None:
        """A WHERE condition confining `column` (a school code) to the scope, or None for no limit."""
        if self.schools is None:
            return None
        return col(column).in_(sorted(self.schools))

    def narrowed(self, school_code: str | None) -> "Scope":
        """The scope limited to one school; AccessDenied if that school is out of reach."""
        if school_code is None:
            return self
        if not self.allows_school(school_code):
            raise AccessDenied(f"no access to school {school_code}")
        return Scope(schools=frozenset({school_code}), devices=self.devices)


def _active(user: User) -> None:
    if not user.is_active:
        raise AccessDenied("the account is disabled")


def district_schools(session: Session, district_code: str) -> frozenset[str]:
    """Codes of the schools of a district."""
    return frozenset(session.exec(select(School.code).where(School.district_code == district_code)).all())


def team_of(session: Session, user: User) -> int | None:
    """The id of the contractor team the user works for, if any."""
    return session.exec(select(TeamMember.team_id).where(TeamMember.user_id == user.id)).first()


def work_order_condition(session: Session, user: User) -> ColumnElement[bool] | None:
    """A WHERE condition on WorkOrder for the orders `user` may read; None for no limit."""
    _active(user)
    if policy.sees_whole_county(user):
        if user.district_code is None:
            return None
        return col(WorkOrder.school_code).in_(sorted(district_schools(session, user.district_code)))
    if policy.admins_one_school(user):
        return col(WorkOrder.school_code) == (user.school_code or "")
    if policy.works_own_orders(user):
        return col(WorkOrder.assignee_id) == user.id
    if policy.manages_team(user):
        team = team_of(session, user)
        return col(WorkOrder.team_id) == (team if team is not None else -1)
    raise AccessDenied(f"unknown role {user.role}")


def _reachable_orders(session: Session, user: User) -> list[tuple[str | None, str]]:
    condition = work_order_condition(session, user)
    statement = select(WorkOrder.device_id, WorkOrder.school_code).where(
        col(WorkOrder.status).in_(REACHABLE_ORDER_STATUSES)
    )
    if condition is not None:
        statement = statement.where(condition)
    return list(session.exec(statement.distinct()).all())


def work_order_devices(session: Session, user: User) -> frozenset[str]:
    """Devices the user's work orders (or, for a manager, the team's) are about, until closed."""
    return frozenset(device for device, _ in _reachable_orders(session, user) if device is not None)


def read_scope(session: Session, user: User) -> Scope:
    """The schools and devices `user` may read."""
    _active(user)
    if policy.sees_whole_county(user):
        if user.district_code is None:
            return Scope(schools=None)
        return Scope(schools=district_schools(session, user.district_code))
    if policy.admins_one_school(user):
        return Scope(schools=frozenset({user.school_code}) if user.school_code else frozenset())
    if policy.works_on_orders(user):
        orders = _reachable_orders(session, user)
        devices = frozenset(device for device, _ in orders if device is not None)
        schools: set[str] = {school for _, school in orders}
        if devices:
            schools.update(session.exec(select(Device.school_code).where(col(Device.id).in_(sorted(devices)))).all())
        return Scope(schools=frozenset(schools), devices=devices)
    raise AccessDenied(f"unknown role {user.role}")


def personal_data_school(user: User, school_code: str | None) -> str:
    """The one school whose personal data (raw attendance, roster) `user` may read."""
    _active(user)
    if not policy.can_read_roster(user) or not user.school_code:
        raise AccessDenied(
            f"attendance events and rosters are personal data: only the school's own admins may read them; "
            f"the role {user.role} sees per-class aggregates (/attendance/daily)"
        )
    if not policy.can_read_roster(user, school_code):
        raise AccessDenied(f"no access to the personal data of school {school_code}")
    return user.school_code


def _writing_user(actor: Actor) -> User | None:
    """The user behind a write, None for the admin command line; AccessDenied for other writers."""
    if actor.kind == "cli":
        return None
    if actor.kind != "user" or actor.user is None:
        raise AccessDenied(f"a {actor.kind} may not change the registry")
    _active(actor.user)
    if policy.is_read_only(actor.user):
        raise AccessDenied(f"the role {actor.user.role} is read-only")
    return actor.user


def require_school_write(session: Session, actor: Actor, school_code: str) -> None:
    """Allow changes inside a school (buildings, classrooms, devices): its county admins and admins."""
    user = _writing_user(actor)
    if user is None:
        return
    if not policy.can_write_schools(user):
        raise AccessDenied(f"the role {user.role} may not change school {school_code}")
    if read_scope(session, user).allows_school(school_code):
        return
    raise AccessDenied(f"the role {user.role} may not change school {school_code}")


def require_district_write(actor: Actor, district_code: str | None) -> None:
    """Allow changes to a district's schools and gateways: its county admins."""
    user = _writing_user(actor)
    if user is None:
        return
    if policy.can_write_districts(user) and user.district_code in (None, district_code):
        return
    where = f"district {district_code}" if district_code else "schools outside any district"
    raise AccessDenied(f"the role {user.role} may not change {where}")


def require_city_write(actor: Actor) -> None:
    """Allow changes to cities and districts: county admins without a district (city-wide)."""
    user = _writing_user(actor)
    if user is None:
        return
    if policy.can_write_districts(user) and user.district_code is None:
        return
    raise AccessDenied("only a city-wide county admin (one without a district) may change cities and districts")


def require_personal_data_write(actor: Actor, school_code: str) -> None:
    """Allow changes to a school's roster: that school's own admins."""
    user = _writing_user(actor)
    if user is None:
        return
    personal_data_school(user, school_code)


def require_audit_reader(user: User) -> None:
    """Allow reading the audit log: auditors and county admins."""
    _active(user)
    if not policy.can_read_audit_log(user):
        raise AccessDenied(f"the audit log is for auditors and county admins, not the role {user.role}")
