"""Commands to devices (fanned out per device, followed by correlation id) and desired configuration.

A command goes queued -> sent (a gateway took it on its downlink) -> delivered (the gateway published it
to the device) -> succeeded | failed | expired (the device's ack, or no ack before `exp`).
"""

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, select, update

from cloud import policy
from cloud.core.db import begin_write
from cloud.crud import audit
from cloud.crud.access import Scope, district_schools, read_scope, require_school_write, work_order_devices
from cloud.crud.common import Actor, chunks, dialect_insert
from cloud.errors import AccessDenied, InvalidInput, NotFound
from cloud.models import (
    COMMAND_STATES,
    Classroom,
    Command,
    CommandBatch,
    CommandBatchPublic,
    CommandPublic,
    Device,
    DeviceConfig,
    DeviceConfigPublic,
    Downlink,
    DownlinkCommand,
    DownlinkConfig,
    Gateway,
    School,
    User,
    utcnow,
)
from protocol import messages

logger = logging.getLogger(__name__)

# One batch reaches at most a province's worth of devices; more is a mistake in the target.
MAX_FAN_OUT = 2_000_000
DOWNLINK_LIMIT = 500
ACK_STATES = {"ok": "succeeded", "error": "failed", "rejected": "failed", "expired": "expired"}
COMMAND_STATUS_STATES = ("delivered",)
OPEN_STATES = ("queued", "sent", "delivered")


# ---- sending -------------------------------------------------------------------------------------


def _sender(session: Session, actor: Actor) -> tuple[User | None, Scope | None]:
    if actor.kind == "cli":
        return None, None
    user = actor.user
    if user is None or not user.is_active:
        raise AccessDenied("only signed-in staff send commands")
    if not policy.can_send_commands(user):
        raise AccessDenied(f"the role {user.role} may not send commands")
    return user, read_scope(session, user)


def _target_devices(
    session: Session, actor: Actor, user: User | None, scope: Scope | None, target: dict[str, Any]
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """(device id, school) of every device the target names, checked against what the sender may command."""
    named = [name for name in ("device", "classroom", "school", "district", "county") if target.get(name) is not None]
    if len(named) != 1:
        raise InvalidInput("target names exactly one of device, classroom, school, district or county")
    level = named[0]
    value = target[level]
    if user is not None and not policy.can_command_level(user, level):
        if policy.works_own_orders(user):
            raise AccessDenied("a technician commands single devices of their work orders only")
        raise AccessDenied(f"the role {user.role} may not command a whole {level}")
    statement = select(Device.id, Device.school_code)
    if level == "device":
        device = session.get(Device, value)
        if device is None or (scope is not None and not scope.allows_device(device)):
            raise NotFound(f"device {value} not found")
        if (
            user is not None
            and not policy.can_command_reach(user)
            and device.id not in work_order_devices(session, user)
        ):
            raise AccessDenied(f"device {value} is not on one of your open work orders")
        statement = statement.where(Device.id == value)
    elif level == "classroom":
        classroom = session.get(Classroom, value)
        if classroom is None or (scope is not None and not scope.allows_school(classroom.school_code)):
            raise NotFound(f"classroom {value} not found")
        statement = statement.where(Device.classroom_id == value)
    elif level == "school":
        if session.get(School, value) is None or (scope is not None and not scope.allows_school(value)):
            raise NotFound(f"school {value} not found")
        statement = statement.where(Device.school_code == value)
    elif level == "district":
        if user is not None and user.district_code not in (None, value):
            raise AccessDenied(f"no access to district {value}")
        statement = statement.where(col(Device.school_code).in_(sorted(district_schools(session, value))))
    elif scope is not None and scope.schools is not None:
        statement = statement.where(col(Device.school_code).in_(sorted(scope.schools)))
    role = target.get("role")
    if role is not None:
        statement = statement.where(Device.role == role)
    rows = [(device_id, school) for device_id, school in session.exec(statement.order_by(col(Device.id))).all()]
    if user is not None and policy.can_command_reach(user):
        for school in sorted({school for _, school in rows}):
            require_school_write(session, actor, school)
    return rows, {level: value, **({"role": role} if role else {})}


def send_command(
    session: Session,
    *,
    actor: Actor,
    target: dict[str, Any],
    name: str,
    args: dict[str, Any],
    ttl_s: int = 600,
    send_at: datetime | None = None,
    now: datetime | None = None,
) -> CommandBatch:
    """Queue a command for every device of the target: one command, with its own cid, per device."""
    begin_write(session)
    now = now or utcnow()
    if name not in messages.COMMAND_NAMES:
        raise InvalidInput(f"unknown command {name!r}; the firmware knows {', '.join(messages.COMMAND_NAMES)}")
    target = dict(target)
    if name in messages.BLACKBOARD_COMMANDS:
        if target.get("role") not in (None, "blackboard"):
            raise InvalidInput(f"{name} is a blackboard command; it cannot go to {target['role']} devices")
        target["role"] = "blackboard"
    user, scope = _sender(session, actor)
    devices, described = _target_devices(session, actor, user, scope, target)
    if not devices:
        raise InvalidInput(f"the target {described} holds no devices" + (" of that role" if target.get("role") else ""))
    if len(devices) > MAX_FAN_OUT:
        raise InvalidInput(f"the target holds {len(devices)} devices; at most {MAX_FAN_OUT} per command")
    send_at = send_at or now
    exp_at = send_at + timedelta(seconds=ttl_s)
    if exp_at <= now:
        raise InvalidInput("the command would expire before it could be sent; send_at is too far in the past")
    batch = CommandBatch(
        id=uuid.uuid4().hex,
        name=name,
        args=args,
        target=described,
        created_by=actor.name,
        created_at=now,
        send_at=send_at,
        exp_at=exp_at,
        devices=len(devices),
    )
    session.add(batch)
    session.flush()
    for chunk in chunks(devices):
        session.exec(
            dialect_insert(session, Command).values(
                [
                    {
                        "cid": uuid.uuid4().hex,
                        "batch_id": batch.id,
                        "device_id": device_id,
                        "school_code": school,
                        "name": name,
                        "args": args,
                        "state": "queued",
                        "send_at": send_at,
                        "exp_at": exp_at,
                    }
                    for device_id, school in chunk
                ]
            )
        )
    schools = sorted({school for _, school in devices})
    audit.record(
        session,
        actor=actor,
        action="command",
        entity="command_batch",
        entity_id=batch.id,
        school_code=schools[0] if len(schools) == 1 else None,
        district_code=actor.user.district_code if actor.user is not None and len(schools) > 1 else None,
        summary={"name": name, "target": described, "devices": len(devices), "schools": len(schools)},
        at=now,
    )
    session.commit()
    session.refresh(batch)
    logger.info("command %s queued for %d devices", name, len(devices), extra={"batch_id": batch.id})
    return batch


# ---- following -----------------------------------------------------------------------------------


def _command_conditions(session: Session, user: User) -> list[ColumnElement[bool]]:
    scope = read_scope(session, user)
    conditions: list[ColumnElement[bool]] = []
    school_condition = scope.school_condition(Command.school_code)
    if school_condition is not None:
        conditions.append(school_condition)
    if scope.devices is not None:
        conditions.append(col(Command.device_id).in_(sorted(scope.devices)))
    return conditions


def _states(
    session: Session, batch_ids: Sequence[str], conditions: list[ColumnElement[bool]]
) -> dict[str, dict[str, int]]:
    if not batch_ids:
        return {}
    rows = session.exec(
        select(Command.batch_id, Command.state, func.count())
        .where(col(Command.batch_id).in_(list(batch_ids)), *conditions)
        .group_by(col(Command.batch_id), col(Command.state))
    ).all()
    states: dict[str, dict[str, int]] = {batch_id: dict.fromkeys(COMMAND_STATES, 0) for batch_id in batch_ids}
    for batch_id, state, count in rows:
        states[batch_id][state] = count
    return states


def _batch_view(batch: CommandBatch, states: dict[str, int], commands: Sequence[Command] | None) -> CommandBatchPublic:
    return CommandBatchPublic(
        id=batch.id,
        name=batch.name,
        args=batch.args,
        target=batch.target,
        created_by=batch.created_by,
        created_at=batch.created_at,
        send_at=batch.send_at,
        exp_at=batch.exp_at,
        devices=batch.devices,
        states=states,
        commands=None if commands is None else [CommandPublic.model_validate(c) for c in commands],
    )


def list_batches(session: Session, *, user: User, limit: int = 100, offset: int = 0) -> list[CommandBatchPublic]:
    """Command batches that reach devices `user` may see, newest first, with their counts per state."""
    conditions = _command_conditions(session, user)
    statement = select(CommandBatch).order_by(col(CommandBatch.created_at).desc(), col(CommandBatch.id))
    if conditions:
        visible = select(Command.batch_id).where(*conditions).distinct()
        statement = statement.where(col(CommandBatch.id).in_(visible))
    batches = session.exec(statement.offset(offset).limit(limit)).all()
    states = _states(session, [b.id for b in batches], conditions)
    return [_batch_view(batch, states[batch.id], None) for batch in batches]


def read_batch(
    session: Session, *, user: User, batch_id: str, state: str | None = None, limit: int = 1000, offset: int = 0
) -> CommandBatchPublic:
    """One batch: counts per state and a page of its commands, of the devices `user` may see."""
    conditions = _command_conditions(session, user)
    batch = session.get(CommandBatch, batch_id)
    if batch is None:
        raise NotFound(f"command batch {batch_id} not found")
    states = _states(session, [batch_id], conditions)[batch_id]
    if sum(states.values()) == 0:
        raise NotFound(f"command batch {batch_id} not found")
    statement = select(Command).where(Command.batch_id == batch_id, *conditions)
    if state is not None:
        statement = statement.where(Command.state == state)
    commands = session.exec(statement.order_by(col(Command.device_id)).offset(offset).limit(limit)).all()
    return _batch_view(batch, states, commands)


# ---- the gateway's side --------------------------------------------------------------------------


def take_downlink(
    session: Session, *, school_code: str, config_cursor: int, now: datetime | None = None, limit: int = DOWNLINK_LIMIT
) -> Downlink:
    """Hand a school's gateway its queued commands (marking them sent) and configs changed after its cursor."""
    now = now or utcnow()
    school = school_code
    has_commands = session.exec(
        select(Command.id)
        .where(Command.school_code == school, Command.state == "queued", Command.send_at <= now, Command.exp_at > now)
        .limit(1)
    ).first()
    commands: list[DownlinkCommand] = []
    if has_commands is not None:
        begin_write(session)
        rows = session.exec(
            select(Command)
            .where(
                Command.school_code == school, Command.state == "queued", Command.send_at <= now, Command.exp_at > now
            )
            .order_by(col(Command.id))
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            row.state, row.sent_at = "sent", now
            session.add(row)
            commands.append(
                DownlinkCommand(
                    cid=row.cid, device=row.device_id, name=row.name, args=row.args, exp=row.exp_at.timestamp()
                )
            )
        session.commit()
    latest = (
        session.exec(select(func.max(DeviceConfig.change_seq)).where(DeviceConfig.school_code == school)).one() or 0
    )
    # A cursor ahead of the cloud (a restored database) is taken back, so that later changes still reach it.
    cursor = min(config_cursor, latest)
    configs = session.exec(
        select(DeviceConfig)
        .where(DeviceConfig.school_code == school, DeviceConfig.change_seq > cursor)
        .order_by(col(DeviceConfig.change_seq))
        .limit(limit)
    ).all()
    if configs:
        cursor = configs[-1].change_seq
    session.rollback()
    return Downlink(
        commands=commands,
        configs=[DownlinkConfig(device=c.device_id, version=c.version, values=c.values) for c in configs],
        config_cursor=cursor,
    )


def apply_command_reports(
    session: Session, *, gateway: Gateway, reports: Sequence[tuple[str, str | None, dict[str, Any], datetime]]
) -> int:
    """Apply acks and command_status records of a sync batch: (kind, device, body, ts) each. The caller commits."""
    cids = sorted({body["cid"] for _, _, body, _ in reports})
    if not cids:
        return 0
    commands = {
        c.cid: c
        for c in session.exec(
            select(Command).where(col(Command.cid).in_(cids), Command.school_code == gateway.school_code)
        ).all()
    }
    changed = 0
    for kind, device, body, ts in reports:
        command = commands.get(body["cid"])
        if command is None or (device is not None and device != command.device_id):
            continue
        if kind == messages.ACK:
            if command.result is not None:
                continue
            # The device's own answer outranks an expiry the cloud assumed for want of one.
            command.state = ACK_STATES[body["result"]]
            command.result = body["result"]
            command.detail = body.get("detail")
            command.finished_at = ts
        elif command.state in ("queued", "sent"):
            command.state = "delivered"
            command.delivered_at = ts
        else:
            continue
        session.add(command)
        changed += 1
    return changed


def expire_commands(session: Session, *, now: datetime) -> int:
    """Commands past their expiry without an answer become expired. The caller commits."""
    result = session.exec(
        update(Command)
        .where(col(Command.state).in_(OPEN_STATES), col(Command.exp_at) <= now)
        .values(state="expired", finished_at=now, detail="no answer before expiry")
    )
    return result.rowcount or 0


# ---- desired configuration -----------------------------------------------------------------------


def _config_view(device: Device, config: DeviceConfig | None) -> DeviceConfigPublic:
    return DeviceConfigPublic(
        device_id=device.id,
        desired_version=config.version if config else None,
        desired=config.values if config else None,
        reported_version=device.config_version,
        in_sync=config is None or device.config_version == config.version,
        updated_at=config.updated_at if config else None,
        updated_by=config.updated_by if config else None,
    )


def read_device_config(session: Session, *, user: User, device_id: str) -> DeviceConfigPublic:
    """A device's desired configuration against the version it reports running."""
    device = session.get(Device, device_id)
    if device is None or not read_scope(session, user).allows_device(device):
        raise NotFound(f"device {device_id} not found")
    return _config_view(device, session.get(DeviceConfig, device_id))


def set_device_config(
    session: Session, *, actor: Actor, device_id: str, values: dict[str, Any], now: datetime | None = None
) -> DeviceConfigPublic:
    """Set a device's desired configuration: a new version, handed to its gateway on the next downlink."""
    begin_write(session)
    now = now or utcnow()
    device = session.get(Device, device_id)
    if device is None or (actor.user is not None and not read_scope(session, actor.user).allows_device(device)):
        raise NotFound(f"device {device_id} not found")
    require_school_write(session, actor, device.school_code)
    # Changes of one school take turns, so that their counter values commit in the order they are taken
    # and a gateway's cursor never skips one still in flight.
    session.exec(select(School).where(School.code == device.school_code).with_for_update()).one()
    latest = (
        session.exec(
            select(func.max(DeviceConfig.change_seq)).where(DeviceConfig.school_code == device.school_code)
        ).one()
        or 0
    )
    config = session.get(DeviceConfig, device_id)
    version = max(config.version if config else 0, device.config_version or 0) + 1
    if config is None:
        config = DeviceConfig(
            device_id=device_id,
            school_code=device.school_code,
            version=version,
            values=values,
            change_seq=latest + 1,
            updated_by=actor.name,
            updated_at=now,
        )
    else:
        config.school_code = device.school_code
        config.version, config.values, config.change_seq = version, values, latest + 1
        config.updated_by, config.updated_at = actor.name, now
    session.add(config)
    audit.record(
        session,
        actor=actor,
        action="set_config",
        entity="device",
        entity_id=device_id,
        school_code=device.school_code,
        summary={"version": version, "keys": sorted(values)[:20]},
        at=now,
    )
    session.commit()
    session.refresh(config)
    session.refresh(device)
    return _config_view(device, config)
