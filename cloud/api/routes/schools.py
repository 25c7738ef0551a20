"""Schools."""

from typing import Annotated

from fastapi import APIRouter, Query, status

from cloud import registry
from cloud.api.deps import CurrentActor, CurrentUser, SessionDep
from cloud.models import SchoolCreate, SchoolPublic, SchoolUpdate

router = APIRouter(prefix="/schools", tags=["registry"])


@router.get("")
def list_schools(
    user: CurrentUser,
    session: SessionDep,
    district: Annotated[str | None, Query(description="only this district's schools")] = None,
) -> list[SchoolPublic]:
    """The schools the user may see."""
    schools = registry.list_schools(session, user=user, district_code=district)
    return [SchoolPublic.model_validate(school) for school in schools]


@router.get("/{code}")
def get_school(code: str, user: CurrentUser, session: SessionDep) -> SchoolPublic:
    """One school."""
    return SchoolPublic.model_validate(registry.read_school(session, user=user, code=code))


@router.post("", status_code=status.HTTP_201_CREATED)
def create_school(body: SchoolCreate, actor: CurrentActor, session: SessionDep) -> SchoolPublic:
    """Register a school (county admins, in their district)."""
    school = registry.create_school(
        session,
        actor=actor,
        code=body.code,
        name=body.name,
        timezone=body.timezone,
        district_code=body.district_code,
    )
    return SchoolPublic.model_validate(school)


@router.patch("/{code}")
def update_school(code: str, body: SchoolUpdate, actor: CurrentActor, session: SessionDep) -> SchoolPublic:
    """Rename a school, change its time zone or its district."""
    changes = body.model_dump(exclude_unset=True)
    return SchoolPublic.model_validate(registry.update_school(session, actor=actor, code=code, changes=changes))


@router.delete("/{code}", status_code=status.HTTP_204_NO_CONTENT)
def delete_school(code: str, actor: CurrentActor, session: SessionDep) -> None:
    """Remove a school with nothing registered in it."""
    registry.delete_school(session, actor=actor, code=code)
