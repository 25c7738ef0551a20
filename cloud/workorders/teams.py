"""Contractor teams: their members and the districts and device roles they cover, which decides who
may be given an order."""

from collections.abc import Sequence

from sqlmodel import Session, col, delete, select

from cloud import policy
from cloud.core.db import begin_write
from cloud.crud import audit
from cloud.crud.access import team_of
from cloud.crud.common import Actor
from cloud.errors import AccessDenied, AlreadyExists, InvalidInput, NotFound
from cloud.models import (
    COVERAGE_ROLES,
    ContractorTeam,
    District,
    TeamCoverage,
    TeamMember,
    TeamMemberPublic,
    TeamPublic,
    User,
)


def _coverage(session: Session, team_id: int) -> Sequence[TeamCoverage]:
    return session.exec(select(TeamCoverage).where(TeamCoverage.team_id == team_id)).all()


def team_view(session: Session, team: ContractorTeam) -> TeamPublic:
    """A team with its coverage and members."""
    assert team.id is not None
    coverage = _coverage(session, team.id)
    members = session.exec(
        select(User).join(TeamMember, col(TeamMember.user_id) == col(User.id)).where(TeamMember.team_id == team.id)
    ).all()
    return TeamPublic(
        id=team.id,
        name=team.name,
        created_at=team.created_at,
        districts=sorted({row.district_code for row in coverage}),
        device_roles=sorted({row.device_role for row in coverage}),
        members=[
            TeamMemberPublic(user_id=m.id or 0, username=m.username, role=m.role, is_active=m.is_active)
            for m in sorted(members, key=lambda user: user.username)
        ],
    )


def _require_team_writer(session: Session, actor: Actor, team_id: int | None, districts: Sequence[str]) -> None:
    """County admins manage teams; one with a district only teams that cover nothing outside it."""
    if actor.kind == "cli":
        return
    user = actor.user
    if actor.kind != "user" or user is None or not user.is_active:
        raise AccessDenied("only county admins manage contractor teams")
    if not policy.can_manage_teams(user):
        raise AccessDenied(f"the role {user.role} may not manage contractor teams; county admins do")
    if user.district_code is None:
        return
    covered = set(districts)
    if team_id is not None:
        covered.update(row.district_code for row in _coverage(session, team_id))
    outside = sorted(covered - {user.district_code})
    if outside:
        raise AccessDenied(f"the team covers districts outside {user.district_code}: {', '.join(outside)}")


def _set_coverage(session: Session, team_id: int, districts: Sequence[str], roles: Sequence[str]) -> None:
    for code in sorted(set(districts)):
        if session.get(District, code) is None:
            raise NotFound(f"district {code} does not exist")
    for role in roles:
        if role not in COVERAGE_ROLES:
            raise InvalidInput(f"device role must be one of {', '.join(COVERAGE_ROLES)}")
    session.exec(delete(TeamCoverage).where(col(TeamCoverage.team_id) == team_id))
    for code in sorted(set(districts)):
        for role in sorted(set(roles)):
            session.add(TeamCoverage(team_id=team_id, district_code=code, device_role=role))


def create_team(
    session: Session, *, actor: Actor, name: str, districts: Sequence[str], device_roles: Sequence[str]
) -> ContractorTeam:
    """Register a contractor team and what it covers."""
    begin_write(session)
    _require_team_writer(session, actor, None, districts)
    if session.exec(select(ContractorTeam).where(ContractorTeam.name == name)).first() is not None:
        raise AlreadyExists(f"a team named {name!r} already exists")
    team = ContractorTeam(name=name)
    session.add(team)
    session.flush()
    assert team.id is not None
    _set_coverage(session, team.id, districts, device_roles)
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="team",
        entity_id=team.id,
        summary={"name": name, "districts": sorted(set(districts)), "device_roles": sorted(set(device_roles))},
    )
    session.commit()
    session.refresh(team)
    return team


def _team(session: Session, team_id: int) -> ContractorTeam:
    team = session.get(ContractorTeam, team_id)
    if team is None:
        raise NotFound(f"team {team_id} not found")
    return team


def update_team(
    session: Session,
    *,
    actor: Actor,
    team_id: int,
    name: str | None = None,
    districts: Sequence[str] | None = None,
    device_roles: Sequence[str] | None = None,
) -> ContractorTeam:
    """Rename a team or change what it covers."""
    begin_write(session)
    team = _team(session, team_id)
    _require_team_writer(session, actor, team_id, districts or ())
    summary: dict[str, object] = {}
    if name is not None and name != team.name:
        if session.exec(select(ContractorTeam).where(ContractorTeam.name == name)).first() is not None:
            raise AlreadyExists(f"a team named {name!r} already exists")
        summary["name"] = [team.name, name]
        team.name = name
        session.add(team)
    if districts is not None or device_roles is not None:
        coverage = _coverage(session, team_id)
        new_districts = districts if districts is not None else sorted({row.district_code for row in coverage})
        new_roles = device_roles if device_roles is not None else sorted({row.device_role for row in coverage})
        _set_coverage(session, team_id, new_districts, new_roles)
        summary["coverage"] = {"districts": sorted(set(new_districts)), "device_roles": sorted(set(new_roles))}
    if summary:
        audit.record(session, actor=actor, action="update", entity="team", entity_id=team_id, summary=summary)
    session.commit()
    session.refresh(team)
    return team


def add_team_member(session: Session, *, actor: Actor, team_id: int, username: str) -> ContractorTeam:
    """Put a technician or contractor manager in a team."""
    begin_write(session)
    team = _team(session, team_id)
    _require_team_writer(session, actor, team_id, ())
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFound(f"user {username} not found")
    if not policy.can_join_team(user):
        raise InvalidInput(f"only technicians and contractor managers join teams; {username} is a {user.role}")
    current = session.get(TeamMember, user.id)
    if current is not None:
        if current.team_id == team_id:
            return team
        raise AlreadyExists(f"{username} is already in team {current.team_id}; remove them there first")
    assert user.id is not None
    session.add(TeamMember(user_id=user.id, team_id=team_id))
    audit.record(
        session, actor=actor, action="add_member", entity="team", entity_id=team_id, summary={"user": username}
    )
    session.commit()
    return team


def remove_team_member(session: Session, *, actor: Actor, team_id: int, username: str) -> None:
    """Take a person out of a team; their open orders stay with them until reassigned."""
    begin_write(session)
    _team(session, team_id)
    _require_team_writer(session, actor, team_id, ())
    user = session.exec(select(User).where(User.username == username)).first()
    member = session.get(TeamMember, user.id) if user is not None else None
    if member is None or member.team_id != team_id:
        raise NotFound(f"{username} is not in team {team_id}")
    session.delete(member)
    audit.record(
        session, actor=actor, action="remove_member", entity="team", entity_id=team_id, summary={"user": username}
    )
    session.commit()


def list_teams(session: Session, *, user: User) -> list[TeamPublic]:
    """County staff see every team; technicians and managers their own."""
    if not user.is_active:
        raise AccessDenied("the account is disabled")
    statement = select(ContractorTeam).order_by(col(ContractorTeam.name))
    if not policy.can_see_teams(user):
        raise AccessDenied(f"the role {user.role} does not see contractor teams")
    if policy.works_on_orders(user):
        statement = statement.where(ContractorTeam.id == (team_of(session, user) or -1))
    return [team_view(session, team) for team in session.exec(statement)]


def read_team(session: Session, *, user: User, team_id: int) -> TeamPublic:
    """One team."""
    for team in list_teams(session, user=user):
        if team.id == team_id:
            return team
    raise NotFound(f"team {team_id} not found")


def covering_teams(session: Session, *, district_code: str | None, device_role: str | None) -> list[int]:
    """Teams that cover a district for a device role (any role, for a device that has not said its own),
    oldest first."""
    if district_code is None:
        return []
    statement = select(TeamCoverage.team_id).where(TeamCoverage.district_code == district_code)
    if device_role is not None:
        statement = statement.where(TeamCoverage.device_role == device_role)
    return sorted(set(session.exec(statement).all()))
