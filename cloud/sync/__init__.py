"""Gateway sync: a gateway's batch of device records checked (records), written by the PostgreSQL or the
SQLite store (pg, sqlite, over store's rows), and applied in one transaction (apply)."""

from cloud.sync.apply import apply_sync_batch
from cloud.sync.records import RecordRejected, SyncRecord, parse_sync_record

__all__ = ["RecordRejected", "SyncRecord", "apply_sync_batch", "parse_sync_record"]
