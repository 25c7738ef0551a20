"""Buildings and the classrooms in them, within a school."""

from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, col, select

from cloud.core.db import begin_write
from cloud.crud import audit
from cloud.crud.access import Scope, read_scope, require_school_write
from cloud.crud.common import Actor, apply_changes, delete_row
from cloud.errors import NotFound
from cloud.models import Building, Classroom, School, User
from cloud.registry.common import actor_scope, flush_unique, require_name

# ---- buildings -----------------------------------------------------------------------------------


def list_buildings(session: Session, *, user: User, school_code: str | None = None) -> Sequence[Building]:
    """The buildings of the schools `user` may see."""
    scope = read_scope(session, user).narrowed(school_code)
    statement = select(Building).order_by(Building.school_code, Building.name)
    condition = scope.school_condition(Building.school_code)
    if condition is not None:
        statement = statement.where(condition)
    return session.exec(statement).all()


def _visible_building(session: Session, scope: Scope | None, building_id: int) -> Building:
    building = session.get(Building, building_id)
    if building is None or (scope is not None and not scope.allows_school(building.school_code)):
        raise NotFound(f"building {building_id} not found")
    return building


def read_building(session: Session, *, user: User, building_id: int) -> Building:
    """One building."""
    return _visible_building(session, read_scope(session, user), building_id)


def create_building(session: Session, *, actor: Actor, school_code: str, name: str) -> Building:
    """Add a building to a school."""
    begin_write(session)
    scope = actor_scope(session, actor)
    if session.get(School, school_code) is None or (scope is not None and not scope.allows_school(school_code)):
        raise NotFound(f"school {school_code} not found")
    require_school_write(session, actor, school_code)
    building = Building(school_code=school_code, name=name)
    session.add(building)
    flush_unique(session, f"school {school_code} already has a building named {name!r}")
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="building",
        entity_id=building.id,
        school_code=school_code,
        summary={"name": name},
    )
    session.commit()
    session.refresh(building)
    return building


def update_building(session: Session, *, actor: Actor, building_id: int, changes: dict[str, Any]) -> Building:
    """Rename a building."""
    begin_write(session)
    building = _visible_building(session, actor_scope(session, actor), building_id)
    require_school_write(session, actor, building.school_code)
    require_name(changes, "name")
    diff = apply_changes(building, changes)
    flush_unique(session, f"school {building.school_code} already has a building named {building.name!r}")
    if diff:
        audit.record(
            session,
            actor=actor,
            action="update",
            entity="building",
            entity_id=building_id,
            school_code=building.school_code,
            summary=diff,
        )
    session.commit()
    session.refresh(building)
    return building


def delete_building(session: Session, *, actor: Actor, building_id: int) -> None:
    """Remove a building without classrooms."""
    begin_write(session)
    building = _visible_building(session, actor_scope(session, actor), building_id)
    school_code = building.school_code
    require_school_write(session, actor, school_code)
    delete_row(session, building, f"building {building_id}")
    audit.record(
        session,
        actor=actor,
        action="delete",
        entity="building",
        entity_id=building_id,
        school_code=school_code,
    )
    session.commit()


# ---- classrooms ----------------------------------------------------------------------------------


def list_classrooms(
    session: Session, *, user: User, school_code: str | None = None, building_id: int | None = None
) -> Sequence[Classroom]:
    """The classrooms of the schools `user` may see."""
    scope = read_scope(session, user).narrowed(school_code)
    statement = select(Classroom).order_by(col(Classroom.school_code), col(Classroom.building_id), col(Classroom.name))
    condition = scope.school_condition(Classroom.school_code)
    if condition is not None:
        statement = statement.where(condition)
    if building_id is not None:
        statement = statement.where(Classroom.building_id == building_id)
    return session.exec(statement).all()


def _visible_classroom(session: Session, scope: Scope | None, classroom_id: int) -> Classroom:
    classroom = session.get(Classroom, classroom_id)
    if classroom is None or (scope is not None and not scope.allows_school(classroom.school_code)):
        raise NotFound(f"classroom {classroom_id} not found")
    return classroom


def read_classroom(session: Session, *, user: User, classroom_id: int) -> Classroom:
    """One classroom."""
    return _visible_classroom(session, read_scope(session, user), classroom_id)


def create_classroom(
    session: Session,
    *,
    actor: Actor,
    building_id: int,
    name: str,
    grade: int | None = None,
    class_label: str | None = None,
) -> Classroom:
    """Add a classroom to a building."""
    begin_write(session)
    building = _visible_building(session, actor_scope(session, actor), building_id)
    require_school_write(session, actor, building.school_code)
    classroom = Classroom(
        school_code=building.school_code,
        building_id=building_id,
        name=name,
        grade=grade,
        class_label=class_label,
    )
    session.add(classroom)
    flush_unique(session, f"building {building_id} already has a classroom named {name!r}")
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="classroom",
        entity_id=classroom.id,
        school_code=building.school_code,
        summary={"building_id": building_id, "name": name, "grade": grade, "class_label": class_label},
    )
    session.commit()
    session.refresh(classroom)
    return classroom


def update_classroom(session: Session, *, actor: Actor, classroom_id: int, changes: dict[str, Any]) -> Classroom:
    """Rename a classroom or change its grade and class."""
    begin_write(session)
    classroom = _visible_classroom(session, actor_scope(session, actor), classroom_id)
    require_school_write(session, actor, classroom.school_code)
    require_name(changes, "name")
    diff = apply_changes(classroom, changes)
    flush_unique(session, f"building {classroom.building_id} already has a classroom named {classroom.name!r}")
    if diff:
        audit.record(
            session,
            actor=actor,
            action="update",
            entity="classroom",
            entity_id=classroom_id,
            school_code=classroom.school_code,
            summary=diff,
        )
    session.commit()
    session.refresh(classroom)
    return classroom


def delete_classroom(session: Session, *, actor: Actor, classroom_id: int) -> None:
    """Remove a classroom that no device or roster entry refers to."""
    begin_write(session)
    classroom = _visible_classroom(session, actor_scope(session, actor), classroom_id)
    school_code = classroom.school_code
    require_school_write(session, actor, school_code)
    delete_row(session, classroom, f"classroom {classroom_id}")
    audit.record(
        session,
        actor=actor,
        action="delete",
        entity="classroom",
        entity_id=classroom_id,
        school_code=school_code,
    )
    session.commit()
