"""Which schools a report covers (a county or district, a school, or a contractor team's districts and device
roles), and whether the user may see their figures."""

from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import select as sql_select
from sqlmodel import Session, col, select

from cloud import policy
from cloud.bounds import whole_number
from cloud.crud.access import district_schools, read_scope, team_of
from cloud.errors import AccessDenied, InvalidInput, NotFound
from cloud.models import MAX_ROW_ID, ContractorTeam, School, TeamCoverage, User


class _School(NamedTuple):
    """What a report needs of a school."""

    code: str
    name: str
    timezone: str
    district_code: str | None


_SCHOOL_COLUMNS = (col(School.code), col(School.name), col(School.timezone), col(School.district_code))


def _schools(session: Session, statement: Any) -> list[_School]:
    return [_School(*row) for row in session.execute(statement).all()]


@dataclass(frozen=True)
class Reach:
    """The schools a report covers, and for a contractor the team and the roles it covers per district."""

    schools: list[_School]
    team_id: int | None = None
    roles: dict[str | None, frozenset[str]] | None = None
    # The schools are every school there is: counts over all of them need no condition on the school.
    every_school: bool = False

    def device_roles(self, school: _School) -> frozenset[str] | None:
        """Device roles counted at `school`; None for every role."""
        if self.roles is None:
            return None
        return self.roles.get(school.district_code, frozenset())


def reach_of(session: Session, user: User, scope: str, scope_id: str | None) -> Reach:
    if not user.is_active:
        raise AccessDenied("the account is disabled")
    if scope == "contractor":
        team_id = whole_number(scope_id or "", high=MAX_ROW_ID)
        if team_id is None:
            raise InvalidInput("a contractor report needs id, the team's number")
        team = session.get(ContractorTeam, team_id)
        if team is None:
            raise NotFound(f"team {scope_id} not found")
        if not policy.can_read_contractor_figures(user):
            raise AccessDenied(f"the role {user.role} does not see contractor figures")
        if policy.manages_team(user) and team_of(session, user) != team.id:
            raise AccessDenied("a contractor manager sees the figures of their own team")
        coverage = session.exec(select(TeamCoverage).where(TeamCoverage.team_id == team.id)).all()
        roles: dict[str | None, set[str]] = {}
        for row in coverage:
            roles.setdefault(row.district_code, set()).add(row.device_role)
        if policy.sees_whole_county(user) and user.district_code is not None:
            roles = {d: r for d, r in roles.items() if d == user.district_code}
        schools = _schools(
            session,
            sql_select(*_SCHOOL_COLUMNS)
            .where(col(School.district_code).in_(sorted(d for d in roles if d)))
            .order_by(School.code),
        )
        return Reach(schools, team.id, {d: frozenset(r) for d, r in roles.items()})
    if not policy.can_read_site_figures(user):
        raise AccessDenied(f"the role {user.role} sees contractor figures only (scope=contractor)")
    allowed = read_scope(session, user)
    if scope == "school":
        if scope_id is None:
            raise InvalidInput("a school report needs id, the school's code")
        school = session.get(School, scope_id)
        if school is None or not allowed.allows_school(scope_id):
            raise NotFound(f"school {scope_id} not found")
        return Reach([_School(school.code, school.name, school.timezone, school.district_code)])
    if scope != "county":
        raise InvalidInput("scope must be county, school or contractor")
    if not policy.can_read_county_figures(user):
        raise AccessDenied("a school admin sees the figures of their school (scope=school)")
    statement = sql_select(*_SCHOOL_COLUMNS).order_by(School.code)
    if scope_id is not None:
        if user.district_code not in (None, scope_id):
            raise NotFound(f"district {scope_id} not found")
        statement = statement.where(col(School.code).in_(sorted(district_schools(session, scope_id))))
    elif user.district_code is not None:
        statement = statement.where(col(School.code).in_(sorted(district_schools(session, user.district_code))))
    else:
        return Reach(_schools(session, statement), every_school=True)
    return Reach(_schools(session, statement))
