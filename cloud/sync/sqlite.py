"""The SQLite store: each of a batch's statements run once for all its rows."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, bindparam, func, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import sqlite
from sqlmodel import SQLModel, col

from cloud.crud.common import chunks
from cloud.models import (
    Alarm,
    AttendanceEvent,
    CommandAck,
    Device,
    Gateway,
    HealthSample,
    IngestedRecord,
    TelemetrySample,
)
from cloud.sync.records import SyncRecord
from cloud.sync.store import (
    DEVICE_CHANGES,
    JSON_COLUMNS,
    KEY_COLUMNS,
    KEYED_COLUMNS,
    TABLES_WITH_GATEWAY,
    DeviceState,
    Store,
)


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


class SqliteStore(Store):
    """Statements run once for all the rows (executemany), with SQLAlchemy's types writing the values."""

    def register_devices(
        self, *, school_code: str, device_ids: Sequence[str], now: datetime
    ) -> dict[str, DeviceState]:
        devices: dict[str, DeviceState] = {}
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
            devices.update((row[0], DeviceState(*row)) for row in self.session.execute(statement))
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

    def update_devices(self, devices: Sequence[DeviceState]) -> None:
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
