"""Contractor teams: their members and the districts and device roles they cover."""

from fastapi import APIRouter, status

from cloud.api.deps import CurrentActor, CurrentUser, RowId, SessionDep
from cloud.models import TeamIn, TeamMemberIn, TeamPublic, TeamUpdate
from cloud.workorders import teams

router = APIRouter(prefix="/teams", tags=["work orders"])


@router.get("")
def list_teams(user: CurrentUser, session: SessionDep) -> list[TeamPublic]:
    """Every team for county staff; their own team for technicians and contractor managers."""
    return teams.list_teams(session, user=user)


@router.get("/{team_id}")
def get_team(team_id: RowId, user: CurrentUser, session: SessionDep) -> TeamPublic:
    """One team."""
    return teams.read_team(session, user=user, team_id=team_id)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_team(body: TeamIn, actor: CurrentActor, session: SessionDep) -> TeamPublic:
    """Register a team and the (district x device role) pairs it covers; county admins."""
    team = teams.create_team(
        session, actor=actor, name=body.name, districts=body.districts, device_roles=body.device_roles
    )
    return teams.team_view(session, team)


@router.patch("/{team_id}")
def update_team(team_id: RowId, body: TeamUpdate, actor: CurrentActor, session: SessionDep) -> TeamPublic:
    """Rename a team or replace its coverage."""
    team = teams.update_team(
        session,
        actor=actor,
        team_id=team_id,
        name=body.name,
        districts=body.districts,
        device_roles=body.device_roles,
    )
    return teams.team_view(session, team)


@router.post("/{team_id}/members", status_code=status.HTTP_201_CREATED)
def add_member(team_id: RowId, body: TeamMemberIn, actor: CurrentActor, session: SessionDep) -> TeamPublic:
    """Put a technician or contractor manager in the team."""
    team = teams.add_team_member(session, actor=actor, team_id=team_id, username=body.username)
    return teams.team_view(session, team)


@router.delete("/{team_id}/members/{username}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(team_id: RowId, username: str, actor: CurrentActor, session: SessionDep) -> None:
    """Take a person out of the team."""
    teams.remove_team_member(session, actor=actor, team_id=team_id, username=username)
