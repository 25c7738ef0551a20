"""Buildings of schools."""

from typing import Annotated

from fastapi import APIRouter, Query, status

from cloud import registry
from cloud.api.deps import CurrentActor, CurrentUser, RowId, SessionDep
from cloud.models import BuildingCreate, BuildingPublic, BuildingUpdate

router = APIRouter(prefix="/buildings", tags=["registry"])


@router.get("")
def list_buildings(
    user: CurrentUser,
    session: SessionDep,
    school: Annotated[str | None, Query(description="only this school's buildings")] = None,
) -> list[BuildingPublic]:
    """The buildings of the schools the user may see."""
    buildings = registry.list_buildings(session, user=user, school_code=school)
    return [BuildingPublic.model_validate(building) for building in buildings]


@router.get("/{building_id}")
def get_building(building_id: RowId, user: CurrentUser, session: SessionDep) -> BuildingPublic:
    """One building."""
    return BuildingPublic.model_validate(registry.read_building(session, user=user, building_id=building_id))


@router.post("", status_code=status.HTTP_201_CREATED)
def create_building(body: BuildingCreate, actor: CurrentActor, session: SessionDep) -> BuildingPublic:
    """Add a building to a school."""
    building = registry.create_building(session, actor=actor, school_code=body.school_code, name=body.name)
    return BuildingPublic.model_validate(building)


@router.patch("/{building_id}")
def update_building(
    building_id: RowId, body: BuildingUpdate, actor: CurrentActor, session: SessionDep
) -> BuildingPublic:
    """Rename a building."""
    changes = body.model_dump(exclude_unset=True)
    building = registry.update_building(session, actor=actor, building_id=building_id, changes=changes)
    return BuildingPublic.model_validate(building)


@router.delete("/{building_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_building(building_id: RowId, actor: CurrentActor, session: SessionDep) -> None:
    """Remove a building without classrooms."""
    registry.delete_building(session, actor=actor, building_id=building_id)
