"""Gateway sync: batches of device records applied idempotently, each record confirmed or rejected."""

import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
import psycopg
from sqlalchemy import JSON, bindparam, func, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import sqlite
from sqlmodel import Session, SQLModel, col

from cloud import workorders
from cloud.core.db import begin_write
from cloud.crud import audit, commands
from cloud.crud.commands import COMMAND_STATUS_STATES
from cloud.crud.common import Actor, chunks
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
from protocol import limits, messages, topics

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
KEYED_TABLES: dict[str, type[SQLModel]] = {
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
# Kinds whose body the cloud keeps as a JSON document: a health report (the device's last_health too) and
# telemetry; a record without a device keeps its body in the ledger. Such a body is held to the bounds of
# the device message it came from, so that no record makes a large row, or a large answer each time it is
# shown. Its size is that of its compact JSON text, which a message of at most MAX_MESSAGE_BYTES never
# exceeds; its depth counts the body itself as 1, as the payload's own object is 1 in limits.MAX_DEPTH.
DOCUMENT_KINDS = frozenset({messages.HEALTH, messages.TELEMETRY})
MAX_DOCUMENT_BYTES = limits.MAX_MESSAGE_BYTES
MAX_DOCUMENT_DEPTH = limits.MAX_DEPTH


class SyncRecord(NamedTuple):
    """A sync record whose content has been checked (a tuple: made for every record, it must be cheap)."""

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


def _nests_deeper(value: dict[str, Any] | list[Any], levels: int) -> bool:
    """True if objects and arrays nest in `value` more than `levels` deep, `value` itself being level 1."""
    level: list[Any] = [value]
    for _ in range(levels):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, (dict, list))
        ]
        if not level:
            return False
    return True


def _check_document(kind: str, body: dict[str, Any]) -> None:
    """Refuse a body to be stored as a document that is larger or deeper than a device message can be."""
    try:
        text: bytes | None = orjson.dumps(body)
    except orjson.JSONEncodeError:
        # What orjson does not write: an integer past 64 bits (which Python's parser reads), or nesting past
        # 255 levels.
        text = None
    too_large = f"{kind} body is more than {MAX_DOCUMENT_BYTES} bytes of JSON"
    if text is not None and len(text) > MAX_DOCUMENT_BYTES:
        raise RecordRejected(messages.TOO_LARGE, too_large)
    # Only a text with more brackets than the depth allowed (in strings or not) can nest deeper.
    if text is None or text.count(b"{") + text.count(b"[") > MAX_DOCUMENT_DEPTH:
        if _nests_deeper(body, MAX_DOCUMENT_DEPTH):
            raise RecordRejected(messages.TOO_DEEP, f"{kind} body nests deeper than {MAX_DOCUMENT_DEPTH} levels")
    if text is None:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
        if len(text) > MAX_DOCUMENT_BYTES:
            raise RecordRejected(messages.TOO_LARGE, too_large)


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


_HEX = "0123456789abcdef"
_SYNC_KIND_SET = frozenset(SYNC_KINDS)
_KEYED_KIND_SET = frozenset(KEYED_KINDS)
_ENVELOPE_SET = frozenset(ENVELOPE_FIELDS)
_UNKNOWN_KIND_DETAIL = f"kind must be one of {', '.join(SYNC_KINDS)}"
# The fields of a record as SyncRecordIn declares them; anything else a gateway sends is ignored.
RECORD_FIELDS = ("gseq", "kind", "device", "boot", "seq", "ts", "body")


def _record_fields(record: SyncRecordIn | Mapping[str, Any]) -> Mapping[str, Any]:
    """A record's fields as a mapping: a parsed request's dict as it is, a SyncRecordIn read out."""
    if type(record) is dict or isinstance(record, Mapping):
        return record
    return {name: getattr(record, name) for name in RECORD_FIELDS}


def _parse_tap(fields: Mapping[str, Any]) -> SyncRecord | None:
    """An attendance record that passes every check of parse_sync_record, parsed; None for anything
    else, which parse_sync_record then judges (and words the rejection of) itself.

    Taps are most of what gateways send in the morning; these are the same checks, made without calls."""
    get = fields.get
    device, boot, seq, ts, body = get("device"), get("boot"), get("seq"), get("ts"), get("body")
    if not (
        get("kind") == messages.ATTENDANCE
        and type(device) is str
        and len(device) == 18
        and device.startswith(topics.DEVICE_PREFIX)
        and not device[6:].strip(_HEX)
        and type(boot) is str
        and len(boot) == 8
        and not boot.strip(_HEX)
        and type(seq) is int
        and 0 <= seq <= MAX_BIGINT
        and (type(ts) is float or type(ts) is int)
        and 0 <= ts <= MAX_EPOCH_S
        and type(body) is dict
        and _ENVELOPE_SET.isdisjoint(body)
    ):
        return None
    card = body.get("card")
    if not (type(card) is str and 0 < len(card) <= MAX_CARD_PSEUDONYM and type(body.get("hist", False)) is bool):
        return None
    return SyncRecord(fields["gseq"], messages.ATTENDANCE, device, boot, seq, datetime.fromtimestamp(ts, UTC), body)


def parse_sync_record(record: SyncRecordIn | Mapping[str, Any]) -> SyncRecord:
    """Check one sync record's content; raise RecordRejected if it is invalid.

    `record` is a SyncRecordIn or the same fields as a dict (a missing field counts as null); its gseq
    has been checked already."""
    fields = _record_fields(record)
    get = fields.get
    kind = get("kind")
    if not isinstance(kind, str) or kind not in _SYNC_KIND_SET:
        raise RecordRejected(messages.UNKNOWN_KIND, _UNKNOWN_KIND_DETAIL)
    device = get("device")
    if device is None:
        if kind not in DEVICELESS_KINDS:
            raise RecordRejected(messages.MISSING_FIELD, "record needs device")
    elif not topics.is_device_id(device):
        raise RecordRejected(messages.BAD_FIELD, "device is not esp32-<12 lowercase hex>")
    keyed = kind in _KEYED_KIND_SET
    boot = get("boot")
    if boot is None:
        if keyed or kind == messages.WILL:
            raise RecordRejected(messages.MISSING_FIELD, f"{kind} record needs boot")
    elif not messages.is_boot_id(boot):
        raise RecordRejected(messages.BAD_FIELD, "boot is not 8 lowercase hex digits")
    seq = get("seq")
    if seq is None:
        if keyed:
            raise RecordRejected(messages.MISSING_FIELD, f"{kind} record needs seq")
    elif not _is_int(seq) or not 0 <= seq <= MAX_BIGINT:
        raise RecordRejected(messages.BAD_FIELD, "seq must be an integer from 0 to 2**63-1")
    ts = get("ts")
    if ts is None:
        raise RecordRejected(messages.MISSING_FIELD, "record needs ts")
    if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not math.isfinite(ts):
        raise RecordRejected(messages.BAD_FIELD, "ts must be a number of epoch seconds")
    if not 0 <= ts <= MAX_EPOCH_S:
        raise RecordRejected(messages.BAD_FIELD, "ts is out of range")
    body = get("body")
    if body is None:
        body = {}
    elif not isinstance(body, dict):
        raise RecordRejected(messages.BAD_FIELD, "body must be an object")
    if kind in DOCUMENT_KINDS or device is None:
        _check_document(kind, body)
    _check_body(kind, body)
    if not _ENVELOPE_SET.isdisjoint(body):
        body = {name: value for name, value in body.items() if name not in _ENVELOPE_SET}
    return SyncRecord(
        gseq=fields["gseq"],
        kind=kind,
        device=device,
        boot=boot,
        seq=seq,
        ts=datetime.fromtimestamp(ts, UTC),
        body=body,
    )


def gateway_alarm_boot(gateway_id: str) -> str:
    """The boot id under which a gateway's own alarms are keyed: never a device's (those are all hex),
    and different for each gateway, so that a replaced gateway's sequence numbers cannot collide."""
    return "g" + hashlib.sha256(gateway_id.encode()).hexdigest()[:7]


# ---- what a batch does to its devices -----------------------------------------------------------

# Device columns a batch may change; none of them is ever set back to null by a record.
DEVICE_CHANGES = ("last_seen_at", "boot_id", "role", "fw", "app", "presence", "presence_since", "last_health",
                  "config_version")


class _DeviceState:
    """What the batch needs to know of a device (read under a row lock) and what it changes."""

    __slots__ = ("id", "school_code", "boot_id", "presence", "last_seen_at", "role", "changes")

    def __init__(self, id: str, school_code: str, boot_id: str | None, presence: str,
                 last_seen_at: datetime | None, role: str | None) -> None:
        self.id = id
        self.school_code = school_code
        self.boot_id = boot_id
        self.presence = presence
        self.last_seen_at = last_seen_at
        self.role = role
        self.changes: dict[str, Any] = {}


def _apply_to_device(device: _DeviceState, record: SyncRecord) -> None:
    """Update what the device's state says after `record`; records come in gateway order."""
    kind = record.kind
    changes = device.changes
    if kind in _KEYED_KIND_SET and (device.last_seen_at is None or record.ts > device.last_seen_at):
        device.last_seen_at = changes["last_seen_at"] = record.ts
    if kind == messages.BIRTH:
        device.boot_id = changes["boot_id"] = record.boot
        device.role = changes["role"] = record.body["role"]
        changes["fw"] = record.body["fw"]
        changes["app"] = record.body["app"]
        device.presence = changes["presence"] = "online"
        changes["presence_since"] = record.ts
        if record.body.get("config_version") is not None:
            changes["config_version"] = record.body["config_version"]
    elif kind == messages.WILL:
        # A retained will of an earlier boot can arrive after the birth of the current one.
        if device.boot_id is None or device.boot_id == record.boot:
            device.presence = changes["presence"] = "offline"
            changes["presence_since"] = record.ts
    elif kind == "presence":
        if device.presence != record.body["state"]:
            device.presence = changes["presence"] = record.body["state"]
            changes["presence_since"] = record.ts
    elif kind == messages.HEALTH:
        changes["last_health"] = record.body


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


# ---- the rows of a batch ------------------------------------------------------------------------

# Per keyed table: its columns after the key (device_id, boot_id, seq, ts) and what each is in PostgreSQL.
# school_code and received_at (and gateway_id where there is one) are the same for the whole batch.
KEYED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "attendance_event": (("card_pseudonym", "text"), ("historical", "boolean")),
    "alarm": (("code", "text"), ("state", "text"), ("detail", "text"), ("historical", "boolean"), ("source", "text")),
    "command_ack": (("cid", "text"), ("result", "text"), ("detail", "text"), ("historical", "boolean")),
    "health_sample": (
        ("uptime_s", "bigint"),
        ("heap_free", "integer"),
        ("heap_max_block", "integer"),
        ("rssi", "integer"),
        ("buffered", "integer"),
        ("errors", "json"),
        ("hour", "timestamptz"),
    ),
    "telemetry_sample": (("readings", "json"), ("faults", "json")),
}
TABLES_WITH_GATEWAY: frozenset[str] = frozenset({"attendance_event", "alarm", "command_ack"})
KEYED_TABLE_NAMES = {kind: str(model.__tablename__) for kind, model in KEYED_TABLES.items()}
KEY_COLUMNS = (("device_id", "text"), ("boot_id", "text"), ("seq", "bigint"), ("ts", "timestamptz"))
LEDGER_COLUMNS = (("gateway_seq", "bigint"), ("kind", "text"), ("device_id", "text"), ("body", "json"))
JSON_COLUMNS = frozenset({"errors", "readings", "faults", "body", "last_health"})


# The types COPY sends each column as (binary format). A JSON column's value is the document's text, which
# the server's binary input for json takes as it is.
_COPY_TYPE_NAMES = {"json": "text", "boolean": "bool", "bigint": "int8", "integer": "int4"}
_COPY_TYPES: dict[str, dict[str, str]] = {
    table: {
        name: _COPY_TYPE_NAMES.get(sql_type, sql_type)
        for name, sql_type in (
            *KEY_COLUMNS, *columns, ("school_code", "text"), ("received_at", "timestamptz"), ("gateway_id", "text")
        )
    }
    for table, columns in KEYED_COLUMNS.items()
}
_COPY_TYPES["ingested_record"] = {
    name: _COPY_TYPE_NAMES.get(sql_type, sql_type)
    for name, sql_type in (("gateway_id", "text"), ("received_at", "timestamptz"), *LEDGER_COLUMNS)
}


def _json_rows(rows: Sequence[tuple[Any, ...]]) -> str:
    """Rows as a JSON array of arrays; times as RFC 3339 text with their microseconds."""
    return orjson.dumps(rows).decode()


def _pg_columns(columns: Sequence[tuple[str, str]]) -> str:
    """The select list taking the row array `r` apart: element i as the i-th column's type. A JSON column's
    element is the document's text, which the cast stores as it is."""
    return ", ".join(
        f"r->>{index}" if sql_type == "text" else f"(r->>{index})::{sql_type}"
        for index, (_, sql_type) in enumerate(columns)
    )


def _json(value: Any) -> str:
    # The text SQLAlchemy's JSON type writes, so that what is stored does not depend on the database: None
    # too becomes the JSON null, as that type stores it.
    return json.dumps(value)


def _keyed_row(record: SyncRecord, gateway: Gateway) -> tuple[Any, ...]:
    """A keyed record's row in its table (KEYED_TABLES): the key, then that table's KEYED_COLUMNS."""
    kind = record.kind
    body = record.body
    key = (record.device, record.boot, record.seq, record.ts)
    if kind == messages.ATTENDANCE:
        return (*key, body["card"], bool(body.get("hist", False)))
    if kind == messages.HEALTH:
        get = body.get
        hour = record.ts.replace(minute=0, second=0, microsecond=0)
        return (
            *key, get("uptime_s"), get("heap_free"), get("heap_max_block"), get("rssi"), get("buffered"),
            get("errors"), hour,
        )
    if kind == messages.TELEMETRY:
        return (*key, body["readings"], body.get("faults"))
    if kind == messages.ACK:
        return (*key, body["cid"], body["result"], body.get("detail"), bool(body.get("hist", False)))
    # An alarm of a device, or of its gateway's edge rules: keyed then by the gateway and the gseq.
    if kind == GATEWAY_ALARM:
        key = (record.device, gateway_alarm_boot(gateway.id), record.gseq, record.ts)
    source = "gateway" if kind == GATEWAY_ALARM else "device"
    return (*key, body["code"], body["state"], body.get("detail"), bool(body.get("hist", False)), source)


class _Store:
    """The batch's statements in the session's transaction, each table written in one round trip."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def register_devices(
        self, *, school_code: str, device_ids: Sequence[str], now: datetime
    ) -> dict[str, _DeviceState]:
        """Insert the devices not yet known, under the syncing school; return all of them, row-locked."""
        raise NotImplementedError

    def claim(self, *, gateway_id: str, records: Sequence[SyncRecord], now: datetime) -> set[int]:
        """Enter records into the ledger; return the gseqs that were not there before."""
        raise NotImplementedError

    def insert_keyed(self, table: str, rows: Sequence[tuple[Any, ...]], *, gateway: Gateway, now: datetime) -> None:
        """Insert rows, skipping those whose (device, boot, seq) is stored already: a device's replay."""
        raise NotImplementedError

    def insert_all_keyed(
        self, tables: Sequence[tuple[str, Sequence[tuple[Any, ...]]]], *, gateway: Gateway, now: datetime
    ) -> None:
        """insert_keyed for each (table, rows) in turn."""
        for table, rows in tables:
            self.insert_keyed(table, rows, gateway=gateway, now=now)

    def update_devices(self, devices: Sequence[_DeviceState]) -> None:
        """Write what the batch changed of its devices."""
        raise NotImplementedError


def _ledger_row(gateway_id: str, record: SyncRecord, now: datetime) -> dict[str, Any]:
    return {
        "gateway_id": gateway_id,
        "gateway_seq": record.gseq,
        "kind": record.kind,
        "device_id": record.device,
        # Records without a device have no table of their own: the ledger keeps what they said.
        "body": record.body if record.device is None else None,
        "received_at": now,
    }


class _PostgresStore(_Store):
    """New rows go in by COPY, which costs the server a fraction of an INSERT per row.

    COPY cannot skip a row whose key is stored already, so it is tried first inside a savepoint, as what a
    batch nearly always is: all new. A batch sent again (its answer was lost, or two copies race), or a
    device record the cloud has under another gseq, makes the COPY fail on a unique key; the savepoint is
    rolled back and the same rows go in by INSERT ... ON CONFLICT DO NOTHING, which skips those.

    The INSERTs take a table's rows as one JSON array of row arrays, taken apart by the server: one
    statement per table and batch, whose text does not change with the batch's size, so that the server
    plans it once per connection."""

    def _execute(self, statement: str, parameters: tuple[Any, ...]):
        return self.session.connection().exec_driver_sql(statement, parameters)

    def _copy(self, statements: Sequence[tuple[str, Sequence[str], Sequence[tuple[Any, ...]]]]) -> bool:
        """COPY the rows of each (table, columns, rows) inside one savepoint; False, with nothing written,
        if a row's unique key is taken."""
        connection = self.session.connection().connection.driver_connection
        assert isinstance(connection, psycopg.Connection)
        with connection.cursor() as cursor:
            cursor.execute("SAVEPOINT sync_copy")
            try:
                for table, columns, rows in statements:
                    if not rows:
                        continue
                    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
                        copy.set_types([_COPY_TYPES[table][column] for column in columns])
                        write = copy.write_row
                        for row in rows:
                            write(row)
            except psycopg.errors.UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT sync_copy")
                return False
            cursor.execute("RELEASE SAVEPOINT sync_copy")
        return True

    def register_devices(
        self, *, school_code: str, device_ids: Sequence[str], now: datetime
    ) -> dict[str, _DeviceState]:
        if not device_ids:
            return {}
        ids = list(device_ids)
        self._execute(
            "INSERT INTO device (id, school_code, presence, first_seen_at) "
            "SELECT id, %s, 'unknown', %s FROM unnest(%b::text[]) AS t(id) ORDER BY id "
            "ON CONFLICT (id) DO NOTHING",
            (school_code, now, ids),
        )
        rows = self._execute(
            "SELECT id, school_code, boot_id, presence, last_seen_at, role FROM device WHERE id = ANY(%b::text[]) "
            "ORDER BY id FOR UPDATE",
            (ids,),
        )
        return {row[0]: _DeviceState(*row) for row in rows}

    def claim(self, *, gateway_id: str, records: Sequence[SyncRecord], now: datetime) -> set[int]:
        if not records:
            return set()
        null = _json(None)
        copied = self._copy([(
            "ingested_record",
            ("gateway_id", "received_at", *(name for name, _ in LEDGER_COLUMNS)),
            [
                (gateway_id, now, record.gseq, record.kind, record.device,
                 null if record.device is not None else _json(record.body))
                for record in records
            ],
        )])
        if copied:
            return {record.gseq for record in records}
        rows = [
            (record.gseq, record.kind, record.device, null if record.device is not None else _json(record.body))
            for record in records
        ]
        result = self._execute(
            "INSERT INTO ingested_record (gateway_id, received_at, gateway_seq, kind, device_id, body) "
            f"SELECT %s, %s, {_pg_columns(LEDGER_COLUMNS)} "
            "FROM jsonb_array_elements(%s::jsonb) AS r "
            "ON CONFLICT (gateway_id, gateway_seq) DO NOTHING RETURNING gateway_seq",
            (gateway_id, now, _json_rows(rows)),
        )
        return set(result.scalars().all())

    def insert_all_keyed(
        self, tables: Sequence[tuple[str, Sequence[tuple[Any, ...]]]], *, gateway: Gateway, now: datetime
    ) -> None:
        statements = []
        for table, rows in tables:
            if not rows:
                continue
            columns, constants = self._keyed_columns(table, gateway, now)
            documents = [index for index, (name, _) in enumerate(columns) if name in JSON_COLUMNS]
            if documents:
                rows = [
                    tuple(_json(value) if index in documents else value for index, value in enumerate(row))
                    for row in rows
                ]
            names = [name for name, _ in columns] + list(constants)
            extra = tuple(constants.values())
            statements.append((table, names, [(*row, *extra) for row in rows]))
        if not self._copy(statements):
            super().insert_all_keyed(tables, gateway=gateway, now=now)

    @staticmethod
    def _keyed_columns(
        table: str, gateway: Gateway, now: datetime
    ) -> tuple[tuple[tuple[str, str], ...], dict[str, Any]]:
        constants: dict[str, Any] = {"school_code": gateway.school_code, "received_at": now}
        if table in TABLES_WITH_GATEWAY:
            constants["gateway_id"] = gateway.id
        return (*KEY_COLUMNS, *KEYED_COLUMNS[table]), constants

    def insert_keyed(self, table: str, rows: Sequence[tuple[Any, ...]], *, gateway: Gateway, now: datetime) -> None:
        if not rows:
            return
        columns, constant_values = self._keyed_columns(table, gateway, now)
        documents = [index for index, (name, _) in enumerate(columns) if name in JSON_COLUMNS]
        if documents:
            rows = [
                tuple(_json(value) if index in documents else value for index, value in enumerate(row)) for row in rows
            ]
        constants = list(constant_values)
        self._execute(
            f"INSERT INTO {table} ({', '.join([name for name, _ in columns] + constants)}) "
            f"SELECT {_pg_columns(columns)}, {', '.join(['%s'] * len(constants))} "
            "FROM jsonb_array_elements(%s::jsonb) AS r "
            "ON CONFLICT (device_id, boot_id, seq) DO NOTHING",
            (*constant_values.values(), _json_rows(rows)),
        )

    def update_devices(self, devices: Sequence[_DeviceState]) -> None:
        if not devices:
            return
        arrays: list[list[Any]] = [[device.id for device in devices]]
        for name in DEVICE_CHANGES:
            values = [device.changes.get(name) for device in devices]
            if name in JSON_COLUMNS:
                # None here means "unchanged", not a JSON null.
                values = [None if value is None else _json(value) for value in values]
            arrays.append(values)
        types = ("text", "timestamptz", "text", "text", "text", "text", "text", "timestamptz", "json", "bigint")
        names = ("id", *DEVICE_CHANGES)
        assignments = ", ".join(f"{name} = coalesce(t.{name}, device.{name})" for name in DEVICE_CHANGES)
        self._execute(
            f"UPDATE device SET {assignments} "
            f"FROM unnest({', '.join(f'%b::{sql_type}[]' for sql_type in types)}) AS t({', '.join(names)}) "
            "WHERE device.id = t.id",
            tuple(arrays),
        )


class _SqliteStore(_Store):
    """Statements run once for all the rows (executemany), with SQLAlchemy's types writing the values."""

    def register_devices(
        self, *, school_code: str, device_ids: Sequence[str], now: datetime
    ) -> dict[str, _DeviceState]:
        devices: dict[str, _DeviceState] = {}
        if not device_ids:
            return devices
        self.session.execute(
            sqlite.insert(Device).on_conflict_do_nothing(index_elements=["id"]),
            [{"id": device_id, "school_code": school_code, "presence": "unknown", "first_seen_at": now}
             for device_id in device_ids],
        )
        for chunk in chunks(device_ids):
            statement = (
                sa_select(
                    DEVICE.c.id, DEVICE.c.school_code, DEVICE.c.boot_id, DEVICE.c.presence, DEVICE.c.last_seen_at,
                    DEVICE.c.role,
                )
                .where(DEVICE.c.id.in_(chunk))
                .order_by(DEVICE.c.id)
            )
            devices.update((row[0], _DeviceState(*row)) for row in self.session.execute(statement))
        return devices

    def claim(self, *, gateway_id: str, records: Sequence[SyncRecord], now: datetime) -> set[int]:
        if not records:
            return set()
        statement = (
            sqlite.insert(IngestedRecord)
            .on_conflict_do_nothing(index_elements=["gateway_id", "gateway_seq"])
            .returning(col(IngestedRecord.gateway_seq))
        )
        rows = [_ledger_row(gateway_id, record, now) for record in records]
        return set(self.session.execute(statement, rows).scalars())

    def insert_keyed(self, table: str, rows: Sequence[tuple[Any, ...]], *, gateway: Gateway, now: datetime) -> None:
        if not rows:
            return
        names = [name for name, _ in (*KEY_COLUMNS, *KEYED_COLUMNS[table])]
        constants: dict[str, Any] = {"school_code": gateway.school_code, "received_at": now}
        if table in TABLES_WITH_GATEWAY:
            constants["gateway_id"] = gateway.id
        self.session.execute(
            sqlite.insert(_TABLE_MODELS[table]).on_conflict_do_nothing(index_elements=["device_id", "boot_id", "seq"]),
            [{**dict(zip(names, row, strict=True)), **constants} for row in rows],
        )

    def update_devices(self, devices: Sequence[_DeviceState]) -> None:
        if not devices:
            return
        columns = DEVICE.c
        # A null here means "unchanged": JSON must bind it as SQL NULL, not as the JSON null it would store.
        types = {
            name: JSON(none_as_null=True) if name in JSON_COLUMNS else columns[name].type for name in DEVICE_CHANGES
        }
        values = {
            name: func.coalesce(bindparam(f"new_{name}", type_=types[name]), columns[name]) for name in DEVICE_CHANGES
        }
        statement = update(DEVICE).where(DEVICE.c.id == bindparam("device_id")).values(values)
        rows = [
            {"device_id": device.id, **{f"new_{name}": device.changes.get(name) for name in DEVICE_CHANGES}}
            for device in devices
        ]
        self.session.connection().execute(statement, rows)


DEVICE = SQLModel.metadata.tables["device"]
_TABLE_MODELS: dict[str, type[SQLModel]] = {
    "attendance_event": AttendanceEvent,
    "alarm": Alarm,
    "command_ack": CommandAck,
    "health_sample": HealthSample,
    "telemetry_sample": TelemetrySample,
}


def _store(session: Session) -> _Store:
    dialect = session.get_bind().dialect.name
    return _PostgresStore(session) if dialect == "postgresql" else _SqliteStore(session)


# ---- the batch ----------------------------------------------------------------------------------


def apply_sync_batch(
    session: Session,
    *,
    gateway: Gateway,
    records: Sequence[SyncRecordIn | Mapping[str, Any]],
    now: datetime | None = None,
    client_ip: str | None = None,
    policy: workorders.FaultPolicy = workorders.DEFAULT_POLICY,
) -> SyncResult:
    """Apply a gateway's batch in one transaction, idempotently; say which records are confirmed.

    `records` are SyncRecordIn, or dicts of the same fields whose gseq is a checked positive integer."""
    begin_write(session)
    now = now or utcnow()
    store = _store(session)
    parsed: dict[int, SyncRecord] = {}
    rejected: dict[int, SyncRejection] = {}
    for raw in records:
        fields = _record_fields(raw)
        gseq = fields["gseq"]
        if gseq in parsed or gseq in rejected:
            continue
        record = _parse_tap(fields)
        if record is not None:
            parsed[gseq] = record
            continue
        try:
            parsed[gseq] = parse_sync_record(fields)
        except RecordRejected as exc:
            rejected[gseq] = SyncRejection(gseq=gseq, reason=exc.reason, detail=exc.detail)

    school_code = gateway.school_code
    devices = store.register_devices(
        school_code=school_code,
        device_ids=sorted({record.device for record in parsed.values() if record.device is not None}),
        now=now,
    )
    foreign = {device_id for device_id, device in devices.items() if device.school_code != school_code}
    if foreign:
        for gseq, record in list(parsed.items()):
            if record.device in foreign:
                del parsed[gseq]
                rejected[gseq] = SyncRejection(
                    gseq=gseq,
                    reason=FOREIGN_DEVICE,
                    detail=f"device {record.device} is registered to another school",
                )

    ordered = [parsed[gseq] for gseq in sorted(parsed)]
    claimed = store.claim(gateway_id=gateway.id, records=ordered, now=now)
    # Rows go in by kind, in KEYED_TABLES' order, so that row ids are handed out in that order.
    keyed_rows: dict[str, list[tuple[Any, ...]]] = {kind: [] for kind in KEYED_TABLES}
    kinds: dict[str, int] = {}
    signals: list[workorders.FaultSignal] = []
    reports: list[tuple[str, str | None, dict[str, Any], datetime]] = []
    taps = keyed_rows[messages.ATTENDANCE]
    tap_count = 0
    for record in ordered:
        if record.gseq not in claimed:
            continue
        kind = record.kind
        if kind == messages.ATTENDANCE:
            # Most of a batch: what _apply_to_device and _keyed_row do for a tap, without the calls.
            tap_count += 1
            device = devices[record.device]  # type: ignore[index]
            if device.last_seen_at is None or record.ts > device.last_seen_at:
                device.last_seen_at = device.changes["last_seen_at"] = record.ts
            card, hist = record.body["card"], bool(record.body.get("hist", False))
            taps.append((record.device, record.boot, record.seq, record.ts, card, hist))
            continue
        kinds[kind] = kinds.get(kind, 0) + 1
        if record.device is not None:
            _apply_to_device(devices[record.device], record)
            if kind in KEYED_TABLES:
                keyed_rows[kind].append(_keyed_row(record, gateway))
        if kind in (messages.ALARM, GATEWAY_ALARM):
            signals.append(_signal(record, gateway))
        elif kind in (messages.ACK, COMMAND_STATUS):
            reports.append((kind, record.device, record.body, record.ts))
    if tap_count:
        kinds[messages.ATTENDANCE] = tap_count
    # Devices first: the alarms' work orders below read them.
    store.update_devices([device for device in devices.values() if device.changes])
    store.insert_all_keyed(
        [(KEYED_TABLE_NAMES[kind], rows) for kind, rows in keyed_rows.items() if rows], gateway=gateway, now=now
    )
    orders: dict[str, int] = {}
    if signals:
        orders = workorders.apply_sync_alarms(
            session,
            gateway=gateway,
            signals=signals,
            previous_sync=gateway.last_sync_at,
            now=now,
            policy=policy,
            device_roles={device.id: device.role for device in devices.values()},
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
