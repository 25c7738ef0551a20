"""The rows a batch writes (each keyed table's columns) and the store interface that the PostgreSQL and
SQLite stores implement."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, SQLModel

from cloud.models import (
    Alarm,
    AttendanceEvent,
    CommandAck,
    Gateway,
    HealthSample,
    TelemetrySample,
)
from cloud.sync.records import GATEWAY_ALARM, SyncRecord, gateway_alarm_boot
from protocol import messages

# Device columns a batch may change; none of them is ever set back to null by a record.
DEVICE_CHANGES = ("last_seen_at", "boot_id", "role", "fw", "app", "presence", "presence_since", "last_health",
                  "config_version")


class DeviceState:
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


# ---- the rows of a batch ------------------------------------------------------------------------

# Kinds stored in a table of their own, keyed by (device, boot, seq), one row per device message.
KEYED_TABLES: dict[str, type[SQLModel]] = {
    GATEWAY_ALARM: Alarm,
    messages.ATTENDANCE: AttendanceEvent,
    messages.ALARM: Alarm,
    messages.ACK: CommandAck,
    messages.HEALTH: HealthSample,
    messages.TELEMETRY: TelemetrySample,
}

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


def keyed_row(record: SyncRecord, gateway: Gateway) -> tuple[Any, ...]:
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


class Store:
    """The batch's statements in the session's transaction, each table written in one round trip."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def register_devices(
        self, *, school_code: str, device_ids: Sequence[str], now: datetime
    ) -> dict[str, DeviceState]:
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

    def update_devices(self, devices: Sequence[DeviceState]) -> None:
        """Write what the batch changed of its devices."""
        raise NotImplementedError
