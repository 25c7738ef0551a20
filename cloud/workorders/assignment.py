"""Who an order goes to: auto-assignment to the least loaded technician of a covering team, and the checks
on a technician someone assigns by hand."""

from datetime import datetime

from sqlmodel import Session, select

from cloud import policy
from cloud.crud.access import team_of
from cloud.crud.common import Actor
from cloud.errors import AccessDenied, InvalidInput
from cloud.models import User, WorkOrder
from cloud.workorders.batch import Journal, Reads


def auto_assign(
    session: Session, order: WorkOrder, now: datetime, reads: Reads | None = None, journal: Journal | None = None
) -> None:
    """Give the order to the least loaded active technician of a team covering its school and device role."""
    reads = reads or Reads(session)
    journal = journal or Journal(session)
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


def checked_technician(session: Session, actor: Actor, order: WorkOrder, username: str | None) -> User:
    """The active technician `username`, whom the actor may assign (a manager only within the team)."""
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
