"""The tables of the gateway's SQLite store (see store.py): records and their sync state, devices,
edge alarms, commands, desired configs and the quarantine."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS record (
    gseq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    device TEXT,
    boot TEXT,
    seq INTEGER,
    device_no INTEGER,
    boot_no INTEGER,
    ts REAL NOT NULL,
    body TEXT NOT NULL,
    received_at REAL NOT NULL,
    sync_state INTEGER NOT NULL DEFAULT 0,
    synced_at REAL,
    reject_reason TEXT
);
-- The key (device, boot, seq) as integers: half the cost per insert of the same index on text.
CREATE UNIQUE INDEX IF NOT EXISTS record_key ON record(device_no, boot_no, seq) WHERE seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS record_pending ON record(gseq) WHERE sync_state = 0;
CREATE INDEX IF NOT EXISTS record_priority ON record(gseq)
    WHERE sync_state = 0 AND kind IN ('alarm', 'ack', 'gateway_alarm', 'command_status');
CREATE INDEX IF NOT EXISTS record_synced ON record(synced_at) WHERE sync_state != 0;
CREATE TABLE IF NOT EXISTS device (
    no INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    role TEXT,
    boot TEXT,
    presence TEXT NOT NULL DEFAULT 'unknown',
    presence_since REAL,
    last_seen REAL,
    health_s INTEGER,
    last_health TEXT
);
CREATE TABLE IF NOT EXISTS alarm_state (
    device TEXT NOT NULL,
    code TEXT NOT NULL,
    raised_at REAL NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (device, code)
);
CREATE TABLE IF NOT EXISTS command (
    cid TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    name TEXT NOT NULL,
    args TEXT NOT NULL,
    exp REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    received_at REAL NOT NULL,
    published_at REAL
);
CREATE INDEX IF NOT EXISTS command_open ON command(device) WHERE state IN ('queued', 'published');
CREATE TABLE IF NOT EXISTS desired_config (
    device TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload BLOB NOT NULL
);
"""
