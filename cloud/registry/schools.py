"""Cities, districts and schools: the places a county is made of, and who may change them."""

from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlmodel import Session, select

from cloud.core.db import begin_write
from cloud.crud import audit
from cloud.crud.access import read_scope, require_city_write, require_district_write
from cloud.crud.common import Actor, apply_changes, delete_row
from cloud.errors import AlreadyExists, InvalidInput, NotFound
from cloud.models import City, District, School, User
from cloud.registry.common import flush_unique, require_name
from protocol import topics

# ---- cities and districts ------------------------------------------------------------------------


def list_cities(session: Session, *, user: User) -> Sequence[City]:
    """Every city; the names of places are not confidential."""
    read_scope(session, user)
    return session.exec(select(City).order_by(City.code)).all()


def get_city(session: Session, *, user: User, code: str) -> City:
    """One city."""
    read_scope(session, user)
    city = session.get(City, code)
    if city is None:
        raise NotFound(f"city {code} not found")
    return city


def create_city(session: Session, *, actor: Actor, code: str, name: str) -> City:
    """Register a city."""
    begin_write(session)
    require_city_write(actor)
    if session.get(City, code) is not None:
        raise AlreadyExists(f"city {code} already exists")
    city = City(code=code, name=name)
    session.add(city)
    flush_unique(session, f"city {code} already exists")
    audit.record(session, actor=actor, action="create", entity="city", entity_id=code, summary={"name": name})
    session.commit()
    session.refresh(city)
    return city


def update_city(session: Session, *, actor: Actor, code: str, changes: dict[str, Any]) -> City:
    """Rename a city."""
    begin_write(session)
    require_city_write(actor)
    city = session.get(City, code)
    if city is None:
        raise NotFound(f"city {code} not found")
    require_name(changes, "name")
    diff = apply_changes(city, changes)
    if diff:
        audit.record(session, actor=actor, action="update", entity="city", entity_id=code, summary=diff)
    session.commit()
    session.refresh(city)
    return city


def delete_city(session: Session, *, actor: Actor, code: str) -> None:
    """Remove a city that has no districts."""
    begin_write(session)
    require_city_write(actor)
    city = session.get(City, code)
    if city is None:
        raise NotFound(f"city {code} not found")
    delete_row(session, city, f"city {code}")
    audit.record(session, actor=actor, action="delete", entity="city", entity_id=code)
    session.commit()


def list_districts(session: Session, *, user: User, city_code: str | None = None) -> Sequence[District]:
    """Every district, or a city's."""
    read_scope(session, user)
    statement = select(District).order_by(District.code)
    if city_code is not None:
        statement = statement.where(District.city_code == city_code)
    return session.exec(statement).all()


def get_district(session: Session, *, user: User, code: str) -> District:
    """One district."""
    read_scope(session, user)
    district = session.get(District, code)
    if district is None:
        raise NotFound(f"district {code} not found")
    return district


def create_district(session: Session, *, actor: Actor, code: str, city_code: str, name: str) -> District:
    """Register a county or district of a city."""
    begin_write(session)
    require_city_write(actor)
    if session.get(City, city_code) is None:
        raise NotFound(f"city {city_code} does not exist")
    if session.get(District, code) is not None:
        raise AlreadyExists(f"district {code} already exists")
    district = District(code=code, city_code=city_code, name=name)
    session.add(district)
    flush_unique(session, f"district {code} already exists")
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="district",
        entity_id=code,
        district_code=code,
        summary={"city_code": city_code, "name": name},
    )
    session.commit()
    session.refresh(district)
    return district


def update_district(session: Session, *, actor: Actor, code: str, changes: dict[str, Any]) -> District:
    """Rename a district."""
    begin_write(session)
    require_city_write(actor)
    district = session.get(District, code)
    if district is None:
        raise NotFound(f"district {code} not found")
    require_name(changes, "name")
    diff = apply_changes(district, changes)
    if diff:
        audit.record(
            session,
            actor=actor,
            action="update",
            entity="district",
            entity_id=code,
            district_code=code,
            summary=diff,
        )
    session.commit()
    session.refresh(district)
    return district


def delete_district(session: Session, *, actor: Actor, code: str) -> None:
    """Remove a district that has no schools or users."""
    begin_write(session)
    require_city_write(actor)
    district = session.get(District, code)
    if district is None:
        raise NotFound(f"district {code} not found")
    delete_row(session, district, f"district {code}")
    audit.record(session, actor=actor, action="delete", entity="district", entity_id=code, district_code=code)
    session.commit()


# ---- schools -------------------------------------------------------------------------------------


def get_school(session: Session, *, code: str) -> School | None:
    """The school with `code`, if any, whoever asks: for internal use and the admin command line."""
    return session.get(School, code)


def _check_timezone(timezone: str) -> None:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"unknown time zone {timezone!r}; use an IANA name such as Asia/Shanghai") from exc


def list_schools(session: Session, *, user: User, district_code: str | None = None) -> Sequence[School]:
    """The schools `user` may see, by code."""
    scope = read_scope(session, user)
    statement = select(School).order_by(School.code)
    condition = scope.school_condition(School.code)
    if condition is not None:
        statement = statement.where(condition)
    if district_code is not None:
        statement = statement.where(School.district_code == district_code)
    return session.exec(statement).all()


def read_school(session: Session, *, user: User, code: str) -> School:
    """One school; NotFound also when it lies outside what `user` may see."""
    scope = read_scope(session, user)
    school = session.get(School, code)
    if school is None or not scope.allows_school(code):
        raise NotFound(f"school {code} not found")
    return school


def create_school(
    session: Session,
    *,
    actor: Actor,
    code: str,
    name: str,
    timezone: str = "Asia/Shanghai",
    district_code: str | None = None,
) -> School:
    """Register a school; a district's county admin registers it in their district."""
    begin_write(session)
    if district_code is None and actor.user is not None:
        district_code = actor.user.district_code
    require_district_write(actor, district_code)
    if not topics.is_school_code(code):
        raise InvalidInput("school code must be 1 to 32 letters, digits, '_' or '-'")
    if not name.strip():
        raise InvalidInput("school name must not be empty")
    _check_timezone(timezone)
    if district_code is not None and session.get(District, district_code) is None:
        raise NotFound(f"district {district_code} does not exist")
    if session.get(School, code) is not None:
        raise AlreadyExists(f"school {code} already exists")
    school = School(code=code, name=name.strip(), timezone=timezone, district_code=district_code)
    session.add(school)
    flush_unique(session, f"school {code} already exists")
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="school",
        entity_id=code,
        school_code=code,
        district_code=district_code,
        summary={"name": school.name, "timezone": timezone, "district_code": district_code},
    )
    session.commit()
    session.refresh(school)
    return school


def _writable_school(session: Session, actor: Actor, code: str) -> School:
    school = session.get(School, code)
    if school is None or (actor.user is not None and not read_scope(session, actor.user).allows_school(code)):
        raise NotFound(f"school {code} not found")
    require_district_write(actor, school.district_code)
    return school


def update_school(session: Session, *, actor: Actor, code: str, changes: dict[str, Any]) -> School:
    """Rename a school, change its time zone, or move it to another district."""
    begin_write(session)
    school = _writable_school(session, actor, code)
    require_name(changes, "name", "timezone")
    if changes.get("timezone") is not None:
        _check_timezone(changes["timezone"])
    if "district_code" in changes and changes["district_code"] != school.district_code:
        new_district = changes["district_code"]
        require_district_write(actor, new_district)
        if new_district is not None and session.get(District, new_district) is None:
            raise NotFound(f"district {new_district} does not exist")
    previous_district = school.district_code
    diff = apply_changes(school, changes)
    if diff:
        audit.record(
            session,
            actor=actor,
            action="update",
            entity="school",
            entity_id=code,
            school_code=code,
            district_code=previous_district,
            summary=diff,
        )
    session.commit()
    session.refresh(school)
    return school


def delete_school(session: Session, *, actor: Actor, code: str) -> None:
    """Remove a school that has nothing registered in it."""
    begin_write(session)
    school = _writable_school(session, actor, code)
    district_code = school.district_code
    delete_row(session, school, f"school {code}")
    audit.record(
        session,
        actor=actor,
        action="delete",
        entity="school",
        entity_id=code,
        school_code=code,
        district_code=district_code,
    )
    session.commit()
