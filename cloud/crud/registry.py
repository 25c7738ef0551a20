"""The asset registry: cities, districts, schools, buildings, classrooms, gateways and devices."""

import secrets
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, select

from cloud.core import security
from cloud.core.db import begin_write
from cloud.crud import audit
from cloud.crud.access import (
    Scope,
    read_scope,
    require_city_write,
    require_district_write,
    require_school_write,
)
from cloud.crud.common import Actor, apply_changes, delete_row, jsonable
from cloud.errors import AlreadyExists, InUse, InvalidInput, NotFound
from cloud.models import (
    Alarm,
    AttendanceEvent,
    Building,
    City,
    Classroom,
    CommandAck,
    Device,
    DevicePublic,
    District,
    Gateway,
    GatewayPublic,
    HealthSample,
    School,
    TelemetrySample,
    User,
    utcnow,
)
from protocol import messages, topics

DEFAULT_GATEWAY_STALE = timedelta(seconds=120)
DEVICE_ASSET_FIELDS = ("model", "vendor", "serial", "asset_tag", "purchase_date", "warranty_end", "fw")


def _flush_unique(session: Session, message: str) -> None:
    """Flush; a unique constraint that a concurrent writer won first becomes AlreadyExists."""
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise AlreadyExists(message) from exc


def _require_name(changes: dict[str, Any], *fields: str) -> None:
    for name in fields:
        if name in changes and changes[name] is None:
            raise InvalidInput(f"{name} cannot be removed, only changed")


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
    _flush_unique(session, f"city {code} already exists")
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
    _require_name(changes, "name")
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
    _flush_unique(session, f"district {code} already exists")
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
    _require_name(changes, "name")
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
    _flush_unique(session, f"school {code} already exists")
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
    _require_name(changes, "name", "timezone")
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


def _actor_scope(session: Session, actor: Actor) -> Scope | None:
    return read_scope(session, actor.user) if actor.user is not None else None


def read_building(session: Session, *, user: User, building_id: int) -> Building:
    """One building."""
    return _visible_building(session, read_scope(session, user), building_id)


def create_building(session: Session, *, actor: Actor, school_code: str, name: str) -> Building:
    """Add a building to a school."""
    begin_write(session)
    scope = _actor_scope(session, actor)
    if session.get(School, school_code) is None or (scope is not None and not scope.allows_school(school_code)):
        raise NotFound(f"school {school_code} not found")
    require_school_write(session, actor, school_code)
    building = Building(school_code=school_code, name=name)
    session.add(building)
    _flush_unique(session, f"school {school_code} already has a building named {name!r}")
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
    building = _visible_building(session, _actor_scope(session, actor), building_id)
    require_school_write(session, actor, building.school_code)
    _require_name(changes, "name")
    diff = apply_changes(building, changes)
    _flush_unique(session, f"school {building.school_code} already has a building named {building.name!r}")
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
    building = _visible_building(session, _actor_scope(session, actor), building_id)
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
    building = _visible_building(session, _actor_scope(session, actor), building_id)
    require_school_write(session, actor, building.school_code)
    classroom = Classroom(
        school_code=building.school_code,
        building_id=building_id,
        name=name,
        grade=grade,
        class_label=class_label,
    )
    session.add(classroom)
    _flush_unique(session, f"building {building_id} already has a classroom named {name!r}")
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
    classroom = _visible_classroom(session, _actor_scope(session, actor), classroom_id)
    require_school_write(session, actor, classroom.school_code)
    _require_name(changes, "name")
    diff = apply_changes(classroom, changes)
    _flush_unique(session, f"building {classroom.building_id} already has a classroom named {classroom.name!r}")
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
    classroom = _visible_classroom(session, _actor_scope(session, actor), classroom_id)
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


# ---- gateways ------------------------------------------------------------------------------------


def gateway_for_token(session: Session, *, token: str) -> Gateway | None:
    """The gateway that holds `token`, if any."""
    return session.exec(select(Gateway).where(Gateway.token_hash == security.hash_token(token))).first()


def create_gateway(session: Session, *, actor: Actor, school_code: str, name: str | None = None) -> tuple[Gateway, str]:
    """Register a gateway for a school; return it with its token, which is stored only hashed."""
    begin_write(session)
    school = session.get(School, school_code)
    scope = _actor_scope(session, actor)
    if school is None or (scope is not None and not scope.allows_school(school_code)):
        raise NotFound(f"school {school_code} does not exist")
    require_district_write(actor, school.district_code)
    gateway_id = f"gw-{school_code}"
    if session.get(Gateway, gateway_id) is not None:
        gateway_id = f"gw-{school_code}-{secrets.token_hex(3)}"
    token = security.new_token()
    gateway = Gateway(
        id=gateway_id,
        school_code=school_code,
        name=(name or f"{school.name} gateway").strip(),
        token_hash=security.hash_token(token),
    )
    session.add(gateway)
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="gateway",
        entity_id=gateway_id,
        school_code=school_code,
        summary={"name": gateway.name},
    )
    session.commit()
    session.refresh(gateway)
    return gateway, token


def _visible_gateway(session: Session, scope: Scope | None, gateway_id: str) -> Gateway:
    gateway = session.get(Gateway, gateway_id)
    if gateway is None or (scope is not None and not scope.allows_school(gateway.school_code)):
        raise NotFound(f"gateway {gateway_id} not found")
    return gateway


def rotate_gateway_token(session: Session, *, actor: Actor, gateway_id: str) -> tuple[Gateway, str]:
    """Give a gateway a new token; the old one stops working at once."""
    begin_write(session)
    gateway = _visible_gateway(session, _actor_scope(session, actor), gateway_id)
    school = session.get(School, gateway.school_code)
    require_district_write(actor, school.district_code if school else None)
    token = security.new_token()
    gateway.token_hash = security.hash_token(token)
    session.add(gateway)
    audit.record(
        session,
        actor=actor,
        action="rotate_token",
        entity="gateway",
        entity_id=gateway_id,
        school_code=gateway.school_code,
    )
    session.commit()
    session.refresh(gateway)
    return gateway, token


def _gateway_view(gateway: Gateway, *, now: datetime, stale_after: timedelta) -> GatewayPublic:
    view = GatewayPublic.model_validate(gateway)
    view.stale = gateway.last_sync_at is None or now - gateway.last_sync_at > stale_after
    return view


def list_gateways(
    session: Session,
    *,
    user: User,
    school_code: str | None = None,
    stale_after: timedelta = DEFAULT_GATEWAY_STALE,
    now: datetime | None = None,
) -> list[GatewayPublic]:
    """The gateways of the schools `user` may see, each marked stale if it has stopped syncing."""
    scope = read_scope(session, user).narrowed(school_code)
    statement = select(Gateway).order_by(Gateway.id)
    condition = scope.school_condition(Gateway.school_code)
    if condition is not None:
        statement = statement.where(condition)
    now = now or utcnow()
    return [_gateway_view(g, now=now, stale_after=stale_after) for g in session.exec(statement)]


def read_gateway(
    session: Session,
    *,
    user: User,
    gateway_id: str,
    stale_after: timedelta = DEFAULT_GATEWAY_STALE,
    now: datetime | None = None,
) -> GatewayPublic:
    """One gateway."""
    gateway = _visible_gateway(session, read_scope(session, user), gateway_id)
    return _gateway_view(gateway, now=now or utcnow(), stale_after=stale_after)


# ---- devices -------------------------------------------------------------------------------------


def _last_sync_by_school(session: Session, school_codes: set[str]) -> dict[str, datetime | None]:
    if not school_codes:
        return {}
    rows = session.exec(
        select(Gateway.school_code, func.max(Gateway.last_sync_at))
        .where(col(Gateway.school_code).in_(sorted(school_codes)))
        .group_by(col(Gateway.school_code))
    ).all()
    return dict(rows)


def device_views(
    session: Session,
    devices: Sequence[Device],
    *,
    stale_after: timedelta = DEFAULT_GATEWAY_STALE,
    now: datetime | None = None,
) -> list[DevicePublic]:
    """Devices as people see them: "unknown" presence while their school's gateway is not syncing."""
    now = now or utcnow()
    last_sync = _last_sync_by_school(session, {device.school_code for device in devices})
    views = []
    for device in devices:
        view = DevicePublic.model_validate(device)
        synced = last_sync.get(device.school_code)
        view.reported_presence = view.presence
        view.gateway_last_sync_at = synced
        if synced is None or now - synced > stale_after:
            view.presence = "unknown"
        views.append(view)
    return views


def _device_conditions(scope: Scope) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    school_condition = scope.school_condition(Device.school_code)
    if school_condition is not None:
        conditions.append(school_condition)
    if scope.devices is not None:
        conditions.append(col(Device.id).in_(sorted(scope.devices)))
    return conditions


def list_devices(
    session: Session,
    *,
    user: User,
    school_code: str | None = None,
    classroom_id: int | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[Sequence[Device], int]:
    """Devices `user` may see, by id, and how many there are in all."""
    scope = read_scope(session, user).narrowed(school_code)
    conditions = _device_conditions(scope)
    if classroom_id is not None:
        conditions.append(col(Device.classroom_id) == classroom_id)
    total = session.exec(select(func.count()).select_from(Device).where(*conditions)).one()
    statement = select(Device).where(*conditions).order_by(Device.id).offset(offset)
    if limit is not None:
        statement = statement.limit(limit)
    return session.exec(statement).all(), total


def get_device(session: Session, *, user: User, device_id: str) -> Device:
    """One device; NotFound also when it exists but lies outside what `user` may see."""
    scope = read_scope(session, user)
    device = session.get(Device, device_id)
    if device is None or not scope.allows_device(device):
        raise NotFound(f"device {device_id} not found")
    return device


def _check_dates(purchase: date | None, warranty_end: date | None) -> None:
    if purchase is not None and warranty_end is not None and warranty_end < purchase:
        raise InvalidInput("warranty_end is before purchase_date")


def _check_asset_tag(session: Session, asset_tag: str | None, device_id: str) -> None:
    if asset_tag is None:
        return
    other = session.exec(select(Device.id).where(Device.asset_tag == asset_tag)).first()
    if other is not None and other != device_id:
        raise AlreadyExists(f"asset tag {asset_tag} is already on device {other}")


def _check_classroom(session: Session, classroom_id: int | None, school_code: str) -> None:
    if classroom_id is None:
        return
    classroom = session.get(Classroom, classroom_id)
    if classroom is None or classroom.school_code != school_code:
        raise InvalidInput(f"classroom {classroom_id} is not a classroom of school {school_code}")


def create_device(session: Session, *, actor: Actor, fields: dict[str, Any]) -> Device:
    """Register a device before it first connects, with what the asset register knows of it."""
    begin_write(session)
    device_id = fields["id"]
    school_code = fields["school_code"]
    if not topics.is_device_id(device_id):
        raise InvalidInput("device id must be esp32-<12 lowercase hex digits of the MAC>")
    if fields.get("role") is not None and fields["role"] not in messages.ROLES:
        raise InvalidInput(f"role must be one of {', '.join(messages.ROLES)}")
    scope = _actor_scope(session, actor)
    if session.get(School, school_code) is None or (scope is not None and not scope.allows_school(school_code)):
        raise NotFound(f"school {school_code} not found")
    require_school_write(session, actor, school_code)
    if session.get(Device, device_id) is not None:
        raise AlreadyExists(f"device {device_id} already exists")
    _check_classroom(session, fields.get("classroom_id"), school_code)
    _check_asset_tag(session, fields.get("asset_tag"), device_id)
    _check_dates(fields.get("purchase_date"), fields.get("warranty_end"))
    device = Device(**fields, presence="unknown")
    session.add(device)
    _flush_unique(session, f"device {device_id} or its asset tag already exists")
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="device",
        entity_id=device_id,
        school_code=school_code,
        summary={name: jsonable(value) for name, value in fields.items() if value is not None and name != "id"},
    )
    session.commit()
    session.refresh(device)
    return device


def update_device(session: Session, *, actor: Actor, device_id: str, changes: dict[str, Any]) -> Device:
    """Change a device's asset data, bind it to a classroom, or move it to another school."""
    begin_write(session)
    scope = _actor_scope(session, actor)
    device = session.get(Device, device_id)
    if device is None or (scope is not None and not scope.allows_device(device)):
        raise NotFound(f"device {device_id} not found")
    previous_school = device.school_code
    require_school_write(session, actor, previous_school)
    changes = dict(changes)
    if changes.get("school_code") is None:
        changes.pop("school_code", None)
    target_school = changes.get("school_code", previous_school)
    if target_school != previous_school:
        if session.get(School, target_school) is None:
            raise NotFound(f"school {target_school} not found")
        require_school_write(session, actor, target_school)
        changes.setdefault("classroom_id", None)
    if changes.get("role") is not None and changes["role"] not in messages.ROLES:
        raise InvalidInput(f"role must be one of {', '.join(messages.ROLES)}")
    _check_classroom(session, changes.get("classroom_id", device.classroom_id), target_school)
    _check_asset_tag(session, changes.get("asset_tag"), device_id)
    _check_dates(changes.get("purchase_date", device.purchase_date), changes.get("warranty_end", device.warranty_end))
    diff = apply_changes(device, changes)
    _flush_unique(session, f"asset tag {device.asset_tag} is already taken")
    if diff:
        audit.record(
            session,
            actor=actor,
            action="update",
            entity="device",
            entity_id=device_id,
            school_code=previous_school,
            summary=diff,
        )
    session.commit()
    session.refresh(device)
    return device


_HISTORY_TABLES = (AttendanceEvent, Alarm, CommandAck, HealthSample, TelemetrySample)


def _has_history(session: Session, device_id: str) -> bool:
    """True if any history table holds a record of the device (each has an index led by device_id)."""
    return any(
        session.exec(select(model.id).where(model.device_id == device_id).limit(1)).first() is not None
        for model in _HISTORY_TABLES
    )


def delete_device(session: Session, *, actor: Actor, device_id: str) -> None:
    """Remove a device registered by mistake; one with stored history cannot be removed."""
    begin_write(session)
    scope = _actor_scope(session, actor)
    # Locked, so that a sync writing its records cannot slip in between the check below and the delete.
    device = session.get(Device, device_id, with_for_update=True)
    if device is None or (scope is not None and not scope.allows_device(device)):
        raise NotFound(f"device {device_id} not found")
    school_code = device.school_code
    require_school_write(session, actor, school_code)
    # The history tables have no foreign keys (schema 0004): their rows are looked for here.
    if _has_history(session, device_id):
        raise InUse(f"device {device_id} is still referred to by other records; remove those first")
    delete_row(session, device, f"device {device_id}")
    audit.record(session, actor=actor, action="delete", entity="device", entity_id=device_id, school_code=school_code)
    session.commit()
