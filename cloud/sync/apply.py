"""Gateway sync: batches of device records applied idempotently, each record confirmed or rejected."""

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session

from cloud import workorders
from cloud.core.db import begin_write
from cloud.crud import audit, commands
from cloud.crud.common import Actor
from cloud.models import (
    Gateway,
    SyncRecordIn,
    SyncRejection,
    SyncResult,
    utcnow,
)
from cloud.sync.pg import PostgresStore
from cloud.sync.records import (
    COMMAND_STATUS,
    FOREIGN_DEVICE,
    GATEWAY_ALARM,
    KEYED_KIND_SET,
    RecordRejected,
    SyncRecord,
    _parse_tap,
    parse_sync_record,
    record_fields,
)
from cloud.sync.sqlite import SqliteStore
from cloud.sync.store import KEYED_TABLE_NAMES, KEYED_TABLES, DeviceState, Store, keyed_row
from protocol import messages

logger = logging.getLogger(__name__)


def _apply_to_device(device: DeviceState, record: SyncRecord) -> None:
    """Update what the device's state says after `record`; records come in gateway order."""
    kind = record.kind
    changes = device.changes
    if kind in KEYED_KIND_SET and (device.last_seen_at is None or record.ts > device.last_seen_at):
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


def _store(session: Session) -> Store:
    dialect = session.get_bind().dialect.name
    return PostgresStore(session) if dialect == "postgresql" else SqliteStore(session)


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
        fields = record_fields(raw)
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
            # Most of a batch: what _apply_to_device and keyed_row do for a tap, without the calls.
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
                keyed_rows[kind].append(keyed_row(record, gateway))
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
