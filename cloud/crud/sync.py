"""Gateway sync: batches of device records applied idempotently, each record confirmed or rejected."""

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from cloud.core.db import begin_write
from cloud.crud import audit, commands, workorders
from cloud.crud.commands import COMMAND_STATUS_STATES
from cloud.crud.common import Actor, chunks, dialect_insert
from cloud.errors import InvalidInput
from cloud.models import (
    MAX_BIGINT,
    Alarm,
    AttendanceEvent,
    CommandAck,
    Device,
    Gateway,
    HealthSample,
    IngestedRecord,
    SyncRecordIn,
    SyncRejection,
    SyncResult,
    TelemetrySample,
    utcnow,
)
from protocol import messages, topics

logger = logging.getLogger(__name__)

# Alarms the gateway's own edge rules raise and clear; they carry no (boot, seq) of a device. One with no
# device is about the gateway itself (e.g. store_quota).
GATEWAY_ALARM = "gateway_alarm"
# The gateway published a command to its device: {cid, state: "delivered"}; no device key either.
COMMAND_STATUS = "command_status"
# Kinds whose device may be null.
DEVICELESS_KINDS = (GATEWAY_ALARM, COMMAND_STATUS)
SYNC_KINDS = (
    messages.BIRTH,
    messages.WILL,
    messages.HEALTH,
    messages.TELEMETRY,
    messages.ATTENDANCE,
    messages.ALARM,
    messages.ACK,
    "presence",
    GATEWAY_ALARM,
    COMMAND_STATUS,
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
# Kinds stored in a table of their own, keyed by (device, boot, seq), one row per device message.
KEYED_TABLES: dict[str, type] = {
    GATEWAY_ALARM: Alarm,
    messages.ATTENDANCE: AttendanceEvent,
    messages.ALARM: Alarm,
    messages.ACK: CommandAck,
    messages.HEALTH: HealthSample,
    messages.TELEMETRY: TelemetrySample,
}
ENVELOPE_FIELDS = ("v", "kind", "device", "boot", "seq", "ts")
FOREIGN_DEVICE = "foreign_device"
PRESENCE_STATES = ("online", "offline")
MAX_CARD_PSEUDONYM = 128
MAX_VERSION_TEXT = 64
MAX_DETAIL = 500
MAX_READINGS = 64
HEALTH_INTEGERS = ("uptime_s", "heap_free", "heap_max_block", "rssi", "buffered")
# Integer columns of health_sample other than uptime_s are 32-bit on PostgreSQL.
MAX_INT32 = 2**31 - 1
# Year 2200: a timestamp past it comes from a broken clock, and datetime cannot hold much more anyway.
MAX_EPOCH_S = 7_258_118_400


@dataclass(frozen=True)
class SyncRecord:
    """A sync record whose content has been checked."""

    gseq: int
    kind: str
    device: str | None
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


def _optional_text(body: dict[str, Any], field: str, kind: str, max_len: int) -> None:
    value = body.get(field)
    if value is not None and (not isinstance(value, str) or len(value) > max_len):
        raise RecordRejected(messages.BAD_FIELD, f"{kind} {field} must be text of at most {max_len} characters")


def _optional_flag(body: dict[str, Any], field: str, kind: str) -> None:
    if not isinstance(body.get(field, False), bool):
        raise RecordRejected(messages.BAD_FIELD, f"{kind} {field} must be true or false")


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _check_body(kind: str, body: dict[str, Any]) -> None:
    if kind == messages.ATTENDANCE:
        _require_text(body, "card", kind, MAX_CARD_PSEUDONYM)
        _optional_flag(body, "hist", kind)
    elif kind == messages.BIRTH:
        _require_choice(body, "role", kind, messages.ROLES)
        _require_text(body, "fw", kind, MAX_VERSION_TEXT)
        _require_text(body, "app", kind, MAX_VERSION_TEXT)
        version = body.get("config_version")
        if version is not None and (not _is_int(version) or not 0 <= version <= MAX_BIGINT):
            raise RecordRejected(messages.BAD_FIELD, "birth config_version must be a non-negative integer")
    elif kind == "presence":
        _require_choice(body, "state", kind, PRESENCE_STATES)
    elif kind in (messages.ALARM, GATEWAY_ALARM):
        _require_text(body, "code", kind, MAX_VERSION_TEXT)
        _require_choice(body, "state", kind, messages.ALARM_STATES)
        _optional_text(body, "detail", kind, MAX_DETAIL)
        _optional_flag(body, "hist", kind)
    elif kind == COMMAND_STATUS:
        _require_text(body, "cid", kind, MAX_VERSION_TEXT)
        _require_choice(body, "state", kind, COMMAND_STATUS_STATES)
    elif kind == messages.ACK:
        _require_text(body, "cid", kind, MAX_VERSION_TEXT)
        _require_choice(body, "result", kind, messages.ACK_RESULTS)
        _optional_text(body, "detail", kind, MAX_DETAIL)
        _optional_flag(body, "hist", kind)
    elif kind == messages.HEALTH:
        for field in HEALTH_INTEGERS:
            value = body.get(field)
            if value is not None and (not _is_int(value) or abs(value) > (2**62 if field == "uptime_s" else MAX_INT32)):
                raise RecordRejected(messages.BAD_FIELD, f"health {field} must be an integer")
        if body.get("errors") is not None and not isinstance(body["errors"], dict):
            raise RecordRejected(messages.BAD_FIELD, "health errors must be an object")
    elif kind == messages.TELEMETRY:
        readings = body.get("readings")
        if not isinstance(readings, dict):
            raise RecordRejected(messages.MISSING_FIELD, "telemetry body needs readings, an object")
        if len(readings) > MAX_READINGS:
            raise RecordRejected(messages.BAD_FIELD, f"telemetry has more than {MAX_READINGS} readings")
        for name, value in readings.items():
            if not _is_number(value):
                raise RecordRejected(messages.BAD_FIELD, f"reading {name} is not a number")
        if body.get("faults") is not None and not isinstance(body["faults"], dict):
            raise RecordRejected(messages.BAD_FIELD, "telemetry faults must be an object")


def parse_sync_record(record: SyncRecordIn) -> SyncRecord:
    """Check one sync record's content; raise RecordRejected if it is invalid."""
    kind = record.kind
    if not isinstance(kind, str) or kind not in SYNC_KINDS:
        raise RecordRejected(messages.UNKNOWN_KIND, f"kind must be one of {', '.join(SYNC_KINDS)}")
    if record.device is None:
        if kind not in DEVICELESS_KINDS:
            raise RecordRejected(messages.MISSING_FIELD, "record needs device")
    elif not topics.is_device_id(record.device):
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
    elif not _is_int(record.seq) or not 0 <= record.seq <= MAX_BIGINT:
        raise RecordRejected(messages.BAD_FIELD, "seq must be an integer from 0 to 2**63-1")
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
    for chunk in chunks(device_ids):
        rows = [
            {"id": device_id, "school_code": school_code, "presence": "unknown", "first_seen_at": now}
            for device_id in chunk
        ]
        session.exec(dialect_insert(session, Device).values(rows).on_conflict_do_nothing(index_elements=["id"]))
        statement = select(Device).where(col(Device.id).in_(chunk)).order_by(col(Device.id))
        devices.update((device.id, device) for device in session.exec(statement.with_for_update()))
    return devices


def _claim_records(session: Session, *, gateway_id: str, records: Sequence[SyncRecord], now: datetime) -> set[int]:
    """Enter records into the ledger; return the gseqs that were not there before."""
    claimed: set[int] = set()
    for chunk in chunks(records):
        rows = [
            {
                "gateway_id": gateway_id,
                "gateway_seq": record.gseq,
                "kind": record.kind,
                "device_id": record.device,
                # Records without a device have no table of their own: the ledger keeps what they said.
                "body": record.body if record.device is None else None,
                "received_at": now,
            }
            for record in chunk
        ]
        statement = (
            dialect_insert(session, IngestedRecord)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["gateway_id", "gateway_seq"])
            .returning(col(IngestedRecord.gateway_seq))
        )
        claimed.update(session.exec(statement).scalars())
    return claimed


def gateway_alarm_boot(gateway_id: str) -> str:
    """The boot id under which a gateway's own alarms are keyed: never a device's (those are all hex),
    and different for each gateway, so that a replaced gateway's sequence numbers cannot collide."""
    return "g" + hashlib.sha256(gateway_id.encode()).hexdigest()[:7]


def _keyed_row(record: SyncRecord, *, gateway: Gateway, now: datetime) -> dict[str, Any]:
    """The row a keyed record becomes in its own table."""
    row: dict[str, Any] = {
        "device_id": record.device,
        "boot_id": record.boot,
        "seq": record.seq,
        "ts": record.ts,
        "school_code": gateway.school_code,
        "received_at": now,
    }
    body = record.body
    if record.kind == messages.ATTENDANCE:
        row.update(card_pseudonym=body["card"], historical=bool(body.get("hist", False)), gateway_id=gateway.id)
    elif record.kind in (messages.ALARM, GATEWAY_ALARM):
        row.update(
            code=body["code"],
            state=body["state"],
            detail=body.get("detail"),
            historical=bool(body.get("hist", False)),
            gateway_id=gateway.id,
            source="device",
        )
        if record.kind == GATEWAY_ALARM:
            row.update(boot_id=gateway_alarm_boot(gateway.id), seq=record.gseq, source="gateway")
    elif record.kind == messages.ACK:
        row.update(
            cid=body["cid"],
            result=body["result"],
            detail=body.get("detail"),
            historical=bool(body.get("hist", False)),
            gateway_id=gateway.id,
        )
    elif record.kind == messages.HEALTH:
        row.update({field: body.get(field) for field in HEALTH_INTEGERS})
        row.update(errors=body.get("errors"), hour=record.ts.replace(minute=0, second=0, microsecond=0))
    elif record.kind == messages.TELEMETRY:
        row.update(readings=body["readings"], faults=body.get("faults"))
    return row


def _insert_keyed(session: Session, table: type, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows, skipping those whose (device, boot, seq) is stored already: a device's replay."""
    for chunk in chunks(rows):
        session.exec(
            dialect_insert(session, table)
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
    if record.kind == messages.BIRTH and record.body.get("config_version") is not None:
        device.config_version = record.body["config_version"]


def _signal(record: SyncRecord, gateway: Gateway) -> workorders.FaultSignal:
    """An alarm record as a fault signal: about its device, or (no device) about the gateway itself."""
    return workorders.FaultSignal(
        kind="device" if record.device is not None else "gateway",
        school_code=gateway.school_code,
        device_id=record.device,
        gateway_id=None if record.device is not None else gateway.id,
        code=record.body["code"],
        raised=record.body["state"] == "raise",
        ts=record.ts,
        detail=record.body.get("detail"),
    )


def apply_sync_batch(
    session: Session,
    *,
    gateway: Gateway,
    records: Sequence[SyncRecordIn],
    now: datetime | None = None,
    client_ip: str | None = None,
    policy: workorders.FaultPolicy = workorders.DEFAULT_POLICY,
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
        device_ids=sorted({record.device for record in parsed.values() if record.device is not None}),
        now=now,
    )
    for gseq, record in list(parsed.items()):
        if record.device is not None and devices[record.device].school_code != gateway.school_code:
            del parsed[gseq]
            rejected[gseq] = SyncRejection(
                gseq=gseq,
                reason=FOREIGN_DEVICE,
                detail=f"device {record.device} is registered to another school",
            )

    ordered = [parsed[gseq] for gseq in sorted(parsed)]
    claimed = _claim_records(session, gateway_id=gateway.id, records=ordered, now=now)
    keyed_rows: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KEYED_TABLES}
    kinds: dict[str, int] = {}
    signals: list[workorders.FaultSignal] = []
    reports: list[tuple[str, str | None, dict[str, Any], datetime]] = []
    for record in ordered:
        if record.gseq not in claimed:
            continue
        kinds[record.kind] = kinds.get(record.kind, 0) + 1
        if record.device is not None:
            _apply_to_device(devices[record.device], record)
        if record.kind in (messages.ALARM, GATEWAY_ALARM):
            signals.append(_signal(record, gateway))
        elif record.kind in (messages.ACK, COMMAND_STATUS):
            reports.append((record.kind, record.device, record.body, record.ts))
        if record.device is not None and record.kind in KEYED_TABLES:
            keyed_rows[record.kind].append(_keyed_row(record, gateway=gateway, now=now))
    for kind, rows in keyed_rows.items():
        _insert_keyed(session, KEYED_TABLES[kind], rows)
    orders: dict[str, int] = {}
    if signals:
        orders = workorders.apply_sync_alarms(
            session,
            gateway=gateway,
            signals=signals,
            previous_sync=gateway.last_sync_at,
            now=now,
            policy=policy,
        )
    acknowledged = commands.apply_command_reports(session, gateway=gateway, reports=reports) if reports else 0

    gateway.last_sync_at = now
    if ordered:
        gateway.last_gateway_seq = max(gateway.last_gateway_seq, ordered[-1].gseq)
    session.add(gateway)
    # One entry per batch that changed something; heartbeats and replays of applied batches change nothing.
    if claimed or rejected:
        audit.record(
            session,
            actor=Actor(kind="gateway", name=gateway.id, client_ip=client_ip),
            action="sync",
            entity="gateway",
            entity_id=gateway.id,
            school_code=gateway.school_code,
            summary={
                "records": len(records),
                "new": len(claimed),
                "rejected": len(rejected),
                "kinds": kinds,
                "gseq": [min(parsed), max(parsed)] if parsed else None,
                **({"orders": orders} if orders else {}),
                **({"commands": acknowledged} if acknowledged else {}),
            },
            at=now,
        )
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
