"""Classrooms: where devices are bound."""

from typing import Annotated

from fastapi import APIRouter, Query, status

from cloud import registry
from cloud.api.deps import CurrentActor, CurrentUser, RowId, SessionDep
from cloud.models import MAX_ROW_ID, ClassroomCreate, ClassroomPublic, ClassroomUpdate

router = APIRouter(prefix="/classrooms", tags=["registry"])


@router.get("")
def list_classrooms(
    user: CurrentUser,
    session: SessionDep,
    school: Annotated[str | None, Query(description="only this school's classrooms")] = None,
    building: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID, description="only this building's classrooms")] = None,
) -> list[ClassroomPublic]:
    """The classrooms of the schools the user may see."""
    rooms = registry.list_classrooms(session, user=user, school_code=school, building_id=building)
    return [ClassroomPublic.model_validate(room) for room in rooms]


@router.get("/{classroom_id}")
def get_classroom(classroom_id: RowId, user: CurrentUser, session: SessionDep) -> ClassroomPublic:
    """One classroom."""
    return ClassroomPublic.model_validate(registry.read_classroom(session, user=user, classroom_id=classroom_id))


@router.post("", status_code=status.HTTP_201_CREATED)
def create_classroom(body: ClassroomCreate, actor: CurrentActor, session: SessionDep) -> ClassroomPublic:
    """Add a classroom to a building."""
    room = registry.create_classroom(
        session,
        actor=actor,
        building_id=body.building_id,
        name=body.name,
        grade=body.grade,
        class_label=body.class_label,
    )
    return ClassroomPublic.model_validate(room)


@router.patch("/{classroom_id}")
def update_classroom(
    classroom_id: RowId, body: ClassroomUpdate, actor: CurrentActor, session: SessionDep
) -> ClassroomPublic:
    """Rename a classroom or change its grade and class."""
    changes = body.model_dump(exclude_unset=True)
    room = registry.update_classroom(session, actor=actor, classroom_id=classroom_id, changes=changes)
    return ClassroomPublic.model_validate(room)


@router.delete("/{classroom_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_classroom(classroom_id: RowId, actor: CurrentActor, session: SessionDep) -> None:
    """Remove a classroom no device or roster entry refers to."""
    registry.delete_classroom(session, actor=actor, classroom_id=classroom_id)
