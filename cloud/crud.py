"""Data functions of the cloud; every route reads and writes through these."""

import logging
import math
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, delete, select, text

from cloud.core import security
from cloud.core.db import begin_write
from cloud.errors import AccessDenied, AlreadyExists, InvalidInput, NotFound, UnsupportedDatabase
from cloud.models import (
    ROLES,
    AttendanceEvent,
    AuthToken,
    Device,
    Gateway,
    IngestedRecord,
    School,
    SyncRecordIn,
    SyncRejection,
    SyncResult,
    User,
    utcnow,
)
from protocol import messages, topics

logger = logging.getLogger(__name__)

SYNC_KINDS = (
    messages.BIRTH,
    messages.WILL,
    messages.HEALTH,
    messages.TELEMETRY,
    messages.ATTENDANCE,
    messages.ALARM,
    messages.ACK,
    "presence",
)
# Kinds that are device messages and so carry the key (device, boot, seq).
KEYED_KINDS = (
    messages.BIRTH,
    messages.HEALTH,
    messages.TELEMETRY,
    messages.ATTENDANCE,
    messages.ALARM,
    messages.ACK,
)
# Kinds without a table of their own yet, whose bodies the ledger keeps.
LEDGER_BODY_KINDS = (messages.ALARM, messages.ACK)
ENVELOPE_FIELDS = ("v", "kind", "device", "boot", "seq", "ts")
FOREIGN_DEVICE = "foreign_device"
PRESENCE_STATES = ("online", "offline")
MAX_CARD_PSEUDONYM = 128
MAX_VERSION_TEXT = 64
# Year 2200: a timestamp past it comes from a broken clock, and datetime cannot hold much more anyway.
MAX_EPOCH_S = 7_258_118_400
# Rows per multi-row INSERT: stays under SQLite's and PostgreSQL's bound-parameter limits.
INSERT_CHUNK = 500
# Roles that read every school; the others are bound to a school or to their work orders.
COUNTY_WIDE_ROLES = ("county_admin", "auditor")


def _chunks(items: Sequence[Any], size: int = INSERT_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _insert(session: Session, table: type) -> postgresql.Insert | sqlite.Insert:
    """An INSERT in the session's dialect, so that ON CONFLICT DO NOTHING is available."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise UnsupportedDatabase(f"database dialect {dialect!r} is not supported")


def database_ok(session: Session) -> bool:
    """True if the database answers a trivial query."""
    return session.exec(select(text("1"))).first() is not None


# ---- schools -------------------------------------------------------------------------------------


def get_school(session: Session, *, code: str) -> School | None:
    """The school with `code`, if any."""
    return session.get(School, code)


def create_school(session: Session, *, code: str, name: str, timezone: str = "Asia/Shanghai") -> School:
    """Register a school; raise AlreadyExists if the code is taken."""
    begin_write(session)
    if not topics.is_school_code(code):
        raise InvalidInput("school code must be 1 to 32 letters, digits, '_' or '-'")
    if not name.strip():
        raise InvalidInput("school name must not be empty")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"unknown time zone {timezone!r}") from exc
    if get_school(session, code=code) is not None:
        raise AlreadyExists(f"school {code} already exists")
    school = School(code=code, name=name.strip(), timezone=timezone)
    session.add(school)
    session.commit()
    session.refresh(school)
    return school


# ---- gateways ------------------------------------------------------------------------------------


def create_gateway(session: Session, *, school_code: str, name: str | None = None) -> tuple[Gateway, str]:
    """Register a gateway for a school; return it with its token, which is stored only hashed."""
    begin_write(session)
    school = get_school(session, code=school_code)
    if school is None:
        raise NotFound(f"school {school_code} does not exist")
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
    session.commit()
    session.refresh(gateway)
    return gateway, token


def gateway_for_token(session: Session, *, token: str) -> Gateway | None:
    """The gateway that holds `token`, if any."""
    return session.exec(select(Gateway).where(Gateway.token_hash == security.hash_token(token))).first()


# ---- users and sessions --------------------------------------------------------------------------


def get_user_by_username(session: Session, *, username: str) -> User | None:
    """The user named `username`, if any."""
    return session.exec(select(User).where(User.username == username)).first()


def create_user(
    session: Session, *, username: str, password: str, role: str, school_code: str | None = None
) -> User:
    """Register a person; school admins must name their school."""
    begin_write(session)
    if not username or len(username) > 64 or username != username.strip():
        raise InvalidInput("username must be 1 to 64 characters without surrounding spaces")
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    if role == "school_admin" and school_code is None:
        raise InvalidInput("a school_admin needs a school")
    if school_code is not None and get_school(session, code=school_code) is None:
        raise NotFound(f"school {school_code} does not exist")
    problem = security.password_problem(password)
    if problem is not None:
        raise InvalidInput(problem)
    if get_user_by_username(session, username=username) is not None:
        raise AlreadyExists(f"user {username} already exists")
    user = User(
        username=username,
        password_hash=security.hash_password(password),
        role=role,
        school_code=school_code,
    )
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def set_user_active(session: Session, *, username: str, is_active: bool) -> User:
    """Enable or disable a user's account; disabling also ends their login sessions."""
    begin_write(session)
    user = get_user_by_username(session, username=username)
    if user is None:
        raise NotFound(f"user {username} does not exist")
    user.is_active = is_active
    session.add(user)
    if not is_active:
        session.exec(delete(AuthToken).where(col(AuthToken.user_id) == user.id))
    session.commit()
    session.refresh(user)
    return user


def authenticate(session: Session, *, username: str, password: str) -> User | None:
    """The active user whose credentials these are, or None."""
    user = get_user_by_username(session, username=username)
    if user is None:
        security.verify_password(password, security.dummy_password_hash())
        return None
    if not security.verify_password(password, user.password_hash) or not user.is_active:
        return None
    return user


def create_auth_token(
    session: Session, *, user: User, ttl: timedelta, now: datetime | None = None
) -> tuple[str, AuthToken]:
    """Open a login session for `user`; return the bearer token and its stored record."""
    begin_write(session)
    if user.id is None:
        raise InvalidInput("the user has not been stored yet")
    now = now or utcnow()
    session.exec(delete(AuthToken).where(col(AuthToken.user_id) == user.id, col(AuthToken.expires_at) < now))
    token = security.new_token()
    record = AuthToken(
        token_hash=security.hash_token(token), user_id=user.id, created_at=now, expires_at=now + ttl
    )
    session.add(record)
    session.commit()
    session.refresh(record)
    return token, record


def user_for_token(session: Session, *, token: str, now: datetime | None = None) -> User | None:
    """The active user whose unexpired login session `token` is, or None."""
    now = now or utcnow()
    record = session.get(AuthToken, security.hash_token(token))
    if record is None or record.expires_at <= now:
        return None
    user = session.get(User, record.user_id)
    if user is None or not user.is_active:
        return None
    return user


def revoke_auth_token(session: Session, *, token: str) -> None:
    """End the login session `token`; a no-op if it has already ended."""
    begin_write(session)
    session.exec(delete(AuthToken).where(col(AuthToken.token_hash) == security.hash_token(token)))
    session.commit()


# ---- tenancy -------------------------------------------------------------------------------------


def _school_scope(user: User, *, personal_data: bool) -> frozenset[str] | None:
    """Schools whose data `user` may read; None for all of them."""
    if not user.is_active:
        raise AccessDenied("the account is disabled")
    if user.role in COUNTY_WIDE_ROLES:
        return None
    if user.role == "school_admin":
        return frozenset({user.school_code}) if user.school_code else frozenset()
    if personal_data:
        raise AccessDenied(f"attendance is personal data; the role {user.role} may not read it")
    raise AccessDenied(f"the role {user.role} sees devices through its work orders, which are not here yet")


def _narrow_scope(scope: frozenset[str] | None, school_code: str | None) -> frozenset[str] | None:
    if school_code is None:
        return scope
    if scope is not None and school_code not in scope:
        raise AccessDenied(f"no access to school {school_code}")
    return frozenset({school_code})


# ---- devices -------------------------------------------------------------------------------------


def list_devices(session: Session, *, user: User, school_code: str | None = None) -> Sequence[Device]:
    """Devices `user` may see, of one school or of all those in reach, by id."""
    scope = _narrow_scope(_school_scope(user, personal_data=False), school_code)
    statement = select(Device).order_by(Device.id)
    if scope is not None:
        statement = statement.where(col(Device.school_code).in_(sorted(scope)))
    return session.exec(statement).all()


def get_device(session: Session, *, user: User, device_id: str) -> Device:
    """One device; NotFound also when it exists but lies outside what `user` may see."""
    scope = _school_scope(user, personal_data=False)
    device = session.get(Device, device_id)
    if device is None or (scope is not None and device.school_code not in scope):
        raise NotFound(f"device {device_id} not found")
    return device


# ---- attendance ----------------------------------------------------------------------------------


def list_attendance_events(
    session: Session,
    *,
    user: User,
    school_code: str | None = None,
    device_id: str | None = None,
    since: datetime | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> tuple[Sequence[AttendanceEvent], int]:
    """A page of the attendance events `user` may read, oldest first, and how many match in all."""
    scope = _narrow_scope(_school_scope(user, personal_data=True), school_code)
    conditions: list[ColumnElement[bool]] = []
    if scope is not None:
        conditions.append(col(AttendanceEvent.school_code).in_(sorted(scope)))
    if device_id is not None:
        conditions.append(col(AttendanceEvent.device_id) == device_id)
    if since is not None:
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        conditions.append(col(AttendanceEvent.ts) >= since)
    total = session.exec(select(func.count()).select_from(AttendanceEvent).where(*conditions)).one()
    items = session.exec(
        select(AttendanceEvent)
        .where(*conditions)
        .order_by(col(AttendanceEvent.ts), col(AttendanceEvent.id))
        .offset(offset)
        .limit(limit)
    ).all()
    return items, total


# ---- gateway sync --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncRecord:
    """A sync record whose content has been checked."""

    gseq: int
    kind: str
    device: str
    boot: str | None
    seq: int | None
    ts: datetime
    body: dict[str, Any]


class RecordRejected(InvalidInput):
    """One sync record's content is invalid; `reason` names the rule it breaks."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_text(body: dict[str, Any], field: str, kind: str, max_len: int) -> str:
    value = body.get(field)
    if value is None:
        raise RecordRejected(messages.MISSING_FIELD, f"{kind} body needs {field}")
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise RecordRejected(messages.BAD_FIELD, f"{kind} {field} must be text of 1 to {max_len} characters")
    return value


def _require_choice(body: dict[str, Any], field: str, kind: str, choices: Sequence[str]) -> str:
    value = body.get(field)
    if value is None:
        raise RecordRejected(messages.MISSING_FIELD, f"{kind} body needs {field}")
    if value not in choices:
        raise RecordRejected(messages.BAD_FIELD, f"{kind} {field} must be one of {', '.join(choices)}")
    return value


def _check_body(kind: str, body: dict[str, Any]) -> None:
    if kind == messages.ATTENDANCE:
        _require_text(body, "card", kind, MAX_CARD_PSEUDONYM)
        if not isinstance(body.get("hist", False), bool):
            raise RecordRejected(messages.BAD_FIELD, "attendance hist must be true or false")
    elif kind == messages.BIRTH:
        _require_choice(body, "role", kind, messages.ROLES)
        _require_text(body, "fw", kind, MAX_VERSION_TEXT)
        _require_text(body, "app", kind, MAX_VERSION_TEXT)
    elif kind == "presence":
        _require_choice(body, "state", kind, PRESENCE_STATES)
    elif kind == messages.ALARM:
        _require_text(body, "code", kind, MAX_VERSION_TEXT)
        _require_choice(body, "state", kind, messages.ALARM_STATES)
    elif kind == messages.ACK:
        _require_text(body, "cid", kind, MAX_VERSION_TEXT)
        _require_choice(body, "result", kind, messages.ACK_RESULTS)
    elif kind == messages.TELEMETRY and not isinstance(body.get("readings"), dict):
        raise RecordRejected(messages.MISSING_FIELD, "telemetry body needs readings, an object")


def parse_sync_record(record: SyncRecordIn) -> SyncRecord:
    """Check one sync record's content; raise RecordRejected if it is invalid."""
    kind = record.kind
    if not isinstance(kind, str) or kind not in SYNC_KINDS:
        raise RecordRejected(messages.UNKNOWN_KIND, f"kind must be one of {', '.join(SYNC_KINDS)}")
    if record.device is None:
        raise RecordRejected(messages.MISSING_FIELD, "record needs device")
    if not topics.is_device_id(record.device):
        raise RecordRejected(messages.BAD_FIELD, "device is not esp32-<12 lowercase hex>")
    keyed = kind in KEYED_KINDS
    if record.boot is None:
        if keyed or kind == messages.WILL:
            raise RecordRejected(messages.MISSING_FIELD, f"{kind} record needs boot")
    elif not messages.is_boot_id(record.boot):
        raise RecordRejected(messages.BAD_FIELD, "boot is not 8 lowercase hex digits")
    if record.seq is None:
        if keyed:
            raise RecordRejected(messages.MISSING_FIELD, f"{kind} record needs seq")
    elif not _is_int(record.seq) or record.seq < 0:
        raise RecordRejected(messages.BAD_FIELD, "seq must be a non-negative integer")
    ts = record.ts
    if ts is None:
        raise RecordRejected(messages.MISSING_FIELD, "record needs ts")
    if not isinstance(ts, int | float) or isinstance(ts, bool) or not math.isfinite(ts):
        raise RecordRejected(messages.BAD_FIELD, "ts must be a number of epoch seconds")
    if not 0 <= ts <= MAX_EPOCH_S:
        raise RecordRejected(messages.BAD_FIELD, "ts is out of range")
    body = {} if record.body is None else record.body
    if not isinstance(body, dict):
        raise RecordRejected(messages.BAD_FIELD, "body must be an object")
    _check_body(kind, body)
    return SyncRecord(
        gseq=record.gseq,
        kind=kind,
        device=record.device,
        boot=record.boot,
        seq=record.seq,
        ts=datetime.fromtimestamp(ts, UTC),
        body={name: value for name, value in body.items() if name not in ENVELOPE_FIELDS},
    )


def _register_devices(
    session: Session, *, school_code: str, device_ids: Sequence[str], now: datetime
) -> dict[str, Device]:
    """Insert the devices not yet known, under the syncing school; return all of them, row-locked."""
    devices: dict[str, Device] = {}
    for chunk in _chunks(device_ids):
        rows = [
            {"id": device_id, "school_code": school_code, "presence": "unknown", "first_seen_at": now}
            for device_id in chunk
        ]
        session.exec(_insert(session, Device).values(rows).on_conflict_do_nothing(index_elements=["id"]))
        statement = select(Device).where(col(Device.id).in_(chunk)).order_by(col(Device.id))
        devices.update((device.id, device) for device in session.exec(statement.with_for_update()))
    return devices


def _claim_records(
    session: Session, *, gateway_id: str, records: Sequence[SyncRecord], now: datetime
) -> set[int]:
    """Enter records into the ledger; return the gseqs that were not there before."""
    claimed: set[int] = set()
    for chunk in _chunks(records):
        rows = [
            {
                "gateway_id": gateway_id,
                "gateway_seq": record.gseq,
                "kind": record.kind,
                "device_id": record.device,
                "body": record.body if record.kind in LEDGER_BODY_KINDS else None,
                "received_at": now,
            }
            for record in chunk
        ]
        statement = (
            _insert(session, IngestedRecord)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["gateway_id", "gateway_seq"])
            .returning(col(IngestedRecord.gateway_seq))
        )
        claimed.update(session.exec(statement).scalars())
    return claimed


def _insert_attendance(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert attendance events, skipping those whose (device, boot, seq) is stored already."""
    for chunk in _chunks(rows):
        session.exec(
            _insert(session, AttendanceEvent)
            .values(list(chunk))
            .on_conflict_do_nothing(index_elements=["device_id", "boot_id", "seq"])
        )


def _apply_to_device(device: Device, record: SyncRecord) -> None:
    """Update what the device's state says after `record`; records come in gateway order."""
    if record.kind in KEYED_KINDS and (device.last_seen_at is None or record.ts > device.last_seen_at):
        device.last_seen_at = record.ts
    if record.kind == messages.BIRTH:
        device.boot_id = record.boot
        device.role = record.body["role"]
        device.fw = record.body["fw"]
        device.app = record.body["app"]
        device.presence = "online"
        device.presence_since = record.ts
    elif record.kind == messages.WILL:
        # A retained will of an earlier boot can arrive after the birth of the current one.
        if device.boot_id is None or device.boot_id == record.boot:
            device.presence = "offline"
            device.presence_since = record.ts
    elif record.kind == "presence":
        if device.presence != record.body["state"]:
            device.presence = record.body["state"]
            device.presence_since = record.ts
    elif record.kind == messages.HEALTH:
        device.last_health = record.body


def apply_sync_batch(
    session: Session, *, gateway: Gateway, records: Sequence[SyncRecordIn], now: datetime | None = None
) -> SyncResult:
    """Apply a gateway's batch in one transaction, idempotently; say which records are confirmed."""
    begin_write(session)
    now = now or utcnow()
    parsed: dict[int, SyncRecord] = {}
    rejected: dict[int, SyncRejection] = {}
    for raw in records:
        if raw.gseq in parsed or raw.gseq in rejected:
            continue
        try:
            parsed[raw.gseq] = parse_sync_record(raw)
        except RecordRejected as exc:
            rejected[raw.gseq] = SyncRejection(gseq=raw.gseq, reason=exc.reason, detail=exc.detail)

    devices = _register_devices(
        session,
        school_code=gateway.school_code,
        device_ids=sorted({record.device for record in parsed.values()}),
        now=now,
    )
    for gseq, record in list(parsed.items()):
        if devices[record.device].school_code != gateway.school_code:
            del parsed[gseq]
            rejected[gseq] = SyncRejection(
                gseq=gseq,
                reason=FOREIGN_DEVICE,
                detail=f"device {record.device} is registered to another school",
            )

    ordered = [parsed[gseq] for gseq in sorted(parsed)]
    claimed = _claim_records(session, gateway_id=gateway.id, records=ordered, now=now)
    attendance: list[dict[str, Any]] = []
    for record in ordered:
        if record.gseq not in claimed:
            continue
        _apply_to_device(devices[record.device], record)
        if record.kind == messages.ATTENDANCE:
            attendance.append(
                {
                    "device_id": record.device,
                    "boot_id": record.boot,
                    "seq": record.seq,
                    "ts": record.ts,
                    "card_pseudonym": record.body["card"],
                    "historical": bool(record.body.get("hist", False)),
                    "school_code": gateway.school_code,
                    "gateway_id": gateway.id,
                    "received_at": now,
                }
            )
    _insert_attendance(session, attendance)

    gateway.last_sync_at = now
    if ordered:
        gateway.last_gateway_seq = max(gateway.last_gateway_seq, ordered[-1].gseq)
    session.add(gateway)
    session.commit()
    logger.info(
        "sync batch applied",
        extra={
            "gateway_id": gateway.id,
            "school": gateway.school_code,
            "confirmed": len(parsed),
            "new": len(claimed),
            "rejected": len(rejected),
        },
    )
    return SyncResult(
        gateway_id=gateway.id,
        confirmed=sorted(parsed),
        rejected=[rejected[gseq] for gseq in sorted(rejected)],
    )
