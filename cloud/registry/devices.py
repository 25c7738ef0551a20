"""Devices: listing, presence as people see it, and registering, changing or removing a device."""

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, select

from cloud.core.db import begin_write
from cloud.crud import audit
from cloud.crud.access import Scope, read_scope, require_school_write
from cloud.crud.common import Actor, apply_changes, delete_row, jsonable
from cloud.errors import AlreadyExists, InUse, InvalidInput, NotFound
from cloud.models import (
    Alarm,
    AttendanceEvent,
    Classroom,
    CommandAck,
    Device,
    DevicePublic,
    Gateway,
    HealthSample,
    School,
    TelemetrySample,
    User,
    utcnow,
)
from cloud.registry.common import actor_scope, flush_unique
from cloud.registry.gateways import DEFAULT_GATEWAY_STALE
from protocol import messages, topics


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
    device_ids: Sequence[str] | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> tuple[Sequence[Device], int]:
    """Devices `user` may see (of `device_ids`, if given), by id, and how many there are in all."""
    scope = read_scope(session, user).narrowed(school_code)
    conditions = _device_conditions(scope)
    if classroom_id is not None:
        conditions.append(col(Device.classroom_id) == classroom_id)
    if device_ids is not None:
        conditions.append(col(Device.id).in_(sorted(set(device_ids))))
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
    scope = actor_scope(session, actor)
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
    flush_unique(session, f"device {device_id} or its asset tag already exists")
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
    scope = actor_scope(session, actor)
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
    flush_unique(session, f"asset tag {device.asset_tag} is already taken")
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
    scope = actor_scope(session, actor)
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
